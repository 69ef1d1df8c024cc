package keyspace

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// TestHintsModel: reads through Hints over a Layer over base rows (the
// leader's overlay) give what the rows give, whatever the mix of writes,
// pops from either end, range deletes and reads from span ends, partial
// (stopped early) or whole, and point reads of head rows (which Hints
// serves itself), while entries move to the base. A hint that a
// write did not lower (Set) hides a row written in front of the live
// rows, which the pops then miss; a head row a write did not update is
// read stale.
func TestHintsModel(t *testing.T) {
	subs := []string{"", "\x00", "a", "i", "i1", "i2", "i3", "m", "m1", "m2", "z", "\xff", "\xff\xff"}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 7))
		base, truth := memRows{}, memRows{}
		l := NewLayer(base)
		h := NewHints(l)
		key := func() []byte { return []byte(fmt.Sprintf("k%d", r.IntN(2))) }
		ver := func() uint64 { return uint64(r.IntN(2) + 1) }
		var pending [][]logrec.Op
		for lsn := uint64(1); lsn <= 200; lsn++ {
			var ops []logrec.Op
			switch r.IntN(11) {
			case 0, 1, 2:
				ops = []logrec.Op{{Kind: logrec.OpSubPut, Key: key(), Version: ver(), Sub: []byte(subs[r.IntN(len(subs))]), Value: fmt.Appendf(nil, "v%d", lsn)}}
			case 3:
				ops = []logrec.Op{{Kind: logrec.OpDrop, Key: key(), Version: ver()}}
			case 4:
				if r.IntN(10) == 0 {
					ops = []logrec.Op{{Kind: logrec.OpFlushAll}}
				} else {
					// A head row rewritten (a list's push or pop at its head).
					ops = []logrec.Op{{Kind: logrec.OpSubPut, Key: key(), Version: ver(), Sub: []byte{}, Value: fmt.Appendf(nil, "h%d", lsn)}}
				}
			default:
				// A pop: the first or last rows of a span read through
				// the hints, deleted.
				k, v := key(), ver()
				lo, hi := spanEnds(r, k, v)
				read := h.Iter
				if r.IntN(2) == 0 {
					read = h.IterReverse
				}
				n := 1 + r.IntN(2)
				if err := read(lo, hi, func(rk, _ []byte) bool {
					_, _, sub, _ := ParseSubKey(rk)
					ops = append(ops, logrec.Op{Kind: logrec.OpSubDel, Key: k, Version: v, Sub: slices.Clone(sub)})
					return len(ops) < n
				}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range ops {
				_ = Apply(truth, &ops[i])
			}
			if err := l.ApplyOps(lsn, ops); err != nil {
				t.Fatal(err)
			}
			if err := h.ApplyOps(ops); err != nil {
				t.Fatal(err)
			}
			pending = append(pending, ops)
			if r.IntN(4) == 0 { // the base catches up
				for _, e := range pending {
					for i := range e {
						_ = Apply(base, &e[i])
					}
					l.Forget(e, lsn)
				}
				pending = nil
			}
			// Reads from every span end agree with the rows, and so do
			// the point reads of the head rows (the empty sub-key).
			for _, k := range []string{"k0", "k1"} {
				for v := uint64(1); v <= 2; v++ {
					hk := SubKey([]byte(k), v, nil)
					gv, gok, _ := h.Get(hk)
					wv, wok, _ := truth.Get(hk)
					if gok != wok || string(gv) != string(wv) {
						t.Fatalf("seed %d lsn %d: Get(%q) = %q %v, want %q %v", seed, lsn, hk, gv, gok, wv, wok)
					}
					lo, hi := spanEnds(r, []byte(k), v)
					var got, want, gotRev, wantRev []string
					collect := func(out *[]string) func(k, _ []byte) bool {
						return func(k, _ []byte) bool { *out = append(*out, string(k)); return true }
					}
					_ = h.Iter(lo, hi, collect(&got))
					_ = truth.Iter(lo, hi, collect(&want))
					_ = h.IterReverse(lo, hi, collect(&gotRev))
					_ = truth.IterReverse(lo, hi, collect(&wantRev))
					if !slices.Equal(got, want) || !slices.Equal(gotRev, wantRev) {
						t.Fatalf("seed %d lsn %d: [%q, %q): hinted %q / reverse %q, want %q / %q", seed, lsn, lo, hi, got, gotRev, want, wantRev)
					}
				}
			}
		}
	}
}

// spanEnds is a random span of (key, version) that hints are kept for: the
// whole span or one family of it.
func spanEnds(r *rand.Rand, key []byte, version uint64) (lo, hi []byte) {
	lo, hi = SubSpan(key, version)
	switch r.IntN(3) {
	case 0:
		return lo, hi
	case 1:
		return append(lo, 'i'), append(slices.Clone(lo), 'j')
	}
	return append(lo, 'm'), append(slices.Clone(lo), 'n')
}

// TestHintsSkip: once a pop from the front has read a span, the next read
// from the span's start begins at the first live row: it does not read
// the rows deleted before it.
func TestHintsSkip(t *testing.T) {
	base := &countRows{memRows: memRows{}}
	h := NewHints(base)
	k := []byte("z")
	var ops []logrec.Op
	for i := range 100 {
		ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: 1, Sub: fmt.Appendf(nil, "i%03d", i), Value: []byte{}})
	}
	apply := func(ops []logrec.Op) {
		for i := range ops {
			_ = Apply(base.memRows, &ops[i])
		}
		if err := h.ApplyOps(ops); err != nil {
			t.Fatal(err)
		}
	}
	apply(ops)
	lo, hi := SubSpan(k, 1)
	pop := func(read func(lo, hi []byte, fn func(k, v []byte) bool) error) string {
		var got []byte
		_ = read(lo, hi, func(rk, _ []byte) bool { got = slices.Clone(rk); return false })
		_, _, sub, _ := ParseSubKey(got)
		apply([]logrec.Op{{Kind: logrec.OpSubDel, Key: k, Version: 1, Sub: sub}})
		return string(sub)
	}
	for i := range 50 {
		if got, want := pop(h.Iter), fmt.Sprintf("i%03d", i); got != want {
			t.Fatalf("pop %d from the front = %q, want %q", i, got, want)
		}
		if got, want := pop(h.IterReverse), fmt.Sprintf("i%03d", 99-i); i < 49 && got != want {
			t.Fatalf("pop %d from the back = %q, want %q", i, got, want)
		}
	}
	if got := h.Deleted(k, 1); got != 100 {
		t.Errorf("Deleted after 100 pops = %d", got)
	}
	if got := h.Deleted(k, 2); got != 0 {
		t.Errorf("Deleted of another version = %d", got)
	}
	// The read after the pops starts right after the last row popped
	// from the front: the delete moved the hint past it.
	base.from = nil
	_ = h.Iter(lo, hi, func(_, _ []byte) bool { return false })
	if want := SubKey(k, 1, []byte("i049\x00")); string(base.from) != string(want) {
		t.Errorf("the read after 50 pops starts at %q, want %q", base.from, want)
	}
	// Likewise from the back: the reverse read ends at the last row
	// popped from there (i050, the 50th), exclusive.
	base.to = nil
	_ = h.IterReverse(lo, hi, func(_, _ []byte) bool { return false })
	if want := SubKey(k, 1, []byte("i050")); string(base.to) != string(want) {
		t.Errorf("the reverse read after 50 pops ends at %q, want %q", base.to, want)
	}
	// A row written in front of the live rows is read.
	apply([]logrec.Op{{Kind: logrec.OpSubPut, Key: k, Version: 1, Sub: []byte("a"), Value: []byte{}}})
	if got := pop(h.Iter); got != "a" {
		t.Errorf("after a write at the front, the pop took %q, want a", got)
	}
	apply([]logrec.Op{{Kind: logrec.OpSubPut, Key: k, Version: 1, Sub: []byte("z"), Value: []byte{}}})
	if got := pop(h.IterReverse); got != "z" {
		t.Errorf("after a write at the back, the pop took %q, want z", got)
	}
}

// countRows records where the last iteration started (from) and where
// the last reverse one ended (to).
type countRows struct {
	memRows
	from, to []byte
}

func (c *countRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	c.to = slices.Clone(hi)
	return c.memRows.IterReverse(lo, hi, fn)
}

func (c *countRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	c.from = slices.Clone(lo)
	return c.memRows.Iter(lo, hi, fn)
}

// TestHintsHeadsBounded: head rows of many lists are bounded on their
// own, and do not make a pop forget where a span's live rows start.
func TestHintsHeadsBounded(t *testing.T) {
	base := &countRows{memRows: memRows{}}
	h := NewHints(base)
	for i := range 10 {
		k := SubKey([]byte("z"), 1, fmt.Appendf(nil, "i%d", i))
		base.memRows[string(k)] = ""
	}
	lo, hi := SubSpan([]byte("z"), 1)
	_ = h.Iter(lo, hi, func(_, _ []byte) bool { return false })
	if err := h.ApplyOps([]logrec.Op{{Kind: logrec.OpSubDel, Key: []byte("z"), Version: 1, Sub: []byte("i0")}}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 * maxHints {
		op := logrec.Op{Kind: logrec.OpSubPut, Key: fmt.Appendf(nil, "list%d", i), Version: 1, Sub: []byte{}, Value: []byte("h")}
		if err := h.ApplyOps([]logrec.Op{op}); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.heads) > maxHints {
		t.Errorf("%d head rows kept, bound %d", len(h.heads), maxHints)
	}
	// A delete in another collection makes room for its count.
	if err := h.ApplyOps([]logrec.Op{{Kind: logrec.OpSubDel, Key: []byte("other"), Version: 1, Sub: []byte("m")}}); err != nil {
		t.Fatal(err)
	}
	base.from = nil
	_ = h.Iter(lo, hi, func(_, _ []byte) bool { return false })
	if want := SubKey([]byte("z"), 1, []byte("i0\x00")); string(base.from) != string(want) {
		t.Errorf("after writes to many lists the pop reads from %q, want %q (its hint)", base.from, want)
	}
}

// TestHintsWindowModel: pops from the front of a span longer than a
// window, so that windows fill and close below the span's end, mixed
// with writes and deletes anywhere in it and reads of the whole span, of
// its family and stopped early, give what the rows give. A window that
// ended at the wrong row, or served its rows without the ones past it,
// shows as rows missing or extra.
func TestHintsWindowModel(t *testing.T) {
	k := []byte("z")
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 11))
		m := newHintsModel(t, r)
		truth, h, write := m.truth, m.h, m.write
		// Mostly the family the pops read ('i'), sometimes the one after
		// it ('m'), which a read from the family's start with the span's
		// end as its bound meets once the family's rows are gone.
		sub := func() []byte {
			switch r.IntN(8) {
			case 0, 1:
				return fmt.Appendf(nil, "m%03d", r.IntN(40))
			case 2:
				return fmt.Appendf(nil, "a%03d", r.IntN(40))
			}
			return fmt.Appendf(nil, "i%03d", r.IntN(400))
		}
		var fill []logrec.Op
		for i := range 100 + r.IntN(200) {
			fill = append(fill, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: 1, Sub: fmt.Appendf(nil, "i%03d", i), Value: fmt.Appendf(nil, "v%d", i)})
		}
		for i := range 20 {
			fill = append(fill, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: 1, Sub: fmt.Appendf(nil, "m%03d", i), Value: fmt.Appendf(nil, "m%d", i)})
		}
		write(1, fill)
		lo, hi := SubSpan(k, 1)
		family := append(slices.Clone(lo), 'i')
		famEnd := append(slices.Clone(lo), 'j')
		for lsn := uint64(2); lsn <= 250; lsn++ {
			var ops []logrec.Op
			switch r.IntN(10) {
			case 0:
				ops = []logrec.Op{{Kind: logrec.OpSubPut, Key: k, Version: 1, Sub: sub(), Value: fmt.Appendf(nil, "w%d", lsn)}}
			case 1:
				ops = []logrec.Op{{Kind: logrec.OpSubDel, Key: k, Version: 1, Sub: sub()}}
			default:
				// A pop from the front, of the span or of its family.
				from := lo
				if r.IntN(2) == 0 {
					from = family
				}
				n := 1 + r.IntN(3)
				if err := h.Iter(from, hi, func(rk, _ []byte) bool {
					_, _, s, _ := ParseSubKey(rk)
					ops = append(ops, logrec.Op{Kind: logrec.OpSubDel, Key: k, Version: 1, Sub: slices.Clone(s)})
					return len(ops) < n
				}); err != nil {
					t.Fatal(err)
				}
			}
			write(lsn, ops)
			// Whole reads, and reads that end inside the span.
			for _, end := range [][]byte{hi, SubKey(k, 1, sub())} {
				for _, start := range [][]byte{lo, family} {
					var got, want []string
					_ = h.Iter(start, end, func(rk, v []byte) bool { got = append(got, string(rk)+"="+string(v)); return true })
					_ = truth.Iter(start, end, func(rk, v []byte) bool { want = append(want, string(rk)+"="+string(v)); return true })
					if !slices.Equal(got, want) {
						t.Fatalf("seed %d lsn %d: [%q, %q): hinted %d rows %q, want %d %q", seed, lsn, start, end, len(got), got, len(want), want)
					}
				}
			}
			// Reverse reads from the family's end over the whole span.
			var got, want []string
			_ = h.IterReverse(lo, famEnd, func(rk, v []byte) bool { got = append(got, string(rk)); return len(got) < 3 })
			_ = truth.IterReverse(lo, famEnd, func(rk, v []byte) bool { want = append(want, string(rk)); return len(want) < 3 })
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d lsn %d: reverse [%q, %q): hinted %q, want %q", seed, lsn, lo, famEnd, got, want)
			}
		}
	}
}

// hintsModel is a Hints over a Layer over base rows (the leader's
// overlay over storage), beside truth, the rows as every entry written so
// far leaves them: what a read through h must give.
type hintsModel struct {
	t           *testing.T
	r           *rand.Rand
	base, truth memRows
	l           *Layer
	h           *Hints
	pending     [][]logrec.Op // entries in l not yet in base
}

func newHintsModel(t *testing.T, r *rand.Rand) *hintsModel {
	m := &hintsModel{t: t, r: r, base: memRows{}, truth: memRows{}}
	m.l = NewLayer(m.base)
	m.h = NewHints(m.l)
	return m
}

// write applies the entry at lsn to truth, the layer and the hints, and
// at random moves the entries written so far to the base, as applies do.
func (m *hintsModel) write(lsn uint64, ops []logrec.Op) {
	for i := range ops {
		_ = Apply(m.truth, &ops[i])
	}
	if err := m.l.ApplyOps(lsn, ops); err != nil {
		m.t.Fatal(err)
	}
	if err := m.h.ApplyOps(ops); err != nil {
		m.t.Fatal(err)
	}
	m.pending = append(m.pending, ops)
	if m.r.IntN(3) == 0 {
		for _, e := range m.pending {
			for i := range e {
				_ = Apply(m.base, &e[i])
			}
			m.l.Forget(e, lsn)
		}
		m.pending = nil
	}
}

// TestHintsPopsAllocateLittle: a pop after a pop from a span's start (a
// read served from the window, the delete of the row it returned) moves
// the forward hint without an allocation: the hint is a pointer in its
// map (no map store, whose key is a new string) and its key past the
// deleted row is built in a buffer of its own. What allocates is the
// window's read ahead, per row: its copy of the row, and this test's
// memRows handing each row out as a new slice (2 a pop; the hint moves
// made it 5: the store of the read's hint, the delete's copy and store).
func TestHintsPopsAllocateLittle(t *testing.T) {
	base := memRows{}
	h := NewHints(base)
	k := []byte("z")
	const rows = 2000
	var ops []logrec.Op
	for i := range rows {
		ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: 1, Sub: fmt.Appendf(nil, "i%05d", i), Value: []byte{}})
	}
	for i := range ops {
		_ = Apply(base, &ops[i])
	}
	if err := h.ApplyOps(ops); err != nil {
		t.Fatal(err)
	}
	lo, hi := SubSpan(k, 1)
	keys := make([][]byte, rows)
	for i := range keys {
		keys[i] = SubKey(k, 1, ops[i].Sub)
	}
	popped := 0
	var got []byte
	take := func(rk, _ []byte) bool { got = rk; return false } // made once: no allocation per pop
	pop := func() {
		_ = h.Iter(lo, hi, take)
		if want := keys[popped]; !bytes.Equal(got, want) {
			t.Fatalf("pop %d took %q, want %q", popped, got, want)
		}
		h.Delete(keys[popped]) // as the overlay takes the pop's op
		popped++
	}
	pop()
	pop() // the second read from the start opens the window
	if a := testing.AllocsPerRun(rows-10, pop); a > 2.2 {
		t.Errorf("a pop after a pop allocates %.2f times, want 2 (the window's read ahead)", a)
	}
}

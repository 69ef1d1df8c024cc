package keyspace

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// memRows is the model: rows in a map, written literally.
type memRows map[string]string

func (m memRows) Set(k, v []byte) { m[string(k)] = string(v) }
func (m memRows) Delete(k []byte) { delete(m, string(k)) }
func (m memRows) DeleteRange(lo, hi []byte) {
	for k := range m {
		if k >= string(lo) && k < string(hi) {
			delete(m, k)
		}
	}
}
func (m memRows) Get(k []byte) ([]byte, bool, error) {
	v, ok := m[string(k)]
	return []byte(v), ok, nil
}
func (m memRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k >= string(lo) && k < string(hi) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn([]byte(k), []byte(m[k])) {
			break
		}
	}
	return nil
}

func (m memRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	var keys []string
	_ = m.Iter(lo, hi, func(k, _ []byte) bool { keys = append(keys, string(k)); return true })
	for i := len(keys) - 1; i >= 0; i-- {
		if !fn([]byte(keys[i]), []byte(m[keys[i]])) {
			break
		}
	}
	return nil
}

// randomOp is an op on a few keys, fields and versions, of every kind.
func randomOp(r *rand.Rand) logrec.Op {
	key := []byte(fmt.Sprintf("k%d", r.IntN(4)))
	ver := uint64(r.IntN(3) + 1)
	sub := []byte(fmt.Sprintf("f%d", r.IntN(4)))
	val := []byte(fmt.Sprintf("v%d", r.IntN(100)))
	switch r.IntN(20) {
	case 0, 1, 2:
		return logrec.Op{Kind: logrec.OpPut, Key: key, Value: val, ExpireAtMs: int64(r.IntN(3)) * 50}
	case 3, 4:
		return logrec.Op{Kind: logrec.OpDelete, Key: key}
	case 5, 6, 7:
		return logrec.Op{Kind: logrec.OpMeta, Key: key, Type: uint8(TypeHash), Version: ver, Size: uint64(r.IntN(5)), ExpireAtMs: int64(r.IntN(3)) * 50}
	case 8, 9, 10, 11, 12:
		return logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: ver, Sub: sub, Value: val}
	case 13, 14, 15:
		return logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: ver, Sub: sub}
	case 16, 17, 18:
		return logrec.Op{Kind: logrec.OpDrop, Key: key, Version: ver}
	}
	return logrec.Op{Kind: logrec.OpFlushAll}
}

func dumpRows(t *testing.T, r Rows) []string {
	t.Helper()
	var out []string
	for _, span := range [][2][]byte{{MetaLower, MetaUpper}, {SubLower, SubUpper}} {
		if err := r.Iter(span[0], span[1], func(k, v []byte) bool {
			out = append(out, fmt.Sprintf("%q=%q", k, v))
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// dumpRowsReverse is dumpRows read backwards, in dumpRows's order.
func dumpRowsReverse(t *testing.T, r Rows) []string {
	t.Helper()
	var out []string
	for _, span := range [][2][]byte{{SubLower, SubUpper}, {MetaLower, MetaUpper}} {
		if err := r.IterReverse(span[0], span[1], func(k, v []byte) bool {
			out = append(out, fmt.Sprintf("%q=%q", k, v))
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Reverse(out)
	return out
}

// randomBound is a row key near those randomOp writes, or between them.
func randomBound(r *rand.Rand) []byte {
	key := []byte(fmt.Sprintf("k%d", r.IntN(5)))
	switch r.IntN(4) {
	case 0:
		return MetaKey(key)
	case 1:
		return AppendSubPrefix(nil, key, uint64(r.IntN(4)))
	}
	return SubKey(key, uint64(r.IntN(4)), []byte(fmt.Sprintf("f%d", r.IntN(5))))
}

// iterN is the first limit rows of rs in [lo, hi), in either order.
func iterN(t *testing.T, rs Rows, lo, hi []byte, rev bool, limit int) []string {
	t.Helper()
	var out []string
	fn := func(k, v []byte) bool {
		out = append(out, fmt.Sprintf("%q=%q", k, v))
		return len(out) < limit
	}
	var err error
	if rev {
		err = rs.IterReverse(lo, hi, fn)
	} else {
		err = rs.Iter(lo, hi, fn)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLayerModel: a Layer over base rows reads like one map to which
// every op was applied, while entries move from the layer to the base
// (Forget) in LSN order, as the leader's overlay does, and whatever the
// mix of point writes and range deletes.
func TestLayerModel(t *testing.T) {
	for _, floor := range []int{trimFloor, 0} { // 0: trim after every Forget
		t.Run(fmt.Sprintf("trimFloor=%d", floor), func(t *testing.T) {
			defer func(was int) { trimFloor = was }(trimFloor)
			trimFloor = floor
			layerModel(t)
		})
	}
}

func layerModel(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		base, truth := memRows{}, memRows{}
		l := NewLayer(base)
		type entry struct {
			lsn uint64
			ops []logrec.Op
		}
		var pending []entry
		for lsn := uint64(1); lsn <= 60; lsn++ {
			ops := make([]logrec.Op, 1+r.IntN(3))
			for i := range ops {
				ops[i] = randomOp(r)
				if err := Apply(truth, &ops[i]); err != nil {
					t.Fatal(err)
				}
			}
			if err := l.ApplyOps(lsn, ops); err != nil {
				t.Fatal(err)
			}
			pending = append(pending, entry{lsn, ops})
			if r.IntN(3) == 0 { // apply a prefix to the base
				n := r.IntN(len(pending) + 1)
				for _, e := range pending[:n] {
					for i := range e.ops {
						_ = Apply(base, &e.ops[i])
					}
				}
				if n > 0 {
					last := pending[n-1].lsn
					for _, e := range pending[:n] {
						l.Forget(e.ops, last)
					}
				}
				pending = pending[n:]
			}
			got, want := dumpRows(t, l), dumpRows(t, truth)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d lsn %d: layer rows\n%v\nwant\n%v\nlayer:\n%s", seed, lsn, got, want, l)
			}
			if rev := dumpRowsReverse(t, l); !slices.Equal(rev, want) {
				t.Fatalf("seed %d lsn %d: layer rows in reverse\n%v\nwant\n%v\nlayer:\n%s", seed, lsn, rev, want, l)
			}
			// Spans inside the keyspace, in both orders, stopped early.
			for range 4 {
				lo, hi := randomBound(r), randomBound(r)
				limit := 1 + r.IntN(4)
				for _, rev := range []bool{false, true} {
					if got, want := iterN(t, l, lo, hi, rev, limit), iterN(t, truth, lo, hi, rev, limit); !slices.Equal(got, want) {
						t.Fatalf("seed %d lsn %d: layer rows in [%q, %q) reverse %v\n%v\nwant\n%v\nlayer:\n%s", seed, lsn, lo, hi, rev, got, want, l)
					}
				}
			}
			for k := range 4 {
				for _, rk := range [][]byte{MetaKey([]byte(fmt.Sprintf("k%d", k))), SubKey([]byte(fmt.Sprintf("k%d", k)), 1, []byte("f1"))} {
					gv, gok, _ := l.Get(rk)
					wv, wok, _ := truth.Get(rk)
					if gok != wok || string(gv) != string(wv) {
						t.Fatalf("seed %d lsn %d: Get(%q) = %q %v, want %q %v", seed, lsn, rk, gv, gok, wv, wok)
					}
				}
			}
		}
		// Everything applied: the layer is empty again.
		for _, e := range pending {
			for i := range e.ops {
				_ = Apply(base, &e.ops[i])
			}
			l.Forget(e.ops, 60)
		}
		if l.Len() != 0 {
			t.Fatalf("seed %d: %d rows left in the layer after every entry was applied:\n%s", seed, l.Len(), l)
		}
	}
}

// TestLayerForgetBoundsKeys: a layer that is never iterated (plain writes,
// as the leader's overlay under SET) does not keep the keys Forget removed:
// the keys it lists stay within twice those it holds. Before trim, a
// 100,000-key write load left 100,000 keys listed.
func TestLayerForgetBoundsKeys(t *testing.T) {
	base := memRows{}
	l := NewLayer(base)
	var pending [][]logrec.Op
	for lsn := uint64(1); lsn <= 100_000; lsn++ {
		ops := []logrec.Op{{Kind: logrec.OpPut, Key: []byte(fmt.Sprintf("key:%d", lsn)), Value: []byte("v")}}
		if err := l.ApplyOps(lsn, ops); err != nil {
			t.Fatal(err)
		}
		pending = append(pending, ops)
		if len(pending) == 50 { // the base applies a group; 10 stay in flight
			for _, ops := range pending[:40] {
				_ = Apply(base, &ops[0])
				l.Forget(ops, lsn-10)
			}
			pending = append(pending[:0], pending[40:]...)
			if listed, held := len(l.order)+len(l.added), len(l.points); listed > max(trimFloor, 2*held) {
				t.Fatalf("lsn %d: %d keys listed for %d held", lsn, listed, held)
			}
		}
	}
	if got := dumpRows(t, l); len(got) != 100_000 { // the base's and the in-flight ones
		t.Fatalf("%d rows read through the layer, want 100000", len(got))
	}
}

// TestLayerForgetAllocatesNothing: forgetting a write's rows (the
// leader's overlay, once per applied entry: a SET's put, an element's
// sub-key op) allocates nothing once the layer's key buffer has grown;
// only a drop or a FLUSHALL, forgotten through Apply, may. The forgetter
// was one allocation per call, for every call, when Apply's rare use of
// it made it escape.
func TestLayerForgetAllocatesNothing(t *testing.T) {
	l := NewLayer(memRows{})
	ops := []logrec.Op{
		{Kind: logrec.OpPut, Key: []byte("key:1"), Value: []byte("v")},
		{Kind: logrec.OpSubPut, Key: []byte("h"), Version: 3, Sub: []byte("f"), Value: []byte("x")},
	}
	lsn := uint64(0)
	apply := func() {
		lsn++
		if err := l.ApplyOps(lsn, ops); err != nil {
			t.Fatal(err)
		}
	}
	apply()
	l.Forget(ops, lsn) // the key buffer grows once
	if n := testing.AllocsPerRun(100, func() { l.Forget(ops, lsn) }); n != 0 {
		t.Errorf("Forget of a put and a sub-key put: %v allocations, want 0", n)
	}
	drop := []logrec.Op{{Kind: logrec.OpDrop, Key: []byte("h"), Version: 3}}
	if err := l.ApplyOps(lsn+1, drop); err != nil {
		t.Fatal(err)
	}
	l.Forget(drop, lsn+1)
	if _, _, held := l.Own(AppendMetaKey(nil, []byte("h"))); held {
		t.Errorf("a dropped collection's metadata row is still held after Forget")
	}
}

// TestReaderExpiry: the one expiry rule, for strings and collections.
func TestReaderExpiry(t *testing.T) {
	rows := memRows{}
	for _, op := range []logrec.Op{
		{Kind: logrec.OpPut, Key: []byte("s"), Value: []byte("v"), ExpireAtMs: 100},
		{Kind: logrec.OpMeta, Key: []byte("h"), Type: uint8(TypeHash), Version: 5, Size: 1, ExpireAtMs: 100},
		{Kind: logrec.OpSubPut, Key: []byte("h"), Version: 5, Sub: []byte("f"), Value: []byte("x")},
		{Kind: logrec.OpPut, Key: []byte("p"), Value: []byte("forever")},
	} {
		_ = Apply(rows, &op)
	}
	for _, now := range []int64{99, 100} {
		r := Reader{R: rows, NowMs: now}
		var keys []string
		_ = r.Scan(nil, func(k []byte, _ Value) bool { keys = append(keys, string(k)); return true })
		_, sok, _ := r.Get([]byte("s"))
		h, hok, _ := r.Get([]byte("h"))
		live := now < 100
		if sok != live || hok != live || (live && (h.Version != 5 || h.Size != 1)) || len(keys) != map[bool]int{true: 3, false: 1}[live] {
			t.Errorf("at %d: s %v, h %+v %v, scan %v", now, sok, h, hok, keys)
		}
		if any, ok, _ := r.GetAny([]byte("h")); !ok || any.Version != 5 {
			t.Errorf("at %d: GetAny(h) = %+v, %v", now, any, ok)
		}
	}
}

// TestLayerKeepsApplysRowKeys: taking an entry's ops (the leader's
// overlay, once per write it sequences) costs the entry's arena and no
// allocation per row: the layer keys its points on the row keys Apply
// built, not on copies of them. A copy per row was 1 of a SET's 2 and 3
// of a ZADD's 4 allocations here.
func TestLayerKeepsApplysRowKeys(t *testing.T) {
	l := NewLayer(memRows{})
	const n = 64
	entries := make([][]logrec.Op, n)
	for i := range entries {
		m := fmt.Appendf(nil, "element:%012d", i)
		entries[i] = []logrec.Op{
			{Kind: logrec.OpSubPut, Key: []byte("myzset"), Version: 1, Sub: ZSetIndexSub(float64(i), m)},
			{Kind: logrec.OpSubPut, Key: []byte("myzset"), Version: 1, Sub: ZSetMemberSub(m), Value: AppendScore(nil, float64(i))},
			{Kind: logrec.OpMeta, Key: []byte("myzset"), Type: uint8(TypeZSet), Version: 1, Size: uint64(i)},
		}
	}
	lsn := uint64(0)
	cycle := func() {
		lsn++
		ops := entries[lsn%n]
		if err := l.ApplyOps(lsn, ops); err != nil {
			t.Fatal(err)
		}
		l.Forget(ops, lsn)
	}
	for range 4 * n { // the map, order and slabs grow to their size
		cycle()
	}
	// The arena (its struct and its buffer); a slab every 32 points.
	if got := testing.AllocsPerRun(4*n, cycle); got > 2.2 {
		t.Errorf("a 3-row entry taken and forgotten: %.2f allocations, want at most 2.2 (its arena)", got)
	}
	// The rows read back are the ops'.
	ops := entries[0]
	if err := l.ApplyOps(lsn+1, ops); err != nil {
		t.Fatal(err)
	}
	if row, ok, _ := l.Get(SubKey(ops[1].Key, 1, ops[1].Sub)); !ok || string(row) != string(ops[1].Value) {
		t.Errorf("member row %q %v, want %q", row, ok, ops[1].Value)
	}
}

package commands

import (
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// leaderRows is a leader's rows in memory, as replication's overlay keeps
// them: the committed rows (base, counted), a keyspace.Layer of the
// entries sequenced and not yet applied over them, and keyspace.Hints
// over that, which every entry passes through when it is sequenced. Now
// and then the pending entries are applied to base and forgotten by the
// layer, as the leader's apply does.
type leaderRows struct {
	base    *keyspace.Layer
	counted *readsRows
	layer   *keyspace.Layer
	h       *keyspace.Hints
	lsn     uint64
	now     int64
	pending [][]logrec.Op
}

func newLeaderRows() *leaderRows {
	base := keyspace.NewLayer(keyspace.Empty{})
	counted := &readsRows{Rows: base}
	layer := keyspace.NewLayer(counted)
	return &leaderRows{base: base, counted: counted, layer: layer, h: keyspace.NewHints(layer), lsn: 1, now: 1000}
}

// view is the leader's view for the next entry: through the hints, with
// their list runs (ListPopper).
func (l *leaderRows) view() *hintedView {
	return &hintedView{keyspace.Reader{R: l.h, NowMs: l.now, LSN: l.lsn}, l.h}
}

// sequence takes an entry's ops as the leader does; apply says whether
// the pending entries are applied to base after it.
func (l *leaderRows) sequence(ops []logrec.Op, apply bool) {
	if len(ops) > 0 {
		if err := l.layer.ApplyOps(l.lsn, ops); err != nil {
			panic(err)
		}
		if err := l.h.ApplyOps(ops); err != nil {
			panic(err)
		}
		l.pending = append(l.pending, ops)
		l.lsn++
	}
	if apply && len(l.pending) > 0 {
		first := l.lsn - uint64(len(l.pending))
		for i, e := range l.pending {
			if err := l.base.ApplyOps(first+uint64(i), e); err != nil {
				panic(err)
			}
		}
		for _, e := range l.pending {
			l.layer.Forget(e, l.lsn-1)
		}
		l.pending = nil
	}
}

// readsRows counts the point reads of sub-key rows (a list's elements
// and head row) and the iterations of the rows under it.
type readsRows struct {
	keyspace.Rows
	gets, iters int
}

func (r *readsRows) Get(k []byte) ([]byte, bool, error) {
	if len(k) > 0 && k[0] == keyspace.PrefixSub {
		r.gets++
	}
	return r.Rows.Get(k)
}
func (r *readsRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	r.iters++
	return r.Rows.Iter(lo, hi, fn)
}
func (r *readsRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	r.iters++
	return r.Rows.IterReverse(lo, hi, fn)
}

// hintedView is the leader's view for a write: a keyspace.Reader over its
// hints, which read list pops through their runs (ListPopper).
type hintedView struct {
	keyspace.Reader
	h *keyspace.Hints
}

func (v *hintedView) ListPop(key []byte, version, i uint64, tail bool) ([]byte, bool, error) {
	return v.h.ListPop(key, version, i, tail)
}

// runOne runs one command on v as the resp package would, an input error
// as its reply.
func runOne(ctx *Ctx, v View, args []string) (Reply, []logrec.Op, error) {
	res, err := run(ctx, v, args...)
	if err != nil {
		if IsInputError(err) {
			return ErrorReply("ERR " + err.Error()), nil, nil
		}
		return nil, nil, err
	}
	return asArray(res.Reply), res.Ops, nil
}

// runsModel is the obvious list semantics for TestListPopRunsModel: Go
// slices and expiry times.
type runsModel struct {
	lists map[string][]string
	exp   map[string]int64
}

func (m *runsModel) expire(now int64) {
	for k, e := range m.exp {
		if keyspace.Expired(e, now) {
			delete(m.lists, k)
			delete(m.exp, k)
		}
	}
}

func (m *runsModel) put(k string, l []string) {
	if len(l) == 0 {
		delete(m.lists, k)
		delete(m.exp, k)
		return
	}
	m.lists[k] = l
}

// TestListPopRunsModel runs random mixes of list commands on the leader's
// view (its overlay's hints, whose runs serve the pops) against Go slices
// and checks every reply: pushes at both ends, pops of one or a few from
// either end (the runs' reads ahead and the pushes they hold), LSET,
// LINSERT, LREM, LTRIM, LMOVE, DEL, PEXPIRE with the clock moving,
// RENAME, and MULTI (a batch whose first command reads through the runs),
// while the entries move from the overlay to the committed rows. The
// values are mostly unique, so a run that serves an element that is not
// the list's end (stale, shifted, or of a dropped version) fails a reply.
func TestListPopRunsModel(t *testing.T) {
	keys := []string{"a", "b"}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 41))
		lr := newLeaderRows()
		m := &runsModel{lists: map[string][]string{}, exp: map[string]int64{}}
		n := 0
		val := func() string {
			n++
			if r.IntN(12) == 0 {
				return "dup"
			}
			return "v" + strconv.Itoa(n)
		}
		var history []string
		// gen makes one random list command and what it must reply,
		// changing the model as the command changes the list.
		gen := func() ([]string, Reply) {
			k := keys[r.IntN(len(keys))]
			l := slices.Clone(m.lists[k])
			switch c := r.IntN(40); {
			case c < 8: // a push of 1..3 at either end
				cmd := []string{"LPUSH", "RPUSH"}[r.IntN(2)]
				args := []string{cmd, k}
				for range 1 + r.IntN(3) {
					v := val()
					args = append(args, v)
					if cmd == "LPUSH" {
						l = append([]string{v}, l...)
					} else {
						l = append(l, v)
					}
				}
				m.put(k, l)
				return args, Int(len(l))
			case c < 24: // pops: most of one, some with a count
				cmd := []string{"LPOP", "RPOP"}[r.IntN(2)]
				cnt := -1
				if r.IntN(6) == 0 {
					cnt = r.IntN(7)
				}
				args := []string{cmd, k}
				if cnt >= 0 {
					args = append(args, strconv.Itoa(cnt))
				}
				switch {
				case len(l) == 0 && cnt >= 0:
					return args, Array(nil)
				case len(l) == 0:
					return args, Null
				case cnt == 0:
					return args, Array{}
				}
				got := Array{}
				for i := 0; i < max(cnt, 1) && len(l) > 0; i++ {
					if cmd == "LPOP" {
						got, l = append(got, Bulk(l[0])), l[1:]
					} else {
						got, l = append(got, Bulk(l[len(l)-1])), l[:len(l)-1]
					}
				}
				m.put(k, l)
				if cnt < 0 {
					return args, got[0]
				}
				return args, got
			case c < 26:
				idx := r.IntN(len(l)+4) - 2
				i := norm(idx, len(l))
				v := val()
				args := []string{"LSET", k, strconv.Itoa(idx), v}
				switch {
				case len(l) == 0:
					return args, ErrorReply("ERR no such key")
				case i < 0 || i >= len(l):
					return args, ErrorReply("ERR index out of range")
				}
				l[i] = v
				m.put(k, l)
				return args, OK
			case c < 28:
				where := []string{"BEFORE", "AFTER"}[r.IntN(2)]
				pivot := "none"
				if len(l) > 0 {
					pivot = l[r.IntN(len(l))]
				}
				v := val()
				args := []string{"LINSERT", k, where, pivot, v}
				i := slices.Index(l, pivot)
				switch {
				case len(l) == 0:
					return args, Int(0)
				case i < 0:
					return args, Int(-1)
				}
				if where == "AFTER" {
					i++
				}
				m.put(k, slices.Insert(l, i, v))
				return args, Int(len(l) + 1)
			case c < 30:
				cnt := r.IntN(5) - 2
				v := "dup"
				if len(l) > 0 && r.IntN(2) == 0 {
					v = l[r.IntN(len(l))]
				}
				args := []string{"LREM", k, strconv.Itoa(cnt), v}
				out, removed := modelLRem(l, cnt, v)
				m.put(k, out)
				return args, Int(removed)
			case c < 32:
				start, stop := r.IntN(5)-1, -1-r.IntN(4)
				if r.IntN(2) == 0 {
					start, stop = r.IntN(3), len(l)-r.IntN(3)
				}
				m.put(k, rangeOf(l, start, stop))
				return []string{"LTRIM", k, strconv.Itoa(start), strconv.Itoa(stop)}, OK
			case c < 33:
				k2 := keys[r.IntN(len(keys))]
				from, to := []string{"LEFT", "RIGHT"}[r.IntN(2)], []string{"LEFT", "RIGHT"}[r.IntN(2)]
				args := []string{"LMOVE", k, k2, from, to}
				if len(l) == 0 {
					return args, Null
				}
				var e string
				if from == "LEFT" {
					e, l = l[0], l[1:]
				} else {
					e, l = l[len(l)-1], l[:len(l)-1]
				}
				m.put(k, l)
				d := slices.Clone(m.lists[k2])
				if to == "LEFT" {
					d = append([]string{e}, d...)
				} else {
					d = append(d, e)
				}
				m.put(k2, d)
				return args, Bulk(e)
			case c < 35:
				want := Int(0)
				if len(l) > 0 {
					want = Int(1)
				}
				m.put(k, nil)
				return []string{"DEL", k}, want
			case c < 37:
				ms := 1 + r.IntN(6)
				args := []string{"PEXPIRE", k, strconv.Itoa(ms)}
				if len(l) == 0 {
					return args, Int(0)
				}
				m.exp[k] = lr.now + int64(ms)
				return args, Int(1)
			default:
				k2 := keys[r.IntN(len(keys))]
				args := []string{"RENAME", k, k2}
				switch {
				case len(l) == 0:
					return args, ErrorReply("ERR no such key")
				case k == k2:
					return args, OK
				}
				e, had := m.exp[k]
				m.put(k, nil)
				m.put(k2, l)
				delete(m.exp, k2)
				if had {
					m.exp[k2] = e
				}
				return args, OK
			}
		}
		// Each list starts with a few dozen elements, so that the pops
		// read ahead.
		for _, k := range keys {
			args := []string{"RPUSH", k}
			for range 20 + r.IntN(60) {
				args = append(args, val())
			}
			m.put(k, args[2:])
			if _, ops, err := runOne(&Ctx{NowMs: lr.now}, lr.view(), args); err != nil {
				t.Fatal(err)
			} else {
				lr.sequence(ops, true)
			}
		}
		for step := range 400 {
			if r.IntN(8) == 0 {
				lr.now++ // the clock moves: keys expire
			}
			m.expire(lr.now)
			ctx := &Ctx{NowMs: lr.now}
			fail := func(format string, a ...any) {
				t.Helper()
				t.Fatalf("seed %d step %d: after\n%s\n"+format, append([]any{seed, step, strings.Join(history, "\n")}, a...)...)
			}
			if r.IntN(10) == 0 {
				// MULTI: its first command reads the leader's view (and
				// its runs), the rest the batch's own writes over it.
				b := NewBatch(lr.view())
				var lines []string
				for range 2 + r.IntN(3) {
					args, want := gen()
					lines = append(lines, strings.Join(args, " "))
					spec, _ := Lookup([]byte(args[0]))
					got, err := b.Run(ctx, spec, bargs(args...))
					if err != nil {
						if !IsInputError(err) {
							t.Fatal(err)
						}
						got = ErrorReply("ERR " + err.Error())
					}
					if got = asArray(got); !reflect.DeepEqual(got, want) {
						history = append(history, "MULTI: "+strings.Join(lines, "; "))
						fail("got %#v, want %#v", got, want)
					}
				}
				history = append(history, "MULTI: "+strings.Join(lines, "; "))
				lr.sequence(b.Ops(), r.IntN(3) == 0)
				continue
			}
			args, want := gen()
			history = append(history, strings.Join(args, " "))
			got, ops, err := runOne(ctx, lr.view(), args)
			if err != nil {
				fail("%v", err)
			}
			if !reflect.DeepEqual(got, want) {
				fail("got %#v, want %#v", got, want)
			}
			lr.sequence(ops, r.IntN(3) == 0)
			if step%50 == 49 {
				for _, k := range keys {
					got, _, err := runOne(ctx, lr.view(), []string{"LRANGE", k, "0", "-1"})
					if err != nil || !reflect.DeepEqual(got, bulkArray(m.lists[k])) {
						fail("LRANGE %s 0 -1 = %v, %v, want %v", k, got, err, m.lists[k])
					}
				}
			}
		}
	}
}

// TestListPopReadsAhead: pops through the leader's runs read what the
// list holds with few reads of the committed rows, in a suite's run of
// pops from either end (an iteration per up to 64, not a point read
// each) and in a LIFO job queue over a backlog (pushes between the pops
// at the same end, at random: the run holds a pushed element instead of
// being dropped, so the backlog is read ahead once, not again after each
// push). Without the runs each pop of a committed element is a point
// read.
func TestListPopReadsAhead(t *testing.T) {
	const backlog = 2000
	for _, tc := range []struct {
		name  string
		push  int // a push before a pop, at its end: in push of 10
		tail  bool
		count int // pop with a count: so many (0: none, one)
	}{
		{"lpop", 0, false, 0},
		{"rpop", 0, true, 0},
		{"lpop-3", 0, false, 3},
		{"rpop-3", 0, true, 3},
		{"lpush-lpop", 5, false, 0},
		{"rpush-rpop", 5, true, 0},
		{"lpush-lpop-few", 2, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(7, uint64(tc.push)))
			lr := newLeaderRows()
			args := []string{"RPUSH", "q"}
			for i := range backlog {
				args = append(args, "old"+strconv.Itoa(i))
			}
			model := slices.Clone(args[2:])
			do := func(args ...string) Reply {
				t.Helper()
				got, ops, err := runOne(&Ctx{NowMs: lr.now}, lr.view(), args)
				if err != nil {
					t.Fatal(err)
				}
				// Entries are applied in groups of 32, as in flight.
				lr.sequence(ops, lr.lsn%32 == 0)
				return got
			}
			do(args...)
			lr.sequence(nil, true)
			push, pop := "LPUSH", "LPOP"
			if tc.tail {
				push, pop = "RPUSH", "RPOP"
			}
			gets0, iters0 := lr.counted.gets, lr.counted.iters
			pops, olds := 0, 0
			for len(model) > 0 {
				if r.IntN(10) < tc.push {
					job := "job" + strconv.Itoa(pops)
					do(push, "q", job)
					if tc.tail {
						model = append(model, job)
					} else {
						model = append([]string{job}, model...)
					}
				}
				var popped Array
				for range max(tc.count, 1) {
					if len(model) == 0 {
						break
					}
					var want string
					if tc.tail {
						want, model = model[len(model)-1], model[:len(model)-1]
					} else {
						want, model = model[0], model[1:]
					}
					popped = append(popped, Bulk(want))
					pops++
					if strings.HasPrefix(want, "old") {
						olds++
					}
				}
				var want Reply = popped
				args := []string{pop, "q"}
				if tc.count > 0 {
					args = append(args, strconv.Itoa(tc.count))
				} else {
					want = popped[0]
				}
				if got := do(args...); !reflect.DeepEqual(got, want) {
					t.Fatalf("pop %d: %v, want %v", pops, got, want)
				}
			}
			gets, iters := lr.counted.gets-gets0, lr.counted.iters-iters0
			t.Logf("%d pops (%d of the backlog): %d point reads, %d iterations of the committed rows", pops, olds, gets, iters)
			// Without runs: a point read per element of the backlog.
			// With them, an iteration per up to 64, and a point read
			// now and then (a run's first pop).
			if gets > olds/16 || iters > olds/16 {
				t.Errorf("%d pops of the backlog read %d rows by point and iterated %d times, want at most %d each", olds, gets, iters, olds/16)
			}
		})
	}
}

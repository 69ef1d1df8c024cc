package replication

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// truthRows is the model: every sequenced op applied to a map.
type truthRows map[string]string

func (m truthRows) Set(k, v []byte) { m[string(k)] = string(v) }
func (m truthRows) Delete(k []byte) { delete(m, string(k)) }
func (m truthRows) DeleteRange(lo, hi []byte) {
	for k := range m {
		if k >= string(lo) && k < string(hi) {
			delete(m, k)
		}
	}
}

// subs is the sub-keys of (key, version) in ascending order.
func (m truthRows) subs(key []byte, version uint64) []string {
	lo, hi := keyspace.SubSpan(key, version)
	var out []string
	for k := range m {
		if k >= string(lo) && k < string(hi) {
			out = append(out, k[len(lo):])
		}
	}
	slices.Sort(out)
	return out
}

// TestOverlayViewReadsBothWays: the leader's view (its overlay's layer and
// hints over the stored rows) reads a collection's rows forward and in
// reverse as if every sequenced entry were applied, while pops from both
// ends, pushes in front of them and drops are sequenced, and entries are
// applied to storage in batches behind them.
func TestOverlayViewReadsBothWays(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 3))
		db, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), CacheBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		var o overlay
		truth := truthRows{}
		key := []byte("z")
		var pending []*proposal
		var lsn uint64
		view := func() overlayView {
			return overlayView{o: o, base: storage.View{DB: db, NowMs: 1}, lsn: lsn + 1}
		}
		sub := func(i int) []byte { return fmt.Appendf(nil, "i%03d", i) }
		for range 300 {
			var ops []logrec.Op
			ver := uint64(1 + r.IntN(2))
			switch n := r.IntN(10); {
			case n < 4: // pushes anywhere
				for range 1 + r.IntN(3) {
					ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: ver, Sub: sub(r.IntN(200)), Value: []byte("v")})
				}
			case n == 4:
				ops = []logrec.Op{{Kind: logrec.OpDrop, Key: key, Version: ver}}
			default: // a pop of up to 3 rows from either end, through the view
				v := view()
				scan := v.SubScan
				if n%2 == 0 {
					scan = func(key []byte, version uint64, _ []byte, fn func(sub, val []byte) bool) error {
						return v.SubScanReverse(key, version, nil, fn)
					}
				}
				c := 1 + r.IntN(3)
				if err := scan(key, ver, nil, func(s, _ []byte) bool {
					ops = append(ops, logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: ver, Sub: slices.Clone(s)})
					return len(ops) < c
				}); err != nil {
					t.Fatal(err)
				}
			}
			if len(ops) > 0 {
				lsn++
				p := &proposal{lsn: lsn, entry: logrec.Entry{Epoch: 1, LSN: lsn, Ops: ops}}
				p.raw = logrec.Encode(&p.entry)
				for i := range ops {
					_ = keyspace.Apply(truth, &ops[i])
				}
				o.add(&p.entry, nil)
				pending = append(pending, p)
			}
			if len(pending) > 0 && r.IntN(3) == 0 { // storage applies a batch
				batch := pending[:1+r.IntN(len(pending))]
				var raws [][]byte
				var es []logrec.Entry
				for _, p := range batch {
					raws = append(raws, p.raw)
					es = append(es, p.entry)
				}
				if err := db.AppendLog(raws); err != nil {
					t.Fatal(err)
				}
				if err := db.Apply(es); err != nil {
					t.Fatal(err)
				}
				o.drop(batch, batch[len(batch)-1].lsn)
				pending = pending[len(batch):]
			}
			for ver := uint64(1); ver <= 2; ver++ {
				want := truth.subs(key, ver)
				var got, rev []string
				v := view()
				if err := v.SubScan(key, ver, nil, func(s, _ []byte) bool { got = append(got, string(s)); return true }); err != nil {
					t.Fatal(err)
				}
				if err := v.SubScanReverse(key, ver, nil, func(s, _ []byte) bool { rev = append(rev, string(s)); return true }); err != nil {
					t.Fatal(err)
				}
				slices.Reverse(rev)
				if !slices.Equal(got, want) || !slices.Equal(rev, want) {
					t.Fatalf("seed %d lsn %d version %d: forward %q, reverse %q, want %q", seed, lsn, ver, got, rev, want)
				}
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOverlayHeapBoundedUnderWrites: under a write-only load of distinct
// keys (SET over a large key space, as a bulk load), the leader's overlay
// holds heap for the entries in flight, not for every key it has held.
// The overlay is driven as the leader drives it (add at sequencing, drop
// once a group is applied) and the live heap is measured after a
// collection, before and after 200,000 more writes. With Layer.Forget's
// trim removed (the leak that made a saturated leader's GC run back to
// back and its heartbeats late) the heap grows by ~6 MB here; the bound
// is 1 MB.
func TestOverlayHeapBoundedUnderWrites(t *testing.T) {
	const group, inFlight = 32, 64
	value := make([]byte, 100)
	var o overlay
	var pending []*proposal
	lsn := uint64(0)
	write := func(n int) {
		for range n {
			lsn++
			key := fmt.Appendf(nil, "key:%d", lsn) // every key new
			p := &proposal{lsn: lsn, entry: logrec.Entry{Epoch: 1, LSN: lsn, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: value}}}}
			o.add(&p.entry, nil)
			pending = append(pending, p)
			if len(pending) == group+inFlight { // a group applied, the rest in flight
				o.drop(pending[:group], pending[group-1].lsn)
				pending = append(pending[:0], pending[group:]...)
			}
		}
	}
	live := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	write(20_000) // the overlay's structures at their working size
	before := live()
	write(200_000)
	after := live()
	runtime.KeepAlive(&o)
	grew := int64(after) - int64(before)
	t.Logf("heap grew %d bytes over 200,000 writes", grew)
	if grew > 1<<20 {
		t.Errorf("the overlay's heap grew %d bytes over 200,000 writes of new keys (%d held); want at most 1 MiB", grew, o.l.Len())
	}
}

package storage

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// TestLRangeFromRowCache: LRANGE reads a list's leading elements from the
// row cache and the rest with a scan (commands.eachElement). With a cache
// too small for the whole list, some elements are cached and some not, in
// any pattern (pushes write through into room, LINDEX fills, pops and LSET
// replace, memtables are flushed), and every range answers as a model list
// does. It fails when the scan resumes from the wrong position after the
// cached ones, or a cached element is read at the wrong index.
func TestLRangeFromRowCache(t *testing.T) {
	d, err := Open(dir, Options{FS: vfs.NewMem(), CacheBytes: 1 << 20, RowCacheBytes: 256 << 10, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rng := rand.New(rand.NewPCG(17, 1))
	run, lsn := cmdRunner(t, d)
	var model []string
	value := func() string {
		return fmt.Sprintf("%d-%s", *lsn, make([]byte, rng.IntN(120)))
	}
	check := func() {
		t.Helper()
		n := len(model)
		ranges := [][2]int{{0, -1}, {0, 99}, {0, 299}, {-100, -1}, {n / 2, n/2 + 50}}
		for range 20 {
			ranges = append(ranges, [2]int{rng.IntN(n+20) - 10, rng.IntN(n+20) - 10})
		}
		for _, r := range ranges {
			got := run("LRANGE", "l", strconv.Itoa(r[0]), strconv.Itoa(r[1]))
			want := lrangeModel(model, r[0], r[1])
			bs, _ := got.(commands.Bulks)
			if len(want) == 0 {
				if a, ok := got.(commands.Array); !ok || len(a) != 0 {
					if len(bs) != 0 {
						t.Fatalf("LRANGE %d %d of %d = %d elements, want none", r[0], r[1], n, len(bs))
					}
				}
				continue
			}
			if len(bs) != len(want) {
				t.Fatalf("LRANGE %d %d of %d = %d elements (%T), want %d", r[0], r[1], n, len(bs), got, len(want))
			}
			for i := range want {
				if string(bs[i]) != want[i] {
					t.Fatalf("LRANGE %d %d of %d: element %d = %q, want %q", r[0], r[1], n, i, bs[i], want[i])
				}
			}
		}
	}
	for step := range 1500 {
		switch c := rng.IntN(10); {
		case c < 4:
			v := value()
			run("LPUSH", "l", v)
			model = append([]string{v}, model...)
		case c < 7:
			v := value()
			run("RPUSH", "l", v)
			model = append(model, v)
		case c == 7 && len(model) > 1:
			i := rng.IntN(len(model))
			run("LINDEX", "l", strconv.Itoa(i)) // fills the cache
		case c == 8 && len(model) > 1:
			i := rng.IntN(len(model))
			v := value()
			run("LSET", "l", strconv.Itoa(i), v)
			model[i] = v
		case c == 9 && len(model) > 2:
			if rng.IntN(2) == 0 {
				run("LPOP", "l")
				model = model[1:]
			} else {
				run("RPOP", "l")
				model = model[:len(model)-1]
			}
		}
		if step%300 == 299 {
			if err := d.pdb.Flush(); err != nil {
				t.Fatal(err)
			}
		}
		if step%100 == 99 {
			check()
		}
	}
	if st := d.RowCacheStats(); st.Hits == 0 || st.Misses == 0 {
		t.Fatalf("the list was not partly cached (hits %d, misses %d): the test covers one path only", st.Hits, st.Misses)
	}
}

// lrangeModel is LRANGE start stop of l as Redis answers it.
func lrangeModel(l []string, start, stop int) []string {
	n := len(l)
	if start < 0 {
		start = max(start+n, 0)
	}
	if stop < 0 {
		stop += n
	}
	if stop >= n {
		stop = n - 1
	}
	if start > stop || start >= n {
		return nil
	}
	return l[start : stop+1]
}

// TestOnlyCommittedRowsAnswerFromMemory: keyspace.CachedRows (and
// keyspace.ListBlockRows) lets a read take rows from the row cache, which
// holds the latest applied rows. A
// transaction's Pebble snapshot (SnapshotRows) and a layer of writes not
// applied (keyspace.Layer, keyspace.Hints: the leader's overlay, a
// transaction's own writes) must not offer it, or a read through them
// would see rows newer than the snapshot, or miss the layer's writes.
func TestOnlyCommittedRowsAnswerFromMemory(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	if _, ok := (View{DB: d}).Rows().(keyspace.CachedRows); !ok {
		t.Fatal("the committed rows do not answer from the row cache")
	}
	if _, ok := (View{DB: d}).Rows().(keyspace.ListBlockRows); !ok {
		t.Fatal("the committed rows do not answer list blocks")
	}
	snap := d.SnapshotRows()
	defer snap.Close()
	layer := keyspace.NewLayer(dbRows{d})
	for name, r := range map[string]keyspace.Rows{
		"SnapshotRows": snap,
		"Layer":        layer,
		"Hints":        keyspace.NewHints(layer),
	} {
		if _, ok := r.(keyspace.CachedRows); ok {
			t.Errorf("%s answers from the row cache", name)
		}
		if _, ok := r.(keyspace.ListBlockRows); ok {
			t.Errorf("%s answers list blocks from the row cache", name)
		}
	}
}

// TestLRangeKeepsScannedRows: once the row cache is full, a push's rows
// are not admitted (writers never evict), so LRANGE of a list's new head
// scans Pebble; the scan keeps the rows it read in the cache
// (keyspace.CachedRows.IterCaching), so the next LRANGE of them answers
// from memory, and answers the same. Fails without the keeping.
func TestLRangeKeepsScannedRows(t *testing.T) {
	d, err := Open(dir, Options{FS: vfs.NewMem(), CacheBytes: 1 << 20, RowCacheBytes: 1 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	run, _ := cmdRunner(t, d)
	b := func(s string) []byte { return []byte(s) }
	// Fill the cache with rows readers fetched: 10,000 keys written, and
	// read back (point reads admit, evicting at random).
	for i := range 10000 {
		run("SET", "k:"+strconv.Itoa(i), string(make([]byte, 100)))
	}
	for i := range 10000 {
		run("GET", "k:"+strconv.Itoa(i))
	}
	var model []string
	for i := range 300 {
		v := fmt.Sprintf("%03d-%s", i, make([]byte, 100))
		run("LPUSH", "l", v)
		model = append([]string{v}, model...)
	}
	m, ok, err := storageViewGet(d, "l")
	if err != nil || !ok {
		t.Fatalf("list: %v %v", ok, err)
	}
	headRow, _, _ := dbRows{d}.Get(keyspace.SubKey(b("l"), m.Version, keyspace.ListHeadSub))
	head, _ := keyspace.DecodeListHead(headRow)
	cached := func() (n int) {
		for p := range 100 {
			if _, ok := (dbRows{d}).Cached(keyspace.SubKey(b("l"), m.Version, keyspace.ListIndexSub(head+uint64(p)))); ok {
				n++
			}
		}
		return n
	}
	if n := cached(); n > 10 {
		t.Fatalf("%d of the list's first 100 rows cached before any read: the cache was not full, the test shows nothing", n)
	}
	for round := range 2 {
		got, _ := run("LRANGE", "l", "0", "99").(commands.Bulks)
		if len(got) != 100 {
			t.Fatalf("round %d: LRANGE 0 99 = %d elements", round, len(got))
		}
		for i := range got {
			if string(got[i]) != model[i] {
				t.Fatalf("round %d: element %d = %.8q, want %.8q", round, i, got[i], model[i])
			}
		}
		// Rows filled evict others at random, each other too, rarely.
		if n := cached(); n < 90 {
			t.Fatalf("round %d: %d of the 100 rows LRANGE read are cached", round, n)
		}
	}
}

// cmdRunner returns a func that runs a command on d's committed rows and,
// when it writes, appends and applies its entry, and the LSN of the last.
func cmdRunner(t *testing.T, d *DB) (func(args ...string) commands.Reply, *uint64) {
	lsn := new(uint64)
	return func(args ...string) commands.Reply {
		t.Helper()
		bs := make([][]byte, len(args))
		for i, a := range args {
			bs[i] = []byte(a)
		}
		spec, ok := commands.Lookup(bs[0])
		if !ok {
			t.Fatalf("no command %s", args[0])
		}
		res, err := spec.Exec(&commands.Ctx{NowMs: 1}, keyspace.Reader{R: dbRows{d}, NowMs: 1, LSN: *lsn + 1}, bs)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		if len(res.Ops) > 0 {
			*lsn++
			e := logrec.Entry{Epoch: 1, LSN: *lsn, Ops: res.Ops}
			mustAppend(t, d, e)
			mustApply(t, d, e)
		}
		return res.Reply
	}, lsn
}

// storageViewGet reads key's live metadata from the committed rows.
func storageViewGet(d *DB, key string) (keyspace.Value, bool, error) {
	return View{DB: d, NowMs: 1}.Get([]byte(key))
}

package storage

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// checkPointReads compares the point read of every row key in keys
// (dbRows.Get: row cache, filters, Pebble) with Pebble's own answer: a
// filter that answers "none" for a stored row shows as a row missing.
func checkPointReads(t *testing.T, what string, d *DB, keys [][]byte) {
	t.Helper()
	for _, k := range keys {
		got, ok, err := dbRows{d}.Get(k)
		if err != nil {
			t.Fatalf("%s: get %q: %v", what, k, err)
		}
		want, closer, err := d.pdb.Get(k)
		switch {
		case errors.Is(err, pebble.ErrNotFound):
			if ok {
				t.Fatalf("%s: get %q: %q, Pebble has no row", what, k, got)
			}
		case err != nil:
			t.Fatal(err)
		default:
			if !ok || string(got) != string(want) {
				t.Fatalf("%s: get %q: %q %v, Pebble has %q", what, k, got, ok, want)
			}
			closer.Close()
		}
	}
}

// TestFiltersNeverHideARow: with the row cache off (every point read
// past the filters goes to Pebble) and filters so small that they fill
// and are scanned again in the background, while members and fields are
// added, removed and dropped with their collection and strings come and
// go, a point read of every row key ever written or probed (members never
// written too) answers as Pebble does, after every batch and across
// reopens (each scans in the background). And the filters do their job:
// most reads of rows never written do not reach Pebble.
func TestFiltersNeverHideARow(t *testing.T) {
	defer func(minKeys, syncKeys, growth int64) {
		filterMinKeys, filterSyncKeys, filterGrowth = minKeys, syncKeys, growth
	}(filterMinKeys, filterSyncKeys, filterGrowth)
	// Small filters that fill often, and rebuilt at each doubling: many
	// rescans under the writes.
	filterMinKeys, filterSyncKeys, filterGrowth = 32, 0, 2
	fs := vfs.NewMem()
	openDB := func() *DB {
		d, err := Open(dir, Options{FS: fs, CacheBytes: 1 << 20, RowCacheBytes: -1, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := openDB()
	defer func() { d.Close() }()
	r := rand.New(rand.NewPCG(3, 9))
	lsn := uint64(0)
	version := map[string]uint64{} // each hash's live version, 0: none
	size := map[string]uint64{}
	var probes [][]byte // each row key once
	probed := map[string]bool{}
	probe := func(k []byte) {
		if !probed[string(k)] {
			probed[string(k)] = true
			probes = append(probes, k)
		}
	}
	scans, spared := int64(0), int64(0)
	for batch := range 200 {
		var es []logrec.Entry
		for range 1 + r.IntN(6) {
			lsn++
			var ops []logrec.Op
			h := fmt.Sprintf("h%d", r.IntN(4))
			switch v := version[h]; {
			case v != 0 && r.IntN(10) == 0:
				ops = append(ops, logrec.Op{Kind: logrec.OpDrop, Key: []byte(h), Version: v})
				version[h], size[h] = 0, 0
			default:
				if v == 0 {
					v = lsn
					version[h] = v
				}
				for range 1 + r.IntN(3) {
					f := fmt.Sprintf("f%d", batch*4+r.IntN(12))
					if r.IntN(4) == 0 {
						ops = append(ops, logrec.Op{Kind: logrec.OpSubDel, Key: []byte(h), Version: v, Sub: []byte(f)})
					} else {
						ops = append(ops, hput(h, v, f, "x"))
						size[h]++
					}
				}
				ops = append(ops, hmeta(h, v, size[h]))
			}
			k := fmt.Sprintf("k%d", batch*3+r.IntN(9))
			if r.IntN(3) == 0 {
				ops = append(ops, del(k))
			} else {
				ops = append(ops, put(k, "v"))
			}
			for _, op := range ops {
				probe(keyspace.MetaKey(op.Key))
				if op.Kind == logrec.OpSubPut || op.Kind == logrec.OpSubDel {
					probe(keyspace.SubKey(op.Key, op.Version, op.Sub))
				}
			}
			// Rows that were never written: a member of a live version,
			// a key.
			probe(keyspace.SubKey([]byte(h), version[h]+1, []byte("never")))
			probe(keyspace.MetaKey(fmt.Appendf(nil, "never%d", lsn)))
			es = append(es, entry(1, lsn, ops...))
		}
		mustAppend(t, d, es...)
		mustApply(t, d, es...)
		// The rows of the last batches every time, all of them now and
		// then.
		recent := probes[max(0, len(probes)-200):]
		if batch%10 == 0 {
			recent = probes
		}
		checkPointReads(t, fmt.Sprintf("batch %d", batch), d, recent)
		if batch%50 == 49 {
			scans += d.subFilters.scans.Load()
			spared += d.subFilters.spared.Load() + d.filters.spared.Load()
			d.Close()
			d = openDB()
		}
	}
	if scans += d.subFilters.scans.Load(); scans < 7 {
		t.Errorf("%d sub-key filter scans, want several more than the 5 at Open (the test would not test the rebuild)", scans)
	}
	if spared += d.subFilters.spared.Load() + d.filters.spared.Load(); spared == 0 {
		t.Errorf("no point read answered by the filters")
	}
}

// Rows ingested from a seed are in the filters: their point reads find
// them (the row cache off), and a new member's read is answered without
// Pebble.
func TestFiltersHoldIngestedRows(t *testing.T) {
	src := open(t, vfs.NewMem())
	defer src.Close()
	es := []logrec.Entry{entry(1, 1, hput("h", 1, "a", "1"), hput("h", 1, "b", "2"), hmeta("h", 1, 2), put("s", "v"))}
	mustAppend(t, src, es...)
	mustApply(t, src, es...)
	dst, err := Open(dir, Options{FS: vfs.NewMem(), CacheBytes: 1 << 20, RowCacheBytes: -1, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	dst.subFilters.wg.Wait() // Open's scan, in the background
	ingest(t, src, dst, true)
	keys := [][]byte{keyspace.MetaKey([]byte("h")), keyspace.MetaKey([]byte("s")), keyspace.SubKey([]byte("h"), 1, []byte("a")), keyspace.SubKey([]byte("h"), 1, []byte("b"))}
	for _, k := range keys {
		if _, ok, err := (dbRows{dst}).Get(k); err != nil || !ok {
			t.Errorf("after the seed, get %q: %v %v, want the row", k, ok, err)
		}
	}
	spared := dst.subFilters.spared.Load()
	if _, ok, err := (dbRows{dst}).Get(keyspace.SubKey([]byte("h"), 1, []byte("new"))); err != nil || ok {
		t.Errorf("get of a field never written: %v %v", ok, err)
	}
	if dst.subFilters.spared.Load() == spared {
		t.Errorf("a field never written was read from Pebble, want it answered by the filter")
	}
}

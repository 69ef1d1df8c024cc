package storage

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// viewDump is everything a reader sees at nowMs: each key's metadata and,
// for a collection, its sub-keys; Get of every candidate key too, so that
// point reads (through the row cache) are checked as well as scans.
func viewDump(t *testing.T, v keyspace.View, candidates []string) []string {
	t.Helper()
	var out []string
	err := v.Scan(nil, func(k []byte, val keyspace.Value) bool {
		line := fmt.Sprintf("%s %s %q exp=%d v=%d n=%d:", k, val.Type, val.Data, val.ExpireAtMs, val.Version, val.Size)
		if !val.IsString() {
			if err := v.SubScan(k, val.Version, nil, func(f, fv []byte) bool {
				line += fmt.Sprintf(" %s=%s", f, fv)
				return true
			}); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, line)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range candidates {
		val, ok, err := v.Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("get %s %v %q %d", k, ok, val.Data, val.Version))
	}
	return out
}

// subDump is every sub-key read a reader makes of the versions vers of
// each key (fields f0..f2), each point read twice, so that the second is
// served by the row cache when the first filled it.
func subDump(t *testing.T, v keyspace.View, vers map[string]map[uint64]verState) []string {
	t.Helper()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(vers)) {
		for _, ver := range slices.Sorted(maps.Keys(vers[k])) {
			if vers[k][ver] == verGarbage {
				continue // Sweep may have removed it; the model keeps it
			}
			for f := range 3 {
				for range 2 {
					got, ok, err := v.Sub([]byte(k), ver, []byte(fmt.Sprintf("f%d", f)))
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, fmt.Sprintf("sub %s v%d f%d %v %q", k, ver, f, ok, got))
				}
			}
		}
	}
	return out
}

// verState is what the model test knows of a (key, version)'s rows.
type verState uint8

const (
	verLive    verState = iota // named by the key's metadata
	verDropped                 // range-deleted (OpDrop, FLUSHALL): no rows
	verGarbage                 // replaced without a drop: Sweep's to remove
)

// TestApplyModel: random entries of every op kind, applied to storage in
// random batches with reads in between (so the row cache is filled and
// written through), read the same as the ops applied to a keyspace.Layer
// over no rows, the model (tested in package keyspace). The reads cover
// metadata (scans and point reads) and point reads of sub-keys of the
// live versions and of dropped ones, and some entries give a key a
// version dropped earlier again (no command does: versions are LSNs; the
// row cache must hold what the store holds whatever the versions' rules):
// a sub-key row cached before its version was dropped must not be read
// after (TestRowCacheSubKeys has the cases one by one).
func TestApplyModel(t *testing.T) {
	runApplyModel(t, 30)
}

func runApplyModel(t *testing.T, seeds uint64) {
	keys := []string{"a", "b", "c", "d"}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(seed, 3))
		d := open(t, vfs.NewMem())
		// Half the seeds apply as a follower does: the rows only the
		// reads below cached are updated, none admitted by a write.
		d.SetWritesFill(seed%2 == 0)
		model := keyspace.NewLayer(keyspace.Empty{})
		var pending []logrec.Entry
		// cur is each key's hash version (0: not a hash). The ops keep
		// the invariant the commands keep and Sweep relies on: a new
		// collection's version is its entry's LSN, or one dropped
		// earlier, and sub-key ops go to the current version.
		cur := map[string]uint64{}
		vers := map[string]map[uint64]verState{}
		set := func(ks string, ver uint64, st verState) {
			if vers[ks] == nil {
				vers[ks] = map[uint64]verState{}
			}
			vers[ks][ver] = st
		}
		replace := func(ks string, ver uint64) { // ks's version goes without a drop
			if old := cur[ks]; old != 0 && old != ver {
				set(ks, old, verGarbage)
			}
		}
		for lsn := uint64(1); lsn <= 80; lsn++ {
			var ops []logrec.Op
			for range 1 + r.IntN(3) {
				ks := keys[r.IntN(len(keys))]
				k := []byte(ks)
				f := []byte(fmt.Sprintf("f%d", r.IntN(3)))
				ver := cur[ks]
				switch n := r.IntN(32); {
				case n < 6:
					ops = append(ops, logrec.Op{Kind: logrec.OpPut, Key: k, Value: []byte(fmt.Sprint(lsn)), ExpireAtMs: int64(r.IntN(2)) * 1000})
					replace(ks, 0)
					cur[ks] = 0
				case n < 9:
					ops = append(ops, logrec.Op{Kind: logrec.OpDelete, Key: k})
					replace(ks, 0)
					cur[ks] = 0
				case n < 15:
					if ver == 0 || r.IntN(4) == 0 {
						ver = lsn // a new collection (over whatever was there)
					}
					ops = append(ops, logrec.Op{Kind: logrec.OpMeta, Key: k, Type: uint8(keyspace.TypeHash), Version: ver, Size: uint64(r.IntN(4)), ExpireAtMs: int64(r.IntN(2)) * 1000})
					replace(ks, ver)
					cur[ks] = ver
					set(ks, ver, verLive)
				case n < 17:
					// A dropped version named again.
					var dropped []uint64
					for v, st := range vers[ks] {
						if st == verDropped {
							dropped = append(dropped, v)
						}
					}
					if len(dropped) == 0 {
						break
					}
					slices.Sort(dropped)
					ver = dropped[r.IntN(len(dropped))]
					ops = append(ops, logrec.Op{Kind: logrec.OpMeta, Key: k, Type: uint8(keyspace.TypeHash), Version: ver, Size: 1})
					replace(ks, ver)
					cur[ks] = ver
					set(ks, ver, verLive)
				case ver == 0:
				case n < 24:
					ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: ver, Sub: f, Value: []byte(fmt.Sprint(lsn))})
				case n < 27:
					ops = append(ops, logrec.Op{Kind: logrec.OpSubDel, Key: k, Version: ver, Sub: f})
				case n < 31:
					ops = append(ops, logrec.Op{Kind: logrec.OpDrop, Key: k, Version: ver})
					cur[ks] = 0
					set(ks, ver, verDropped)
				default:
					ops = append(ops, logrec.Op{Kind: logrec.OpFlushAll})
					clear(cur)
					for _, m := range vers {
						for v := range m {
							m[v] = verDropped
						}
					}
				}
			}
			e := entry(1, lsn, ops...)
			mustAppend(t, d, e)
			if err := model.ApplyOps(lsn, ops); err != nil {
				t.Fatal(err)
			}
			pending = append(pending, e)
			if r.IntN(3) > 0 {
				continue
			}
			mustApply(t, d, pending...)
			pending = nil
			checkCounts(t, fmt.Sprintf("seed %d lsn %d", seed, lsn), d)
			now := int64(r.IntN(2)) * 2000 // before or after every expiry
			got := viewDump(t, View{DB: d, NowMs: now}, keys)
			want := viewDump(t, keyspace.Reader{R: model, NowMs: now}, keys)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d lsn %d at %d:\nstorage %v\nmodel   %v", seed, lsn, now, got, want)
			}
			got = subDump(t, View{DB: d, NowMs: now}, vers)
			want = subDump(t, keyspace.Reader{R: model, NowMs: now}, vers)
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("seed %d lsn %d at %d: storage read %s, the model %s", seed, lsn, now, got[i], want[i])
			}
			if r.IntN(4) == 0 {
				if _, err := d.Sweep(int64(lsn)*sweepIntervalMs, 1+r.IntN(4)); err != nil {
					t.Fatal(err)
				}
			}
		}
		d.Close()
	}
}

// firstDiff is the first index where a and b differ (-1: none).
func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

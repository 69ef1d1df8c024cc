package storage

import (
	"fmt"
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

// TestApplyModel: random entries of every op kind, applied to storage in
// random batches with reads in between (so the row cache is filled and
// written through), read the same as the ops applied to a keyspace.Layer
// over no rows, the model (tested in package keyspace).
func TestApplyModel(t *testing.T) {
	keys := []string{"a", "b", "c", "d"}
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 3))
		d := open(t, vfs.NewMem())
		model := keyspace.NewLayer(keyspace.Empty{})
		var pending []logrec.Entry
		// cur is each key's hash version (0: not a hash). The ops keep
		// the invariant the commands keep and Sweep relies on: a new
		// collection's version is its entry's LSN, and sub-key ops go to
		// the current version.
		cur := map[string]uint64{}
		for lsn := uint64(1); lsn <= 80; lsn++ {
			var ops []logrec.Op
			for range 1 + r.IntN(3) {
				ks := keys[r.IntN(len(keys))]
				k := []byte(ks)
				f := []byte(fmt.Sprintf("f%d", r.IntN(3)))
				ver := cur[ks]
				switch n := r.IntN(30); {
				case n < 6:
					ops = append(ops, logrec.Op{Kind: logrec.OpPut, Key: k, Value: []byte(fmt.Sprint(lsn)), ExpireAtMs: int64(r.IntN(2)) * 1000})
					cur[ks] = 0
				case n < 9:
					ops = append(ops, logrec.Op{Kind: logrec.OpDelete, Key: k})
					cur[ks] = 0
				case n < 15:
					if ver == 0 || r.IntN(4) == 0 {
						ver = lsn // a new collection (over whatever was there)
					}
					ops = append(ops, logrec.Op{Kind: logrec.OpMeta, Key: k, Type: uint8(keyspace.TypeHash), Version: ver, Size: uint64(r.IntN(4)), ExpireAtMs: int64(r.IntN(2)) * 1000})
					cur[ks] = ver
				case ver == 0:
				case n < 22:
					ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: k, Version: ver, Sub: f, Value: []byte(fmt.Sprint(lsn))})
				case n < 25:
					ops = append(ops, logrec.Op{Kind: logrec.OpSubDel, Key: k, Version: ver, Sub: f})
				case n < 29:
					ops = append(ops, logrec.Op{Kind: logrec.OpDrop, Key: k, Version: ver})
					cur[ks] = 0
				default:
					ops = append(ops, logrec.Op{Kind: logrec.OpFlushAll})
					clear(cur)
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
			if r.IntN(4) == 0 {
				if _, err := d.Sweep(int64(lsn)*sweepIntervalMs, 1+r.IntN(4)); err != nil {
					t.Fatal(err)
				}
			}
		}
		d.Close()
	}
}

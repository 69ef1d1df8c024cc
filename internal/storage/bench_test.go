package storage

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkGet is a point read of a random key of 100k, each written
// twice through the log (200k entries of 100-byte values), as GET serves
// it: "memtable" reads right after the writes, "flushed" after a flush and
// a full compaction. It reports the block cache's hit rate: a cache that
// the memtables crowd out decompresses every block on every read.
func BenchmarkGet(b *testing.B) {
	const keys = 100000
	for _, flushed := range []bool{false, true} {
		name := "memtable"
		if flushed {
			name = "flushed"
		}
		b.Run(name, func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			r := rand.New(rand.NewPCG(1, 2))
			val := strings.Repeat("v", 100)
			var lsn uint64
			for range 2 * keys / 100 {
				es := make([]logrec.Entry, 100)
				raws := make([][]byte, 100)
				for j := range es {
					lsn++
					es[j] = logrec.Entry{Epoch: 1, LSN: lsn, Ops: []logrec.Op{put("key:"+strconv.Itoa(r.IntN(keys)), val)}}
					raws[j] = logrec.Encode(&es[j])
				}
				if err := d.AppendLog(raws); err != nil {
					b.Fatal(err)
				}
				if err := d.Apply(es); err != nil {
					b.Fatal(err)
				}
			}
			if flushed {
				if err := d.pdb.Flush(); err != nil {
					b.Fatal(err)
				}
				if err := d.pdb.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
					b.Fatal(err)
				}
			}
			names := make([][]byte, 4096)
			for i := range names {
				names[i] = []byte("key:" + strconv.Itoa(r.IntN(keys)))
			}
			v := View{DB: d}
			before := d.Metrics().BlockCache
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := v.Get(names[i%len(names)]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			after := d.Metrics().BlockCache
			if n := (after.Hits - before.Hits) + (after.Misses - before.Misses); n > 0 {
				b.ReportMetric(float64(after.Hits-before.Hits)/float64(n)*100, "%cache-hits")
			}
		})
	}
}

// BenchmarkReadAfterWrite is what a follower's reader pays for the rows its
// applies do not cache (SetWritesFill(false)): 100k keys written (100-byte
// values, in the memtable), then each read once, in random order, as the
// first read after its write: "fill" finds it in the row cache (a leader,
// while the cache has room), "nofill" reads Pebble and fills the cache.
//
//	go test ./internal/storage -run '^$' -bench ReadAfterWrite -benchtime 100000x -count 3
func BenchmarkReadAfterWrite(b *testing.B) {
	const keys = 100000
	for _, fill := range []bool{true, false} {
		name := "fill"
		if !fill {
			name = "nofill"
		}
		b.Run(name, func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			d.SetWritesFill(fill)
			val := strings.Repeat("v", 100)
			var lsn uint64
			for lo := 0; lo < keys; lo += 100 {
				es := make([]logrec.Entry, 100)
				for j := range es {
					lsn++
					es[j] = logrec.Entry{Epoch: 1, LSN: lsn, Ops: []logrec.Op{put("key:"+strconv.Itoa(lo+j), val)}}
				}
				if err := d.AppendLog(encodeAll(es...)); err != nil {
					b.Fatal(err)
				}
				if err := d.Apply(es); err != nil {
					b.Fatal(err)
				}
			}
			names := make([][]byte, keys)
			for i, k := range rand.New(rand.NewPCG(1, 2)).Perm(keys) {
				names[i] = []byte("key:" + strconv.Itoa(k))
			}
			v := View{DB: d}
			cpu0 := testutil.ProcessCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, ok, err := v.Get(names[i%keys]); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((testutil.ProcessCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/read")
		})
	}
}

// BenchmarkAppendLog is the log's group commit on a real disk: one
// AppendLog call (one fsync) of 1, 16 or 128 entries of ~130 encoded bytes
// per op. It reports entries per second and the process's CPU time (user +
// system, all goroutines) per entry.
func BenchmarkAppendLog(b *testing.B) {
	for _, n := range []int{1, 16, 128} {
		b.Run("entries="+strconv.Itoa(n), func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			val := strings.Repeat("v", 100)
			batches := make([][][]byte, b.N)
			var lsn uint64
			for i := range batches {
				batches[i] = make([][]byte, n)
				for j := range batches[i] {
					lsn++
					e := logrec.Entry{Epoch: 1, LSN: lsn, TimeNs: int64(lsn), Ops: []logrec.Op{put("key:"+strconv.Itoa(int(lsn%100000)), val)}}
					batches[i][j] = logrec.Encode(&e)
				}
			}
			cpu0 := testutil.ProcessCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.AppendLog(batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu := testutil.ProcessCPU() - cpu0
			entries := float64(b.N * n)
			b.ReportMetric(entries/b.Elapsed().Seconds(), "entries/s")
			b.ReportMetric(float64(cpu.Microseconds())/entries, "cpu-µs/entry")
		})
	}
}

// BenchmarkApply applies batches of 32 entries, each a SET of a random
// key of keys (100-byte values), on a store already holding them all:
// the applier's cost per entry, the key counts' read of the old row
// included ("rowcache": the rows are cached, as on a leader whose recent
// writes put them there; "pebble": no row cache, each old row read from
// Pebble, as on a follower whose cache is cold; "new": keys never
// written, which the key filter knows need no read; "prior/fill" and
// "prior/nofill": the puts say their prior row, as a leader sends them, and
// Apply caches what it writes (a leader) or only updates what is cached
// (a follower, SetWritesFill(false)): the write-through's own cost).
func BenchmarkApply(b *testing.B) {
	const keys, batch = 100000, 32
	for _, rc := range []struct {
		name  string
		bytes int64
		fresh bool
		// prior: the puts carry their prior (log format 3), as a
		// leader that has the rows in memory sends them; nofill: Apply
		// caches no row it writes (a follower, SetWritesFill(false)).
		prior, nofill bool
	}{{"rowcache", 0, false, false, false}, {"pebble", -1, false, false, false}, {"new", 0, true, false, false},
		{"prior/fill", 0, false, true, false}, {"prior/nofill", 0, false, true, true}} {
		b.Run(rc.name, func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{RowCacheBytes: rc.bytes})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			d.SetWritesFill(!rc.nofill)
			val := strings.Repeat("v", 100)
			var lsn uint64
			next := func(n int, key func(i int) int) []logrec.Entry {
				es := make([]logrec.Entry, n)
				for i := range es {
					lsn++
					es[i] = logrec.Entry{Epoch: 1, LSN: lsn, TimeNs: int64(lsn), Ops: []logrec.Op{put("key:"+strconv.Itoa(key(i)), val)}}
				}
				return es
			}
			apply := func(es []logrec.Entry) {
				if err := d.AppendLog(encodeAll(es...)); err != nil {
					b.Fatal(err)
				}
				if err := d.Apply(es); err != nil {
					b.Fatal(err)
				}
			}
			for lo := 0; lo < keys; lo += 1000 {
				apply(next(1000, func(i int) int { return lo + i }))
			}
			r := rand.New(rand.NewPCG(1, 2))
			batches := make([][]logrec.Entry, b.N)
			for i := range batches {
				if rc.fresh {
					batches[i] = next(batch, func(j int) int { return keys + i*batch + j })
				} else {
					batches[i] = next(batch, func(int) int { return r.IntN(keys) })
				}
				for j := range batches[i] {
					if rc.prior {
						batches[i][j].Ops[0].Prior = logrec.PriorPlain // every key exists
					}
				}
			}
			raws := make([][][]byte, b.N)
			for i, es := range batches {
				raws[i] = encodeAll(es...)
				if err := d.AppendLog(raws[i]); err != nil {
					b.Fatal(err)
				}
			}
			cpu0 := testutil.ProcessCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Apply(batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu := testutil.ProcessCPU() - cpu0
			entries := float64(b.N * batch)
			b.ReportMetric(float64(cpu.Microseconds())/entries, "cpu-µs/entry")
			b.ReportMetric(float64(d.RowCacheStats().Bytes)/(1<<20), "rowcache-MiB")
		})
	}
}

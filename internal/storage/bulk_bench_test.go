package storage

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkBulkApply is a follower's share of bench/run.sh's bulk load:
// 1M new keys key:0..key:999999 of 100-byte values (in the order the load's
// 50 pipes send them), entries of 16 SETs (a pipe's read), appended and
// applied 8 entries at a time, on the real disk with the node's default
// memtables (192 MiB budget: 4 x 6 MiB). It reports the process's CPU per
// key, Pebble's compactions included (those still running at the end are
// waited for, so a setting that only defers the work shows it).
//
//	go test ./internal/storage -run '^$' -bench BulkApply -benchtime 1x -count 2
func BenchmarkBulkApply(b *testing.B) {
	for _, l0 := range []int{0, 4, 8, 16} {
		b.Run(fmt.Sprintf("l0=%d", l0), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				benchBulkApply(b, l0)
			}
		})
	}
}

// BenchmarkBulkShape is BenchmarkBulkApply under other Pebble options
// (of the same memory but for the memtables=... cases, which report the
// memtables' peak): what each saves the load and costs the reads. With
// BULK_LSM=1 each run logs Pebble's LSM at the end (-test.v).
//
//	go test ./internal/storage -run '^$' -bench BulkShape -benchtime 1x -count 2
func BenchmarkBulkShape(b *testing.B) {
	noComp := func() *sstable.CompressionProfile { return sstable.NoCompression }
	for _, tc := range []struct {
		name string
		opts func(*Options)
		tune func(*pebble.Options)
	}{
		{"default", nil, nil},
		{"uncompressed-above-L6", nil, func(o *pebble.Options) {
			for i := 0; i < len(o.Levels)-1; i++ {
				o.Levels[i].Compression = noComp
			}
			// A level without its own inherits the level above's: this case
			// left every level uncompressed until it said so.
			o.Levels[len(o.Levels)-1].Compression = func() *sstable.CompressionProfile { return sstable.SnappyCompression }
		}},
		{"filter-L6", nil, func(o *pebble.Options) { o.Levels[len(o.Levels)-1].FilterPolicy = o.Levels[0].FilterPolicy }},
		{"lbase=256MiB", nil, func(o *pebble.Options) { o.LBaseMaxBytes = 256 << 20 }},
		{"L0-files=8MiB", nil, func(o *pebble.Options) { o.TargetFileSizes[0] = 8 << 20 }},
		{"files=2MiB", nil, func(o *pebble.Options) { sameFiles(o, 2<<20) }},
		{"files=4MiB", nil, func(o *pebble.Options) { sameFiles(o, 4<<20) }},
		{"files=8MiB", nil, func(o *pebble.Options) { sameFiles(o, 8<<20) }},
		{"blocks=16KiB", nil, func(o *pebble.Options) {
			for i := range o.Levels {
				o.Levels[i].BlockSize = 16 << 10
			}
		}},
		{"memtables=2x12MiB", func(o *Options) { o.MemTableBytes, o.MemTables = 12<<20, 2 }, nil},
		{"memtables=4x12MiB", func(o *Options) { o.MemTableBytes = 12 << 20 }, nil},
		{"memtables=4x24MiB", func(o *Options) { o.MemTableBytes = 24 << 20 }, nil},
		{"files=512KiB", nil, func(o *pebble.Options) { sameFiles(o, 512<<10) }},
		{"no-split", nil, func(o *pebble.Options) { o.Experimental.SpanPolicyFunc = nil }},
		{"l0=8", func(o *Options) { o.l0Compaction = 8 }, nil},
		{"lbase=8MiB", nil, func(o *pebble.Options) { o.LBaseMaxBytes = 8 << 20 }},
		{"columnar", nil, func(o *pebble.Options) { o.FormatMajorVersion = pebble.FormatNewest }},
		{"concurrency=2", nil, func(o *pebble.Options) { o.CompactionConcurrencyRange = func() (int, int) { return 1, 2 } }},
	} {
		for _, space := range []int{0, 100000} {
			name := tc.name + "/new"
			if space > 0 {
				name = fmt.Sprintf("%s/over=%d", tc.name, space)
			}
			b.Run(name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					opts := bulkOptions(0)
					if tc.opts != nil {
						tc.opts(&opts)
					}
					if tc.tune != nil {
						opts.tune = &tc.tune
					}
					benchBulk(b, opts, space)
				}
			})
		}
	}
}

func sameFiles(o *pebble.Options, size int64) {
	for i := range o.TargetFileSizes {
		o.TargetFileSizes[i] = size
	}
}

// bulkOptions are the node's storage options under its default memory
// budget (192 MiB: internal/node's PlanMemory), on the real disk.
func bulkOptions(l0 int) Options {
	return Options{FS: vfs.Default, CacheBytes: 24 << 20, MemTableBytes: 6 << 20, MemTables: 4,
		RowCacheBytes: 24 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), l0Compaction: l0}
}

func benchBulkApply(b *testing.B, l0 int) { benchBulk(b, bulkOptions(l0), 0) }

// BenchmarkBulkPriors is BenchmarkBulkApply's load, new keys and 1M SETs
// over 100k keys, with puts that say their prior row (logrec.Op.Prior, as
// a leader of format 3 sets it) and without: what the reads of the old
// rows for the key counts cost a follower. The priors come from a map of
// the keys written, which the loop pays for.
//
//	go test ./internal/storage -run '^$' -bench BulkPriors -benchtime 1x -count 2
func BenchmarkBulkPriors(b *testing.B) {
	for _, space := range []int{0, 100000} {
		for _, priors := range []bool{false, true} {
			b.Run(fmt.Sprintf("space=%d/priors=%v", space, priors), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					benchBulkPriors(b, bulkOptions(0), space, priors)
				}
			})
		}
	}
}

// benchBulk writes 1M SETs: of keys key:0..key:999999 in order, or with
// space > 0 of random keys of key:0..key:space-1 (bench/follower.sh's
// redis-benchmark -r: overwrites).
func benchBulk(b *testing.B, opts Options, space int) { benchBulkPriors(b, opts, space, false) }

// benchBulkPriors is benchBulk, with puts that say their prior rows when
// priors.
func benchBulkPriors(b *testing.B, opts Options, space int, priors bool) {
	const keys, perEntry, perApply = 1000000, 16, 8
	rng := rand.New(rand.NewPCG(3, 4))
	d, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'v'
	}
	var written map[string]bool // priors: the keys written so far
	if priors {
		written = make(map[string]bool, keys)
	}
	reads0 := d.PriorReads()
	var cpu0 = testutil.ProcessCPU()
	start := time.Now()
	lsn := uint64(0)
	var raws [][]byte
	var entries []logrec.Entry
	var peakMem uint64 // memtables allocated, zombies included, sampled
	for k := 0; k < keys; k += perEntry {
		e := logrec.Entry{Epoch: 1, LSN: lsn + 1, TimeNs: 1}
		for j := k; j < k+perEntry && j < keys; j++ {
			n := j
			if space > 0 {
				n = rng.IntN(space)
			}
			op := logrec.Op{Kind: logrec.OpPut, Key: strconv.AppendInt([]byte("key:"), int64(n), 10), Value: value}
			if written != nil {
				op.Prior = logrec.PriorNone
				if written[string(op.Key)] {
					op.Prior = logrec.PriorPlain
				}
				written[string(op.Key)] = true
			}
			e.Ops = append(e.Ops, op)
		}
		lsn++
		raws = append(raws, logrec.Encode(&e))
		entries = append(entries, e)
		if len(entries) == perApply {
			if err := d.AppendLog(raws); err != nil {
				b.Fatal(err)
			}
			if err := d.Apply(entries); err != nil {
				b.Fatal(err)
			}
			raws, entries = raws[:0], entries[:0]
			if lsn%(64*perApply) == 0 {
				mm := d.pdb.Metrics()
				peakMem = max(peakMem, mm.MemTable.Size+mm.MemTable.ZombieSize)
			}
		}
	}
	load := time.Since(start)
	cpuLoad := testutil.ProcessCPU() - cpu0
	testutil.Eventually(b, "the load's compactions to finish", 5*time.Minute, func() (bool, string) {
		n := d.pdb.Metrics().Compact.NumInProgress
		return n == 0, fmt.Sprint(n, " compactions in progress")
	})
	cpuAll := testutil.ProcessCPU() - cpu0
	m := d.pdb.Metrics()
	b.ReportMetric(float64(cpuLoad.Microseconds())/keys, "cpu-µs/key")
	b.ReportMetric(float64(cpuAll.Microseconds())/keys, "cpu-µs/key+settle")
	b.ReportMetric(float64(keys)/load.Seconds(), "keys/s")
	b.ReportMetric(float64(d.PriorReads()-reads0)/keys, "prior-reads/key")
	b.ReportMetric(float64(m.Levels[0].TablesCount), "L0-files")
	b.ReportMetric(float64(m.Levels[0].Sublevels), "L0-sublevels")
	if os.Getenv("BULK_LSM") != "" {
		b.Logf("LSM:\n%s", m)
	}
	total := m.Total()
	b.ReportMetric(total.WriteAmp(), "write-amp")
	b.ReportMetric(float64(m.DiskSpaceUsage())/(1<<20), "disk-MiB")
	b.ReportMetric(float64(peakMem)/(1<<20), "memtable-peak-MiB")
	b.ReportMetric(float64(m.MemTable.Size+m.MemTable.ZombieSize)/(1<<20), "memtable-end-MiB")
	if space > 0 {
		benchBulkReads(b, d, space) // about 5 of them never written
	} else {
		benchBulkReads(b, d, keys-perEntry*perApply) // the last few entries may not be applied
	}
}

// benchBulkReads is what the load's shape of the LSM costs readers after
// it settled: a point read in Pebble (the row cache and the key filter
// bypassed: what a read that misses both pays) and a short scan (a seek and
// 10 steps: SCAN, a collection's range), per read, in CPU. More L0
// sublevels save compactions but cost every read that reaches Pebble,
// until a later compaction: these say how much.
func benchBulkReads(b *testing.B, d *DB, keys int) { // key:0..key:keys-1 are there
	const gets, scans = 200000, 50000
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() []byte {
		return keyspace.MetaKey(strconv.AppendInt([]byte("key:"), int64(rng.IntN(keys)), 10))
	}
	cpu0 := testutil.ProcessCPU()
	for range gets {
		v, closer, err := d.pdb.Get(key())
		if errors.Is(err, pebble.ErrNotFound) {
			continue // a key the random writes missed
		}
		if err != nil || len(v) == 0 {
			b.Fatalf("get: %v", err)
		}
		closer.Close()
	}
	b.ReportMetric(float64((testutil.ProcessCPU()-cpu0).Nanoseconds())/gets, "cpu-ns/get")
	cpu0 = testutil.ProcessCPU()
	for range scans {
		it, err := d.pdb.NewIter(nil)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for ok := it.SeekGE(key()); ok && n < 10; ok = it.Next() {
			n++
		}
		if err := it.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((testutil.ProcessCPU()-cpu0).Nanoseconds())/scans, "cpu-ns/scan")
}

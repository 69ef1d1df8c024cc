package storage

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
)

// BenchmarkL0Reads is what each L0 sublevel costs a read that reaches
// Pebble (the row cache and key filters bypassed), with every block in the
// block cache, so that only the LSM's shape differs: 100k keys written as
// `sublevels` memtables that each span the whole key space and are flushed
// one by one (compactions off), as a bulk load leaves L0 between two L0
// compactions. A larger L0CompactionThreshold (BenchmarkBulkApply: fewer
// compactions) leaves up to that many sublevels at rest.
//
//	go test ./internal/storage -run '^$' -bench L0Reads -count 3
func BenchmarkL0Reads(b *testing.B) {
	for _, n := range []int{1, 4, 8, 16} {
		b.Run(fmt.Sprintf("sublevels=%d", n), func(b *testing.B) { benchL0Reads(b, n) })
	}
}

func benchL0Reads(b *testing.B, sublevels int) {
	const keys = 100000
	d, err := Open(b.TempDir(), Options{FS: vfs.NewMem(), CacheBytes: 256 << 20, RowCacheBytes: -1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), l0Compaction: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	value := make([]byte, 100)
	lsn := uint64(0)
	for s := range sublevels {
		for k := s; k < keys; k += 16 * sublevels {
			e := logrec.Entry{Epoch: 1, LSN: lsn + 1, TimeNs: 1}
			for j := k; j < k+16*sublevels && j < keys; j += sublevels {
				e.Ops = append(e.Ops, logrec.Op{Kind: logrec.OpPut, Key: strconv.AppendInt([]byte("key:"), int64(j), 10), Value: value})
			}
			lsn++
			if err := d.AppendLog([][]byte{logrec.Encode(&e)}); err != nil {
				b.Fatal(err)
			}
			if err := d.Apply([]logrec.Entry{e}); err != nil {
				b.Fatal(err)
			}
		}
		if err := d.pdb.Flush(); err != nil {
			b.Fatal(err)
		}
	}
	benchBulkReads(b, d, keys) // once to fill the block cache
	b.ResetTimer()
	benchBulkReads(b, d, keys)
	b.ReportMetric(float64(d.pdb.Metrics().Levels[0].Sublevels), "L0-sublevels")
}

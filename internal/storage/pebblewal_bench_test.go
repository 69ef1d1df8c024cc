package storage

import (
	"strconv"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkApplyPebbleWAL is Apply's cost with Pebble's own log ("wal",
// as before the replication log became the data's only write-ahead log)
// and without it ("nowal", as Open runs Pebble): groups of 10 SETs of new
// keys with 100-byte values, the group size of redis-benchmark -c 50 at
// P=1. It reports the process's CPU per entry (Pebble's background
// goroutines included), its write system calls per entry, and the disk
// the store holds at the end (Pebble preallocates its log files).
//
//	go test ./internal/storage -run '^$' -bench ApplyPebbleWAL -benchtime 30000x -count 3
func BenchmarkApplyPebbleWAL(b *testing.B) {
	for _, wal := range []bool{true, false} {
		name := "nowal"
		if wal {
			name = "wal"
		}
		b.Run(name, func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{pebbleWAL: wal})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			val := strings.Repeat("v", 100)
			const group = 10
			groups := make([][]logrec.Entry, b.N)
			var raws [][]byte
			var lsn uint64
			for i := range groups {
				es := make([]logrec.Entry, group)
				for j := range es {
					lsn++
					es[j] = logrec.Entry{Epoch: 1, LSN: lsn, TimeNs: int64(lsn), Ops: []logrec.Op{put("key:"+strconv.Itoa(int(lsn)), val)}}
				}
				groups[i] = es
				raws = append(raws, encodeAll(es...)...)
				if len(raws) >= 4096 || i == len(groups)-1 { // one fsync per 4096 entries: the setup is not measured
					if err := d.AppendLog(raws); err != nil {
						b.Fatal(err)
					}
					raws = raws[:0]
				}
			}
			_, w0, _ := testutil.ProcSyscalls()
			cpu0 := testutil.ProcessCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Apply(groups[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cpu := testutil.ProcessCPU() - cpu0
			_, w1, _ := testutil.ProcSyscalls()
			n := float64(b.N * group)
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/entry")
			b.ReportMetric(float64(w1-w0)/n, "syscw/entry")
			b.ReportMetric(float64(d.DiskBytes())/1e6, "disk-MB")
		})
	}
}

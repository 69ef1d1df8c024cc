package storage

import (
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// BenchmarkLRange is redis-benchmark's LRANGE_100 and LRANGE_300 on the
// committed data, as a leader or follower serves a read: LRANGE mylist 0
// 99 (or 299) on a list of 10,000 100-byte elements pushed one per entry
// with LPUSH, as a long-running node's list lies: in several sstables (a
// memtable flush every 2,000 pushes), the newest 500 elements (the ones
// read) in the memtable. cpu-ns/op is the reading thread's CPU time
// (Pebble's compactions run beside it).
func BenchmarkLRange(b *testing.B) {
	d, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	spec, _ := commands.Lookup([]byte("lpush"))
	val := []byte(strings.Repeat("x", 100))
	var lsn uint64
	for i := range 100 {
		es := make([]logrec.Entry, 100)
		raws := make([][]byte, 100)
		for j := range es {
			lsn++
			v := keyspace.Reader{R: dbRows{d}, LSN: lsn}
			res, err := spec.Exec(&commands.Ctx{}, v, [][]byte{[]byte("lpush"), []byte("mylist"), val})
			if err != nil {
				b.Fatal(err)
			}
			es[j] = logrec.Entry{Epoch: 1, LSN: lsn, Ops: res.Ops}
			raws[j] = logrec.Encode(&es[j])
			if err := d.AppendLog(raws[j : j+1]); err != nil {
				b.Fatal(err)
			}
			if err := d.Apply(es[j : j+1]); err != nil {
				b.Fatal(err)
			}
		}
		if i%20 == 19 && i < 95 {
			if err := d.pdb.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	lrange, _ := commands.Lookup([]byte("lrange"))
	for _, n := range []string{"99", "299"} {
		b.Run("0-"+n, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			args := [][]byte{[]byte("lrange"), []byte("mylist"), []byte("0"), []byte(n)}
			v := View{DB: d}
			b.ReportAllocs()
			cpu0 := lrangeThreadCPU(b)
			for b.Loop() {
				res, err := lrange.Exec(&commands.Ctx{}, v, args)
				if err != nil {
					b.Fatal(err)
				}
				if a, ok := res.Reply.(commands.Bulks); !ok || len(a) == 0 {
					b.Fatalf("reply %v", res.Reply)
				}
			}
			// CPU time survives a loaded machine better than ns/op.
			b.ReportMetric(float64((lrangeThreadCPU(b)-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// lrangeThreadCPU is the calling thread's CPU time (the thread must be
// locked to its goroutine).
func lrangeThreadCPU(tb testing.TB) time.Duration {
	const rusageThread = 1
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

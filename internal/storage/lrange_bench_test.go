package storage

import (
	"runtime"
	"strconv"
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
//
// full/ is the same with the row cache full of rows readers fetched
// before the pushes (10 MB of keys read through a 4 MB cache), as on a
// node that has served reads for a while: the pushes' rows are not
// admitted (writers never evict), so the first LRANGE scans Pebble and
// keeps what it read (keyspace.CachedRows.IterCaching).
func BenchmarkLRange(b *testing.B) {
	for _, full := range []bool{false, true} {
		name := "cached"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) { benchLRange(b, full) })
	}
}

func benchLRange(b *testing.B, full bool) {
	opts := Options{}
	if full {
		opts.RowCacheBytes = 4 << 20
	}
	d, err := Open(b.TempDir(), opts)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	var lsn uint64
	exec := func(args ...[]byte) {
		spec, _ := commands.Lookup(args[0])
		v := keyspace.Reader{R: dbRows{d}, LSN: lsn + 1}
		res, err := spec.Exec(&commands.Ctx{}, v, args)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Ops) == 0 {
			return
		}
		lsn++
		es := []logrec.Entry{{Epoch: 1, LSN: lsn, Ops: res.Ops}}
		if err := d.AppendLog([][]byte{logrec.Encode(&es[0])}); err != nil {
			b.Fatal(err)
		}
		if err := d.Apply(es); err != nil {
			b.Fatal(err)
		}
	}
	if full {
		for i := range 60000 {
			exec([]byte("set"), []byte("k:"+strconv.Itoa(i)), make([]byte, 100))
		}
		if err := d.pdb.Flush(); err != nil {
			b.Fatal(err)
		}
		for i := range 60000 {
			exec([]byte("get"), []byte("k:"+strconv.Itoa(i)))
		}
	}
	val := []byte(strings.Repeat("x", 100))
	for i := range 100 {
		for range 100 {
			exec([]byte("lpush"), []byte("mylist"), val)
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

package replication

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkLeaderSet is the leader's own share of a SET, alone: an async
// leader without followers (real disk: its log's fdatasync and its Pebble
// applies), `writers` goroutines each sequencing one SET of a 100-byte
// value on a random key of 100,000 at a time (Start) and answered through
// Pending.Then, as a connection's goroutine is (it waits for the answer
// on a channel of its own, as a connection waits for its client's next
// command). No network, no RESP, no stream: what is left is Start (the
// command, the overlay, the encoding), the core, the group's append and
// apply and the answer. It reports the process's CPU, its heap
// allocations and the goroutine hand-offs (Handoffs) per write, and the
// log appends per write (the inverse of the group size).
//
//	go test ./internal/replication -run '^$' -bench LeaderSet -benchtime 50000x -count 3
func BenchmarkLeaderSet(b *testing.B) {
	for _, writers := range []int{50} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchLeaderSet(b, writers) })
	}
}

func benchLeaderSet(b *testing.B, writers int) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := storage.Open(b.TempDir(), storage.Options{FS: vfs.Default, CacheBytes: 8 << 20, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.StartEpoch(1, 1); err != nil {
		b.Fatal(err)
	}
	l, err := NewLeader(LeaderConfig{DB: db, NodeID: "leader", Mode: commit.Mode{Kind: commit.Async}, Logger: quiet}, 1)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Close)
	value := make([]byte, 100)
	var seq atomic.Int64
	write := func(key []byte, answered chan error) error {
		n := seq.Add(1) * 7919 % 100000
		key = strconv.AppendInt(append(key[:0], "key:"...), n, 10)
		p, err := l.Start(context.Background(), func(commands.View, int64) (commands.Result, error) {
			return commands.Result{Reply: commands.OK, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: value}}}, nil
		})
		if err != nil {
			return err
		}
		p.Then(context.Background(), func(_ commands.Reply, _ uint64, err error) { answered <- err })
		return <-answered
	}
	run := func(calls int64) {
		var left atomic.Int64
		left.Store(calls)
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for range writers {
			wg.Go(func() {
				var key []byte
				answered := make(chan error, 1)
				for left.Add(-1) >= 0 {
					if err := write(key, answered); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
	}
	run(int64(writers) * 20)
	allocs := func() uint64 {
		s := []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
	h0, cpu0, a0 := l.Handoffs(), testutil.ProcessCPU(), allocs()
	ap0, _ := db.AppendStats()
	b.ResetTimer()
	run(int64(b.N))
	b.StopTimer()
	h, cpu, a := l.Handoffs().Sub(h0), testutil.ProcessCPU()-cpu0, allocs()-a0
	ap, _ := db.AppendStats()
	writes := float64(b.N)
	b.ReportMetric(float64(cpu.Microseconds())/writes, "cpu-µs/write")
	b.ReportMetric(float64(a)/writes, "allocs/write")
	b.ReportMetric(float64(h.Total())/writes, "handoffs/write")
	b.ReportMetric(float64(ap-ap0)/writes, "appends/write")
}

package replication

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/storage"
	"github.com/tandemdb/tandem/internal/testutil"
)

// BenchmarkFollowerPaced is a follower alone (real disk, its own fsyncs
// and Pebble applies) fed as a busy async leader feeds it: a message of
// `per` one-SET entries every `every` (an async leader's group commit:
// c=50 -P1 SETs make groups of about 10 entries a millisecond or less
// apart), each carrying the commit LSN of the message before, with
// defer_sync set, and SyncHold off or on. It reports the process's CPU
// per write (the fake leader's sends are a channel send a message), and
// the follower's log appends (fsyncs), applies and progress reports per
// write. The stream is in memory (no gRPC), so this is the follower's
// own cost without the transport.
//
//	go test ./internal/replication -run '^$' -bench FollowerPaced -benchtime 20000x -count 3
func BenchmarkFollowerPaced(b *testing.B) {
	for _, tc := range []struct {
		per   int
		every time.Duration
	}{{10, 500 * time.Microsecond}, {10, time.Millisecond}} {
		for _, hold := range []time.Duration{-1, DefaultSyncHold} {
			name := fmt.Sprintf("per=%d/every=%v/hold=%v", tc.per, tc.every, max(hold, 0))
			b.Run(name, func(b *testing.B) { benchFollowerPaced(b, tc.per, tc.every, hold) })
		}
	}
}

func benchFollowerPaced(b *testing.B, per int, every, hold time.Duration) {
	db, err := storage.Open(b.TempDir(), storage.Options{FS: vfs.Default, CacheBytes: 8 << 20, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	n := max(b.N, per)
	raws := make([][]byte, n)
	value := make([]byte, 100)
	for i := range raws {
		key := strconv.AppendInt([]byte("key:"), int64(i%100000), 10)
		raws[i] = logrec.Encode(&logrec.Entry{Epoch: 1, LSN: uint64(i + 1), TimeNs: time.Now().UnixNano(),
			Ops: []logrec.Op{{Kind: logrec.OpPut, Key: key, Value: value}}})
	}
	s := newFakeLeader()
	f := NewFollower(FollowerConfig{DB: db, NodeID: "f", Dial: s, SyncHold: hold, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	testutil.Eventually(b, "the handshake", waitTimeout, func() (bool, string) {
		return f.Status().Connected, "not connected"
	})

	c0, cpu0 := f.Counts(), testutil.ProcessCPU()
	b.ResetTimer()
	t := time.NewTicker(every)
	defer t.Stop()
	var commit uint64
	for i := 0; i < n; i += per {
		j := min(i+per, n)
		s.in <- &peerpb.LeaderMessage{Epoch: 1, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
			Entries: raws[i:j], CommitLsn: commit, LeaderLastLsn: uint64(j), LeaderTimeUnixNano: time.Now().UnixNano(),
			LeaseStamp: mono(time.Now()), DeferSync: true,
		}}}
		commit = uint64(j)
		<-t.C
	}
	s.in <- &peerpb.LeaderMessage{Epoch: 1, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
		CommitLsn: commit, LeaderLastLsn: commit, LeaderTimeUnixNano: time.Now().UnixNano(), LeaseStamp: mono(time.Now()),
	}}}
	for db.Applied() < uint64(n) {
		<-t.C
	}
	b.StopTimer()
	c, cpu := f.Counts().Sub(c0), testutil.ProcessCPU()-cpu0
	writes := float64(n)
	b.ReportMetric(float64(cpu.Microseconds())/writes, "cpu-µs/write")
	b.ReportMetric(float64(c.Appends)/writes, "appends/write")
	b.ReportMetric(float64(c.Applies)/writes, "applies/write")
	b.ReportMetric(float64(c.Reports)/writes, "reports/write")
	b.ReportMetric(float64(c.Wakes)/writes, "wakes/write")
	b.ReportMetric(float64(s.reports.Load()), "reports")
}

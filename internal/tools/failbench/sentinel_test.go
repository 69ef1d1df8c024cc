package failbench

import (
	"bytes"
	"context"
	"log/slog"
	"os/exec"
	"testing"
	"time"
)

// TestSentinelOneTrial runs one short trial on a real Redis Sentinel
// deployment: 3 servers, 3 sentinels, 10 clients.
func TestSentinelOneTrial(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 6 redis-server processes and waits for a Sentinel failover; not in -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server, or bash bench/failover.sh)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	all, err := Run(ctx, Options{
		Targets: []string{"redis-sentinel"}, Trials: 1, Clients: 10, ValueSize: 100,
		LoadBefore: time.Second, RestartDelay: 500 * time.Millisecond, LoadAfter: 500 * time.Millisecond,
		FailoverTimeout: 30 * time.Second, HealthTimeout: 60 * time.Second,
		Dir: t.TempDir(), Out: &out, Log: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || len(all[0]) != 1 {
		t.Fatalf("got %d targets' trials, want 1 trial", len(all))
	}
	tr := all[0][0]
	if tr.Err != nil {
		t.Fatalf("trial failed: %v", tr.Err)
	}
	// Sentinel cannot notice the kill sooner than down-after-milliseconds.
	if !tr.HaveGap || tr.Unavailable < sentinelDownAfter*time.Millisecond || tr.Unavailable > 30*time.Second {
		t.Errorf("unavailability %v (have %v), want between 1 s and 30 s", tr.Unavailable, tr.HaveGap)
	}
	if f := tr.Failover; f == nil || f.Promotions < 1 || f.Detected < sentinelDownAfter*time.Millisecond || f.Promoted < f.Detected {
		t.Errorf("failover report %+v, want detection ≥ 1 s, promotion after it, a promotion", f)
	}
	if tr.Acked == 0 || tr.Lost > tr.Acked {
		t.Errorf("acked %d, lost %d", tr.Acked, tr.Lost)
	}
}

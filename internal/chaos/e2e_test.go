package chaos

// End-to-end runs against real tandem processes. They build the binary once
// (go build ./cmd/tandem from the module root) and are skipped with -short.
// While the tree does not build they skip with the build error; once it
// does, a build failure should fail them (see binary).

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/chaos/checker"
	"github.com/tandemdb/tandem/internal/testbin"
)

// binary returns the tandem binary, built once per test process; a build
// failure fails the test, so a broken build cannot hide these runs.
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end chaos run: skipped with -short")
	}
	return testbin.Path(t)
}

func e2eOptions(t *testing.T, d time.Duration, faults ...string) Options {
	return Options{
		Duration:     d,
		Faults:       faults,
		Clients:      8,
		Rate:         400,
		Seed:         20260101,
		Binary:       binary(t),
		Dir:          t.TempDir(),
		CheckTimeout: 20 * time.Second,
		Out:          t.Output(),
		Log:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

func run(t *testing.T, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opts.Duration+3*time.Minute)
	defer cancel()
	r, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// dumpLogs shows the tail of every node's log when a test fails.
func dumpLogs(t *testing.T, dir string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "data", "n*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			lines := strings.Split(string(b), "\n")
			t.Logf("--- %s ---\n%s", l, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	})
}

// TestE2ECleanRun: a correct cluster under every fault kind passes.
func TestE2ECleanRun(t *testing.T) {
	opts := e2eOptions(t, 40*time.Second, "kill-leader", "kill-follower", "pause", "partition", "delay", "drop-oneway")
	expectClean(t, opts)
}

// TestE2EQuorumRun runs under --mode "quorum 1", where a restarted leader
// must re-commit the tail it finds in its log before it serves reads.
func TestE2EQuorumRun(t *testing.T) {
	opts := e2eOptions(t, 30*time.Second, "kill-leader", "kill-follower", "partition")
	opts.Mode = "quorum 1"
	expectClean(t, opts)
}

// expectClean runs the harness against a correct cluster: no violations,
// enough operations to mean something, and every fault injected.
func expectClean(t *testing.T, opts Options) {
	t.Helper()
	dumpLogs(t, opts.Dir)
	r := run(t, opts)
	if r.Violated() {
		t.Fatalf("clean run reported %d violations (seed %d, artefacts in %s)", len(r.Violations), r.Seed, r.Dir)
	}
	if r.OK < 1000 || len(r.Faults) == 0 {
		t.Fatalf("run too thin to mean anything: %d ok ops, faults %+v", r.OK, r.Faults)
	}
	for _, f := range r.Faults {
		if f.InjectErrors > 0 {
			t.Errorf("fault %s failed to inject %d times", f.Kind, f.InjectErrors)
		}
	}
}

// TestE2ECatchesAckBeforeDurable: a leader that acknowledges writes before
// they are durable loses them on kill -9, and the harness must say so.
func TestE2ECatchesAckBeforeDurable(t *testing.T) {
	opts := e2eOptions(t, 30*time.Second, "kill-leader")
	opts.Rate = 1500
	opts.ServerArgs = []string{"--buggify", "ack-before-durable"}
	dumpLogs(t, opts.Dir)
	r := run(t, opts)
	by := r.ByKind()
	if by[checker.LostWrite] == 0 && by[checker.NotLinearizable] == 0 {
		t.Fatalf("ack-before-durable with kill-leader not caught: %v", r.Violations)
	}
	t.Logf("caught: %v, %d acknowledged writes lost", by, r.LostWrites)
}

// TestE2ECatchesFollowerSkipEntry: a follower that silently skips entries
// diverges, and the harness must say so.
func TestE2ECatchesFollowerSkipEntry(t *testing.T) {
	opts := e2eOptions(t, 15*time.Second)
	opts.Faults = []string{}
	opts.ServerArgs = []string{"--buggify", "follower-skip-entry"}
	dumpLogs(t, opts.Dir)
	r := run(t, opts)
	by := r.ByKind()
	if by[checker.ReplicaDiverged] == 0 && by[checker.NonMonotonicRead] == 0 && by[checker.NeverWritten] == 0 {
		t.Fatalf("follower-skip-entry not caught: %v", r.Violations)
	}
	t.Logf("caught: %v", by)
}

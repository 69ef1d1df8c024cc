package failbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configure a run.
type Options struct {
	// Targets are the kinds of target to run, in order; the first is the
	// one ratios are taken against.
	Targets []string
	Trials  int
	Clients int
	// ClientPerWorker gives each worker a client of its own (pool of 1)
	// instead of one client shared by all.
	ClientPerWorker bool
	// PoolSize is the pool size asked of NewClient; 0 means Clients for a
	// shared client, 1 for a client per worker. go-redis's pool stops
	// dialing after PoolSize failed dials and probes once a second, so a
	// pool far larger than the workers (1000000) turns that off.
	PoolSize int
	// ValueSize is the size of every value written, in bytes.
	ValueSize int
	// LoadBefore is how long the workload runs before the kill.
	LoadBefore time.Duration
	// RestartDelay is how long after the new leader's first acknowledgement
	// the killed process is restarted.
	RestartDelay time.Duration
	// LoadAfter is how long the workload goes on after the restart.
	LoadAfter time.Duration
	// Fault is "kill" (kill -9 the leader, then Restart it; the default)
	// or "pause" (SIGSTOP the leader, then SIGCONT it in place of the
	// restart: a leader that is alive but stops answering).
	Fault string
	// Saturate is how long each target's leader is saturated with
	// redis-benchmark -c 50 -P 16 SET before its trials, counting the
	// failovers meanwhile (all false); 0 skips the phase (saturate.go).
	// SaturateKeys is its key space (redis-benchmark -r): a large one
	// keeps the leader's write-path structures at a bulk load's size (a
	// leak of the leader's overlay under writes of new keys made false
	// failovers only after a minute or more).
	Saturate     time.Duration
	SaturateKeys int
	// SaturateBulk is how long each target's leader is then loaded by
	// BulkStreams bulk-load streams (bench/run.sh's 50 `redis-cli --pipe`
	// streams, over SaturateKeys keys: bulk.go), counting the failovers
	// meanwhile; 0 skips that phase.
	SaturateBulk time.Duration
	BulkStreams  int
	// FailoverTimeout bounds the wait for the new leader's first
	// acknowledgement; HealthTimeout the wait for a healthy target.
	FailoverTimeout, HealthTimeout time.Duration
	// Dir holds each target's directory; empty means a temporary directory,
	// removed afterwards unless Keep.
	Dir  string
	Keep bool
	Out  io.Writer
	Log  *slog.Logger
}

func (o *Options) defaults() {
	if o.Fault == "" {
		o.Fault = "kill"
	}
	if o.Trials == 0 {
		o.Trials = 10
	}
	if o.Clients == 0 {
		o.Clients = 50
	}
	if o.ValueSize == 0 {
		o.ValueSize = 100
	}
	if o.SaturateKeys <= 0 {
		o.SaturateKeys = 1_000_000
	}
	if o.BulkStreams <= 0 {
		o.BulkStreams = 50
	}
	if o.FailoverTimeout == 0 {
		o.FailoverTimeout = 60 * time.Second
	}
	if o.HealthTimeout == 0 {
		o.HealthTimeout = 120 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Run runs the trials on every target in turn, printing each trial's line as
// it ends and the summary at the end, and returns every target's trials.
// An error starting or stopping a target ends the run; a trial that fails
// ends only its target's trials (it is in the result with its Err).
func Run(ctx context.Context, o Options) ([][]Trial, error) {
	o.defaults()
	if o.Fault != "kill" && o.Fault != "pause" {
		return nil, fmt.Errorf("failbench: --fault %q: want kill or pause", o.Fault)
	}
	if err := validTargets(o.Targets); err != nil {
		return nil, err
	}
	dir, temp := o.Dir, false
	if dir == "" {
		d, err := os.MkdirTemp("", "tandem-failbench-")
		if err != nil {
			return nil, fmt.Errorf("failbench: %w", err)
		}
		dir, temp = d, true
	}
	clients := "one shared client"
	if o.ClientPerWorker {
		clients = "a client per worker"
	}
	if o.PoolSize > 0 {
		clients += fmt.Sprintf(", pool size %d", o.PoolSize)
	}
	fmt.Fprintf(o.Out, "failover benchmark: %d trials per target, %d workers (%s), %d-byte values, kill -9 after %s of load; in %s\n",
		o.Trials, o.Clients, clients, o.ValueSize, o.LoadBefore, dir)
	var all [][]Trial
	var sums []Summary
	var runErr error
	for _, name := range o.Targets {
		trials, sats, err := runTarget(ctx, o, name, filepath.Join(dir, name))
		all = append(all, trials)
		sum := Summarize(name, trials)
		sum.Saturation = sats
		sums = append(sums, sum)
		if err != nil {
			runErr = err
			break
		}
	}
	fmt.Fprintln(o.Out)
	PrintSummary(o.Out, sums)
	if temp && !o.Keep && runErr == nil {
		if err := os.RemoveAll(dir); err != nil {
			o.Log.Warn("removing the run's directory", "dir", dir, "err", err)
		}
	} else {
		fmt.Fprintf(o.Out, "kept %s\n", dir)
	}
	return all, runErr
}

func runTarget(ctx context.Context, o Options, name, dir string) (trials []Trial, sats []Saturation, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("failbench: %w", err)
	}
	log := o.Log.With("target", name)
	t, err := newTarget(name, Config{Dir: dir, Log: log})
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if serr := t.Stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("failbench: stop %s: %w", name, serr))
		}
	}()
	sctx, cancel := context.WithTimeout(ctx, o.HealthTimeout)
	err = t.Start(sctx)
	cancel()
	if err != nil {
		return nil, nil, fmt.Errorf("failbench: start %s: %w", name, err)
	}
	fmt.Fprintf(o.Out, "\n== %s\n", name)
	for _, ph := range []struct {
		load string
		d    time.Duration
	}{{loadBenchmark, o.Saturate}, {loadBulk, o.SaturateBulk}} {
		if ph.d <= 0 {
			continue
		}
		s := saturate(ctx, o, t, ph.load, ph.d)
		sats = append(sats, s)
		PrintSaturation(o.Out, s)
		if ctx.Err() != nil {
			return nil, sats, ctx.Err()
		}
	}
	for n := 1; n <= o.Trials; n++ {
		if ctx.Err() != nil {
			return trials, sats, ctx.Err()
		}
		tr := runTrial(ctx, o, t, n)
		PrintTrial(o.Out, tr)
		trials = append(trials, tr)
		if tr.Err != nil {
			log.Error("trial failed; no more trials on this target", "trial", n, "err", tr.Err)
			break
		}
	}
	return trials, sats, nil
}

// runTrial runs one kill; see the package comment for the steps.
func runTrial(ctx context.Context, o Options, t Target, n int) Trial {
	tr := Trial{Target: t.Name(), N: n, Fault: "killed"}
	if o.Fault == "pause" {
		tr.Fault = "paused"
	}
	log := o.Log.With("target", t.Name(), "trial", n)
	hctx, cancel := context.WithTimeout(ctx, o.HealthTimeout)
	defer cancel()
	if err := t.WaitHealthy(hctx); err != nil {
		tr.Err = fmt.Errorf("before the kill: %w", err)
		return tr
	}
	leader, err := t.Leader(hctx)
	if err != nil {
		tr.Err = fmt.Errorf("before the kill: %w", err)
		return tr
	}
	clients := make([]redis.UniversalClient, o.Clients)
	pool := o.PoolSize
	if o.ClientPerWorker {
		if pool == 0 {
			pool = 1
		}
		for i := range clients {
			clients[i] = t.NewClient(pool)
		}
	} else {
		if pool == 0 {
			pool = o.Clients
		}
		c := t.NewClient(pool)
		for i := range clients {
			clients[i] = c
		}
	}
	defer func() {
		for i, c := range clients {
			if i == 0 || o.ClientPerWorker {
				c.Close()
			}
		}
	}()
	w := startWorkload(n, o.ValueSize, clients)
	loadStart := time.Now()
	stopped := false
	var acks []Ack
	finish := func() {
		if stopped {
			return
		}
		stopped = true
		acks, tr.Errors, tr.ErrorSamples = w.finish()
		tr.Acked = len(acks)
		tr.LastOld, tr.FirstNew, tr.HaveGap = Unavailability(acks, tr.KilledAt)
		if tr.HaveGap {
			tr.Unavailable = tr.FirstNew.Sub(tr.LastOld)
		}
		tr.WorkerGap = stat(WorkerGaps(acks, tr.KilledAt))
	}
	defer finish()

	if !sleep(ctx, o.LoadBefore) {
		tr.Err = ctx.Err()
		return tr
	}
	// Nothing has failed yet: a failover during the load before the fault
	// is a false one.
	if c, err := leaderChanges(hctx, t, loadStart, leader); err != nil {
		log.Warn("counting failovers before the fault", "err", err)
	} else {
		tr.FalseFailovers = c
	}
	tr.Killed = leader
	tr.KilledAt = time.Now()
	w.markKill(tr.KilledAt)
	if o.Fault == "pause" {
		if err := syscall.Kill(leader.PID, syscall.SIGSTOP); err != nil {
			tr.Err = fmt.Errorf("pause %s: %w", leader, err)
			return tr
		}
	} else if err := t.Kill(leader); err != nil {
		tr.Err = fmt.Errorf("kill %s: %w", leader, err)
		return tr
	}
	log.Info("killed the leader", "node", leader.ID, "pid", leader.PID)
	select {
	case <-w.firstNew:
		log.Info("the new leader acknowledged a write", "after", time.Since(tr.KilledAt))
	case <-time.After(o.FailoverTimeout):
		tr.Err = fmt.Errorf("no write acknowledged within %s of the kill", o.FailoverTimeout)
	case <-ctx.Done():
		tr.Err = ctx.Err()
	}
	if tr.Err == nil && !sleep(ctx, o.RestartDelay) {
		tr.Err = ctx.Err()
	}
	// Restart even after a failed wait, so the target is whole for Stop.
	rctx, rcancel := context.WithTimeout(ctx, o.HealthTimeout)
	defer rcancel()
	if o.Fault == "pause" {
		if err := syscall.Kill(leader.PID, syscall.SIGCONT); err != nil {
			tr.Err = errors.Join(tr.Err, fmt.Errorf("resume %s: %w", leader, err))
			return tr
		}
	} else if err := t.Restart(rctx, leader); err != nil {
		tr.Err = errors.Join(tr.Err, fmt.Errorf("restart %s: %w", leader, err))
		return tr
	}
	if tr.Err != nil {
		return tr
	}
	if !sleep(ctx, o.LoadAfter) {
		tr.Err = ctx.Err()
		return tr
	}
	finish()
	if fr, ok := t.(FailoverReporter); ok {
		fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
		f, err := fr.Failover(fctx, tr.KilledAt)
		fcancel()
		if err != nil {
			log.Warn("no failover report", "err", err)
		} else {
			tr.Failover = &f
		}
	}
	hctx2, cancel2 := context.WithTimeout(ctx, o.HealthTimeout)
	defer cancel2()
	if err := t.WaitHealthy(hctx2); err != nil {
		tr.Err = fmt.Errorf("after the kill: %w", err)
		return tr
	}
	now, err := t.Leader(hctx2)
	if err != nil {
		tr.Err = fmt.Errorf("after the kill: %w", err)
		return tr
	}
	lost, err := ReadBack(hctx2, now.Addr, n, o.ValueSize, acks)
	if err != nil {
		tr.Err = err
		return tr
	}
	tr.Lost = len(lost)
	for _, a := range lost[:min(len(lost), 5)] {
		tr.LostSample = append(tr.LostSample, Key(n, a))
	}
	return tr
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	select {
	case <-time.After(d):
		return true
	case <-ctx.Done():
		return false
	}
}

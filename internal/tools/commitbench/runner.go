package commitbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Options configures a run.
type Options struct {
	Targets []Target
	Load    Load
	// Dir holds one subdirectory per target.
	Dir string
	// Profile names a tandem target whose leader gets a CPU profile over
	// its measured window (Dir/<target>/leader.pprof, its top printed).
	Profile string
	Out     io.Writer
	Log     *slog.Logger
}

// Measurement is one target's run.
type Measurement struct {
	Name, Describe string
	Result
	// CPU is the server processes' CPU time (user + system, children
	// included) over the measured window, per role, in the order the
	// roles first appear in Processes, and the window it was taken over
	// (a runner's whole run, its warmup included).
	CPU       []RoleCPU
	CPUWindow time.Duration
	// Notes are the target's own remarks on its run (Noter).
	Notes []string
}

// RoleCPU is the CPU time of a target's processes of one role.
type RoleCPU struct {
	Role      string
	Processes int
	CPU       time.Duration
}

// Run measures every target in turn, printing each one's line as it ends
// and the comparison at the end.
func Run(ctx context.Context, o Options) ([]Measurement, error) {
	var ms []Measurement
	for _, t := range o.Targets {
		m, err := measure(ctx, o, t)
		if err != nil {
			return ms, fmt.Errorf("%s: %w", t.Name(), err)
		}
		ms = append(ms, m)
		fmt.Fprintf(o.Out, "%s: %.0f writes/s, p50 %v, p99 %v, %d errors\n", m.Name, m.Throughput(), m.Percentile(50), m.Percentile(99), m.Errors)
	}
	fmt.Fprintln(o.Out)
	Report(o.Out, o.Load, ms)
	return ms, nil
}

func measure(ctx context.Context, o Options, t Target) (m Measurement, err error) {
	dir := filepath.Join(o.Dir, t.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return m, fmt.Errorf("commitbench: %w", err)
	}
	o.Log.Info("starting", "target", t.Name(), "dir", dir)
	defer func() {
		if serr := t.Stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := t.Start(ctx, dir); err != nil {
		return m, err
	}
	m = Measurement{Name: t.Name(), Describe: t.Describe()}
	var before procSnapshot
	var prof chan error
	// The window starts after the warmup: mark is called then.
	mark := func() {
		before = snapshotProcs()
		if tt, ok := t.(*Tandem); ok && o.Profile == t.Name() {
			prof = make(chan error, 1)
			go func() { prof <- profile(ctx, tt.LeaderHTTP(), o.Load.Duration, filepath.Join(dir, "leader.pprof")) }()
		}
	}
	switch t := t.(type) {
	case WorkerTarget:
		m.Result, err = runWorkers(ctx, t, o.Load, mark)
		m.CPUWindow = m.Elapsed
	case RunnerTarget:
		// A runner's warmup is its own business; the CPU window is its
		// whole run, warmup included, so it is taken from its start and
		// scaled to the measured operations below.
		mark()
		start := time.Now()
		m.Result, err = t.Run(ctx, o.Load)
		m.CPUWindow = time.Since(start)
	default:
		err = fmt.Errorf("commitbench: %s is neither a worker nor a runner target", t.Name())
	}
	if err != nil {
		return m, err
	}
	m.CPU = cpuByRole(t.Processes(), before, snapshotProcs())
	if n, ok := t.(Noter); ok {
		m.Notes = n.Notes(ctx)
	}
	if prof != nil {
		if err := <-prof; err != nil {
			o.Log.Warn("leader profile", "err", err)
		} else if top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "35", filepath.Join(dir, "leader.pprof")).CombinedOutput(); err == nil {
			fmt.Fprintf(o.Out, "\nCPU profile of %s's leader over the measured window (%s):\n%s\n", t.Name(), filepath.Join(dir, "leader.pprof"), top)
		}
	}
	return m, nil
}

// runWorkers runs l.Clients workers against t: after l.Warmup it calls
// mark and records every acknowledged write's latency for l.Duration.
func runWorkers(ctx context.Context, t WorkerTarget, l Load, mark func()) (Result, error) {
	workers := make([]Worker, l.Clients)
	defer func() {
		for _, w := range workers {
			if w != nil {
				w.Close()
			}
		}
	}()
	for i := range workers {
		w, err := t.NewWorker(ctx)
		if err != nil {
			return Result{}, err
		}
		workers[i] = w
	}
	value := make([]byte, l.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var measuring, done = make(chan struct{}), make(chan struct{})
	type tally struct {
		lat    []time.Duration
		errors int
	}
	tallies := make([]tally, l.Clients)
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(i), 0x5eed))
			on := false
			var keyBuf []byte
			for {
				select {
				case <-done:
					return
				case <-measuring:
					on = true
				default:
				}
				keyBuf = strconv.AppendInt(append(keyBuf[:0], "key:"...), int64(r.IntN(l.Keyspace)), 10)
				start := time.Now()
				err := w.Write(ctx, string(keyBuf), value)
				switch {
				case !on:
				case err != nil:
					tallies[i].errors++
				default:
					tallies[i].lat = append(tallies[i].lat, time.Since(start))
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					time.Sleep(10 * time.Millisecond) // a failing target is not spun on
				}
			}
		}()
	}
	select {
	case <-time.After(l.Warmup):
	case <-ctx.Done():
	}
	mark()
	start := time.Now()
	close(measuring)
	select {
	case <-time.After(l.Duration):
	case <-ctx.Done():
	}
	close(done)
	elapsed := time.Since(start)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	var res Result
	for _, tl := range tallies {
		res.Latencies = append(res.Latencies, tl.lat...)
		res.Errors += tl.errors
	}
	res.Elapsed = elapsed
	return res, nil
}

// profile takes a CPU profile of a tandem node over d.
func profile(ctx context.Context, httpAddr string, d time.Duration, path string) error {
	secs := max(1, int(d/time.Second)-1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/debug/pprof/profile?seconds="+strconv.Itoa(secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("commitbench: profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("commitbench: profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	return errors.Join(err, f.Close())
}

// cpuByRole sums, per role, the CPU time that each process and its
// descendants used between the two snapshots (a process missing from
// before started in the window: all its time counts).
func cpuByRole(procs []Process, before, after procSnapshot) []RoleCPU {
	var out []RoleCPU
	for _, p := range procs {
		i := slices.IndexFunc(out, func(r RoleCPU) bool { return r.Role == p.Role })
		if i < 0 {
			out = append(out, RoleCPU{Role: p.Role})
			i = len(out) - 1
		}
		out[i].Processes++
		for _, pid := range after.descendants(p.PID) {
			out[i].CPU += after.cpu[pid] - before.cpu[pid]
		}
	}
	return out
}

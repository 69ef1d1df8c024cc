// Package readbench is `tandem bench reads` (in tandem-bench): what each
// read policy costs and where its reads go, through `tandem proxy`, under
// a steady write load, with and without follower lag.
//
// For each lag (--lags, default 0 and 50ms: every node runs with
// `--buggify follower-apply-delay=LAG`, which a node obeys only while it
// follows, so the followers apply each entry that long after it arrived,
// whoever leads) a fresh cluster is started: 3 nodes under the control
// plane, one orchestrator, one proxy, commit mode --mode (async by
// default: a follower's acknowledgements then do not wait for its delayed
// apply, so the write load stays the same with lag). --keys keys are
// loaded.
//
// The load runs without a break for the whole lag, on connections opened
// once: --writers connections write --write-rate SET/s in all (policy
// leader; a writer that falls behind sends what is due in one pipeline,
// so the rate holds while the cluster can take it: with one SET at a
// time the rate fell to whatever 50 connections' latency allowed, and
// with it differently for each policy), and --clients sessions, each with
// one connection per policy, read (GET of a random loaded key) as fast as
// they can on the connection of the policy in force, and write their own
// key every --session-write under it (what its ryw reads must then see:
// the read right after each write is of that key, and one that does not
// see the write is counted as stale, expected under any and bounded with
// lag, never under leader, ryw, monotonic and linearizable).
//
// The policy in force changes by windows of --duration/--rounds, each
// after --settle not counted (the reads in flight of the window before
// finish, the proxy's state turns over), in this order: W, then any, P1,
// any, P2, ..., any, Pn, any, ... with P1..Pn the other policies and W a
// window with no reads (the sessions idle, the writes go on) once at
// the start, the others rotated each round, --rounds rounds. Every window
// of a policy thus has a window of any just before and just after it. What a
// window of P costs against any is its reads/s against the mean of its two
// neighbours' (which cancels a load that rises or falls steadily across
// the three), and the figure reported is the median over the rounds with
// its quartiles, judged against a target by a 95% interval of the median
// (medianCI): on a shared 2-core machine at load 20-30 a window's reads/s
// moved up to 10x within seconds (the client, the proxy and three nodes
// compete for the CPU with everything else), so only windows a fraction
// of a second apart compare, and only many of them.
//
// CPU per read is from each process's threads' time on a CPU
// (/proc/PID/task/*/schedstat, in ns; procCPU) over each window.
// The cluster's (the proxy and every node) is the window's CPU over its
// reads, the steady writes' included (readCPU says why they are not
// subtracted), and compared with the any windows' around it; the
// leader's is its CPU less the writes' cost per write in the any windows
// around it when followers served all their reads there (the leader did
// only writes then, at the same read load). The session's own writes (one
// a second each) are part of what its reads cost. The client's CPU per
// read (this process) is printed too: it runs on the same cores.
//
// It prints per lag and policy: reads/s, the share of reads served by
// followers (the proxy's per-node read counters), read p50/p99 (at the
// client), writes/s achieved, read errors, CPU per read (leader, cluster,
// client) and the ratios the targets are about: the leader's CPU per read
// against policy leader's (any, ryw, monotonic: at most 0.20), and ryw's
// and linearizable's throughput lost against any's (at most 10% and 25%).
package readbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/tools/tandembin"
)

// Options is one run.
type Options struct {
	Policies  []string // "leader", "any", "ryw", "monotonic", "bounded 50", "linearizable"; any is added if missing
	Lags      []time.Duration
	Clients   int
	Writers   int // connections carrying the write load
	WriteRate int // SET/s of the writers together
	// SessionWrite is how often each reading session writes its own key
	// (what its ryw reads must then see); 0: never.
	SessionWrite time.Duration
	// Duration is each policy's measured time per lag, in Rounds windows
	// of Duration/Rounds (see the package comment).
	Duration time.Duration
	Rounds   int
	// Warmup is the load before the first window (policy any), Settle the
	// start of every window, neither counted.
	Warmup, Settle time.Duration
	Keys           int
	Mode           string
	// ProxyArgs are extra flags for the proxy (e.g. --conns-per-node).
	ProxyArgs []string
	Dir       string
	Keep      bool
	// BasePort, if not 0, is the proxy's RESP port: node i gets
	// BasePort+i, the HTTP ports (/metrics) are 200 above (cluster.Config).
	BasePort int
	Out      io.Writer
	Log      *slog.Logger
}

// DefaultPolicies are the policies the targets name, in order.
var DefaultPolicies = []string{"leader", "any", "ryw", "monotonic", "bounded 50", "linearizable"}

// NewCommand is `bench reads`.
func NewCommand() *cobra.Command {
	o := Options{}
	var policies string
	cmd := &cobra.Command{
		Use:   "reads",
		Short: "Read policies through the proxy under a steady write load, with and without follower lag",
		Long: "For each read policy, reads/s, the share of reads served by followers, read p50/p99, " +
			"and the CPU per read, under --write-rate SET/s with and without injected follower lag " +
			"(--buggify follower-apply-delay), through tandem proxy; each policy's windows alternate with any's " +
			"and the ratios against the targets are medians over the rounds.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Policies = nil
			for _, p := range strings.Split(policies, ",") {
				if p = strings.TrimSpace(p); p != "" {
					o.Policies = append(o.Policies, p)
				}
			}
			o.Out = cmd.OutOrStdout()
			o.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&policies, "policies", strings.Join(DefaultPolicies, ","), "read policies, comma-separated (bounded takes its bound in ms: \"bounded 50\"); any is always run, the others are compared with it")
	f.DurationSliceVar(&o.Lags, "lags", []time.Duration{0, 50 * time.Millisecond}, "follower apply delays, one cluster each (0: none)")
	f.IntVar(&o.Clients, "clients", 50, "reading sessions, each with a proxy connection per policy")
	f.IntVar(&o.Writers, "writers", 50, "connections carrying the write load (policy leader)")
	f.IntVar(&o.WriteRate, "write-rate", 5000, "SET/s of the writers together (rate-limited; a writer behind pipelines what is due)")
	f.DurationVar(&o.SessionWrite, "session-write", time.Second, "each reading session also writes its own key this often, under its policy (0: never)")
	f.DurationVar(&o.Duration, "duration", 15*time.Second, "measured time per policy and lag, in --rounds windows of duration/rounds")
	f.IntVar(&o.Rounds, "rounds", 30, "rounds per lag: one window of each policy per round, each between two of any's; ratios against any are the median of the rounds'")
	f.DurationVar(&o.Warmup, "warmup", 2*time.Second, "load before the first window, not counted")
	f.DurationVar(&o.Settle, "settle", 200*time.Millisecond, "start of every window, not counted (reads in flight finish: a waiting read at most a node's --read-wait)")
	f.IntVar(&o.Keys, "keys", 10000, "keys loaded before the runs; reads GET a random one")
	f.StringVar(&o.Mode, "mode", "async", "commit mode of the cluster")
	f.StringSliceVar(&o.ProxyArgs, "proxy-args", nil, "extra flags for the proxy, e.g. --proxy-args=--conns-per-node=16")
	f.StringVar(&o.Dir, "dir", "", "directory for the clusters (default: a temp dir, removed after)")
	f.BoolVar(&o.Keep, "keep", false, "keep the clusters' data and logs")
	f.IntVar(&o.BasePort, "base-port", 0, "the proxy's RESP port, node i's BasePort+i, their HTTP (/metrics) ports 200 above (0: free ports); one lag's cluster at a time uses them")
	return cmd
}

// Run runs every lag and policy and prints the tables.
func Run(ctx context.Context, o Options) error {
	if o.Clients <= 0 || o.WriteRate < 0 || o.Writers < 0 || o.SessionWrite < 0 || o.Duration <= 0 || o.Keys <= 0 || len(o.Policies) == 0 || o.Rounds <= 0 || o.Warmup < 0 || o.Settle < 0 {
		return errors.New("bench reads: --clients, --duration, --keys, --rounds and --policies must be positive, --writers, --write-rate, --session-write, --warmup and --settle not negative")
	}
	if !slices.Contains(o.Policies, "any") {
		// Every policy is measured against any's windows around it.
		o.Policies = append([]string{"any"}, o.Policies...)
	}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tandem-bench-reads-")
		if err != nil {
			return fmt.Errorf("bench reads: %w", err)
		}
		dir = d
	}
	if !o.Keep && o.Dir == "" {
		defer os.RemoveAll(dir)
	}
	per := o.Duration / time.Duration(o.Rounds)
	windows := 2*(len(o.Policies)-1)*o.Rounds + 2
	fmt.Fprintf(o.Out, "tandem bench reads: through tandem proxy, %d writers at %d SET/s in all (rate-limited); %d sessions reading (GET of %d keys) as fast as they go, each writing its own key every %v under its policy; per lag one window of writes alone, then %d rounds of windows of %v (after %v settling), each policy's between two of any's (%d windows, about %v a lag after a %v warm-up); mode %s; load average %s\n",
		o.Writers, o.WriteRate, o.Clients, o.Keys, o.SessionWrite, o.Rounds, per, o.Settle, windows, (time.Duration(windows) * (per + o.Settle)).Round(time.Second), o.Warmup, o.Mode, loadAvg())
	var all []result
	for _, lag := range o.Lags {
		rs, err := runLag(ctx, o, filepath.Join(dir, "lag-"+lag.String()), lag)
		all = append(all, rs...)
		if err != nil {
			report(o.Out, all)
			return err
		}
	}
	report(o.Out, all)
	fmt.Fprintf(o.Out, "load average at the end: %s\n", loadAvg())
	return nil
}

// report prints the table of every run and the ratios against targets.
func report(w io.Writer, rs []result) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-6s %-13s %8s %9s %7s %7s %6s %8s %10s %8s %10s %8s %12s %7s %7s %10s\n",
		"lag", "policy", "reads/s", "followers", "p50 ms", "p99 ms", "SET/s", "leader", "cpu/leader", "rate/any", "rounds/any", "cluster", "range", "cpu/any", "client", "stale/own")
	fmt.Fprintf(w, "%-6s %-13s %8s %9s %7s %7s %6s %8s %10s %8s %10s %8s %12s %7s %7s %10s\n",
		"", "", "", "", "", "", "", "us/rd", "", "", "", "us/rd", "", "", "us/rd", "")
	for _, r := range rs {
		base := find(rs, r.lag, "leader")
		leaderUS, _, _, lok := median(r.leader)
		cpuRatio, rateRatio, spread, sysRatio := "-", "-", "-", "-"
		if b, _, _, ok := medianOf(base, func(r *result) []float64 { return r.leader }); ok && lok && b > 0 {
			cpuRatio = fmt.Sprintf("%.2f", leaderUS/b)
		}
		if r.policy == "any" {
			rateRatio = "1.00"
		} else if med, lo, hi, ok := median(r.ratios); ok {
			rateRatio, spread = fmt.Sprintf("%.2f", med), fmt.Sprintf("%.2f-%.2f", lo, hi)
		}
		sys, sysLo, sysHi, sok := median(r.cluster)
		sysCol, sysRange := "-", "-"
		if sok {
			sysCol, sysRange = fmt.Sprintf("%.1f", sys), fmt.Sprintf("%.0f-%.0f", sysLo, sysHi)
			if r.dropped > 0 {
				sysRange += fmt.Sprintf(" -%d", r.dropped)
			}
		}
		if r.policy == "any" {
			sysRatio = "1.00"
		} else if v, _, _, ok := median(r.cpuRatios); ok {
			sysRatio = fmt.Sprintf("%.2f", v)
		}
		client, _, _, _ := median(r.client)
		fmt.Fprintf(w, "%-6s %-13s %8.0f %8.1f%% %7.2f %7.2f %6.0f %8.1f %10s %8s %10s %8s %12s %7s %7.1f %10s\n", r.lag, r.policy, r.readRate(), 100*r.follower,
			ms(r.p50), ms(r.p99), float64(r.writes)/r.secs, leaderUS, cpuRatio, rateRatio, spread, sysCol, sysRange, sysRatio, client, fmt.Sprintf("%d/%d", r.stale, r.ownReads))
	}
	fmt.Fprintln(w, "\nrate/any: the median over the rounds of a window's reads/s against the mean of the two any windows around it,")
	fmt.Fprintln(w, "rounds/any their middle half (quartiles); leader, cluster (proxy and nodes) and client us/rd: the median over the windows of the CPU per read,")
	fmt.Fprintln(w, "the leader's less what the writes cost it in the any windows around, the cluster's and client's with the steady writes'")
	fmt.Fprintln(w, "(range: the cluster's quartiles, -N: windows without reads); cpu/leader: the leader's against policy leader's;")
	fmt.Fprintln(w, "cpu/any: the median of a window's cluster us/rd against the any windows' around it. Targets:")
	for _, lag := range lags(rs) {
		base, anyR := find(rs, lag, "leader"), find(rs, lag, "any")
		for _, pol := range []string{"any", "ryw", "monotonic"} {
			r := find(rs, lag, pol)
			b, _, _, bok := medianOf(base, func(r *result) []float64 { return r.leader })
			v, _, _, ok := medianOf(r, func(r *result) []float64 { return r.leader })
			if !ok || !bok || b <= 0 {
				continue
			}
			// Judged as the throughput costs are: by the 95% interval of
			// the windows' median (the baseline's median taken as exact;
			// it is the largest figure, so the least noisy in relative
			// terms).
			v2, ci := verdict(v/b <= 0.20)+" (fewer than 6 windows: no interval)", ""
			if lo, hi, ok := medianCI(r.leader); ok {
				v2, ci = ceilingVerdict(lo/b, hi/b, 0.20), fmt.Sprintf(" (95%% interval of the median %.2f to %.2f)", lo/b, hi/b)
			}
			fmt.Fprintf(w, "  lag %-6s %-12s leader CPU per read %.2fx leader-only's%s, target <= 0.20: %s\n", lag, pol, v/b, ci, v2)
		}
		for _, t := range []struct {
			pol  string
			cost float64
		}{{"ryw", 0.10}, {"linearizable", 0.25}} {
			r := find(rs, lag, t.pol)
			if r == nil || anyR == nil {
				continue
			}
			med, q1, q3, lo, hi, ok := spread(r.ratios)
			if !ok {
				continue
			}
			cost := 1 - med
			v, ci := verdict(cost <= t.cost)+" (fewer than 6 windows: no interval)", ""
			if cl, ch, ok := medianCI(r.ratios); ok {
				v, ci = costVerdict(cl, ch, t.cost), fmt.Sprintf("95%% interval of the median %.0f%% to %.0f%%; ", 100*(1-ch), 100*(1-cl))
			}
			fmt.Fprintf(w, "  lag %-6s %-12s costs %.0f%% of any's throughput (median of %d windows each between two of any's; %smiddle half %.0f%% to %.0f%%, all %.0f%% to %.0f%%), target <= %.0f%%: %s\n",
				lag, t.pol, 100*cost, len(r.ratios), ci, 100*(1-q3), 100*(1-q1), 100*(1-hi), 100*(1-lo), 100*t.cost, v)
		}
		if anyR != nil {
			if med, q1, q3, lo, hi, ok := spread(anyR.noise); ok {
				ci := ""
				if cl, ch, ok := medianCI(anyR.noise); ok {
					ci = fmt.Sprintf("95%% interval of the median %.0f%% to %.0f%%; ", 100*(1-ch), 100*(1-cl))
				}
				fmt.Fprintf(w, "  lag %-6s any's noise: an any window against the two any windows around it costs %.0f%% (median of %d; %smiddle half %.0f%% to %.0f%%, all %.0f%% to %.0f%%): the width a policy that costs nothing would get, not a target\n",
					lag, 100*(1-med), len(anyR.noise), ci, 100*(1-q3), 100*(1-q1), 100*(1-hi), 100*(1-lo))
			}
		}
	}
}

// medianOf is median(f(r)), false for a nil r.
func medianOf(r *result, f func(*result) []float64) (med, lo, hi float64, ok bool) {
	if r == nil {
		return 0, 0, 0, false
	}
	return median(f(r))
}

func verdict(ok bool) string {
	if ok {
		return "MET"
	}
	return "MISSED"
}

func find(rs []result, lag time.Duration, pol string) *result {
	for i := range rs {
		if rs[i].lag == lag && rs[i].policy == pol {
			return &rs[i]
		}
	}
	return nil
}

func lags(rs []result) []time.Duration {
	var out []time.Duration
	for _, r := range rs {
		if !slices.Contains(out, r.lag) {
			out = append(out, r.lag)
		}
	}
	return out
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// writeOnly is the policy index of a W window: no reads, the writes go on.
const writeOnly = -1

// window is a stretch of the load under one policy (or writeOnly). The
// workers count what they started in it; the controller sets the rest.
type window struct {
	pol     int  // index in the run's policies, or writeOnly
	counted bool // measured (not warm-up or settle)
	round   int
	done    chan struct{} // closed when the next window begins

	reads, writes, sessWrites, errs atomic.Int64
	ownReads, stale                 atomic.Int64

	mu       sync.Mutex
	lat      []time.Duration
	firstErr string

	// Set by the controller after the window.
	secs    float64
	cpu     cpuSample // CPU seconds over the window, by process
	routing map[string]uint64
}

func (w *window) fail(err error) {
	w.errs.Add(1)
	w.mu.Lock()
	if w.firstErr == "" {
		w.firstErr = err.Error()
	}
	w.mu.Unlock()
}

func (w *window) rate() float64 {
	if w.secs <= 0 {
		return 0
	}
	return float64(w.reads.Load()) / w.secs
}

// cpuSample is CPU time by process: the leader, the followers together,
// the proxy and this process (the client); and the read and write system
// calls of the proxy and the nodes (/proc/PID/io syscr, syscw: read(2),
// write(2) and their kin, a Go netpoller's EAGAIN reads included), which
// say how many requests share a system call.
type cpuSample struct {
	leader, followers, proxy, client float64
	sys                              sysCalls
}

// sysCalls are read and write system calls by process.
type sysCalls struct{ proxy, leader, followers [2]float64 }

func (c cpuSample) sub(d cpuSample) cpuSample {
	return cpuSample{c.leader - d.leader, c.followers - d.followers, c.proxy - d.proxy, c.client - d.client, c.sys.add(d.sys, -1)}
}

func (s sysCalls) add(d sysCalls, sign float64) sysCalls {
	for i := range 2 {
		s.proxy[i] += sign * d.proxy[i]
		s.leader[i] += sign * d.leader[i]
		s.followers[i] += sign * d.followers[i]
	}
	return s
}

// cluster is the CPU of the proxy and every node.
func (c cpuSample) cluster() float64 { return c.leader + c.followers + c.proxy }

// procs are the processes a run samples.
type procs struct {
	leader, proxy int
	followers     []int
}

func (p procs) sample() cpuSample {
	s := cpuSample{
		leader: procCPU(p.leader).Seconds(),
		proxy:  procCPU(p.proxy).Seconds(),
		client: procCPU(os.Getpid()).Seconds(),
	}
	s.sys.leader, s.sys.proxy = procIO(p.leader), procIO(p.proxy)
	for _, f := range p.followers {
		s.followers += procCPU(f).Seconds()
		io := procIO(f)
		s.sys.followers[0] += io[0]
		s.sys.followers[1] += io[1]
	}
	return s
}

// load is the load of one lag: the writers and the sessions, started once,
// following the window in force.
type load struct {
	o        Options
	addr     string
	policies []string
	cur      atomic.Pointer[window]
	stop     chan struct{}
	wg       sync.WaitGroup
	start    time.Time
	setupErr chan error
}

// conn is one connection under policy p.
func (l *load) conn(ctx context.Context, p string) (*redis.Client, error) {
	cl := redis.NewClient(&redis.Options{Addr: l.addr, PoolSize: 1, MaxRetries: -1,
		ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	args := []any{"TANDEM.READPOLICY"}
	for _, f := range strings.Fields(p) {
		args = append(args, f)
	}
	if err := cl.Do(ctx, args...).Err(); err != nil {
		cl.Close()
		return nil, fmt.Errorf("bench reads: TANDEM.READPOLICY %s: %w", p, err)
	}
	return cl, nil
}

// begin sets window w in force, closing the one before.
func (l *load) begin(w *window) {
	w.done = make(chan struct{})
	if old := l.cur.Swap(w); old != nil {
		close(old.done)
	}
}

// run starts the workers in window first and returns once every
// connection is open (or one failed).
func (l *load) run(ctx context.Context, first *window) error {
	l.stop = make(chan struct{})
	l.setupErr = make(chan error, l.o.Clients+l.o.Writers)
	l.start = time.Now()
	l.begin(first)
	var ready sync.WaitGroup
	if l.o.WriteRate > 0 && l.o.Writers > 0 {
		interval := time.Duration(float64(time.Second) * float64(l.o.Writers) / float64(l.o.WriteRate))
		for i := range l.o.Writers {
			l.wg.Add(1)
			ready.Add(1)
			go l.writer(ctx, i, interval, &ready)
		}
	}
	for i := range l.o.Clients {
		l.wg.Add(1)
		ready.Add(1)
		go l.session(ctx, i, &ready)
	}
	ready.Wait()
	select {
	case err := <-l.setupErr:
		l.halt()
		return err
	default:
		return nil
	}
}

// halt stops the workers and waits for them.
func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// writer writes "rb:w:<i>" every interval on its own connection (policy
// leader). Behind (the reply came later than the next write was due), it
// sends every write due in one pipeline (at most a second's worth; older
// ones are dropped), so the rate holds while the cluster can carry it.
func (l *load) writer(ctx context.Context, i int, interval time.Duration, ready *sync.WaitGroup) {
	defer l.wg.Done()
	cl, err := l.conn(ctx, "leader")
	ready.Done()
	if err != nil {
		l.setupErr <- err
		return
	}
	defer cl.Close()
	key := "rb:w:" + strconv.Itoa(i)
	rng := rand.New(rand.NewPCG(uint64(i), uint64(l.start.UnixNano())))
	next := time.Now().Add(time.Duration(rng.Int64N(int64(max(interval, 1)))))
	maxDue := max(1, int(time.Second/max(interval, 1)))
	timer := time.NewTimer(0)
	defer timer.Stop()
	var seq int
	for {
		now := time.Now()
		if now.Before(next) {
			timer.Reset(next.Sub(now))
			select {
			case <-l.stop:
				return
			case <-timer.C:
			}
			continue
		}
		select {
		case <-l.stop:
			return
		default:
		}
		due := 1 + int(now.Sub(next)/interval)
		if due > maxDue {
			next = next.Add(time.Duration(due-maxDue) * interval)
			due = maxDue
		}
		w := l.cur.Load()
		if due == 1 {
			seq++
			if err := cl.Set(ctx, key, seq, 0).Err(); err != nil {
				w.fail(err)
			} else {
				w.writes.Add(1)
			}
		} else {
			p := cl.Pipeline()
			for range due {
				seq++
				p.Set(ctx, key, seq, 0)
			}
			cmds, _ := p.Exec(ctx)
			for _, c := range cmds {
				if err := c.Err(); err != nil {
					w.fail(err)
				} else {
					w.writes.Add(1)
				}
			}
		}
		next = next.Add(time.Duration(due) * interval)
	}
}

// session reads as fast as it goes on the connection of the policy in
// force and writes "rb:s:<i>" every SessionWrite under it; in a W window
// it does nothing.
func (l *load) session(ctx context.Context, i int, ready *sync.WaitGroup) {
	defer l.wg.Done()
	conns := make([]*redis.Client, len(l.policies))
	var err error
	for j, p := range l.policies {
		if conns[j], err = l.conn(ctx, p); err != nil {
			break
		}
	}
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	ready.Done()
	if err != nil {
		l.setupErr <- err
		return
	}
	key := "rb:s:" + strconv.Itoa(i)
	interval := l.o.SessionWrite
	rng := rand.New(rand.NewPCG(uint64(i), uint64(l.start.UnixNano())))
	// Writes start spread over one interval.
	next := time.Now().Add(time.Duration(rng.Int64N(int64(max(interval, 1)))))
	var (
		w     *window
		my    []time.Duration
		seq   int
		check bool // the next read is of the session's own key, just written
	)
	flush := func() {
		if w != nil && len(my) > 0 {
			w.mu.Lock()
			w.lat = append(w.lat, my...)
			w.mu.Unlock()
		}
		my = my[:0]
	}
	defer flush()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		if nw := l.cur.Load(); nw != w {
			flush()
			w, check = nw, false // a write under the policy before is not this one's to check
		}
		if w.pol == writeOnly {
			select {
			case <-l.stop:
				return
			case <-w.done:
			}
			continue
		}
		cl := conns[w.pol]
		now := time.Now()
		if interval > 0 && !now.Before(next) {
			seq++
			if err := cl.Set(ctx, key, seq, 0).Err(); err != nil {
				w.fail(err)
			} else {
				w.sessWrites.Add(1)
				check = true
			}
			next = next.Add(interval)
			if next.Before(now.Add(-interval)) {
				next = now // fell behind (a W window): no burst to catch up
			}
			continue
		}
		t0 := time.Now()
		if check {
			// The read right after the session's write is of what it
			// wrote: the case read-your-writes is about, measured with
			// the others, and checked.
			check = false
			v, err := cl.Get(ctx, key).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				w.fail(err)
				continue
			}
			if w.counted {
				my = append(my, time.Since(t0))
			}
			w.reads.Add(1)
			w.ownReads.Add(1)
			if v != strconv.Itoa(seq) {
				w.stale.Add(1)
			}
			continue
		}
		err := cl.Get(ctx, "rb:k:"+strconv.Itoa(rng.IntN(l.o.Keys))).Err()
		if err != nil && !errors.Is(err, redis.Nil) {
			w.fail(err)
			continue
		}
		if w.counted {
			my = append(my, time.Since(t0))
		}
		w.reads.Add(1)
	}
}

// schedule is the order of a lag's counted windows (policy indexes),
// each of others between two of any's: any, X1, any, X2, ..., any, Xn,
// any, ..., the others rotated by one each round so that none always
// runs at the same point of a round.
func schedule(anyIdx int, others []int, rounds int) []int {
	var out []int
	for r := range rounds {
		for j := range others {
			out = append(out, anyIdx, others[(r+j)%len(others)])
		}
	}
	return append(out, anyIdx)
}

func runLag(ctx context.Context, o Options, dir string, lag time.Duration) ([]result, error) {
	exe, err := tandembin.Path()
	if err != nil {
		return nil, fmt.Errorf("bench reads: %w", err)
	}
	args := []string{"--log-level", "warn", "--mode", o.Mode}
	if lag > 0 {
		args = append(args, "--buggify", "follower-apply-delay="+lag.String())
	}
	c, err := cluster.Start(ctx, cluster.Config{
		Binary: exe, Dir: dir, Nodes: 3, ControlPlane: true, Orchestrators: 1, Proxy: true, BasePort: o.BasePort,
		ServerArgs: args, OrchestratorArgs: []string{"--log-level", "warn", "--mode", o.Mode},
		ProxyArgs: append([]string{"--log-level", "warn"}, o.ProxyArgs...),
	}, o.Log)
	if err != nil {
		return nil, fmt.Errorf("bench reads: start cluster: %w", err)
	}
	defer c.Stop()
	px, _ := c.Proxy()
	leader, err := c.WaitLeader(ctx, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("bench reads: %w", err)
	}
	admin := redis.NewClient(&redis.Options{Addr: px.RESPAddr, MaxRetries: -1})
	defer admin.Close()
	if err := waitReady(ctx, admin, c); err != nil {
		return nil, err
	}
	if err := loadKeys(ctx, admin, o.Keys); err != nil {
		return nil, err
	}
	leaderName := c.Node(leader).Name
	ps := procs{leader: c.Node(leader).PID, proxy: px.PID}
	for _, n := range c.Nodes() {
		if n.ID != leader {
			ps.followers = append(ps.followers, n.PID)
		}
	}
	fmt.Fprintf(o.Out, "\nlag %v: leader %s (pid %d), proxy %s; load average %s\n", lag, leaderName, ps.leader, px.RESPAddr, loadAvg())

	anyIdx := slices.Index(o.Policies, "any")
	var others []int
	for i := range o.Policies {
		if i != anyIdx {
			others = append(others, i)
		}
	}
	per := max(100*time.Millisecond, o.Duration/time.Duration(o.Rounds))
	l := &load{o: o, addr: px.RESPAddr, policies: o.Policies}
	if err := l.run(ctx, &window{pol: anyIdx}); err != nil {
		return nil, err
	}
	stopped := false
	defer func() {
		if !stopped {
			l.halt()
		}
	}()
	if err := sleep(ctx, o.Warmup); err != nil {
		return nil, err
	}
	// One window with no reads first: what the steady writes cost alone
	// (printed; not subtracted from the reads', see readCPU).
	wo, err := runWindow(ctx, l, admin, ps, writeOnly, -1, o.Settle, per)
	if err != nil {
		return nil, err
	}
	sched := schedule(anyIdx, others, o.Rounds)
	var wins []*window
	perRound := 2 * len(others)
	for k, pol := range sched {
		round := min(k/max(1, perRound), o.Rounds-1)
		w, err := runWindow(ctx, l, admin, ps, pol, round, o.Settle, per)
		if err != nil {
			return nil, err
		}
		wins = append(wins, w)
		if k == len(sched)-1 || ((k+1)%perRound == 0 && k != len(sched)-2) {
			fmt.Fprintf(o.Out, "  round %d/%d (reads/s): %s; load average %s\n", round+1, o.Rounds, roundLine(o.Policies, wins[round*perRound:]), loadAvg())
		}
	}
	l.halt()
	stopped = true
	if n := wo.writes.Load(); wo.secs > 0 && n > 0 {
		fmt.Fprintf(o.Out, "  writes alone (the first window, no reads): %.0f SET/s, leader %.1f%% of a core (%.1f us/SET), proxy and nodes %.1f%% (%.1f us/SET)\n",
			float64(n)/wo.secs, 100*wo.cpu.leader/wo.secs, 1e6*wo.cpu.leader/float64(n), 100*wo.cpu.cluster()/wo.secs, 1e6*wo.cpu.cluster()/float64(n))
	}
	out := summarize(o.Policies, lag, leaderName, wins)
	for _, r := range out {
		fmt.Fprintf(o.Out, "  %-13s %9.0f reads/s  followers %5.1f%%  p50 %7.2f ms  p99 %7.2f ms  %6.0f SET/s  errors %d%s\n",
			r.policy, r.readRate(), 100*r.follower, ms(r.p50), ms(r.p99), float64(r.writes)/r.secs, r.readErrs, errNote(r.firstErr))
		fmt.Fprintf(o.Out, "  %-13s own writes read back %d, stale %d; routing: %s\n", "", r.ownReads, r.stale, routing(map[string]uint64{}, r.routing))
		if r.reads > 0 {
			per := func(sec float64) float64 { return sec / float64(r.reads) * 1e6 }
			fmt.Fprintf(o.Out, "  %-13s CPU per read, writes' included: proxy %.1f us, leader %.1f us, followers %.1f us, client %.1f us\n", "",
				per(r.cpu.proxy), per(r.cpu.leader), per(r.cpu.followers), per(r.cpu.client))
			rw := func(c [2]float64) string {
				return fmt.Sprintf("%.2f+%.2f", c[0]/float64(r.reads), c[1]/float64(r.reads))
			}
			fmt.Fprintf(o.Out, "  %-13s system calls per read (read+write), writes' included: proxy %s, leader %s, followers %s\n", "",
				rw(r.cpu.sys.proxy), rw(r.cpu.sys.leader), rw(r.cpu.sys.followers))
		}
	}
	if id, _, err := c.Leader(ctx); err == nil && id != leader {
		fmt.Fprintf(o.Out, "  WARNING: the leader changed during the run (n%d -> n%d): the CPU figures are wrong\n", leader, id)
	}
	return out, nil
}

// runWindow runs one window of policy pol (or writeOnly): settle, not
// counted, then d counted, with the CPU and the proxy's counters over it.
func runWindow(ctx context.Context, l *load, admin *redis.Client, ps procs, pol, round int, settle, d time.Duration) (*window, error) {
	l.begin(&window{pol: pol, round: round})
	if err := sleep(ctx, settle); err != nil {
		return nil, err
	}
	before, err := proxyInfo(ctx, admin)
	if err != nil {
		return nil, err
	}
	w := &window{pol: pol, round: round, counted: true}
	t0, cpu0 := time.Now(), ps.sample()
	l.begin(w)
	if err := sleep(ctx, d); err != nil {
		return nil, err
	}
	w.cpu, w.secs = ps.sample().sub(cpu0), time.Since(t0).Seconds()
	after, err := proxyInfo(ctx, admin)
	if err != nil {
		return nil, err
	}
	w.routing = make(map[string]uint64, len(after))
	for k, n := range after {
		w.routing[k] = n - before[k]
	}
	return w, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// roundLine is a round's windows' reads/s, for the progress lines.
func roundLine(policies []string, ws []*window) string {
	var parts []string
	for _, w := range ws {
		if w.pol == writeOnly {
			parts = append(parts, fmt.Sprintf("W (%.0f SET/s)", float64(w.writes.Load())/w.secs))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", policies[w.pol], w.rate()))
	}
	return strings.Join(parts, ", ")
}

// result is one policy's windows at one lag, summed, with the per-window
// figures the medians are taken of.
type result struct {
	policy        string
	lag           time.Duration
	reads, writes int64 // writes: the steady load's, not the sessions'
	sessWrites    int64
	readErrs      int64
	// ownReads are the reads right after one of the session's writes, of
	// the key it wrote; stale those that did not see the write.
	ownReads, stale int64
	secs            float64
	follower        float64 // share of reads followers served
	// fromAll and fromLeader are the reads the proxy counted per node,
	// in all and by the leader.
	fromAll, fromLeader uint64
	p50, p99            time.Duration
	cpu                 cpuSample // CPU seconds over the windows, writes' included
	lat                 []time.Duration
	routing             map[string]uint64
	firstErr            string
	// ratios are each window's reads/s against the mean of the any
	// windows on either side of it (pairedRatio), in order.
	ratios []float64
	// cluster, leader and client are each window's CPU per read in µs
	// (readCPU; the leader's less the writes', see summarize): what the
	// medians are of; cpuRatios each window's cluster figure against the
	// any windows' around it. A window without reads is left out,
	// counted in dropped.
	cluster, leader, client, cpuRatios []float64
	dropped                            int
	// noise (any's alone) are each any window's reads/s against the mean
	// of the any windows two windows before and after it, as a policy's
	// ratios are against the two around it: what a policy that costs
	// nothing would get, i.e. how wide the run's intervals are from
	// any's own window-to-window noise (reported, never judged).
	noise []float64
}

func (r result) readRate() float64 {
	if r.secs <= 0 {
		return 0
	}
	return float64(r.reads) / r.secs
}

// readCPU is the CPU per read, in µs, of a window that took cpu seconds
// over reads reads, the steady writes' CPU included: never empty (ok is
// false only for a window without reads or CPU) and never negative. The
// writes' share is not subtracted: what they cost depends on the read
// load beside them (alone, 5,000 SET/s cost the proxy and nodes ~190 µs
// a write, 95% of a core at lag 0, more than the whole cluster spent under
// any's reads with the same writes: a lightly loaded process wakes and
// spins for each message, a busy one batches), so a subtraction of the
// writes alone left nothing at 50 ms lag. Policies are compared at the
// same write rate instead: a window's figure against any's around it
// (pairedRatio), the difference being what the policy's reads cost more.
func readCPU(cpu float64, reads int64) (us float64, ok bool) {
	if reads <= 0 || cpu <= 0 {
		return 0, false
	}
	return cpu / float64(reads) * 1e6, true
}

// pairedRatio is a window's reads/s against the mean of the two any
// windows around it (before and after): a load on the machine that rises
// or falls steadily over the three moves both sides alike. ok is false
// when the any windows read nothing.
func pairedRatio(rate, anyBefore, anyAfter float64) (float64, bool) {
	m := (anyBefore + anyAfter) / 2
	if m <= 0 {
		return 0, false
	}
	return rate / m, true
}

// median is s's median and its quartiles (the middle half of the values
// lies between q1 and q3; nearest rank), and its lowest and highest; ok
// is false for no values. The quartiles, not the extremes, are the
// spread printed: a window or two in which the machine stalled moves the
// extremes of 30 windows, not the quartiles.
func median(s []float64) (med, q1, q3 float64, ok bool) {
	med, q1, q3, _, _, ok = spread(s)
	return med, q1, q3, ok
}

// spread is median's, with the lowest and highest value.
func spread(s []float64) (med, q1, q3, lo, hi float64, ok bool) {
	if len(s) == 0 {
		return 0, 0, 0, 0, 0, false
	}
	s = slices.Clone(s)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		med = s[n/2]
	} else {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	q := (n - 1) / 4
	return med, s[q], s[n-1-q], s[0], s[n-1], true
}

// medianCI is a 95% confidence interval of the median of the
// distribution s was drawn from, free of its shape: the k-th lowest and
// k-th highest values, k = (n - 1.96·√n) / 2 rounded down (the sign
// test's bound). ok is false for fewer than 6 values (k would be 0).
func medianCI(s []float64) (lo, hi float64, ok bool) {
	n := len(s)
	k := int((float64(n) - 1.96*math.Sqrt(float64(n))) / 2)
	if k < 1 {
		return 0, 0, false
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s[k-1], s[n-k], true
}

// costVerdict says whether a policy whose throughput against any's has
// the 95% interval lo..hi (from medianCI) costs at most limit: MET or
// MISSED when the whole interval is on one side, else not resolved by
// this run (more --rounds narrow the interval).
func costVerdict(lo, hi, limit float64) string {
	switch {
	case 1-lo <= limit:
		return "MET"
	case 1-hi > limit:
		return "MISSED"
	default:
		return "NOT RESOLVED (the interval spans the target)"
	}
}

// ceilingVerdict says whether a figure whose median has the 95% interval
// lo..hi is at most limit: MET or MISSED when the whole interval is on
// one side, else not resolved by this run.
func ceilingVerdict(lo, hi, limit float64) string {
	switch {
	case hi <= limit:
		return "MET"
	case lo > limit:
		return "MISSED"
	default:
		return "NOT RESOLVED (the interval spans the target)"
	}
}

// summarize sums a lag's counted windows by policy (in the order of
// policies) and takes each window's paired ratios and CPU per read.
func summarize(policies []string, lag time.Duration, leaderName string, wins []*window) []result {
	anyIdx := policyIndex(policies, "any")
	acc := map[int]*result{}
	share := func(win *window) (follower float64, all, fromLeader uint64) {
		for k, n := range win.routing {
			id, ok := strings.CutPrefix(k, "reads_node_")
			if !ok {
				continue
			}
			all += n
			if id == leaderName {
				fromLeader += n
			}
		}
		if all > 0 {
			follower = 1 - float64(fromLeader)/float64(all)
		}
		return follower, all, fromLeader
	}
	// near are the any windows around window k (k itself for one of
	// any's); ok false at the ends.
	near := func(k int) ([]*window, bool) {
		if wins[k].pol == anyIdx {
			return wins[k : k+1], true
		}
		if k > 0 && k+1 < len(wins) && wins[k-1].pol == anyIdx && wins[k+1].pol == anyIdx {
			return wins[k-1 : k+2 : k+2], true
		}
		return nil, false
	}
	// leaderPerWrite is the leader's CPU per write of the steady load in
	// the any windows around window k, when followers served (nearly)
	// all their reads: the leader then did only the writes, under the
	// same read load (a leader with no reads beside spends more per
	// write). ok is false otherwise.
	leaderPerWrite := func(k int) (float64, bool) {
		ws, ok := near(k)
		if !ok {
			return 0, false
		}
		var cpu float64
		var writes int64
		for _, a := range ws {
			if a.pol != anyIdx {
				continue
			}
			if f, _, _ := share(a); f < 0.99 {
				return 0, false
			}
			cpu += a.cpu.leader
			writes += a.writes.Load()
		}
		if writes == 0 {
			return 0, false
		}
		return cpu / float64(writes), true
	}
	for k, win := range wins {
		r := acc[win.pol]
		if r == nil {
			r = &result{policy: policies[win.pol], lag: lag, routing: map[string]uint64{}}
			acc[win.pol] = r
		}
		reads, writes := win.reads.Load(), win.writes.Load()
		r.reads += reads
		r.writes += writes
		r.sessWrites += win.sessWrites.Load()
		r.readErrs += win.errs.Load()
		r.ownReads += win.ownReads.Load()
		r.stale += win.stale.Load()
		r.secs += win.secs
		r.cpu = cpuSample{r.cpu.leader + win.cpu.leader, r.cpu.followers + win.cpu.followers, r.cpu.proxy + win.cpu.proxy, r.cpu.client + win.cpu.client, r.cpu.sys.add(win.cpu.sys, 1)}
		_, all, fromLeader := share(win)
		r.fromAll += all
		r.fromLeader += fromLeader
		for key, n := range win.routing {
			r.routing[key] += n
		}
		if r.firstErr == "" {
			r.firstErr = win.firstErr
		}
		win.mu.Lock()
		r.lat = append(r.lat, win.lat...)
		win.mu.Unlock()
		if win.pol == anyIdx && k >= 2 && k+2 < len(wins) && wins[k-2].pol == anyIdx && wins[k+2].pol == anyIdx {
			if v, ok := pairedRatio(win.rate(), wins[k-2].rate(), wins[k+2].rate()); ok {
				r.noise = append(r.noise, v)
			}
		}
		ws, paired := near(k)
		paired = paired && win.pol != anyIdx
		if paired {
			// A window without reads (every session stuck) counts: 0.
			if v, ok := pairedRatio(win.rate(), ws[0].rate(), ws[2].rate()); ok {
				r.ratios = append(r.ratios, v)
			}
		}
		sys, ok := readCPU(win.cpu.cluster(), reads)
		if !ok {
			r.dropped++
			continue
		}
		r.cluster = append(r.cluster, sys)
		if c, ok := readCPU(win.cpu.client, reads); ok {
			r.client = append(r.client, c)
		}
		if pw, ok := leaderPerWrite(k); ok {
			// The leader may do nothing for reads (any): 0.
			r.leader = append(r.leader, max(0, win.cpu.leader-pw*float64(writes))/float64(reads)*1e6)
		}
		if paired {
			a0, ok0 := readCPU(ws[0].cpu.cluster(), ws[0].reads.Load())
			a2, ok2 := readCPU(ws[2].cpu.cluster(), ws[2].reads.Load())
			if v, ok := pairedRatio(sys, a0, a2); ok && ok0 && ok2 {
				r.cpuRatios = append(r.cpuRatios, v)
			}
		}
	}
	var out []result
	for i := range policies {
		if r := acc[i]; r != nil {
			slices.Sort(r.lat)
			r.p50, r.p99 = pct(r.lat, 0.50), pct(r.lat, 0.99)
			r.lat = nil
			if r.fromAll > 0 {
				r.follower = 1 - float64(r.fromLeader)/float64(r.fromAll)
			}
			out = append(out, *r)
		}
	}
	return out
}

func policyIndex(policies []string, p string) int { return slices.Index(policies, p) }

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + s + ")"
}

// waitReady waits until a write through the proxy is acknowledged and
// every node answers.
func waitReady(ctx context.Context, admin *redis.Client, c *cluster.Cluster) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := admin.Set(ctx, "rb:ready", "1", 0).Err()
		if err == nil {
			ok := true
			for _, n := range c.Nodes() {
				if st, err := c.Status(ctx, n.ID); err != nil || st.Role == "" {
					ok = false
				}
			}
			if ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench reads: cluster not ready after 60 s: %v", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// loadKeys writes rb:k:0..n-1 through the proxy, pipelined.
func loadKeys(ctx context.Context, admin *redis.Client, n int) error {
	for i := 0; i < n; i += 1000 {
		p := admin.Pipeline()
		for j := i; j < min(n, i+1000); j++ {
			p.Set(ctx, "rb:k:"+strconv.Itoa(j), strings.Repeat("v", 100), 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			return fmt.Errorf("bench reads: load keys: %w", err)
		}
	}
	return nil
}

// proxyInfo reads the proxy's counters (INFO proxy's numeric fields:
// reads_node_<id>, reads_fallback_leader_<why>, reads_sent_elsewhere...).
func proxyInfo(ctx context.Context, admin *redis.Client) (map[string]uint64, error) {
	s, err := admin.Info(ctx, "proxy").Result()
	if err != nil {
		return nil, fmt.Errorf("bench reads: INFO proxy: %w", err)
	}
	m := map[string]uint64{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if n, err := strconv.ParseUint(v, 10, 64); ok && err == nil {
			m[k] = n
		}
	}
	return m, nil
}

// routing is what the proxy counted between two proxyInfo: reads the
// leader served that a follower could have, by reason, reads a node sent
// elsewhere, and reads that may wait on their node.
func routing(before, after map[string]uint64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(after)) {
		d := after[k] - before[k]
		if d == 0 {
			continue
		}
		if why, ok := strings.CutPrefix(k, "reads_fallback_leader_"); ok {
			parts = append(parts, fmt.Sprintf("leader-because-%s %d", why, d))
		}
		switch k {
		case "reads_sent_elsewhere", "reads_may_wait", "reads_may_wait_on_shared", "reads_waited_again", "reads_floor_known", "reads_floor_unproven", "requests_failed_in_flight",
			"reads_linearizable_batched", "reads_linearizable_unproven", "read_index_queries", "read_index_failed", "read_index_slow":
			parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(k, "reads_"), d))
		}
	}
	// Where a batched linearizable read waits at the proxy: joining its
	// batch until the batch leaves, and the batch's round trip.
	d := func(k string) uint64 { return after[k] - before[k] }
	if n := d("read_index_reads_sent"); n > 0 {
		parts = append(parts, fmt.Sprintf("index queued %.2f ms/read", float64(d("read_index_queued_usec"))/1e3/float64(n)))
	}
	if n := d("read_index_batches_answered"); n > 0 {
		parts = append(parts, fmt.Sprintf("index batch %.2f ms", float64(d("read_index_batch_usec"))/1e3/float64(n)))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// procCPU is a process's CPU time: the sum of its threads' time on a CPU
// in nanoseconds (/proc/PID/task/*/schedstat, the scheduler's own
// clock), else, where that cannot be read, its user + system time from
// /proc/PID/stat, 0 if neither can. /proc/PID/stat counts in 10 ms
// ticks: over a window of 375 ms (15 s in 40 rounds) with ~1,900 reads
// that rounding alone is ~5 µs a read, twice the 20% of the leader-only
// CPU per read (~12 µs) that the leader's figure is held to, and several
// times what ryw or monotonic cost the leader. A thread that exits during
// a window takes its time with it (Go's runtime keeps its threads); a
// window whose CPU went backwards is dropped by readCPU.
func procCPU(pid int) time.Duration {
	if d, ok := schedCPU(pid); ok {
		return d
	}
	return statCPU(pid)
}

// schedCPU sums the first field (ns on a CPU) of every thread's
// /proc/PID/task/TID/schedstat.
func schedCPU(pid int) (time.Duration, bool) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return 0, false
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // the thread exited since the listing
			}
			return 0, false
		}
		f := bytes.Fields(b)
		if len(f) == 0 {
			return 0, false
		}
		ns, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, false
		}
		sum += ns
	}
	return time.Duration(sum), true
}

// statCPU is a process's user + system time from /proc/PID/stat (10 ms
// ticks), 0 if it cannot be read.
func statCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0
	}
	f := bytes.Fields(b[end+1:])
	if len(f) < 13 {
		return 0
	}
	// f[0] is field 3; utime is field 14, stime 15, in USER_HZ (100/s).
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	st, _ := strconv.ParseInt(string(f[12]), 10, 64)
	return time.Duration(ut+st) * time.Second / 100
}

// procIO is a process's read and write system calls (/proc/PID/io
// syscr, syscw), zero if they cannot be read.
func procIO(pid int) (rw [2]float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return rw
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if !ok || err != nil {
			continue
		}
		switch k {
		case "syscr":
			rw[0] = n
		case "syscw":
			rw[1] = n
		}
	}
	return rw
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

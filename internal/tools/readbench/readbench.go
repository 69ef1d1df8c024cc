// Package readbench is `tandem bench reads` (in tandem-bench): what each
// read policy costs and where its reads go, through `tandem proxy`, under
// a steady write load, with and without follower lag.
//
// For each lag (--lags, default 0 and 50ms: every node runs with
// `--buggify follower-apply-delay=LAG`, which a node obeys only while it
// follows, so the followers apply each entry that long after it arrived, whoever
// leads) a fresh cluster is started: 3 nodes under the control plane, one
// orchestrator, one proxy, commit mode --mode (async by default: a
// follower's acknowledgements then do not wait for its delayed apply, so
// the write load stays the same with lag). --keys keys are loaded. Then,
// once per lag, two baselines: --clients sessions only write, together
// --write-rate SET/s (each session every clients/rate seconds, its own
// key), for --duration, under policy leader (bare writes) and ryw (each
// write followed by TANDEM.TOKEN, as under every positional policy); the
// leader's CPU per write then is what the writes of a run cost it. Then for each policy (--policies), the same
// sessions, each on its own proxy connection under TANDEM.READPOLICY
// policy, keep the same writes going and read (GET of a random loaded
// key) as fast as they can in between, for --warmup (not counted) and
// --duration, in --rounds rounds: each round runs every policy for
// duration/rounds (after a warm-up of at most 1s past the first), in
// an order rotated each round. A session's writes are what its ryw reads must see, so
// ryw's wait for its floor is in the figures; the read right after each
// write is of the key just written, and one that does not see the write
// is counted as stale (expected under any and bounded with lag, never
// under leader, ryw, monotonic and linearizable).
//
// It prints per lag and policy: reads/s, the share of reads served by
// followers (the proxy's per-node read counters), read p50/p99 (at the
// client), writes/s achieved, read errors, and the leader's CPU per read
// (its /proc/PID/stat time over the run, less what the run's writes cost
// it in the baseline, divided by the reads), the cluster's CPU per read
// (the proxy's and every node's, less what the writes cost them in the
// baselines: on a shared, busy machine reads/s move ±30% from run to run,
// this far less) — and the ratios the targets are about: the
// leader's CPU per read against leader's (any, ryw, monotonic: at most
// 0.20), and ryw's and linearizable's throughput lost against any's
// (at most 10% and 25%). The throughput ratios are the median over the
// rounds of a round's reads/s against any's in the same round, with
// their range: policies seconds apart see the same machine, while runs
// minutes apart swung ±0.15 on an idle one.
package readbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
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
	Policies  []string // "leader", "any", "ryw", "monotonic", "bounded 50", "linearizable"
	Lags      []time.Duration
	Clients   int
	Writers   int // connections carrying the write load
	WriteRate int // SET/s of the writers together
	// SessionWrite is how often each reading session writes its own key
	// (what its ryw reads must then see); 0: never.
	SessionWrite time.Duration
	Duration     time.Duration
	Warmup       time.Duration
	// Rounds splits each policy's Duration into this many rounds, the
	// policies interleaved (every policy once per round, in an order
	// rotated each round), so that the ratios against any are taken
	// between runs seconds apart, not minutes (see report).
	Rounds int
	Keys   int
	Mode   string
	// ProxyArgs are extra flags for the proxy (e.g. --conns-per-node).
	ProxyArgs []string
	Dir       string
	Keep      bool
	Out       io.Writer
	Log       *slog.Logger
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
			"and the leader's CPU per read, under --write-rate SET/s with and without injected follower lag " +
			"(--buggify follower-apply-delay), through tandem proxy; prints the ratios against the targets.",
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
	f.StringVar(&policies, "policies", strings.Join(DefaultPolicies, ","), "read policies, comma-separated (bounded takes its bound in ms: \"bounded 50\")")
	f.DurationSliceVar(&o.Lags, "lags", []time.Duration{0, 50 * time.Millisecond}, "follower apply delays, one cluster each (0: none)")
	f.IntVar(&o.Clients, "clients", 50, "reading sessions, each on its own proxy connection")
	f.IntVar(&o.Writers, "writers", 50, "connections carrying the write load (policy leader)")
	f.IntVar(&o.WriteRate, "write-rate", 5000, "SET/s of the writers together (rate-limited)")
	f.DurationVar(&o.SessionWrite, "session-write", time.Second, "each reading session also writes its own key this often, under its policy (0: never)")
	f.DurationVar(&o.Duration, "duration", 10*time.Second, "measured time per policy (and for the write-only baseline)")
	f.DurationVar(&o.Warmup, "warmup", 2*time.Second, "load before each policy's first round, not counted (later rounds: at most 1s)")
	f.IntVar(&o.Rounds, "rounds", 5, "rounds per lag: each policy runs --duration/rounds per round, the policies interleaved; ratios against any are the median of the rounds'")
	f.IntVar(&o.Keys, "keys", 10000, "keys loaded before the runs; reads GET a random one")
	f.StringVar(&o.Mode, "mode", "async", "commit mode of the cluster")
	f.StringSliceVar(&o.ProxyArgs, "proxy-args", nil, "extra flags for the proxy, e.g. --proxy-args=--conns-per-node=16")
	f.StringVar(&o.Dir, "dir", "", "directory for the clusters (default: a temp dir, removed after)")
	f.BoolVar(&o.Keep, "keep", false, "keep the clusters' data and logs")
	return cmd
}

// result is one policy's run at one lag.
type result struct {
	policy        string
	lag           time.Duration
	reads, writes int64
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
	cpu                 float64 // the leader's CPU seconds over the run
	leaderCPU           float64 // µs per read, less the writes' (attribute)
	// allCPU is the CPU seconds of the proxy and every node over the
	// run, sysCPU the µs per read of it, less the writes' (attribute):
	// what a read costs the cluster, a figure the machine's load moves
	// far less than reads/s (on a CPU-bound machine reads/s follow it).
	allCPU, sysCPU float64
	// proxyCPU and followerCPU are the CPU seconds of the proxy and of
	// the followers together over the run (cpu is the leader's), not
	// less the writes': where a policy's cost per read goes.
	proxyCPU, followerCPU float64
	firstErr              string
	// lat are the reads' latencies at the client, sorted (merged over
	// the rounds for p50 and p99).
	lat []time.Duration
	// rounds are the reads/s of each round, in order (report: ratios
	// against any's in the same round).
	rounds []float64
}

func (r result) readRate() float64 { return float64(r.reads) / r.secs }

// Run runs every lag and policy and prints the tables.
func Run(ctx context.Context, o Options) error {
	if o.Rounds == 0 {
		o.Rounds = 1
	}
	if o.Clients <= 0 || o.WriteRate < 0 || o.Writers < 0 || o.SessionWrite < 0 || o.Duration <= 0 || o.Keys <= 0 || len(o.Policies) == 0 || o.Rounds < 0 {
		return errors.New("bench reads: --clients, --duration, --keys, --rounds and --policies must be positive, --writers, --write-rate and --session-write not negative")
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
	fmt.Fprintf(o.Out, "tandem bench reads: through tandem proxy, %d writers at %d SET/s in all (rate-limited); %d sessions reading (GET of %d keys) as fast as they go, each writing its own key every %v under its policy; %v per policy in %d interleaved rounds after %v warm-up; mode %s; load average %s\n",
		o.Writers, o.WriteRate, o.Clients, o.Keys, o.SessionWrite, o.Duration, o.Rounds, o.Warmup, o.Mode, loadAvg())
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
		Binary: exe, Dir: dir, Nodes: 3, ControlPlane: true, Orchestrators: 1, Proxy: true,
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
	if err := load(ctx, admin, o.Keys); err != nil {
		return nil, err
	}
	leaderName := c.Node(leader).Name
	pid := c.Node(leader).PID
	pids := []int{px.PID} // the proxy and every node: allCPU
	for _, n := range c.Nodes() {
		pids = append(pids, n.PID)
	}
	fmt.Fprintf(o.Out, "\nlag %v: leader %s (pid %d), proxy %s; load average %s\n", lag, leaderName, pid, px.RESPAddr, loadAvg())

	// The write load alone: what a write costs the leader, bare (policies
	// leader and any) and with the session's position asked after it (the
	// positional policies).
	perWrite := map[bool]float64{} // CPU seconds per write, by positional
	allPerWrite := map[bool]float64{}
	for _, positional := range []bool{false, true} {
		pol := "leader"
		if positional {
			pol = "ryw"
		}
		cpu0, all0 := procCPU(pid), procsCPU(pids)
		base, err := runLoad(ctx, o, px.RESPAddr, pol, 0)
		if err != nil {
			return nil, err
		}
		cpu := (procCPU(pid) - cpu0).Seconds()
		all := (procsCPU(pids) - all0).Seconds()
		if base.writes > 0 {
			perWrite[positional] = cpu / float64(base.writes)
			allPerWrite[positional] = all / float64(base.writes)
		}
		fmt.Fprintf(o.Out, "  baseline, writes only under %-6s %5.0f SET/s, leader CPU %5.1f%% of a core, %5.1f us/SET\n",
			pol+":", float64(base.writes)/base.secs, 100*cpu/base.secs, 1e6*perWrite[positional])
	}

	// The policies' rounds, interleaved: round i runs every policy once,
	// the order rotated by i so that none always follows the same one.
	per := max(time.Second, o.Duration/time.Duration(o.Rounds))
	acc := make(map[string]*result, len(o.Policies))
	routed := make(map[string]map[string]uint64, len(o.Policies))
	for round := range o.Rounds {
		var line []string
		for j := range o.Policies {
			pol := o.Policies[(round+j)%len(o.Policies)]
			// Later rounds warm up for at most a second: as long as the
			// proxy remembers a follower that refused a read or was slow
			// (staleTTL), so that what the policy before left does not
			// route this one's reads.
			warm := o.Warmup
			if round > 0 {
				warm = min(warm, time.Second)
			}
			r, delta, err := measure(ctx, o, px.RESPAddr, admin, pol, warm, per, pid, pids, leaderName)
			if err != nil {
				return collect(o.Policies, acc), err
			}
			r.lag = lag
			line = append(line, fmt.Sprintf("%s %.0f", pol, r.readRate()))
			a := acc[pol]
			if a == nil {
				a, routed[pol] = &result{policy: pol, lag: lag}, map[string]uint64{}
				acc[pol] = a
			}
			a.add(r)
			for k, v := range delta {
				routed[pol][k] += v
			}
		}
		fmt.Fprintf(o.Out, "  round %d/%d (reads/s): %s\n", round+1, o.Rounds, strings.Join(line, ", "))
	}
	out := collect(o.Policies, acc)
	for i := range out {
		r := &out[i]
		slices.Sort(r.lat)
		r.p50, r.p99 = pct(r.lat, 0.50), pct(r.lat, 0.99)
		if r.fromAll > 0 {
			r.follower = 1 - float64(r.fromLeader)/float64(r.fromAll)
		}
		fmt.Fprintf(o.Out, "  %-13s %9.0f reads/s  followers %5.1f%%  p50 %7.2f ms  p99 %7.2f ms  %6.0f SET/s  leader CPU %5.1f%% of a core  errors %d%s\n",
			r.policy, r.readRate(), 100*r.follower, ms(r.p50), ms(r.p99), float64(r.writes)/r.secs, 100*r.cpu/r.secs, r.readErrs, errNote(r.firstErr))
		fmt.Fprintf(o.Out, "  %-13s own writes read back %d, stale %d; routing: %s\n", "", r.ownReads, r.stale, routing(map[string]uint64{}, routed[r.policy]))
		if r.reads > 0 {
			per := func(sec float64) float64 { return sec / float64(r.reads) * 1e6 }
			fmt.Fprintf(o.Out, "  %-13s CPU per read, writes' included: proxy %.1f us, leader %.1f us, followers %.1f us\n", "", per(r.proxyCPU), per(r.cpu), per(r.followerCPU))
		}
	}
	attribute(out, perWrite, allPerWrite)
	if id, _, err := c.Leader(ctx); err == nil && id != leader {
		fmt.Fprintf(o.Out, "  WARNING: the leader changed during the run (n%d -> n%d): the CPU figures are wrong\n", leader, id)
	}
	return out, nil
}

// measure runs policy pol once: warm (not counted), then d measured. It
// returns the run and what the proxy's counters moved by over it.
func measure(ctx context.Context, o Options, addr string, admin *redis.Client, pol string, warm, d time.Duration, pid int, pids []int, leaderName string) (result, map[string]uint64, error) {
	if warm > 0 { // (runLoad with 0 is the writes-only baseline)
		if _, err := runLoad(ctx, o, addr, pol, warm); err != nil {
			return result{}, nil, err
		}
	}
	before, err := proxyInfo(ctx, admin)
	if err != nil {
		return result{}, nil, err
	}
	cpu0, all0, px0 := procCPU(pid), procsCPU(pids), procCPU(pids[0])
	r, err := runLoad(ctx, o, addr, pol, d)
	if err != nil {
		return result{}, nil, err
	}
	r.cpu = (procCPU(pid) - cpu0).Seconds()
	r.allCPU = (procsCPU(pids) - all0).Seconds()
	r.proxyCPU = (procCPU(pids[0]) - px0).Seconds()
	r.followerCPU = r.allCPU - r.proxyCPU - r.cpu
	after, err := proxyInfo(ctx, admin)
	if err != nil {
		return result{}, nil, err
	}
	delta := make(map[string]uint64, len(after))
	for k, n := range after {
		delta[k] = n - before[k]
		id, ok := strings.CutPrefix(k, "reads_node_")
		if !ok {
			continue
		}
		r.fromAll += delta[k]
		if id == leaderName {
			r.fromLeader += delta[k]
		}
	}
	return r, delta, nil
}

// add adds round q's counts to r (p50, p99 and follower are computed
// from the sums after the last round).
func (r *result) add(q result) {
	r.reads += q.reads
	r.writes += q.writes
	r.readErrs += q.readErrs
	r.ownReads += q.ownReads
	r.stale += q.stale
	r.secs += q.secs
	r.cpu += q.cpu
	r.allCPU += q.allCPU
	r.proxyCPU += q.proxyCPU
	r.followerCPU += q.followerCPU
	r.fromAll += q.fromAll
	r.fromLeader += q.fromLeader
	r.lat = append(r.lat, q.lat...)
	r.rounds = append(r.rounds, q.readRate())
	if r.firstErr == "" {
		r.firstErr = q.firstErr
	}
}

// collect returns the policies' results in the order given.
func collect(policies []string, acc map[string]*result) []result {
	var out []result
	for _, pol := range policies {
		if r := acc[pol]; r != nil {
			out = append(out, *r)
		}
	}
	return out
}

// attribute sets each run's leader CPU per read: its leader CPU less what
// its writes cost, per read. What a write costs the leader is taken from
// the any run when followers served all its reads (the leader then did
// nothing for reads, and it ran under the same read load as the others:
// a mostly idle leader spends more per write, so the writes-only
// baseline overstates it), else from the baseline; a positional policy's
// writes cost in addition what the ryw baseline spent per write over the
// leader baseline (asking the position after each).
//
// The cluster's CPU per read (sysCPU) subtracts what the writes cost the
// proxy and the nodes in the baselines the same way (no read run can
// stand in for it: every read costs the cluster something).
func attribute(rs []result, perWrite, allPerWrite map[bool]float64) {
	bare := perWrite[false]
	for _, r := range rs {
		if r.policy == "any" && r.follower >= 0.99 && r.writes > 0 {
			bare = r.cpu / float64(r.writes)
		}
	}
	extra := max(0, perWrite[true]-perWrite[false])
	allExtra := max(0, allPerWrite[true]-allPerWrite[false])
	for i := range rs {
		r := &rs[i]
		cost, allCost := bare, allPerWrite[false]
		if r.policy != "leader" && r.policy != "any" {
			cost += extra
			allCost += allExtra
		}
		if r.reads > 0 {
			r.leaderCPU = max(0, r.cpu-cost*float64(r.writes)) / float64(r.reads) * 1e6
			r.sysCPU = max(0, r.allCPU-allCost*float64(r.writes)) / float64(r.reads) * 1e6
		}
	}
}

func errNote(s string) string {
	if s == "" {
		return ""
	}
	return " (first: " + s + ")"
}

// runLoad runs, for d, o.Writers connections writing together
// o.WriteRate SET/s (bare, policy leader) and o.Clients sessions under
// policy pol, each writing its own key every o.SessionWrite and reading
// in between. d 0 runs the writes alone (the baseline) for o.Duration.
func runLoad(ctx context.Context, o Options, addr, pol string, d time.Duration) (result, error) {
	readsToo := d > 0
	if !readsToo {
		d = o.Duration
	}
	var (
		reads, writes, errs atomic.Int64
		ownReads, stale     atomic.Int64
		mu                  sync.Mutex
		lat                 []time.Duration
		firstErr            string
		wg                  sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	setupErr := make(chan error, o.Clients+o.Writers)
	fail := func(err error) {
		errs.Add(1)
		mu.Lock()
		if firstErr == "" {
			firstErr = err.Error()
		}
		mu.Unlock()
	}
	// conn is one connection under policy p.
	conn := func(p string) (*redis.Client, error) {
		cl := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 1, MaxRetries: -1,
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
	// worker runs one connection: a write of key every interval (none if
	// 0), GETs in between if read.
	worker := func(i int, p, key string, interval time.Duration, read bool) {
		defer wg.Done()
		cl, err := conn(p)
		if err != nil {
			setupErr <- err
			return
		}
		defer cl.Close()
		rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
		// Writes start spread over one interval.
		next := start.Add(time.Duration(rng.Int64N(int64(max(interval, 1)))))
		my := make([]time.Duration, 0, 4096)
		var seq int
		check := false // the next read is of the session's own key, just written
		for {
			now := time.Now()
			if !now.Before(end) {
				break
			}
			if interval > 0 && !now.Before(next) {
				seq++
				if err := cl.Set(ctx, key, seq, 0).Err(); err != nil {
					fail(err)
				} else {
					writes.Add(1)
					check = true
				}
				next = next.Add(interval)
				if next.Before(now.Add(-interval)) {
					next = now // fell behind: no burst to catch up
				}
				continue
			}
			if !read {
				wake := end
				if interval > 0 && next.Before(end) {
					wake = next
				}
				time.Sleep(time.Until(wake))
				continue
			}
			t0 := time.Now()
			if check {
				// The read right after the session's write is of what it
				// wrote: the case read-your-writes is about, measured
				// with the others, and checked.
				check = false
				v, err := cl.Get(ctx, key).Result()
				if err != nil && !errors.Is(err, redis.Nil) {
					fail(err)
					continue
				}
				my = append(my, time.Since(t0))
				reads.Add(1)
				ownReads.Add(1)
				if v != strconv.Itoa(seq) {
					stale.Add(1)
				}
				continue
			}
			err := cl.Get(ctx, "rb:k:"+strconv.Itoa(rng.IntN(o.Keys))).Err()
			if err != nil && !errors.Is(err, redis.Nil) {
				fail(err)
				continue
			}
			my = append(my, time.Since(t0))
			reads.Add(1)
		}
		mu.Lock()
		lat = append(lat, my...)
		mu.Unlock()
	}
	if o.WriteRate > 0 && o.Writers > 0 {
		interval := time.Duration(float64(time.Second) * float64(o.Writers) / float64(o.WriteRate))
		for i := range o.Writers {
			wg.Add(1)
			go worker(-1-i, "leader", "rb:w:"+strconv.Itoa(i), interval, false)
		}
	}
	for i := range o.Clients {
		wg.Add(1)
		go worker(i, pol, "rb:s:"+strconv.Itoa(i), o.SessionWrite, readsToo)
	}
	wg.Wait()
	close(setupErr)
	if err := <-setupErr; err != nil {
		return result{}, err
	}
	r := result{policy: pol, reads: reads.Load(), writes: writes.Load(), readErrs: errs.Load(), ownReads: ownReads.Load(), stale: stale.Load(),
		secs: time.Since(start).Seconds(), firstErr: firstErr}
	slices.Sort(lat)
	r.p50, r.p99 = pct(lat, 0.50), pct(lat, 0.99)
	r.lat = lat
	return r, nil
}

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

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

// load writes rb:k:0..n-1 through the proxy, pipelined.
func load(ctx context.Context, admin *redis.Client, n int) error {
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
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

// procsCPU is the CPU time of the processes pids together.
func procsCPU(pids []int) time.Duration {
	var t time.Duration
	for _, pid := range pids {
		t += procCPU(pid)
	}
	return t
}

// procCPU is a process's user + system time (/proc/PID/stat), 0 if it
// cannot be read.
func procCPU(pid int) time.Duration {
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

// report prints the table of every run and the ratios against targets.
func report(w io.Writer, rs []result) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-6s %-13s %10s %10s %9s %9s %9s %13s %10s %10s %14s %8s %11s %12s\n", "lag", "policy", "reads/s", "followers", "p50 ms", "p99 ms", "SET/s", "leader us/rd", "cpu/leader", "rate/any", "cluster us/rd", "cpu/any", "stale/own", "rounds/any")
	for _, r := range rs {
		base := find(rs, r.lag, "leader")
		anyR := find(rs, r.lag, "any")
		cpuRatio, rateRatio, sysRatio := "-", "-", "-"
		if base != nil && base.leaderCPU > 0 {
			cpuRatio = fmt.Sprintf("%.2f", r.leaderCPU/base.leaderCPU)
		}
		spread := "-"
		if med, lo, hi, ok := roundRatio(&r, anyR); ok {
			rateRatio, spread = fmt.Sprintf("%.2f", med), fmt.Sprintf("%.2f-%.2f", lo, hi)
		}
		if anyR != nil && anyR.sysCPU > 0 {
			sysRatio = fmt.Sprintf("%.2f", r.sysCPU/anyR.sysCPU)
		}
		fmt.Fprintf(w, "%-6s %-13s %10.0f %9.1f%% %9.2f %9.2f %9.0f %13.1f %10s %10s %14.1f %8s %11s %12s\n", r.lag, r.policy, r.readRate(), 100*r.follower,
			ms(r.p50), ms(r.p99), float64(r.writes)/r.secs, r.leaderCPU, cpuRatio, rateRatio, r.sysCPU, sysRatio, fmt.Sprintf("%d/%d", r.stale, r.ownReads), spread)
	}
	fmt.Fprintln(w, "\ntargets (cpu/leader: the leader's CPU per read against policy leader's; rate/any: reads/s against any's;")
	fmt.Fprintln(w, "the median over the rounds of the round's reads/s against any's in the same round, rounds/any their range;")
	fmt.Fprintln(w, "cluster us/rd: CPU of the proxy and all nodes per read, less the writes', and cpu/any against any's: the figure load moves least):")
	for _, lag := range lags(rs) {
		base, anyR := find(rs, lag, "leader"), find(rs, lag, "any")
		for _, pol := range []string{"any", "ryw", "monotonic"} {
			r := find(rs, lag, pol)
			if r == nil || base == nil || base.leaderCPU <= 0 {
				continue
			}
			v := r.leaderCPU / base.leaderCPU
			fmt.Fprintf(w, "  lag %-6s %-12s leader CPU per read %.2fx leader-only's, target <= 0.20: %s\n", lag, pol, v, verdict(v <= 0.20))
		}
		for _, t := range []struct {
			pol  string
			cost float64
		}{{"ryw", 0.10}, {"linearizable", 0.25}} {
			r := find(rs, lag, t.pol)
			med, lo, hi, ok := roundRatio(r, anyR)
			if !ok {
				continue
			}
			cost := 1 - med
			fmt.Fprintf(w, "  lag %-6s %-12s costs %.0f%% of any's throughput (median of %d rounds; rounds %.0f%% to %.0f%%), target <= %.0f%%: %s\n",
				lag, t.pol, 100*cost, len(r.rounds), 100*(1-hi), 100*(1-lo), 100*t.cost, verdict(cost <= t.cost))
		}
	}
}

// roundRatio is the median, lowest and highest over the rounds of r's
// reads/s against anyR's in the same round: the policies of a round run
// seconds apart, so the machine's load, which moves reads/s by ±30%
// over minutes, moves both alike. Without rounds of both (or with any
// at 0 in one) it is false.
func roundRatio(r, anyR *result) (med, lo, hi float64, ok bool) {
	if r == nil || anyR == nil || len(r.rounds) == 0 || len(r.rounds) != len(anyR.rounds) {
		return 0, 0, 0, false
	}
	rs := make([]float64, len(r.rounds))
	for i, v := range r.rounds {
		if anyR.rounds[i] <= 0 {
			return 0, 0, 0, false
		}
		rs[i] = v / anyR.rounds[i]
	}
	slices.Sort(rs)
	if n := len(rs); n%2 == 1 {
		med = rs[n/2]
	} else {
		med = (rs[n/2-1] + rs[n/2]) / 2
	}
	return med, rs[0], rs[len(rs)-1], true
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

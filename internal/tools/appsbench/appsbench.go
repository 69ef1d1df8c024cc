// Package appsbench is `tandem bench apps` (in tandem-bench): what
// applications build on Redis beyond GET and SET — transactions, scripts,
// job queues and notifications — measured on tandem beside Redis in one
// run, each with SET's ratio from the same run as its yardstick.
//
// Each target is three servers on loopback, started fresh by package
// pubsubbench (tandem: 3 nodes, n1 leading, async commit, so the leader
// fsyncs every write before it acknowledges; Redis 7: a primary and 2
// replicas, appendonly yes, appendfsync always, save ""), one target at a
// time so they never share the cores. A run is --rounds rounds; each
// round starts each target afresh, in turn, the order swapped from one
// round to the next (tandem first, then Redis first, ...), so neither
// side always follows the other's disk writes. Against each target, in
// order, for --duration each after --warmup:
//
//   - set: --clients clients, each one SET of a random key of --keyspace
//     (--value-size bytes) at a time: the reference;
//   - multi: --clients clients, each a MULTI of 5 such SETs and EXEC
//     (go-redis TxPipelined, one round trip): EXECs/s;
//   - evalsha: --clients clients, each EVALSHA of a compare-and-set script
//     (GET, compare, SET) on a key of its own, moving it from the value it
//     last set to the next (so every call writes; a call that answers 0 is
//     counted as an error): calls/s;
//   - queue: --producers clients LPUSH jobs one at a time, --consumers
//     clients BLPOP them (1 s timeout, loop) from one list: jobs popped/s
//     in the window and push→pop latency; after the window the producers
//     stop, the consumers drain the list, and every job pushed must have
//     been popped exactly once (lost and duplicated jobs are printed, and
//     fail the run);
//   - pubsub: pubsubbench.Measure with --subscribers subscribers spread
//     over the three servers: the flood phase's PUBLISH/s (each message
//     delivered to every subscriber) and publish→receipt p99 on the
//     followers (the replicas), and the paced phase's p99.
//
// It prints each round's figures per target and workload as it goes:
// ops/s, p50/p99 latency, the server processes' CPU time per operation
// (user + system from /proc/PID/stat, all three servers: the figure that
// survives a loaded machine) and split by process, each process's
// read+write system calls per operation (/proc/PID/io). The report
// (report.go) pools each target's rounds for its own columns and takes
// the tandem/redis ratios of throughput and of CPU per op round by round,
// pairing the two targets' windows of the same round: it prints every
// round's ratios, and each workload's verdict compares the median of its
// ratios with the median of SET's, so one disturbed window (a disk
// hiccup) no longer decides a ratio.
package appsbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/tools/pubsubbench"
)

// Options is one run's load.
type Options struct {
	Clients     int
	Producers   int
	Consumers   int
	Subscribers int
	Publishers  int
	// QueuePush is the queue's push: "lpush" (with BLPOP a stack, as the
	// issue names it) or "rpush" (with BLPOP a FIFO queue, as RQ's).
	QueuePush string
	ValueSize int
	Keyspace  int
	Warmup    time.Duration
	Duration  time.Duration // per workload and round
	// Rounds is how many times each target runs every workload; each
	// round starts the targets afresh, in the order of Targets in even
	// rounds and reversed in odd ones.
	Rounds    int
	Targets   []string
	Workloads []string
	Out       io.Writer
	Log       *slog.Logger
}

// Workloads, in the order they run.
var allWorkloads = []string{"set", "multi", "evalsha", "queue", "pubsub"}

// Result is one workload on one target.
type Result struct {
	Target, Workload string
	Round            int     // from 0
	Ops              int64   // operations completed in the window (jobs popped; PUBLISHes)
	Seconds          float64 // the window
	Lat              []time.Duration
	Errors           int64
	CPU              time.Duration // server CPU over the window, all processes
	// CPUs is CPU split by process, in the target's order: [0] the
	// leader (Redis's primary), then the followers (replicas).
	CPUs []time.Duration
	// Syscalls is each process's read and write system calls over the
	// window (syscr + syscw of /proc/PID/io), in the same order: a count
	// of socket and file I/O that load does not change.
	Syscalls  []int64
	FollowP99 time.Duration // pubsub: publish→receipt p99 on the followers (flood)
	PacedP99  time.Duration // pubsub: the same at a paced 1000 msg/s
	Lost, Dup int64         // queue: jobs pushed and never popped, popped twice
	// queue: the list's length sampled every 10 ms in the window (jobs
	// pushed and not popped yet: a backlog makes LPUSH/BLPOP, a stack,
	// leave old jobs waiting), and how the server ran blocked pops
	// (tandem's INFO: in the push's entry, by turn, finding nothing).
	BacklogMax  int64
	BacklogMean float64
	PopsHow     string
}

// NewCommand returns `bench apps`.
func NewCommand() *cobra.Command {
	var o Options
	var targets, workloads, dir string
	cmd := &cobra.Command{
		Use:   "apps",
		Short: "MULTI, EVALSHA, a BLPOP job queue and PUBLISH fan-out on a 3-node cluster, against Redis, with SET's ratio as the yardstick",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			o.Targets = strings.Split(targets, ",")
			o.Workloads = strings.Split(workloads, ",")
			for _, w := range o.Workloads {
				if !slices.Contains(allWorkloads, w) {
					return fmt.Errorf("unknown workload %q (%s)", w, strings.Join(allWorkloads, ", "))
				}
			}
			if o.Clients < 1 || o.Producers < 1 || o.Consumers < 1 || o.Subscribers < 3 || o.Publishers < 1 ||
				o.Duration <= 0 || o.Warmup < 0 || o.Keyspace < 1 || o.ValueSize < 1 || o.Rounds < 1 {
				return errors.New("--clients, --producers, --consumers, --publishers, --keyspace, --value-size, --duration and --rounds positive; --subscribers at least 3")
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "tandem-appsbench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(d)
				dir = d
			}
			return Run(cmd.Context(), o, dir)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.Clients, "clients", 50, "concurrent clients for set, multi and evalsha")
	f.IntVar(&o.Producers, "producers", 50, "queue: LPUSH clients")
	f.IntVar(&o.Consumers, "consumers", 50, "queue: BLPOP clients")
	f.StringVar(&o.QueuePush, "queue-push", "lpush", "queue: the producers' push, lpush (with BLPOP: a stack) or rpush (a FIFO queue)")
	f.IntVar(&o.Subscribers, "subscribers", 100, "pubsub: subscribers, spread evenly over the 3 servers")
	f.IntVar(&o.Publishers, "publishers", 8, "pubsub: concurrent publishers in the flood phase")
	f.IntVar(&o.ValueSize, "value-size", 100, "bytes per SET value")
	f.IntVar(&o.Keyspace, "keyspace", 100000, "random keys for set and multi")
	f.DurationVar(&o.Warmup, "warmup", 2*time.Second, "unmeasured load before each window")
	f.DurationVar(&o.Duration, "duration", 3*time.Second, "measured window per workload and round")
	f.IntVar(&o.Rounds, "rounds", 3, "rounds: each starts the targets afresh, their order swapped from round to round; the verdicts use the median of the rounds' ratios")
	f.StringVar(&targets, "targets", "tandem,redis", "targets, in order: tandem, redis (the ratios need both)")
	f.StringVar(&workloads, "workloads", strings.Join(allWorkloads, ","), "workloads to run, of "+strings.Join(allWorkloads, ", "))
	f.StringVar(&dir, "dir", "", "where the servers keep their data (default: a temporary folder, removed)")
	return cmd
}

// Run runs every round, each target in turn, and prints the report. It
// fails if a queue lost or duplicated a job.
func Run(ctx context.Context, o Options, dir string) error {
	fmt.Fprintf(o.Out, "load average at start: %s\n", loadavg())
	var results []Result
	for round := range max(o.Rounds, 1) {
		for _, name := range roundOrder(o.Targets, round) {
			// A fresh directory per round: each round's target starts empty.
			t, err := pubsubbench.Start(ctx, name, fmt.Sprintf("%s/%s-%d", dir, name, round), o.Log)
			if err != nil {
				return err
			}
			for _, w := range o.Workloads {
				r, err := runWorkload(ctx, t, w, o)
				if err != nil {
					t.Stop()
					return fmt.Errorf("appsbench: round %d %s %s: %w", round+1, name, w, err)
				}
				r.Round = round
				fmt.Fprintf(o.Out, "  r%d %-7s %-8s %s  load %s\n", round+1, name, w, line(r), loadavg())
				results = append(results, r)
			}
			if err := t.Stop(); err != nil {
				return fmt.Errorf("appsbench: stop %s: %w", name, err)
			}
		}
	}
	fmt.Fprintf(o.Out, "load average at end: %s\n", loadavg())
	report(o.Out, o, results)
	for _, r := range results {
		if r.Lost > 0 || r.Dup > 0 {
			return fmt.Errorf("appsbench: %s queue: %d jobs lost, %d popped twice", r.Target, r.Lost, r.Dup)
		}
	}
	return nil
}

func runWorkload(ctx context.Context, t *pubsubbench.Target, w string, o Options) (Result, error) {
	r := Result{Target: t.Name, Workload: w}
	switch w {
	case "pubsub":
		return measurePubSub(ctx, t, o, r)
	case "queue":
		return measureQueue(ctx, t, o, r)
	}
	c := redis.NewClient(&redis.Options{Addr: t.Addrs[0], PoolSize: o.Clients + 1, MaxRetries: -1})
	defer c.Close()
	value := strings.Repeat("v", o.ValueSize)
	key := func() string { return "key:" + strconv.Itoa(rand.IntN(o.Keyspace)) }
	var op func(ctx context.Context, worker int, seq int64) error
	switch w {
	case "set":
		op = func(ctx context.Context, _ int, _ int64) error { return c.Set(ctx, key(), value, 0).Err() }
	case "multi":
		op = func(ctx context.Context, _ int, _ int64) error {
			_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for range 5 {
					p.Set(ctx, key(), value, 0)
				}
				return nil
			})
			return err
		}
	case "evalsha":
		sha, err := c.ScriptLoad(ctx, casScript).Result()
		if err != nil {
			return r, fmt.Errorf("SCRIPT LOAD: %w", err)
		}
		for i := range o.Clients {
			if err := c.Set(ctx, casKey(i), "0", 0).Err(); err != nil {
				return r, err
			}
		}
		// Each worker's key holds the last value it set: seq.
		op = func(ctx context.Context, worker int, seq int64) error {
			n, err := c.EvalSha(ctx, sha, []string{casKey(worker)}, seq, seq+1).Int()
			if err == nil && n != 1 {
				err = fmt.Errorf("compare-and-set of %s from %d answered %d", casKey(worker), seq, n)
			}
			return err
		}
	default:
		return r, fmt.Errorf("unknown workload %q", w)
	}
	return closedLoop(ctx, t, o, o.Clients, op, r)
}

// casScript sets KEYS[1] to ARGV[2] if it holds ARGV[1]: the
// compare-and-set that locks and rate limiters are built on.
const casScript = `local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0`

func casKey(worker int) string { return "cas:" + strconv.Itoa(worker) }

// closedLoop runs workers, each calling op one at a time (seq counts its
// successful calls), for o.Warmup then o.Duration, and records the
// window's completions, latencies, errors and server CPU. An op that
// fails is counted and the worker carries on with the same seq; more
// errors than a tenth of the successes fail the workload.
func closedLoop(ctx context.Context, t *pubsubbench.Target, o Options, workers int,
	op func(ctx context.Context, worker int, seq int64) error, r Result) (Result, error) {
	start := time.Now()
	from, until := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	var cpu0 []usage
	cpuTaken := make(chan struct{})
	go func() {
		time.Sleep(time.Until(from))
		cpu0 = cpusOf(t.PIDs)
		close(cpuTaken)
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			var ops, errs int64
			var seq int64
			for {
				t0 := time.Now()
				if t0.After(until) {
					break
				}
				err := op(ctx, w, seq)
				t1 := time.Now()
				if err != nil {
					errs++
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					if ctx.Err() != nil {
						break
					}
					continue
				}
				seq++
				if t0.After(from) && !t1.After(until) {
					ops++
					lat = append(lat, t1.Sub(t0))
				}
			}
			mu.Lock()
			r.Ops += ops
			r.Errors += errs
			r.Lat = append(r.Lat, lat...)
			mu.Unlock()
		}()
	}
	<-cpuTaken
	time.Sleep(time.Until(until))
	r.setCPU(cpu0, cpusOf(t.PIDs))
	wg.Wait()
	r.Seconds = o.Duration.Seconds()
	if r.Errors > 0 && r.Errors*10 > r.Ops {
		return r, fmt.Errorf("%d errors for %d operations, the first: %w", r.Errors, r.Ops, firstErr)
	}
	if r.Errors > 0 {
		o.Log.Warn("errors", "target", r.Target, "workload", r.Workload, "count", r.Errors, "first", firstErr)
	}
	return r, nil
}

// measureQueue runs the job queue: producers LPUSH "<producer>:<seq>:<unix ns>",
// consumers BLPOP; the window counts pops. Then the producers stop and
// the consumers drain, and every job must have been popped exactly once.
func measureQueue(ctx context.Context, t *pubsubbench.Target, o Options, r Result) (Result, error) {
	const list = "jobs"
	c := redis.NewClient(&redis.Options{Addr: t.Addrs[0], PoolSize: o.Producers + o.Consumers + 1, MaxRetries: -1})
	defer c.Close()
	if err := c.Del(ctx, list).Err(); err != nil {
		return r, err
	}
	start := time.Now()
	from, until := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)
	pushed := make([]int64, o.Producers) // jobs each producer had acknowledged
	var pushErrs atomic.Int64
	var pwg sync.WaitGroup
	for p := range o.Producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for time.Now().Before(until) {
				job := strconv.Itoa(p) + ":" + strconv.FormatInt(pushed[p], 10) + ":" + strconv.FormatInt(time.Now().UnixNano(), 10)
				push := c.LPush
				if o.QueuePush == "rpush" {
					push = c.RPush
				}
				if err := push(ctx, list, job).Err(); err != nil {
					// Not acknowledged, so it may or may not be in the list:
					// the check below cannot count it, so stop here.
					pushErrs.Add(1)
					o.Log.Warn("LPUSH", "err", err)
					return
				}
				pushed[p]++
			}
		}()
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var lat []time.Duration
	var inWindow, popErrs atomic.Int64
	var producing atomic.Bool
	producing.Store(true)
	var cwg sync.WaitGroup
	for range o.Consumers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for {
				v, err := c.BLPop(ctx, time.Second, list).Result()
				now := time.Now()
				if errors.Is(err, redis.Nil) {
					if !producing.Load() {
						return // drained: a second with nothing after the producers stopped
					}
					continue
				}
				if err != nil {
					popErrs.Add(1)
					o.Log.Warn("BLPOP", "err", err)
					if ctx.Err() != nil || popErrs.Load() > 100 {
						return
					}
					continue
				}
				job := v[1]
				parts := strings.Split(job, ":")
				mu.Lock()
				seen[job]++
				if len(parts) == 3 && now.After(from) && !now.After(until) {
					inWindow.Add(1)
					if ns, err := strconv.ParseInt(parts[2], 10, 64); err == nil {
						lat = append(lat, now.Sub(time.Unix(0, ns)))
					}
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Until(from))
	cpu0 := cpusOf(t.PIDs)
	var samples, total int64
	for tick := time.NewTicker(10 * time.Millisecond); time.Now().Before(until); <-tick.C {
		if n, err := c.LLen(ctx, list).Result(); err == nil {
			samples++
			total += n
			r.BacklogMax = max(r.BacklogMax, n)
		}
	}
	if samples > 0 {
		r.BacklogMean = float64(total) / float64(samples)
	}
	r.setCPU(cpu0, cpusOf(t.PIDs))
	if info, err := c.Info(ctx, "clients").Result(); err == nil {
		var how []string
		for _, l := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(l, "tandem_blocked_pops_"); ok {
				how = append(how, v)
			}
		}
		r.PopsHow = strings.Join(how, " ")
	}
	pwg.Wait()
	producing.Store(false)
	cwg.Wait()
	r.Ops, r.Seconds, r.Lat = inWindow.Load(), o.Duration.Seconds(), lat
	r.Errors = pushErrs.Load() + popErrs.Load()
	// seen is keyed by the whole job; count it by producer:seq.
	bySeq := map[string]int{}
	for job, n := range seen {
		i := strings.LastIndexByte(job, ':')
		bySeq[job[:i]] += n
	}
	for p, n := range pushed {
		for s := range n {
			switch k := bySeq[strconv.Itoa(p)+":"+strconv.FormatInt(s, 10)]; {
			case k == 0:
				r.Lost++
			case k > 1:
				r.Dup += int64(k - 1)
			}
		}
	}
	if left, err := c.LLen(ctx, list).Result(); err == nil && left > 0 {
		r.Lost += left // still there: the consumers gave up draining
	}
	return r, nil
}

func measurePubSub(ctx context.Context, t *pubsubbench.Target, o Options, r Result) (Result, error) {
	cpu0 := cpusOf(t.PIDs)
	rs, err := pubsubbench.Measure(ctx, t, pubsubbench.Options{
		Subscribers: o.Subscribers, Publishers: o.Publishers, Rate: 1000, Duration: o.Duration, Log: o.Log,
	})
	cpu1 := cpusOf(t.PIDs)
	if err != nil {
		return r, err
	}
	var published int64
	for _, p := range rs {
		published += p.Published
		switch p.Phase {
		case "flood":
			r.Ops, r.Seconds = p.Published, p.Seconds
			r.Lat = append(slices.Clone(p.Leader), p.Follow...)
			r.FollowP99 = pubsubbench.Pct(p.Follow, .99)
			r.Errors = p.LostOrUnreached
		case "paced":
			r.PacedP99 = pubsubbench.Pct(append(slices.Clone(p.Leader), p.Follow...), .99)
		}
	}
	// CPU over both phases, per message published in them.
	if published > 0 && r.Ops > 0 {
		for i := range cpu1 {
			cpu1[i].cpu = cpu0[i].cpu + (cpu1[i].cpu-cpu0[i].cpu)*time.Duration(r.Ops)/time.Duration(published)
			cpu1[i].syscalls = cpu0[i].syscalls + (cpu1[i].syscalls-cpu0[i].syscalls)*r.Ops/published
		}
		r.setCPU(cpu0, cpu1)
	}
	return r, nil
}

// setCPU records the CPU and system calls the processes used between
// two cpusOf samples.
func (r *Result) setCPU(before, after []usage) {
	r.CPU, r.CPUs, r.Syscalls = 0, make([]time.Duration, len(after)), make([]int64, len(after))
	for i := range after {
		r.CPUs[i] = after[i].cpu - before[i].cpu
		r.Syscalls[i] = after[i].syscalls - before[i].syscalls
		r.CPU += r.CPUs[i]
	}
}

// usage is what a process has used so far.
type usage struct {
	cpu      time.Duration // user + system
	syscalls int64         // read and write system calls (syscr + syscw)
}

// cpusOf is what each process has used, in pids' order (zero for one
// that has gone).
func cpusOf(pids []int) []usage {
	d := make([]usage, len(pids))
	for i, pid := range pids {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "syscr: "); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					d[i].syscalls += n
				} else if v, ok := strings.CutPrefix(l, "syscw: "); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					d[i].syscalls += n
				}
			}
		}
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		// f[0] is field 3 (state): utime is field 14, stime 15, in USER_HZ (100/s).
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		d[i].cpu = time.Duration(u+st) * 10 * time.Millisecond
	}
	return d
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

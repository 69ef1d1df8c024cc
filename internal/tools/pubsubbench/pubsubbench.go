// Package pubsubbench is `tandem bench pubsub` (in tandem-bench): PUBLISH
// fan-out across a replicated cluster, tandem beside Redis on the same
// machine in one run.
//
// Each target is three servers on loopback, started fresh: tandem, 3
// nodes (n1 leads, static topology); Redis 7, a primary and 2 replicas
// (a Redis replica delivers the PUBLISHes of its replication stream to
// its own subscribers, as a tandem follower does). --subscribers
// subscribers, spread evenly over the three servers, each on its own
// connection, subscribe to one channel. Publishers on the leader (the
// primary) publish messages carrying their send time; every subscriber
// records publish→receipt latency, apart for subscribers on the leader
// and on the followers. Two phases per target:
//
//   - paced: one publisher, --rate messages per second: latency without
//     load;
//   - flood: --publishers publishers, each one PUBLISH at a time, for
//     --duration: PUBLISH/s, deliveries/s and latency under load.
//
// It prints per target and phase the figures, and tandem/redis ratios.
package pubsubbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/proc"
	"github.com/tandemdb/tandem/internal/tools/tandembin"
)

// Options is one run's load.
type Options struct {
	Subscribers int
	Publishers  int
	Rate        int
	Duration    time.Duration
	Targets     []string
	Out         io.Writer
	Log         *slog.Logger
}

// Target is three servers started fresh: Addrs[0] leads (tandem's n1,
// Redis's primary); Stop stops them all.
type Target struct {
	Name  string
	Addrs []string
	PIDs  []int // the server processes, in Addrs' order
	Stop  func() error
}

// Result is one phase on one target.
type Result struct {
	Target, Phase   string
	Published       int64
	Delivered       int64
	Seconds         float64
	Leader, Follow  []time.Duration // latencies of deliveries on the leader's and the followers' subscribers
	LostOrUnreached int64           // deliveries expected (published × subscribers) and not received
}

// NewCommand returns `bench pubsub`.
func NewCommand() *cobra.Command {
	var o Options
	var targets, dir string
	cmd := &cobra.Command{
		Use:   "pubsub",
		Short: "PUBLISH fan-out over a 3-node cluster: messages/s and publish→receipt latency on the leader vs the followers, against Redis",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Out = cmd.OutOrStdout()
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			o.Targets = splitComma(targets)
			if o.Subscribers < 3 || o.Publishers < 1 || o.Rate < 1 || o.Duration <= 0 {
				return errors.New("--subscribers at least 3, --publishers, --rate and --duration positive")
			}
			if dir == "" {
				d, err := os.MkdirTemp("", "tandem-pubsubbench-")
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
	f.IntVar(&o.Subscribers, "subscribers", 100, "subscribers, spread evenly over the 3 servers")
	f.IntVar(&o.Publishers, "publishers", 8, "concurrent publishers in the flood phase")
	f.IntVar(&o.Rate, "rate", 1000, "messages per second in the paced phase")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each phase")
	f.StringVar(&targets, "targets", "tandem,redis", "targets, in order: tandem, redis")
	f.StringVar(&dir, "dir", "", "where the servers keep their data (default: a temporary folder, removed)")
	return cmd
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// Run runs every target in turn and prints the report.
func Run(ctx context.Context, o Options, dir string) error {
	var results []Result
	for _, name := range o.Targets {
		t, err := Start(ctx, name, filepath.Join(dir, name), o.Log)
		if err != nil {
			return err
		}
		rs, err := Measure(ctx, t, o)
		if serr := t.Stop(); err == nil && serr != nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("pubsubbench: %s: %w", name, err)
		}
		results = append(results, rs...)
	}
	report(o.Out, o, results)
	return nil
}

// Start starts target name ("tandem": 3 nodes, n1 leading, async commit:
// the leader fsyncs before it acknowledges; "redis": a primary and 2
// replicas, appendfsync always) with its data under dir, and returns once
// every server has read a first write.
func Start(ctx context.Context, name, dir string, log *slog.Logger) (*Target, error) {
	switch name {
	case "tandem":
		return startTandem(ctx, dir, log)
	case "redis":
		return startRedis(ctx, dir)
	}
	return nil, fmt.Errorf("pubsubbench: unknown target %q (tandem, redis)", name)
}

func startTandem(ctx context.Context, dir string, log *slog.Logger) (*Target, error) {
	exe, err := tandembin.Path()
	if err != nil {
		return nil, fmt.Errorf("pubsubbench: %w", err)
	}
	c, err := cluster.Start(ctx, cluster.Config{Binary: exe, Dir: dir, Nodes: 3, ServerArgs: []string{"--log-level", "warn"}}, log)
	if err != nil {
		return nil, fmt.Errorf("pubsubbench: tandem: %w", err)
	}
	t := &Target{Name: "tandem", Stop: c.Stop}
	for _, n := range c.Nodes() {
		t.Addrs = append(t.Addrs, n.RESPAddr)
		t.PIDs = append(t.PIDs, n.PID)
	}
	// Followers stream (and so take messages) once they have a write.
	return t, waitReplicated(ctx, t, func(ctx context.Context, c *redis.Client) (bool, error) {
		return c.Get(ctx, "pubsubbench:ready").Val() == "1", nil
	})
}

func startRedis(ctx context.Context, dir string) (*Target, error) {
	ports, err := proc.FreePorts(3)
	if err != nil {
		return nil, fmt.Errorf("pubsubbench: redis: %w", err)
	}
	var servers []*proc.Process
	t := &Target{Name: "redis", Stop: func() error {
		var errs []error
		for _, p := range servers {
			errs = append(errs, p.Stop(10*time.Second))
		}
		return errors.Join(errs...)
	}}
	for i, port := range ports {
		d := filepath.Join(dir, "r"+strconv.Itoa(i+1))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Stop()
			return nil, err
		}
		args := []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--protected-mode", "no",
			"--dir", d, "--logfile", filepath.Join(d, "redis.log"),
			"--appendonly", "yes", "--appendfsync", "always", "--save", ""}
		if i > 0 {
			args = append(args, "--replicaof", "127.0.0.1", strconv.Itoa(ports[0]))
		}
		p, err := proc.Start(exec.Command("redis-server", args...))
		if err != nil {
			t.Stop()
			return nil, fmt.Errorf("pubsubbench: redis-server (apt-get install redis-server): %w", err)
		}
		servers = append(servers, p)
		t.PIDs = append(t.PIDs, p.Pid())
		t.Addrs = append(t.Addrs, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	}
	return t, waitReplicated(ctx, t, func(ctx context.Context, c *redis.Client) (bool, error) {
		return c.Get(ctx, "pubsubbench:ready").Val() == "1", nil
	})
}

// waitReplicated writes a key on the leader and waits until every other
// server reads it.
func waitReplicated(ctx context.Context, t *Target, ok func(context.Context, *redis.Client) (bool, error)) error {
	deadline := time.Now().Add(60 * time.Second)
	for i, addr := range t.Addrs {
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		for {
			if i == 0 {
				c.Set(ctx, "pubsubbench:ready", "1", 0)
			}
			if done, _ := ok(ctx, c); done {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Stop()
				return fmt.Errorf("pubsubbench: %s: %s did not get the first write in 60 s", t.Name, addr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return nil
}

// Measure subscribes o.Subscribers clients spread over t's servers and
// runs both phases (paced, flood).
func Measure(ctx context.Context, t *Target, o Options) ([]Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type sub struct {
		leader bool
		ps     *redis.PubSub
		c      *redis.Client
	}
	var subs []*sub
	defer func() {
		for _, s := range subs {
			s.ps.Close()
			s.c.Close()
		}
	}()
	for i := range o.Subscribers {
		addr := t.Addrs[i%len(t.Addrs)]
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
		ps := c.Subscribe(ctx, "bench")
		if _, err := ps.Receive(ctx); err != nil {
			return nil, fmt.Errorf("subscribe on %s: %w", addr, err)
		}
		subs = append(subs, &sub{leader: i%len(t.Addrs) == 0, ps: ps, c: c})
	}
	// Every subscriber reads on its own goroutine and records latencies
	// into the current phase.
	var mu sync.Mutex
	var cur *Result
	var delivered atomic.Int64
	var wg sync.WaitGroup
	for _, s := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch := s.ps.Channel(redis.WithChannelSize(10000))
			for m := range ch {
				sent, err := strconv.ParseInt(m.Payload, 10, 64)
				if err != nil {
					continue
				}
				lat := time.Duration(time.Now().UnixNano() - sent)
				delivered.Add(1)
				mu.Lock()
				if cur != nil {
					if s.leader {
						cur.Leader = append(cur.Leader, lat)
					} else {
						cur.Follow = append(cur.Follow, lat)
					}
				}
				mu.Unlock()
			}
		}()
	}
	pub := redis.NewClient(&redis.Options{Addr: t.Addrs[0], MaxRetries: -1, PoolSize: o.Publishers + 1})
	defer pub.Close()

	var out []Result
	for _, phase := range []string{"paced", "flood"} {
		r := &Result{Target: t.Name, Phase: phase}
		mu.Lock()
		cur = r
		mu.Unlock()
		before := delivered.Load()
		start := time.Now()
		var published atomic.Int64
		var pwg sync.WaitGroup
		var perr atomic.Value
		publish := func() bool {
			if err := pub.Publish(ctx, "bench", strconv.FormatInt(time.Now().UnixNano(), 10)).Err(); err != nil {
				perr.Store(err)
				return false
			}
			published.Add(1)
			return true
		}
		if phase == "paced" {
			tick := time.NewTicker(time.Second / time.Duration(o.Rate))
			for time.Since(start) < o.Duration {
				<-tick.C
				if !publish() {
					break
				}
			}
			tick.Stop()
		} else {
			for range o.Publishers {
				pwg.Add(1)
				go func() {
					defer pwg.Done()
					for time.Since(start) < o.Duration && publish() {
					}
				}()
			}
			pwg.Wait()
		}
		r.Seconds = time.Since(start).Seconds()
		if err, _ := perr.Load().(error); err != nil {
			return nil, fmt.Errorf("%s: PUBLISH: %w", phase, err)
		}
		// Let the deliveries in flight arrive (at most 10 s).
		want := published.Load() * int64(len(subs))
		for wait := time.Now(); delivered.Load()-before < want && time.Since(wait) < 10*time.Second; {
			time.Sleep(10 * time.Millisecond)
		}
		mu.Lock()
		cur = nil
		mu.Unlock()
		r.Published = published.Load()
		r.Delivered = delivered.Load() - before
		r.LostOrUnreached = want - r.Delivered
		out = append(out, *r)
	}
	for _, s := range subs {
		s.ps.Close()
	}
	wg.Wait()
	return out, nil
}

// Pct is the p-quantile (0..1) of ds (0 for none).
func Pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func report(w io.Writer, o Options, rs []Result) {
	fmt.Fprintf(w, "pub/sub fan-out: %d subscribers over 3 servers (1/3 on the leader), paced %d msg/s, flood %d publishers, %v per phase\n",
		o.Subscribers, o.Rate, o.Publishers, o.Duration)
	fmt.Fprintf(w, "%-7s %-6s %10s %12s %9s  %-21s  %-21s\n", "target", "phase", "publish/s", "delivered/s", "missing", "leader p50 / p99", "followers p50 / p99")
	for _, r := range rs {
		fmt.Fprintf(w, "%-7s %-6s %10.0f %12.0f %9d  %9v / %-9v  %9v / %-9v\n", r.Target, r.Phase,
			float64(r.Published)/r.Seconds, float64(r.Delivered)/r.Seconds, r.LostOrUnreached,
			Pct(r.Leader, .5).Round(time.Microsecond), Pct(r.Leader, .99).Round(time.Microsecond),
			Pct(r.Follow, .5).Round(time.Microsecond), Pct(r.Follow, .99).Round(time.Microsecond))
	}
	by := map[string]Result{}
	for _, r := range rs {
		by[r.Target+"/"+r.Phase] = r
	}
	for _, phase := range []string{"paced", "flood"} {
		t, okT := by["tandem/"+phase]
		r, okR := by["redis/"+phase]
		if !okT || !okR || r.Published == 0 {
			continue
		}
		fmt.Fprintf(w, "tandem/redis %s: publish/s %.2fx, followers p99 %.2fx\n", phase,
			(float64(t.Published)/t.Seconds)/(float64(r.Published)/r.Seconds),
			float64(Pct(t.Follow, .99))/float64(max(Pct(r.Follow, .99), 1)))
	}
}

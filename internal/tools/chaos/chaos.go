// Package chaos is tandem's Jepsen-style harness (`tandem chaos`): it starts
// a local cluster of real node processes, runs concurrent clients against
// it, injects faults on a schedule drawn from a seed, heals, waits for the
// replicas to converge, reads every key a last time and checks the history.
//
// The cluster runs under the control plane (an embedded etcd, two
// orchestrators; Options.Static for the old fixed topology), with a relay
// on every link a fault may cut: each directed node->node peer link, each
// orchestrator->node probe link, and each process's link to etcd. Faults
// aimed at "the leader" or "the active orchestrator" find it when they are
// injected; the clients send each operation to the leader the topology
// names at that moment.
//
// The work is split by job:
//
//	history/   what happened: operations, outcomes, faults, on one clock
//	workload/  the clients: registers, counters, follower reads; hashes,
//	           sets, lists, transfers and a queue (typed.go)
//	nemesis/   the faults and their seeded schedule
//	relay/     the fault-injecting TCP relay on a link
//	checker/   the checks, pure functions of the history and the facts
//
// This package wires them to internal/cluster (Run), collects the facts
// the history does not hold (Facts: leaderships from the node logs, the
// control plane's events from etcd, the rollback files' writes), turns the
// checks into a Report (Check), and provides the cobra command
// (NewCommand).
//
// Promises: the seed is always printed; any violation fails the run; a
// failed run (or one given a directory) keeps its history (history.json),
// the facts (facts.json), porcupine's HTML for every key that is not
// linearizable, and the node and orchestrator logs.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/tools/chaos/checker"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
	"github.com/tandemdb/tandem/internal/tools/chaos/nemesis"
	"github.com/tandemdb/tandem/internal/tools/chaos/relay"
	"github.com/tandemdb/tandem/internal/tools/chaos/workload"
	"github.com/tandemdb/tandem/internal/tools/tandembin"
)

// Options configures a run. The zero value of a field means its default.
type Options struct {
	// Duration of the workload (default 60 s); convergence, final reads
	// and checking come after it.
	Duration time.Duration
	// Faults are nemesis kind names; nil means nemesis.DefaultKinds, an
	// empty non-nil slice means no faults.
	Faults []string
	// Clients is the number of concurrent clients (default 8).
	Clients int
	// Rate bounds operations per second over all clients (default 200).
	// Keys are sized from it so each key sees about 4 operations a second.
	Rate float64
	// Nodes in the cluster (default 3).
	Nodes int
	// Seed drives the fault schedule and the clients' choices; 0 picks
	// one at random (it is printed either way).
	Seed uint64
	// Mode is the durability mode passed to every node (--mode); "" keeps
	// the server's default.
	Mode string
	// Static runs the old static topology (node 1 leads, no etcd, no
	// orchestrator, no failover); the default is the control plane with
	// an embedded etcd and two orchestrators.
	Static bool
	// Binary is the tandem executable; "" runs tandembin.Path's.
	Binary string
	// Dir is where data directories and artefacts go; "" uses a temporary
	// directory, removed when the run passes.
	Dir string
	// BasePort, if not 0, is where the cluster's ports begin
	// (cluster.Config.BasePort: RESP from it, peers from +100, HTTP from
	// +200); 0 picks free ports. The relays listen on free ports.
	BasePort int
	// ServerArgs are extra flags for every node, e.g. --buggify NAME.
	ServerArgs []string
	// OrchestratorArgs are extra flags for every orchestrator, e.g.
	// --follower-silence 1s.
	OrchestratorArgs []string
	// Policies are the read policies sessions run under, beside the plain
	// clients, in TANDEM.READPOLICY's syntax; nil means DefaultPolicies,
	// an empty non-nil slice none. "any" may be added: its stale reads are
	// counted, not violations.
	Policies []string
	// SessionsPerPolicy is how many sessions run each policy (default 2).
	SessionsPerPolicy int
	// FollowerLag is the lag injector: the last node runs with
	// --buggify follower-apply-delay=FollowerLag, so that while it follows
	// its reads are really behind (default 20 ms when sessions run;
	// negative: none).
	FollowerLag time.Duration
	// NoProxy runs every session on the nodes; by default (under the
	// control plane) the cluster has a tandem proxy and every other
	// session of each policy goes through it.
	NoProxy bool
	// NoTyped runs registers and counters only; by default the workload
	// also has hashes, sets, lists, transfers between accounts and a queue
	// (workload.DefaultTyped).
	NoTyped bool
	// CatchUpWithin bounds how long after a fault is healed every
	// follower may take to apply what the leader had applied at the heal
	// (default DefaultCatchUpWithin).
	CatchUpWithin time.Duration
	// OpTimeout bounds one client operation (default 1 s).
	OpTimeout time.Duration
	// CheckTimeout bounds porcupine per key (default 30 s); a key it cannot
	// decide is reported inconclusive.
	CheckTimeout time.Duration
	// Out receives the printed report (nil: not printed).
	Out io.Writer
	// Log receives progress (nil: discarded).
	Log *slog.Logger
}

// DefaultPolicies are the read policies a run checks by default: every
// policy that promises something of a follower read.
var DefaultPolicies = []string{"ryw", "monotonic", "bounded 50", "linearizable"}

func (o *Options) defaults() {
	if o.Policies == nil {
		o.Policies = DefaultPolicies
	}
	if o.SessionsPerPolicy <= 0 {
		o.SessionsPerPolicy = 2
	}
	if o.FollowerLag == 0 && len(o.Policies) > 0 {
		o.FollowerLag = 20 * time.Millisecond
	}
	if o.Duration <= 0 {
		o.Duration = 60 * time.Second
	}
	if o.Faults == nil {
		o.Faults = nemesis.DefaultKinds
	}
	if o.Clients <= 0 {
		o.Clients = 8
	}
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.Seed == 0 {
		o.Seed = rand.Uint64()>>1 | 1 // never 0, fits in an int64 flag
	}
	if o.OpTimeout <= 0 {
		o.OpTimeout = time.Second
	}
	if o.CatchUpWithin <= 0 {
		o.CatchUpWithin = DefaultCatchUpWithin
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = 30 * time.Second
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Run performs one chaos run and returns its report. The error is for the
// harness failing (cluster would not start, bad options); violations found
// in the cluster are in the report (Report.Violated), which Run also prints
// to Options.Out.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	log := opts.Log.With("seed", opts.Seed)
	redis.SetLogger(redisLog{log})
	kinds, err := nemesis.Lookup(opts.Faults)
	if err != nil {
		return nil, err
	}
	if err := workload.CheckPolicies(opts.Policies); err != nil {
		return nil, err
	}
	if opts.Binary == "" {
		if opts.Binary, err = tandembin.Path(); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	dir, temp := opts.Dir, opts.Dir == ""
	if temp {
		if dir, err = os.MkdirTemp("", "tandem-chaos-"); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
		// Nodes would start on an old run's data and the checks would
		// judge a history they did not see.
		return nil, fmt.Errorf("chaos: %s already holds a run's data; use an empty --dir", dir)
	}
	fmt.Fprintf(opts.Out, "tandem chaos: seed %d, %v, %d clients, %g ops/s, faults %v, dir %s\n",
		opts.Seed, opts.Duration, opts.Clients, opts.Rate, opts.Faults, dir)
	withProxy := !opts.Static && !opts.NoProxy && len(opts.Policies) > 0
	if len(opts.Policies) > 0 {
		lag := "none"
		if opts.FollowerLag > 0 {
			lag = fmt.Sprintf("%v on n%d", opts.FollowerLag, opts.Nodes)
		}
		via := "on the nodes"
		if withProxy {
			via = "every other one through tandem proxy"
		}
		fmt.Fprintf(opts.Out, "read policies: %d sessions each of %s (%s); follower lag %s\n", opts.SessionsPerPolicy, strings.Join(opts.Policies, ", "), via, lag)
	}

	if opts.Mode == "" {
		opts.Mode = commit.Default // the product's default, checked as strictly
		if opts.Static || opts.Nodes < 2 {
			opts.Mode = "async"
		}
	}
	links := newLinks(log)
	defer links.close()
	args := append([]string(nil), opts.ServerArgs...)
	args = append(args, "--mode", opts.Mode)
	ccfg := cluster.Config{
		Binary:     opts.Binary,
		Dir:        filepath.Join(dir, "data"),
		Nodes:      opts.Nodes,
		Route:      links.route,
		ServerArgs: args,
		BasePort:   opts.BasePort,
	}
	if opts.FollowerLag > 0 && opts.Nodes > 1 {
		ccfg.NodeArgs = map[int][]string{opts.Nodes: {"--buggify", "follower-apply-delay=" + opts.FollowerLag.String()}}
	}
	if !opts.Static {
		ccfg.ControlPlane, ccfg.Orchestrators, ccfg.Proxy = true, 2, withProxy
		// The cluster's mode lives in the topology; the orchestrator
		// writes it at bootstrap.
		ccfg.OrchestratorArgs = append([]string{"--mode", opts.Mode}, opts.OrchestratorArgs...)
	}
	c, err := cluster.Start(ctx, ccfg, log)
	if err != nil {
		return nil, fmt.Errorf("chaos: start cluster: %w", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = c.Stop()
		}
	}
	defer stop()

	conns := map[int]workload.Conn{}
	sconns := map[int]workload.SessionConn{}
	var topo nemesis.Topology
	for _, n := range c.Nodes() {
		// Sessions have their own pools: they leave read policies and
		// positions on the connections they use (see workload's sessions).
		sc := redis.NewClient(&redis.Options{
			Addr:                  n.RESPAddr,
			Protocol:              2,
			DisableIdentity:       true,
			MaxRetries:            -1,
			DialTimeout:           500 * time.Millisecond,
			ReadTimeout:           opts.OpTimeout,
			WriteTimeout:          opts.OpTimeout,
			ContextTimeoutEnabled: true,
			PoolSize:              len(opts.Policies)*opts.SessionsPerPolicy + 2,
		})
		defer sc.Close()
		sconns[n.ID] = sc
		cl := redis.NewClient(&redis.Options{
			Addr:                  n.RESPAddr,
			Protocol:              2,
			DisableIdentity:       true,
			MaxRetries:            -1, // a retried write is a second write
			DialTimeout:           500 * time.Millisecond,
			ReadTimeout:           opts.OpTimeout,
			WriteTimeout:          opts.OpTimeout,
			ContextTimeoutEnabled: true,
			PoolSize:              opts.Clients + 2,
		})
		defer cl.Close()
		conns[n.ID] = cl
		topo.Nodes = append(topo.Nodes, n.ID)
	}
	var proxyConn workload.SessionConn
	if p, ok := c.Proxy(); ok && withProxy {
		pc := redis.NewClient(&redis.Options{
			Addr:                  p.RESPAddr,
			Protocol:              2,
			DisableIdentity:       true,
			MaxRetries:            -1,
			DialTimeout:           500 * time.Millisecond,
			ReadTimeout:           opts.OpTimeout,
			WriteTimeout:          opts.OpTimeout,
			ContextTimeoutEnabled: true,
			PoolSize:              len(opts.Policies)*opts.SessionsPerPolicy + 2,
		})
		defer pc.Close()
		proxyConn = pc
	}
	leader, err := followLeader(ctx, c)
	if err != nil {
		return nil, err
	}
	defer leader.stop()
	keys := max(4, int(opts.Rate/4))
	wcfg := workload.Config{
		Clients:   opts.Clients,
		Registers: max(2, keys*3/5),
		Counters:  max(2, keys*2/5),
		Rate:      opts.Rate,
		OpTimeout: opts.OpTimeout,
		Seed:      opts.Seed,
		LeaderOf:  leader.get,
		Nodes:     topo.Nodes,

		Policies:          opts.Policies,
		SessionsPerPolicy: opts.SessionsPerPolicy,
		SessionConns:      sconns,
		ProxyConn:         proxyConn,
	}
	if !opts.NoTyped {
		wcfg.Typed = workload.DefaultTyped(wcfg.Registers, opts.Rate, opts.Duration)
	}
	if err := loadFunctions(ctx, c, leader.get, len(topo.Nodes)-1); err != nil {
		return nil, err
	}
	wcfg.Functions = true
	steps := nemesis.Plan(opts.Seed, kinds, topo, nemesis.DefaultTiming(opts.Duration))
	for _, s := range steps {
		log.Debug("planned fault", "step", s.String())
	}
	log.Info("chaos run starting", "faults", len(steps), "registers", wcfg.Registers, "counters", wcfg.Counters, "typed", fmt.Sprintf("%+v", wcfg.Typed), "control_plane", !opts.Static)

	rec := history.NewRecorder()
	// The nemesis's own writes (kill-leader-after-ack) are INCRs of the
	// first counter (and pushes and BRPOPs of the queue) by a client id
	// of their own, after the final reads'.
	env := &clusterEnv{c: c, links: links, conns: conns, rec: rec,
		key: wcfg.Keys()[wcfg.Registers], client: wcfg.Clients + 1, timeout: opts.OpTimeout, cfg: wcfg}
	// (Sessions are client ids from wcfg.SessionClient(0) = Clients+2.)
	runCtx, cancel := context.WithTimeout(ctx, opts.Duration)
	defer cancel()
	var wg sync.WaitGroup
	healed := make(chan struct{})
	wg.Go(func() {
		defer close(healed)
		nemesis.Run(runCtx, env, steps, time.Now(), rec, log)
	})
	// The followers' catch-up after each heal is watched beside the
	// nemesis, and the last one's wait may run on into convergence.
	var catchUps sync.WaitGroup
	catchUps.Go(func() { newCatchUpWatch(c, rec, opts.CatchUpWithin, log).run(ctx, healed) })
	defer catchUps.Wait()
	werr := workload.Run(runCtx, wcfg, conns, rec)
	wg.Wait() // every fault healed
	if werr != nil {
		return nil, werr
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}

	// Every node must be running for convergence; a node whose heal
	// failed is started once more (its failure is in the history). So is
	// every orchestrator.
	for _, n := range c.Nodes() {
		if n.PID == 0 {
			_ = c.Start(n.ID)
		}
	}
	for i, o := range c.Orchestrators() {
		if o.PID == 0 {
			_ = c.StartOrchestrator(i + 1)
		}
	}
	if !opts.Static {
		if _, err := c.WaitLeader(ctx, 30*time.Second); err != nil {
			log.Warn("no leader after the faults", "err", err)
		}
	}
	digests := converge(ctx, c, conns, 60*time.Second, log)
	finalCtx, cancelFinal := context.WithTimeout(ctx, 30*time.Second)
	if err := workload.FinalReads(finalCtx, wcfg, conns, rec); err != nil {
		log.Warn("final reads incomplete", "err", err)
	}
	if err := workload.FinalBalances(finalCtx, wcfg, conns, topo.Nodes, rec); err != nil {
		log.Warn("final balances incomplete", "err", err)
	}
	cancelFinal()
	catchUps.Wait()
	h := rec.History(opts.Seed)
	facts := Facts{Mode: opts.Mode, ControlPlane: !opts.Static}
	collectChanges(ctx, c, h, &facts)
	leader.stop()
	stop()
	collectFiles(c.Nodes(), c.LogPath, h, &facts)

	outDir := filepath.Join(dir, "out")
	r := Check(h, digests, facts, opts.CheckTimeout, outDir)
	// A failed run keeps its history to replay the check; so does a run
	// whose directory the caller chose.
	if r.Violated() || !temp {
		if err := os.MkdirAll(outDir, 0o755); err == nil {
			if err := h.WriteFile(filepath.Join(outDir, "history.json")); err != nil {
				log.Error("keep history", "err", err)
			}
			if err := facts.WriteFile(filepath.Join(outDir, "facts.json")); err != nil {
				log.Error("keep facts", "err", err)
			}
		}
		r.Dir = dir
	} else {
		os.RemoveAll(dir)
	}
	r.Print(opts.Out)
	return r, nil
}

// converge polls every node's TANDEM.DIGEST until all report the same
// applied LSN or the wait runs out, and returns the last round.
func converge(ctx context.Context, c *cluster.Cluster, conns map[int]workload.Conn, wait time.Duration, log *slog.Logger) []checker.Digest {
	deadline := time.Now().Add(wait)
	for {
		var ds []checker.Digest
		for _, n := range c.Nodes() {
			ds = append(ds, digest(ctx, n.ID, conns[n.ID]))
		}
		if checker.Converged(ds) {
			log.Info("replicas converged", "applied_lsn", ds[0].Applied)
			return ds
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			log.Warn("replicas did not converge", "digests", ds)
			return ds
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func digest(ctx context.Context, id int, conn workload.Conn) checker.Digest {
	d := checker.Digest{Node: id}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	v, err := conn.Do(ctx, "TANDEM.DIGEST").Slice()
	if err == nil && len(v) != 2 {
		err = fmt.Errorf("TANDEM.DIGEST returned %d items, want 2", len(v))
	}
	if err != nil {
		d.Err = err.Error()
		return d
	}
	lsn, ok1 := v[0].(int64)
	sum, ok2 := v[1].(string)
	if !ok1 || !ok2 || lsn < 0 {
		d.Err = fmt.Sprintf("TANDEM.DIGEST returned %T %T", v[0], v[1])
		return d
	}
	d.Applied, d.Sum = uint64(lsn), sum
	return d
}

// links holds the relays on every link the cluster lets the harness
// reroute, created as the cluster asks for addresses (cluster.Config's
// Route), before any process starts:
// each directed node->node peer link, each orchestrator->node probe link,
// and each process's link to etcd. A relay is a listener and a goroutine;
// a connection through it two more per direction, so 17 relays on a
// 3-node cluster cost little.
type links struct {
	log    *slog.Logger
	mu     sync.Mutex
	relays map[[2]string]*relay.Relay
}

func newLinks(log *slog.Logger) *links {
	return &links{log: log, relays: map[[2]string]*relay.Relay{}}
}

// route puts a relay on the link from -> to, whose real address is addr,
// and returns the relay's address. If the relay cannot listen, the link
// stays direct and faults on it fail to inject (and show in the report).
func (l *links) route(from, to, addr string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]string{from, to}
	if r, ok := l.relays[k]; ok {
		if r.Target() == addr {
			return r.Addr()
		}
		r.Close() // the cluster started again on other ports
	}
	r, err := relay.Listen(addr, l.log.With("link", from+"->"+to))
	if err != nil {
		l.log.Error("no relay on link", "from", from, "to", to, "err", err)
		delete(l.relays, k)
		return addr
	}
	l.relays[k] = r
	return r.Addr()
}

func (l *links) get(from, to string) *relay.Relay {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.relays[[2]string{from, to}]
}

func (l *links) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range l.relays {
		r.Close()
	}
}

// leaderWatch keeps the leader the topology names, for the workload (every
// operation goes to the node that leads at its start). Static: node 1.
type leaderWatch struct {
	id     atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

func followLeader(ctx context.Context, c *cluster.Cluster) (*leaderWatch, error) {
	w := &leaderWatch{done: make(chan struct{})}
	ctx, w.cancel = context.WithCancel(ctx)
	id, _, err := c.Leader(ctx)
	if err != nil {
		w.cancel()
		return nil, fmt.Errorf("chaos: who leads: %w", err)
	}
	w.id.Store(int64(id))
	store := c.Store()
	if store == nil {
		close(w.done)
		return w, nil
	}
	go func() {
		defer close(w.done)
		for t := range store.WatchTopology(ctx) {
			if id := nodeID(t.Leader); id != 0 {
				w.id.Store(int64(id))
			}
		}
	}()
	return w, nil
}

func (w *leaderWatch) get() int { return int(w.id.Load()) }

// loadFunctions loads the workload's function library on the leader and
// waits until the entry is durable on all followers (WAIT on the same
// connection), retrying for up to 30 s: the library is then in every
// node's log before any fault, so no failover may lose it, and an FCALL
// that finds no function is a violation (checker.Functions).
func loadFunctions(ctx context.Context, c *cluster.Cluster, leader func() int, followers int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		cl := redis.NewClient(&redis.Options{Addr: c.Node(leader()).RESPAddr, Protocol: 2, DisableIdentity: true,
			MaxRetries: -1, PoolSize: 1, ReadTimeout: 15 * time.Second})
		last = cl.Do(ctx, "FUNCTION", "LOAD", "REPLACE", workload.FunctionLibrary).Err()
		if last == nil {
			var n int64
			n, last = cl.Do(ctx, "WAIT", followers, 10000).Int64()
			if last == nil && n < int64(followers) {
				last = fmt.Errorf("WAIT: %d of %d followers have it", n, followers)
			}
		}
		cl.Close()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("chaos: load the workload's functions: %w", last)
}

func (w *leaderWatch) stop() {
	w.cancel()
	<-w.done
}

// clusterEnv adapts a cluster to the nemesis.
type clusterEnv struct {
	c     *cluster.Cluster
	links *links
	// Write's INCRs: on key, as client, each bounded by timeout.
	conns   map[int]workload.Conn
	rec     *history.Recorder
	key     string
	client  int
	timeout time.Duration
	// cfg is the workload's (Write pushes to and pops the queue when it
	// runs); pushes counts Write's pushes, which make its jobs unique.
	cfg    workload.Config
	pushes int
}

func (e *clusterEnv) Kill(id int) error   { return e.c.Kill(id) }
func (e *clusterEnv) Start(id int) error  { return e.c.Start(id) }
func (e *clusterEnv) Pause(id int) error  { return e.c.Pause(id) }
func (e *clusterEnv) Resume(id int) error { return e.c.Resume(id) }
func (e *clusterEnv) WaitReady(ctx context.Context, id int) error {
	return cluster.WaitReady(ctx, e.c.Node(id).RESPAddr)
}
func (e *clusterEnv) Link(from, to string) *relay.Relay { return e.links.get(from, to) }
func (e *clusterEnv) Write(ctx context.Context, id int) error {
	if e.cfg.Typed.Queue {
		// A push and a pop too: under kill-leader-after-ack, a pop
		// acknowledged and then lost puts its job back, and the queue
		// check sees it popped twice (or popped and still queued). The
		// push first, so that the pop (a BRPOP) finds a job even when the
		// consumers keep the queue empty: its own, or, if a blocked
		// consumer took that one, the next one pushed.
		e.pushes++
		e.rec.Add(workload.Do(ctx, e.conns, e.cfg, history.Op{Client: e.client, Key: workload.QueueKey, Kind: history.Enqueue,
			Value: fmt.Sprintf("%d.%d", e.client, e.pushes), Node: id}, e.rec))
		e.rec.Add(workload.Dequeue(ctx, e.conns, e.cfg, id, e.client, e.rec))
	}
	op := workload.Incr(ctx, e.conns, id, e.client, e.key, e.timeout, e.rec)
	e.rec.Add(op)
	if op.Outcome != history.OK {
		return fmt.Errorf("chaos: INCR %s on n%d: %s", e.key, id, op.Err)
	}
	return nil
}
func (e *clusterEnv) Leader(ctx context.Context) (int, error) {
	id, _, err := e.c.Leader(ctx)
	return id, err
}
func (e *clusterEnv) Nodes() []int {
	var ids []int
	for _, n := range e.c.Nodes() {
		ids = append(ids, n.ID)
	}
	return ids
}
func (e *clusterEnv) ActiveOrchestrator(ctx context.Context) (int, error) {
	store := e.c.Store()
	if store == nil {
		return 0, fmt.Errorf("%w: no orchestrators in a static cluster", nemesis.ErrUnsupported)
	}
	o, err := store.ActiveOrchestrator(ctx)
	if err != nil {
		return 0, err
	}
	var i int
	if _, err := fmt.Sscanf(o.ID, "o%d", &i); err != nil || i < 1 || i > len(e.c.Orchestrators()) {
		return 0, fmt.Errorf("chaos: active orchestrator %q is not one of this cluster's", o.ID)
	}
	return i, nil
}
func (e *clusterEnv) KillOrchestrator(i int) error  { return e.c.KillOrchestrator(i) }
func (e *clusterEnv) StartOrchestrator(i int) error { return e.c.StartOrchestrator(i) }

// ErrViolations is returned by the command when a run found violations.
var ErrViolations = errors.New("chaos: violations found")

// redisLog sends go-redis's own messages (failed dials while a node is down,
// which faults cause on purpose) to the debug log instead of stderr.
type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Debug(fmt.Sprintf(format, v...), "source", "go-redis")
}

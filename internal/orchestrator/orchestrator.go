// Package orchestrator is tandem's control plane process: it watches every
// node, detects a failed leader and fails over, and carries out the manual
// operations (promote, switchover).
//
// Several orchestrators may run; one is active, through an etcd election.
// Every orchestrator probes every registered member with the Heartbeat RPC
// (Config.Interval, default 100 ms) and feeds a failure detector per node
// (phi accrual by default, a plain timeout optionally), so that a standby
// that takes over already knows the cluster. A standby probes thirty
// times less often (standbyProbeFactor), and the active one a follower of
// a quiet cluster ten times less (quiet.go says when, and why the
// leader's detection and the followers' veto are unchanged).
//
// The active orchestrator applies the failover rule of package failover
// (its package comment states it whole): the probe's reading of each
// Heartbeat (failover.Probe), the four triggers and the followers' veto
// (failover.Decide), eligibility and ranking of candidates, and quorum K's
// two steps (failover.Elect). This package is its driver: it probes, takes
// a consistent view, and carries out the decision. A topology in etcd that
// does not decode is never acted on: the orchestrator logs why and shows it
// in its /status (topology_error) until it is fixed.
//
// To fail over it raises the epoch in etcd with a compare and swap naming the
// candidate (coord.SetTopology) and records the event; nodes watch the
// topology and change role themselves. The new leader gets a grace period
// in the detector (Config.Grace), so that a leader busy taking over is not
// failed over again.
//
// The failover policy (coord.FailoverPolicy, in etcd, changed at run time
// by `tandem failover-policy set`) acts after the rule, where a decision is
// carried out (gate, policy.go): under automatic (the default) a failover
// or fence is carried out at once; under manual, or while the stored policy
// does not parse, it never is, however long the leader is down: the
// failure is recorded (an event in etcd), reported in /status (leader_down,
// waiting_for_operator) and /metrics, and nothing more happens until
// `tandem promote` or the leader answers again. In both, the hooks
// (Config.Hooks, package hooks) are told of the detection, before and
// after each failover, promote and switchover; they run beside the
// failover and never delay it.
//
// Timing promise (with node.DefaultFenceAfter F = 100 ms): an old leader
// answers nothing later than F after the epoch changed in etcd, and the new
// one nothing earlier (see node's agent), so in every mode two leaders
// never answer in overlapping time. No failover happens while etcd is
// unreachable (the compare and swap cannot succeed), and the leader's lease
// is confirmed against etcd, so a leader cut off from etcd stops answering
// after F: etcd's availability bounds write availability.
package orchestrator

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/detector"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/hooks"
	"github.com/tandemdb/tandem/internal/orchestrator/orchapi"
)

// Config configures an orchestrator.
type Config struct {
	ID      string
	Etcd    []string
	Cluster string // "" means "tandem"
	// HTTPAddr serves /status and the manual operations.
	HTTPAddr string
	// SentinelAddr, if set, serves the Sentinel-compatible RESP endpoint
	// for master SentinelName (default "tandem"); every orchestrator,
	// active or standby, serves it.
	SentinelAddr string
	SentinelName string
	// Mode is the cluster's commit mode written at bootstrap (unset leaves
	// it to each node's --mode); later changes go through the topology.
	Mode coord.Mode
	// SyncFallback is the cluster's sync-fallback setting written at
	// bootstrap (see coord.Topology).
	SyncFallback coord.Fallback
	// Interval is the heartbeat interval (default 100 ms).
	Interval time.Duration
	// Detector is "phi" (default) or "timeout".
	Detector     string
	PhiThreshold float64       // default 8
	PhiMinStdDev time.Duration // default 25 ms
	Timeout      time.Duration // the timeout detector's limit (default 500 ms)
	// MinSilence: a leader the detector suspects is failed over only once
	// its probes have gone unanswered this long (default 250 ms). A leader
	// saturated by clients answers late while alive: under redis-benchmark
	// -c 50 -P 16 SET on 2 cores (`tandem bench failover`'s saturation
	// phase, load average ~18) its longest silence between two answers
	// was under 200 ms, its slowest answer under 125 ms. (Before probes
	// waited for late answers, 238 and 295 ms were seen, and this was
	// 500 ms.) A leader that answered late lately is waited for longer:
	// the interval plus twice its recent lateness, if that is more
	// (failover.NodeView.Slow); under 50-stream bulk load its answers
	// took up to 300 ms and it went 342 ms without one. A process that is
	// gone is failed over at once, on refused probes.
	MinSilence time.Duration
	// FollowerSilence: a follower that heard its leader's stream more
	// recently than this vouches for it (default 200 ms; leaders
	// heartbeat idle streams every 100 ms, every 50 ms while their
	// failsafe lease wants echoes). How long ago is what the
	// follower reported plus the age of its report
	// (failover.NodeView.HeardLeaderAgo), so a paused leader's followers
	// stop vouching this long after it stopped. A busy leader streams all
	// the time: in the same saturation phase, the leader's longest silence
	// on every channel at once (its answers and its followers' reports)
	// was under 175 ms; a follower whose stream went silent for longer
	// lately vouches for twice that (failover.NodeView.StreamGap). Both
	// silences must pass their bound for a
	// failover on suspicion; a paused leader is detected about
	// max(MinSilence − interval/2, FollowerSilence) after it stopped.
	// A follower whose answer is late (1.5 probe periods old) and
	// vouched when given is waited for until its next answer: the age
	// of a late answer is the follower's lateness, not the leader's
	// silence (failover.Decide).
	FollowerSilence time.Duration
	// NotLeadingAfter: a leader that answers but does not lead the
	// topology's epoch for this long is failed over (default 2 s).
	NotLeadingAfter time.Duration
	// NotAnsweringAfter: a leader whose lease has lapsed (it answers no
	// writer or reader: cut off from etcd without every follower's echo)
	// for this long is failed over, since it serves nothing anyway
	// (default 2 s, well past a new leader's 100 ms fence delay). Not
	// shorter: under a saturating load (bench/run.sh's 50-stream bulk
	// load on 2 cores) etcd and the lagging followers both confirmed the
	// lease too late for over 500 ms while the leader was alive, and the
	// failover that followed lost 13,713 acknowledged async writes.
	NotAnsweringAfter time.Duration
	// Grace: a new leader is not suspected for this long, or until it
	// answers as leader, whichever is first (default 1 s).
	Grace time.Duration
	// Bootstrap waits this long for every registered member to answer
	// before choosing the first leader (default 2 s).
	Bootstrap time.Duration
	// PreferredZone: among equally advanced candidates of equal priority,
	// choose one whose member record names this zone (failover.Choose
	// gives the whole rank; it never outranks durability or priority).
	// Every orchestrator of a cluster should be given the same.
	PreferredZone string
	Logger        *slog.Logger
	// PeerRoutes maps a member id to the peer address to probe it at
	// instead of the one it registered (the chaos harness's relays).
	PeerRoutes map[string]string
	// Changed, if set, is called after every topology change this
	// orchestrator sees (for the Sentinel endpoint).
	Changed func(old, new coord.Topology)
	// Hooks are the commands and URLs told of a detected failure and of
	// every failover, promote and switchover (package hooks); the active
	// orchestrator fires them. Hooks.Logger defaults to Logger.
	Hooks hooks.Config
}

func (c *Config) setDefaults() {
	if c.Cluster == "" {
		c.Cluster = "tandem"
	}
	if c.Interval <= 0 {
		c.Interval = 100 * time.Millisecond
	}
	if c.Detector == "" {
		c.Detector = "phi"
	}
	if c.PhiThreshold <= 0 {
		c.PhiThreshold = 8
	}
	if c.PhiMinStdDev <= 0 {
		c.PhiMinStdDev = 25 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = 500 * time.Millisecond
	}
	if c.FollowerSilence <= 0 {
		c.FollowerSilence = 200 * time.Millisecond
	}
	if c.MinSilence <= 0 {
		c.MinSilence = 250 * time.Millisecond
	}
	if c.NotLeadingAfter <= 0 {
		c.NotLeadingAfter = 2 * time.Second
	}
	if c.NotAnsweringAfter <= 0 {
		c.NotAnsweringAfter = 2 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = time.Second
	}
	if c.Bootstrap <= 0 {
		c.Bootstrap = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Orchestrator is a running orchestrator.
type Orchestrator struct {
	cfg   Config
	log   *slog.Logger
	store *coord.Store

	httpLis  net.Listener
	httpSrv  *http.Server
	sentinel *sentinelEndpoint

	// opMu serialises topology changes made by this orchestrator
	// (failover, promote, switchover).
	opMu sync.Mutex

	mu       sync.Mutex
	active   bool
	topo     coord.Topology
	haveTopo bool
	members  map[string]coord.Member
	peers    []coord.Orchestrator // the other registered orchestrators
	nodes    map[string]*nodeState
	last     *coord.Event // the last change this orchestrator made; its fields change under mu
	evMu     sync.Mutex   // orders amendEvent's records of one event
	etcdOK   time.Time    // the last successful etcd read
	// session is the election session's Done (nil before the first):
	// while open, etcd answers its keepalives (etcdReachable).
	session <-chan struct{}
	started time.Time
	noted   map[string]time.Time // rate limit for repeated log lines
	// policy is the cluster's failover policy as last watched ("" before
	// the first read); policyErr says why the stored one does not parse.
	// Either way only FailoverAutomatic lets gate carry out a failover.
	policy    coord.FailoverPolicy
	policyErr error
	outage    *outage // the failed leader not yet replaced (policy.go)
	held      uint64  // failover decisions the policy held (tests)
	hooks     *hooks.Runner
	stats     *detectStats // nil in tests that build an Orchestrator by hand
	// late: how late decideLoop's timers fired lately (View.Late).
	late failover.RecentMax
	// rounds counts decideLoop's rounds while active, timerRounds those
	// its own timer started (the rest came in another wake-up: an
	// answer, a failed probe, a topology change). Tests read them.
	rounds, timerRounds atomic.Int64

	// topoErr: the topology stored in etcd does not decode (topo is the
	// last one that did); nothing is changed until it does.
	topoErr error

	// activated is closed and replaced when this orchestrator becomes
	// active: it wakes the probers out of a standby's slow rhythm.
	activated chan struct{}

	// decideNow (capacity 1) wakes decideLoop at once: a probe failed,
	// the topology changed, or this orchestrator became active.
	decideNow chan struct{}

	// Quiet cadence (quietProbeFactor): hurried is closed and replaced
	// when the followers' probers must leave the quiet cadence at once;
	// stirred is the last time anything was amiss or the leader's log
	// moved (zero: never quiet yet, see quiet).
	hurried chan struct{}
	stirred time.Time
	stirs   int64 // quiet spells ended (metrics)

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// standbyProbeFactor: a standby orchestrator probes every this many
// intervals (3 s by default), not every interval: it decides nothing, and
// its probes were a third of every idle node's RPCs at the interval, and
// at 1 s still 3 of the idle cluster's 15 a second (TestIdleProbeRate).
// It keeps the members' connections open and its status and Sentinel
// endpoint current within a few seconds (the topology, which names the
// leader, it watches); on becoming active it probes at the interval at
// once with fresh detectors (becomeActive), so nothing the rule uses
// comes from this rhythm.
const standbyProbeFactor = 30

// becomeActive marks this orchestrator active. Its detectors learnt a
// standby's slow rhythm, so each node gets a fresh one, which counts the
// activation as a heartbeat of every node that ever answered: a node that
// died while this orchestrator stood by is suspected an interval's
// detection time after it takes over, and a live one is not suspected
// before its first probe at the interval answers. The probers are woken.
func (o *Orchestrator) becomeActive() {
	now := time.Now()
	o.mu.Lock()
	o.active = true
	o.stir(now) // quiet again only after quietAfter of calm
	for _, ns := range o.nodes {
		det := o.detectorFor()
		if ns.probe.Reply != nil {
			det.Heartbeat(now)
		}
		ns.probe.Restart(det)
	}
	if o.activated != nil {
		close(o.activated)
	}
	o.activated = make(chan struct{})
	o.mu.Unlock()
	o.wakeDecide()
}

// wakeDecide makes decideLoop evaluate the rule now.
func (o *Orchestrator) wakeDecide() {
	select {
	case o.decideNow <- struct{}{}:
	default:
	}
}

// nodeState is what the orchestrator knows of one node: its member record
// and what its probes established.
type nodeState struct {
	member   coord.Member
	probe    failover.Probe
	probeCtl context.CancelFunc
	// every is the period its prober keeps now (zero: the interval):
	// quietProbeFactor intervals for a follower while the cluster is
	// quiet. An answer stays fresh for three periods.
	every time.Duration
}

// period is the node's probe period (see nodeState.every).
func (ns *nodeState) period(interval time.Duration) time.Duration {
	return max(ns.every, interval)
}

// rules are the failover rule's timings from the configuration.
func (c *Config) rules() failover.Rules {
	return failover.Rules{Bootstrap: c.Bootstrap, Interval: c.Interval, MinSilence: c.MinSilence, FollowerSilence: c.FollowerSilence,
		NotLeadingAfter: c.NotLeadingAfter, NotAnsweringAfter: c.NotAnsweringAfter}
}

// Start connects to etcd, starts probing and campaigns for the election.
func Start(cfg Config) (*Orchestrator, error) {
	cfg.setDefaults()
	cli, err := coord.Dial(cfg.Etcd)
	if err != nil {
		return nil, err
	}
	o := &Orchestrator{
		cfg: cfg, log: cfg.Logger.With("orchestrator", cfg.ID), store: coord.New(cli, cfg.Cluster),
		members: map[string]coord.Member{}, nodes: map[string]*nodeState{}, decideNow: make(chan struct{}, 1), activated: make(chan struct{}),
		hurried: make(chan struct{}),
		started: time.Now(), noted: map[string]time.Time{}, stats: newDetectStats(),
	}
	o.ctx, o.cancel = context.WithCancel(context.Background())
	if cfg.HTTPAddr != "" {
		if o.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			cli.Close()
			return nil, fmt.Errorf("orchestrator: http listener: %w", err)
		}
		o.httpSrv = &http.Server{Handler: o.handler(), ReadHeaderTimeout: 5 * time.Second}
		go o.httpSrv.Serve(o.httpLis)
	}
	if err := o.startSentinel(); err != nil {
		if o.httpSrv != nil {
			o.httpSrv.Close()
		}
		cli.Close()
		return nil, err
	}
	if len(cfg.Hooks.Commands)+len(cfg.Hooks.URLs) > 0 {
		hc := cfg.Hooks
		if hc.Logger == nil {
			hc.Logger = o.log
		}
		o.hooks = hooks.New(hc)
	}
	o.wg.Add(5)
	go o.watchPolicy()
	go o.watchTopology()
	go o.watchMembers()
	go o.campaign()
	go o.decideLoop()
	return o, nil
}

// HTTPAddr is the bound status/operations address.
func (o *Orchestrator) HTTPAddr() string {
	if o.httpLis == nil {
		return ""
	}
	return o.httpLis.Addr().String()
}

// Active reports whether this orchestrator holds the election.
func (o *Orchestrator) Active() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.active
}

// Close stops the orchestrator (resigning if active).
func (o *Orchestrator) Close() {
	o.cancel()
	if o.httpSrv != nil {
		o.httpSrv.Close()
	}
	if o.sentinel != nil {
		o.sentinel.srv.Close()
	}
	o.wg.Wait()
	o.hooks.Close() // what is queued runs, within the hook timeout
	o.store.Client().Close()
}

func (o *Orchestrator) detectorFor() detector.Detector {
	return o.detectorEvery(o.cfg.Interval)
}

// detectorEvery is a fresh detector for a node probed every period (the
// timeout detector's limit grows with it).
func (o *Orchestrator) detectorEvery(period time.Duration) detector.Detector {
	if o.cfg.Detector == "timeout" {
		return detector.NewTimeout(o.cfg.Timeout + period - o.cfg.Interval)
	}
	return detector.NewPhi(detector.PhiConfig{Threshold: o.cfg.PhiThreshold, MinStdDev: o.cfg.PhiMinStdDev, FirstInterval: period})
}

// sessionTTL is the election session's lease, in seconds: a standby takes
// over an active orchestrator that died (or was cut off from etcd) this
// long after its last keepalive, plus up to half a second of etcd's lease
// expiry; one that stops cleanly resigns at once. Its keepalives go out
// every TTL/3, on etcd's client's half-second rhythm: one a second at
// 2 s, two at 1 s (an idle etcd's largest source of requests). 2 s is
// also the least an external etcd with default settings grants, and the
// embedded one's (package embedded).
const sessionTTL = 2

// campaign holds the election for as long as this process lives; a lost
// session (etcd unreachable longer than its TTL) campaigns again.
func (o *Orchestrator) campaign() {
	defer o.wg.Done()
	for o.ctx.Err() == nil {
		sess, err := o.store.Session(sessionTTL)
		if err != nil {
			o.log.Warn("election: no etcd session; retrying", "err", err)
			coord.Sleep(o.ctx, 200*time.Millisecond)
			continue
		}
		o.mu.Lock()
		o.session = sess.Done()
		o.mu.Unlock()
		me := coord.Orchestrator{ID: o.cfg.ID, HTTPAddr: o.HTTPAddr(), SentinelAddr: o.SentinelAddr()}
		rctx, rcancel := context.WithTimeout(o.ctx, 2*time.Second)
		if err := o.store.RegisterOrchestrator(rctx, sess, me); err != nil {
			o.log.Warn("election: register", "err", err)
		}
		rcancel()
		if err := coord.Campaign(o.ctx, o.store.Election(sess), me); err != nil {
			sess.Close()
			continue
		}
		o.becomeActive()
		o.log.Info("election: this orchestrator is active")
		select {
		case <-sess.Done():
			o.log.Warn("election: session lost; standing by")
		case <-o.ctx.Done():
		}
		o.mu.Lock()
		o.active = false
		o.mu.Unlock()
		sess.Close() // resigns: a standby takes over at once
	}
}

func (o *Orchestrator) watchTopology() {
	defer o.wg.Done()
	for w := range o.store.WatchTopologyChecked(o.ctx) {
		if w.Err != nil {
			o.mu.Lock()
			o.topoErr = w.Err
			o.mu.Unlock()
			o.log.Error("the topology in etcd does not decode: no failover, promote or switchover until it is fixed", "err", w.Err)
			continue
		}
		t := w.Topology
		o.mu.Lock()
		old, had := o.topo, o.haveTopo
		o.topo, o.haveTopo, o.topoErr = t, true, nil
		o.stir(time.Now()) // every member's answer matters now
		if had && old.Leader != t.Leader {
			if ns := o.nodes[t.Leader]; ns != nil {
				ns.probe.GiveGrace(time.Now(), o.cfg.Grace)
			}
		}
		o.mu.Unlock()
		o.sentinelChanged()
		o.wakeDecide()
		if o.cfg.Changed != nil {
			o.cfg.Changed(old, t)
		}
	}
}

// The registered members (and orchestrators) are read from etcd when a
// watch says they changed (coord.WatchPrefixes), and at least every
// membersEvery; every membersEveryBootstrap before there is a topology,
// so that the members that start together are all probed when the first
// leader is chosen. A member's record changes only when it registers (a
// start or restart): a read every second cost etcd two range requests a
// second per orchestrator for nothing.
const (
	membersEvery          = 10 * time.Second
	membersEveryBootstrap = 300 * time.Millisecond
)

// etcdOKWithin: status says etcd is reachable if a read succeeded this
// recently, or the election session is alive (its keepalives are answered
// every second).
const etcdOKWithin = 2500 * time.Millisecond

// etcdReachable says whether etcd answered lately (Status). Call with
// o.mu held.
func (o *Orchestrator) etcdReachable() bool {
	if time.Since(o.etcdOK) < etcdOKWithin {
		return true
	}
	if o.session == nil {
		return false
	}
	select {
	case <-o.session:
		return false
	default:
		return true
	}
}

// watchMembers keeps a prober per registered member.
func (o *Orchestrator) watchMembers() {
	defer o.wg.Done()
	changed := o.store.WatchPrefixes(o.ctx, "members/", "orchestrators/")
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(o.ctx, time.Second)
		ms, err := o.store.Members(ctx)
		orchs, oerr := o.store.Orchestrators(ctx)
		cancel()
		if oerr == nil {
			var peers []coord.Orchestrator
			for _, p := range orchs {
				if p.ID != o.cfg.ID {
					peers = append(peers, p)
				}
			}
			o.mu.Lock()
			o.peers = peers
			o.mu.Unlock()
		}
		if err == nil {
			o.mu.Lock()
			o.etcdOK = time.Now()
			for _, m := range ms {
				o.members[m.ID] = m
				ns := o.nodes[m.ID]
				if ns != nil && ns.member.PeerAddr == m.PeerAddr {
					ns.member = m
					continue
				}
				if ns != nil {
					ns.probeCtl()
				}
				pctx, pcancel := context.WithCancel(o.ctx)
				ns = &nodeState{member: m, probe: failover.Probe{Det: o.detectorFor()}, probeCtl: pcancel}
				o.nodes[m.ID] = ns
				o.wg.Add(1)
				go o.probe(pctx, ns)
			}
			o.mu.Unlock()
		}
		o.mu.Lock()
		every := membersEvery
		if !o.haveTopo {
			every = membersEveryBootstrap
		}
		o.mu.Unlock()
		t.Reset(every)
		select {
		case <-t.C:
		case <-changed:
			t.Stop()
		case <-o.ctx.Done():
			return
		}
	}
}

// peerAddr is where this orchestrator reaches member m.
func (o *Orchestrator) peerAddr(m coord.Member) string {
	if a, ok := o.cfg.PeerRoutes[m.ID]; ok {
		return a
	}
	return m.PeerAddr
}

// snapshot is one consistent reading of what the orchestrator knows.
func (o *Orchestrator) snapshot() failover.View {
	v, _ := o.snapshotPeriods()
	return v
}

// snapshotPeriods is snapshot with each node's probe period in the same
// reading.
func (o *Orchestrator) snapshotPeriods() (failover.View, map[string]time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	periods := make(map[string]time.Duration, len(o.nodes))
	for id, ns := range o.nodes {
		periods[id] = ns.period(o.cfg.Interval)
	}
	now := time.Now()
	v := failover.View{Now: now, Topo: o.topo, HaveTopo: o.haveTopo, TopoErr: o.topoErr, PreferredZone: o.cfg.PreferredZone, Late: o.late.At(now)}
	for id, ns := range o.nodes {
		p := ns.period(o.cfg.Interval)
		nv := ns.probe.View(id, ns.member, now, 3*p)
		nv.Period = p // its answers are late after 1.5 of these (failover.NodeView.AnswerLate)
		v.Nodes = append(v.Nodes, nv)
	}
	sort.Slice(v.Nodes, func(i, j int) bool { return v.Nodes[i].ID < v.Nodes[j].ID })
	return v, periods
}

// note logs msg at most once a second per key.
func (o *Orchestrator) note(key, msg string, args ...any) {
	o.mu.Lock()
	last := o.noted[key]
	ok := time.Since(last) > time.Second
	if ok {
		o.noted[key] = time.Now()
	}
	o.mu.Unlock()
	if ok {
		o.log.Warn(msg, args...)
	}
}

// errNotActive: an operation asked of a standby orchestrator.
var errNotActive = orchapi.ErrNotActive

package node

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/orchestrator/orchapi"
	"github.com/tandemdb/tandem/internal/replication"
)

// DefaultFenceAfter is Config.FenceAfter's default: how long a leader
// answers after its last confirmation against etcd, and how long a newly
// promoted leader waits before it answers.
const DefaultFenceAfter = 100 * time.Millisecond

// leaseKeepalive is how often an idle leader confirms its lease: five fence
// delays (500 ms by default). It bounds how long after its last
// confirmation an idle leader cut off from etcd and its followers still
// says it can answer (Lease.Answerable), and costs one etcd read each.
func leaseKeepalive(fence time.Duration) time.Duration { return 5 * fence }

// The agent is the node's side of the control plane. It registers the node
// as a member, watches the topology and obeys it:
//
//   - named leader at epoch E: lead E, committing by the topology's mode
//     (modeOf) from the first write, under a lease that begins
//     FenceAfter after the agent saw the topology; if this node has seen
//     E already (it led E before a restart, or its leadership of E
//     stopped), first move the topology to a new epoch naming it again
//     (newEpoch, a compare and swap from E): a leadership never resumes
//     an epoch;
//   - another node named: revoke this node's lease first (a leader stops
//     answering at once), persist E (so that this node refuses any stream
//     from a lower epoch), then follow the named leader.
//
// While leading and answering, it confirms every FenceAfter/5 with a
// linearizable read that the topology still names it at its epoch, and
// extends the lease to the moment it asked plus FenceAfter; while idle it
// confirms only on demand and every keepalive (renew). When etcd does not answer, the
// lease is extended instead to the send time of the oldest stream message
// that every other member has echoed, plus FenceAfter (failsafe: a short
// etcd outage does not stop a leader that all its followers hear; the
// orchestrator promotes only a follower silent for FollowerSilence >
// FenceAfter, and cannot promote at all without etcd). So an old leader answers nothing
// later than FenceAfter after the epoch changed in etcd, whether it hears
// of it or not; and the new leader answers nothing earlier than FenceAfter
// after that change, since it learnt of it no sooner. Their answers never
// overlap in time, in any commit mode.
type agent struct {
	n     *Node
	store *coord.Store
	fence time.Duration
	// keepalive is how often an idle leader confirms its lease (renew).
	keepalive time.Duration
	wake      chan struct{} // capacity 1: apply installed a leadership
	// confirmations counts the etcd reads renew started (tests, metrics).
	confirmations atomic.Int64
	// newEpochAt is when apply last moved the topology to a new epoch
	// (newEpoch); only apply's goroutine touches it.
	newEpochAt time.Time

	mu    sync.Mutex
	topo  coord.Topology // the last topology seen
	peers []string       // the other members' ids, for the failsafe lease

	peersRead   time.Time   // renew's etcd reads only (one at a time)
	peersLeader *leading    // whose format gate the last refresh fed
	failsafe    atomic.Bool // the lease is held by follower echoes, not etcd
	degraded    atomic.Bool // sync-fallback has degraded the leader to async
	syncShort   atomic.Bool // fewer sync-set members are there than sync-min
}

func (n *Node) startAgent() error {
	cli, err := coord.Dial(n.cfg.Etcd)
	if err != nil {
		return err
	}
	cluster := n.cfg.Cluster
	if cluster == "" {
		cluster = "tandem"
	}
	fence := n.cfg.FenceAfter
	if fence <= 0 {
		fence = DefaultFenceAfter
	}
	a := &agent{n: n, store: coord.New(cli, cluster), fence: fence, keepalive: leaseKeepalive(fence), wake: make(chan struct{}, 1)}
	n.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	n.bg.Add(2)
	go func() {
		defer n.bg.Done()
		a.run(ctx)
	}()
	go func() {
		defer n.bg.Done()
		a.renew(ctx)
	}()
	go func() {
		<-n.closed
		cancel()
		cli.Close()
	}()
	return nil
}

// run registers the member and follows the topology until ctx ends.
func (a *agent) run(ctx context.Context) {
	n := a.n
	respAddr, peerAddr, httpAddr := n.Addrs()
	m := coord.Member{ID: n.cfg.ID, RESPAddr: respAddr, PeerAddr: peerAddr, HTTPAddr: httpAddr,
		Zone: n.cfg.Zone, Priority: n.cfg.Priority, PID: os.Getpid(), LogFormat: logrec.MaxFormat}
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := a.store.PutMember(cctx, m)
		cancel()
		if err == nil {
			break
		}
		n.log.Warn("control plane: cannot register; retrying", "err", err)
		if !coord.Sleep(ctx, 200*time.Millisecond) {
			return
		}
	}
	n.log.Info("control plane: registered", "etcd", n.cfg.Etcd)
	// A topology the node could not obey (its leader not registered yet,
	// not reachable, etcd slow) is tried again every retryEvery until it
	// can: apply is a no-op when the role already matches. Once it matches
	// (settled), only every settledEvery: the retry woke every node four
	// times a second for nothing. A role that ends by itself (a stream or
	// leadership that stops) wakes the loop at once (agentRoleSet), and a
	// stream that is down keeps the retry at retryEvery (its leader may
	// have moved).
	const (
		retryEvery   = 250 * time.Millisecond
		settledEvery = 2 * time.Second
	)
	retry := time.NewTimer(retryEvery)
	defer retry.Stop()
	applyTopology := func(t coord.Topology) {
		a.apply(ctx, t)
		if a.settled(t) {
			retry.Reset(settledEvery)
		} else {
			retry.Reset(retryEvery)
		}
	}
	// The sync-set policy steps while this node leads (a follower's agent
	// does not wake for it): every syncEvery while something is under
	// way, and once it is settled (failover.SyncStep.Until) only when a
	// follower stream opens or closes, the topology changes, or Until
	// comes: an idle leader's agent wakes about twice a second for it.
	const syncEvery = 50 * time.Millisecond
	syncTimer := time.NewTimer(syncEvery)
	syncTimer.Stop()
	defer syncTimer.Stop()
	var (
		syncLeader  *leading        // the leadership whose policy is stepped
		syncChanged <-chan struct{} // its FollowersChanged
	)
	syncStep := func() {
		r, leading := n.current().(*leading)
		if !leading {
			syncLeader, syncChanged = nil, nil
			syncTimer.Stop()
			return
		}
		// The first step of a leadership at once: a new leader's sync
		// set is what makes its followers candidates in sync modes.
		syncLeader, syncChanged = r, r.l.FollowersChanged()
		d := syncEvery
		if until := a.manageSyncSet(ctx, r); !until.IsZero() {
			d = max(time.Until(until), syncEvery)
		}
		syncTimer.Reset(d)
	}
	// syncWhileLeading steps at once when the role changed since the
	// last step.
	syncWhileLeading := func() {
		r, leading := n.current().(*leading)
		if (leading && r != syncLeader) || (!leading && syncLeader != nil) {
			syncStep()
		}
	}
	topos := a.store.WatchTopologyChecked(ctx)
	var have bool
	for {
		select {
		case w, ok := <-topos:
			if !ok {
				return
			}
			if w.Err != nil {
				// Obey the last topology that decoded: a garbled one names
				// no rule this node could follow.
				n.log.Error("control plane: the topology in etcd does not decode; keeping the last one that did", "err", w.Err)
				continue
			}
			t := w.Topology
			a.mu.Lock()
			a.topo = t
			a.mu.Unlock()
			have = true
			applyTopology(t)
			syncStep() // the rules or the published set may have changed
		case <-retry.C:
			if have {
				applyTopology(a.topology())
			} else {
				retry.Reset(retryEvery)
			}
			syncWhileLeading()
		case <-n.agentRoleSet:
			if have {
				applyTopology(a.topology())
			}
			syncWhileLeading()
		case <-syncTimer.C:
			syncStep()
		case <-syncChanged:
			syncStep()
		case <-ctx.Done():
			return
		}
	}
}

// newEpochEvery is the least time between two new epochs an agent asks for
// (newEpoch).
const newEpochEvery = time.Second

// newEpoch moves the topology t, which names this node leader at an epoch
// it has already seen, to a new epoch above every one this node has seen,
// naming it again with the same rules and sync set, by a compare and swap
// from t.Epoch (an orchestrator that changed the topology meanwhile wins,
// and the watch delivers its change). It returns the topology written.
func (a *agent) newEpoch(ctx context.Context, t coord.Topology) (coord.Topology, error) {
	n := a.n
	next := t
	next.Epoch = max(t.Epoch, n.db.Epoch()) + 1
	next.Reason = fmt.Sprintf("%s leads again at a new epoch (it had used epoch %d)", n.cfg.ID, t.Epoch)
	next.Changed = time.Now()
	ev := &coord.Event{Kind: "new-epoch", Reason: next.Reason, From: n.cfg.ID, To: n.cfg.ID, OldEpoch: t.Epoch, NewEpoch: next.Epoch}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := a.store.SetTopology(cctx, t.Epoch, next, ev); err != nil {
		return coord.Topology{}, fmt.Errorf("node: move the topology from epoch %d to %d: %w", t.Epoch, next.Epoch, err)
	}
	n.log.Info("control plane: leading again at a new epoch", "old_epoch", t.Epoch, "epoch", next.Epoch)
	// The watch delivers it too; until then a retry must not act on t.
	a.mu.Lock()
	if a.topo.Epoch < next.Epoch {
		a.topo = next
	}
	a.mu.Unlock()
	return next, nil
}

// apply makes the node's role match t.
func (a *agent) apply(ctx context.Context, t coord.Topology) {
	n := a.n
	seen := time.Now()
	if t.Leader == n.cfg.ID {
		// Valid from seen+fence, once renew has confirmed it.
		lease := replication.NewLease(seen.Add(a.fence))
		if r, ok := n.current().(*leading); ok && r.l.Epoch() == t.Epoch {
			return
		}
		if !replication.EpochFree(n.db, t.Epoch, n.cfg.Buggify) {
			// Named at an epoch this node has seen: it led it before a
			// restart, or a leadership of it stopped. It never leads an
			// epoch twice (replication.BeginEpoch says why): ask etcd for
			// a new one first. At most one a newEpochEvery: a node whose
			// every leadership stops at once (a log that cannot be
			// written) must not churn epochs in etcd.
			if time.Since(a.newEpochAt) < newEpochEvery {
				return
			}
			a.newEpochAt = time.Now()
			next, err := a.newEpoch(ctx, t)
			if err != nil {
				n.log.Warn("control plane: cannot get a new epoch to lead again", "epoch", t.Epoch, "err", err)
				return
			}
			t = next
			// Valid from FenceAfter after the epoch changed in etcd, as
			// for any new leader.
			lease = replication.NewLease(time.Now().Add(a.fence))
		}
		if err := n.leadAt(t.Epoch, lease, a.modeOf(t)); err != nil {
			n.log.Error("control plane: cannot lead the epoch the topology gives", "epoch", t.Epoch, "err", err)
			return
		}
		select { // renew confirms the new leadership at once
		case a.wake <- struct{}{}:
		default:
		}
		first := n.db.Durable().LSN + 1
		if h := n.db.EpochHistory(); len(h) > 0 && h[len(h)-1].Epoch == t.Epoch {
			first = h[len(h)-1].LSN
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := a.store.RecordFirstLSN(cctx, t.Epoch, n.cfg.ID, first); err != nil {
			n.log.Warn("control plane: record epoch start", "epoch", t.Epoch, "err", err)
		}
		cancel()
		return
	}
	// Someone else leads: stop answering first.
	if r, ok := n.current().(*leading); ok && r.lease != nil {
		r.lease.Revoke()
	}
	if _, fenced := n.current().(*fenced); t.Leader == "" && !fenced {
		// An epoch with no leader fences the one before while a successor
		// is chosen (quorum modes): the stream stops before the epoch is
		// persisted, so once the node reports it (Heartbeat) its log takes
		// no more entries of the old epoch.
		n.Fence(fmt.Sprintf("epoch %d: a new leader is being chosen", t.Epoch))
	}
	if t.Epoch > n.db.Epoch() {
		if err := n.db.ObserveEpoch(t.Epoch); err != nil {
			n.fatal(fmt.Errorf("node: persist epoch %d from the topology: %w", t.Epoch, err))
			return
		}
	}
	if r, ok := n.current().(*following); ok && r.leaderID == t.Leader && r.f.Status().Connected {
		// Already following it, and its stream is up: the retry ticker
		// costs no etcd read (a moved leader breaks the stream first).
		select {
		case <-r.done:
		default:
			return
		}
	}
	members, err := a.members(ctx)
	if err != nil {
		n.Fence("control plane: " + err.Error())
		return
	}
	var leader *coord.Member
	for i := range members {
		if members[i].ID == t.Leader {
			leader = &members[i]
		}
	}
	if leader == nil {
		if t.Leader != "" {
			n.Fence(fmt.Sprintf("the topology names leader %q, which is not a registered member", t.Leader))
		}
		return
	}
	if route, ok := n.cfg.PeerRoutes[leader.ID]; ok {
		leader.PeerAddr = route
	}
	if r, ok := n.current().(*following); ok && r.leaderPeer == leader.PeerAddr {
		select {
		case <-r.done:
		default:
			return
		}
	}
	if err := n.follow(leader.ID, leader.RESPAddr, leader.PeerAddr); err != nil {
		n.Fence(fmt.Sprintf("cannot follow %s: %v", leader.ID, err))
	}
}

// settled reports whether the node's role is what t asks and working:
// leading t's epoch, following t's leader with its stream up, or fenced
// under an epoch with no leader.
func (a *agent) settled(t coord.Topology) bool {
	switch r := a.n.current().(type) {
	case *leading:
		return t.Leader == a.n.cfg.ID && r.l.Epoch() == t.Epoch
	case *following:
		return t.Leader != "" && r.leaderID == t.Leader && r.f.Status().Connected
	case *fenced:
		return t.Leader == ""
	}
	return false
}

func (a *agent) members(ctx context.Context) ([]coord.Member, error) {
	var err error
	for range 10 {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		var ms []coord.Member
		ms, err = a.store.Members(cctx)
		cancel()
		if err == nil {
			return ms, nil
		}
		if !coord.Sleep(ctx, 50*time.Millisecond) {
			break
		}
	}
	return nil, err
}

// renew confirms the leadership against etcd and extends the lease, when
// the lease is wanted (replication.Lease, confirmation on demand):
//
//   - hot: while answers use the lease, it is confirmed every fence/5, so
//     that a busy leader's lease never lapses and no answer waits;
//   - idle: a tick that finds the lease unused since the last one stops
//     the ticker; then only a keepalive confirms it, every keepalive, so
//     that an idle leader costs one etcd read per keepalive instead of one
//     per fence/5, and its heartbeat still says whether it can answer
//     (Lease.Answerable; the orchestrator replaces a leader that cannot);
//   - an answer that finds the lease lapsed (the first after an idle
//     spell) signals Demand: it is confirmed at once and the loop is hot
//     again. That answer waits one etcd round trip;
//   - a new leadership is confirmed at once, so that it is answerable as
//     soon as its lease begins.
//
// Safety is the lease's own rule and does not depend on the cadence: every
// extension is to the moment the confirmation was asked plus the fence, so
// after an idle spell nothing is answered before a confirmation asked
// after it; a change of epoch in etcd while the leader idled is seen by
// that confirmation, and the answer is refused.
//
// The etcd read runs beside the ticker, never in its way: while a read is
// outstanding for longer than a tick (etcd cut off or slow) or has failed,
// every tick extends the lease by the followers' echoes instead. Waiting a
// whole read timeout between failsafe extensions let the lease lapse for
// part of every round, and a heartbeat probe in step with the rounds saw a
// leader that answered nothing for seconds while it acknowledged writes.
func (a *agent) renew(ctx context.Context) {
	n := a.n
	rn := &leaseRenewer[*leading]{
		fence: a.fence, keepalive: a.keepalive, wake: a.wake, count: &a.confirmations,
		current: func() (*leading, *replication.Lease) {
			r, ok := n.current().(*leading)
			if !ok || r.lease == nil {
				return nil, nil
			}
			return r, r.lease
		},
		confirm: func(ctx context.Context, r *leading) (bool, error) {
			cctx, cancel := context.WithTimeout(ctx, a.fence)
			defer cancel()
			var (
				top  coord.Topology
				have bool
			)
			if time.Since(a.peersRead) > time.Second || a.peersLeader != r {
				// The members with the topology, in the same read,
				// before the confirmation extends the lease: a new
				// leader's format gate knows every registered member
				// before its first write. (A second read for them cost
				// an idle leader one more etcd round trip a second.)
				rd, err := a.store.TopologyAndMembers(cctx)
				if err != nil {
					return false, err
				}
				if rd.MembersErr == nil {
					a.setPeers(r, rd.Members)
				}
				top, have = rd.Topology, rd.OK
			} else {
				var err error
				if top, have, err = a.store.Topology(cctx); err != nil {
					return false, err
				}
			}
			return have && top.Epoch == r.l.Epoch() && top.Leader == n.cfg.ID, nil
		},
		failsafe: a.extendByFollowers,
		extended: a.failsafe.Store,
	}
	rn.run(ctx)
}

// leaseRenewer is agent.renew's loop, apart from etcd and the node so that
// a test drives it under testing/synctest. K identifies a leadership.
type leaseRenewer[K comparable] struct {
	fence, keepalive time.Duration
	wake             <-chan struct{} // a new leadership may have begun
	count            *atomic.Int64   // confirmations started
	// current is the leadership whose lease to keep (a nil lease: none).
	current func() (K, *replication.Lease)
	// confirm asks etcd whether leadership k still holds; at most one runs
	// at a time, in its own goroutine.
	confirm func(ctx context.Context, k K) (bool, error)
	// failsafe extends k's lease by its followers' echoes, when etcd did
	// not confirm it in time; extended says which way the lease was last
	// extended (true: by followers).
	failsafe func(k K)
	extended func(byFollowers bool)
}

func (rn *leaseRenewer[K]) run(ctx context.Context) {
	tick := rn.fence / 5
	t := time.NewTicker(tick)
	t.Stop()
	defer t.Stop()
	var tickC <-chan time.Time // nil while idle
	// The keepalive ticks only while there is a lease to keep: a
	// follower's renewer sleeps until its node leads.
	keep := time.NewTicker(rn.keepalive)
	keep.Stop()
	defer keep.Stop()
	type confirmation struct {
		k     K
		lease *replication.Lease
		asked time.Time
		ok    bool
		err   error
	}
	done := make(chan confirmation, 1)
	var (
		asked  time.Time // zero: no read outstanding
		zero   K
		k      K // the leadership whose lease this loop keeps
		lease  *replication.Lease
		demand <-chan struct{}
	)
	confirm := func() {
		if lease == nil {
			return
		}
		if !asked.IsZero() {
			if time.Since(asked) >= tick {
				rn.failsafe(k)
			}
			return
		}
		asked = time.Now()
		rn.count.Add(1)
		go func(k K, lease *replication.Lease, asked time.Time) {
			ok, err := rn.confirm(ctx, k)
			done <- confirmation{k: k, lease: lease, asked: asked, ok: ok, err: err}
		}(k, lease, asked)
	}
	heat := func() {
		if tickC == nil {
			t.Reset(tick)
			tickC = t.C
		}
		confirm()
	}
	for {
		// The leadership this loop keeps may have changed since the last
		// round (apply signals wake when it installs one).
		ck, cl := rn.current()
		if cl == nil || cl.Revoked() {
			ck, cl = zero, nil
		}
		if cl != lease {
			k, lease, demand = ck, cl, nil
			keep.Stop()
			if lease != nil {
				demand = lease.Demand()
				keep.Reset(rn.keepalive)
				heat()
			}
		}
		select {
		case <-tickC:
			if lease != nil && lease.TakeUse() {
				confirm()
				continue
			}
			t.Stop()
			tickC = nil
		case <-demand:
			if tickC == nil {
				heat() // while hot, the next tick confirms
			}
		case <-keep.C:
			if tickC == nil {
				confirm()
			}
		case <-rn.wake:
		case c := <-done:
			asked = time.Time{}
			switch {
			case c.err != nil:
				rn.failsafe(c.k)
			case c.ok:
				c.lease.Extend(c.asked.Add(rn.fence))
				rn.extended(false)
			default:
				c.lease.Revoke() // the watch makes the node follow
			}
			if c.lease != lease {
				// It was the last leadership's: the current one's first
				// confirmation waited for it, and is due now.
				confirm()
			}
		case <-ctx.Done():
			return
		}
	}
}

// extendByFollowers extends r's lease while etcd does not confirm it.
// Every other member's echo of a recent stream message does (Patroni's
// failsafe mode): none of them can be promoted as silent while it echoes,
// and a promotion needs etcd anyway. Otherwise the lease runs out.
func (a *agent) extendByFollowers(r *leading) {
	if r == nil || r.lease == nil {
		return
	}
	// Echoes at most a fence old are needed from now on: heartbeats
	// carry lease stamps for a while (an idle stream echoes only every
	// few heartbeats otherwise). The first extension after an idle spell
	// may so wait about one heartbeat for a fresh echo.
	r.l.WantEchoes(10 * a.fence)
	if at, ok := r.l.ConfirmedByFollowers(a.peerIDs()); ok {
		r.lease.Extend(at.Add(a.fence))
		a.failsafe.Store(true)
	}
}

// peerIDs are the other registered members, as last read from etcd.
func (a *agent) peerIDs() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.peers
}

// setPeers records the registered members ms (read from etcd) as r's
// peers and feeds r's format gate.
func (a *agent) setPeers(r *leading, ms []coord.Member) {
	var ids []string
	for _, m := range ms {
		if m.ID != a.n.cfg.ID {
			ids = append(ids, m.ID)
			r.l.MemberFormat(m.ID, m.LogFormat)
		}
	}
	a.mu.Lock()
	a.peers = ids
	a.mu.Unlock()
	a.peersRead, a.peersLeader = time.Now(), r
}

// topology is the last topology the agent saw (zero without one).
func (a *agent) topology() coord.Topology {
	if a == nil {
		return coord.Topology{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.topo
}

// switchoverTo asks the active orchestrator to hand leadership to this
// node (REPLICAOF NO ONE under the control plane): a planned switchover,
// so that no acknowledged write is lost and the old leader is fenced
// before this node answers.
func (a *agent) switchoverTo(ctx context.Context) error {
	o, err := a.store.ActiveOrchestrator(ctx)
	if err != nil {
		return fmt.Errorf("node: REPLICAOF NO ONE goes through the control plane: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := orchapi.Switchover(ctx, o.HTTPAddr, a.n.cfg.ID); err != nil {
		return fmt.Errorf("node: switchover to %s (orchestrator %s): %w", a.n.cfg.ID, o.ID, err)
	}
	return nil
}

// checkReplicaOf answers REPLICAOF host port under the control plane: it
// is accepted only if it names the leader this node already follows.
func (a *agent) checkReplicaOf(respAddr string) error {
	t := a.topology()
	if r, ok := a.n.current().(*following); ok && r.leaderRESP == respAddr && r.leaderID == t.Leader {
		return nil
	}
	return fmt.Errorf("node: the control plane decides whom this node follows (the leader of epoch %d is %s); use tandem switchover or REPLICAOF NO ONE on the node that should lead", t.Epoch, t.Leader)
}

// answerSlack is how long after its lease ran out a leader still reports
// itself answerable in heartbeats: a keepalive and a fence delay, the
// longest an idle leader that can still confirm goes between two
// confirmations (agent.renew). Zero without a control plane.
func (n *Node) answerSlack() time.Duration {
	if n.agent == nil {
		return 0
	}
	return n.agent.keepalive + n.agent.fence
}

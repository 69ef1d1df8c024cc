package orchestrator

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// dial opens a peer connection that reconnects quickly (a node restarted
// by its supervisor is back within a second). Its flow-control window is
// fixed (64 KiB, HTTP/2's default; probes and StopWrites are small): that
// turns off gRPC's bandwidth-delay estimator, which otherwise pinged the
// node with nearly every probe.
func dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStaticStreamWindowSize(probeWindow), grpc.WithStaticConnWindowSize(probeWindow),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 200 * time.Millisecond},
			MinConnectTimeout: 200 * time.Millisecond,
		}))
}

// probeDeadline is how many intervals a probe waits for its answer. Longer
// than the interval: a late answer is still a sign of life. A leader
// saturated by clients on 2 cores answered within 164 ms (p99 89 ms); a
// probe that gave up after the 100 ms interval threw such an answer away
// and counted a failure, and the leader looked silent for a whole retry
// longer. Three intervals is also how long an answer stays fresh.
const probeDeadline = 3

// probeWindow is the flow-control window of the orchestrator's peer
// connections.
const probeWindow = 64 << 10

// heartbeater is the one RPC a prober makes (peerpb.PeerClient has it), so
// that tests can drive the probe loop with a fake under testing/synctest.
type heartbeater interface {
	Heartbeat(ctx context.Context, in *peerpb.HeartbeatRequest, opts ...grpc.CallOption) (*peerpb.HeartbeatReply, error)
}

// probe heartbeats one node until ctx ends (see probeLoop).
func (o *Orchestrator) probe(ctx context.Context, ns *nodeState) {
	defer o.wg.Done()
	conn, err := dial(o.peerAddr(ns.member))
	if err != nil {
		o.log.Warn("probe: cannot dial", "node", ns.member.ID, "err", err)
		return
	}
	defer conn.Close()
	o.probeLoop(ctx, ns, peerpb.NewPeerClient(conn))
}

// probeLoop heartbeats one node every interval (every standbyProbeFactor
// intervals while this orchestrator stands by, every quietProbeFactor for
// a follower of a quiet cluster: quiet.go) until ctx ends, and hands
// each result to the node's failover.Probe, which says when to probe next
// (a failed probe is retried after a quarter interval). One probe is out at
// a time, with probeDeadline intervals as its deadline, so a stopped node
// costs one probe per deadline, never a pile of them.
func (o *Orchestrator) probeLoop(ctx context.Context, ns *nodeState, hb heartbeater) {
	// planned: the gap planned after the last probe, if it was answered.
	var planned time.Duration
	for {
		o.mu.Lock()
		epoch := o.topo.Epoch
		o.mu.Unlock()
		sent := time.Now()
		pctx, cancel := context.WithTimeout(ctx, probeDeadline*o.cfg.Interval)
		rep, err := hb.Heartbeat(pctx, &peerpb.HeartbeatRequest{OrchestratorId: o.cfg.ID, Epoch: epoch})
		cancel()
		now := time.Now()
		o.mu.Lock()
		// The expectation is read now, as the reply is judged: a topology
		// that changed while the probe was out is the one it answers to.
		want := failover.Expect{ShouldLead: o.haveTopo && o.topo.Leader == ns.member.ID, Epoch: o.topo.Epoch}
		lapsed := ns.probe.NotAnswering
		before := ns.probe.Reply
		// Observe measures lateness against the period this probe kept:
		// the gap planned after the last answered probe. The grid may
		// stretch it by half an interval, and a quiet period (perhaps cut
		// short by a stir) plans a long one: that silence is the
		// schedule's, not the node's, and a follower promoted next must
		// not look slow for it. A silence longer than planned still
		// counts, the orchestrator's own lateness in sending included (a
		// starved orchestrator waits longer for the leader).
		ns.probe.Observe(sent, now, rep, err, ctx.Err() != nil, want, max(ns.period(o.cfg.Interval), planned))
		next := o.cfg.Interval / 4 // a failed probe is retried soon
		every := time.Duration(0)
		active := o.active
		if err == nil {
			o.observeAnswer(ns, now, now.Sub(sent), want.ShouldLead, lapsed)
			if want.ShouldLead && before != nil && failover.Durable(before) != failover.Durable(rep) {
				o.stir(now) // writes: no quiet cadence (quiet.go)
			}
			if !want.ShouldLead && rep.Role == statusdoc.RoleFollower && o.quiet(now) {
				every = quietProbeFactor * o.cfg.Interval
			}
			next = max(every, o.cfg.Interval)
		}
		if !active {
			// A standby's period is its node's too: its answers stay
			// fresh for three of them, and its detector learns that
			// rhythm. Judged by the interval, a live leader was
			// unreachable in a standby's /status, and down (s_down,
			// o_down) on its Sentinel endpoint, 70% of the time
			// (TestStandbyProbes). becomeActive's stir puts every node
			// back on the interval.
			every = standbyProbeFactor * o.cfg.Interval
			next = every
		}
		o.setPeriod(ns, every, now)
		activated, hurried := o.activated, o.hurried
		o.mu.Unlock()
		// Probes keep their rhythm: the next is due next after this one
		// was sent (a ticker's behaviour), on the interval's grid, or at
		// once if that has passed.
		base := sent
		if err != nil {
			base = now // a failed probe is retried from its failure
		}
		if active {
			// A failed probe may be the rule's sign; an answer moves the
			// calm deadline on, in the wake-up that brought it (decideLoop).
			o.wakeDecide()
		}
		due := base.Add(next)
		planned = 0
		if err == nil {
			due = onGrid(due, o.cfg.Interval)
			planned = due.Sub(sent)
		}
		t := time.NewTimer(time.Until(due))
		select {
		case <-t.C:
		case <-activated: // woken from a standby's rhythm
			t.Stop()
		case <-hurried: // woken from the quiet cadence (stir)
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}

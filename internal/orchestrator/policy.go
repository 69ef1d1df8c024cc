package orchestrator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/hooks"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// outage is a failed leader the active orchestrator detected and has not
// replaced yet.
type outage struct {
	leader   string
	epoch    uint64    // the topology's epoch at detection
	since    time.Time // the leader's last sign of life (detection time if none)
	detected time.Time
	reason   string
	// answered: when the leader's last answer to a probe had come, at
	// detection (zero: none). Only a later answer is a return.
	answered time.Time
	// waiting: held by the manual policy for an operator.
	waiting bool
	// pre: the pre_failover hooks were fired for it.
	pre bool
}

// watchPolicy keeps o.policy as etcd has it.
func (o *Orchestrator) watchPolicy() {
	defer o.wg.Done()
	for u := range o.store.WatchFailoverPolicy(o.ctx) {
		o.mu.Lock()
		old := o.policy
		o.policy, o.policyErr = u.Policy, u.Err
		o.mu.Unlock()
		switch {
		case u.Err != nil:
			o.log.Error("failover policy unreadable: no automatic failover until it is set again (tandem failover-policy set)", "err", u.Err)
		case old != u.Policy:
			o.log.Info("failover policy", "policy", u.Policy)
		}
	}
}

// gate is where the failover policy acts on the rule's decision d (decide
// knows no policy). It returns whether to carry d out. It keeps the outage
// record: a failover or fence decision against a leader not yet known to
// have failed is a detection, announced once (the detected hooks; under
// the manual policy also an event in etcd); the outage ends when the
// topology names another leader (a failover, `tandem promote`, another
// orchestrator) or the leader answers again: it answered a probe since it
// was detected, as the leader of the topology's epoch with its lease, and
// the rule no longer asks for a failover while the topology still names
// it. A round in which the rule does not ask for one
// but the leader has not answered (no node can be promoted, a follower's
// veto or its late answer waited for, the detector between two readings
// of a loaded machine) leaves the outage as it is: a lull in the rule's
// asking is not the leader's return, and was announced as one (a
// leader_returned, then a second detected) when it was taken for it.
//
// Under the manual policy, or while the policy is unknown or unreadable,
// no failover or fence is carried out, however long the leader is down:
// the outage waits for an operator, in status and in a metric. Under the
// automatic policy the pre_failover hooks are fired once per outage and
// the change goes ahead at once: hooks run beside it, never before it.
// Bootstrap (no topology yet) is not a failover and is never held.
func (o *Orchestrator) gate(v failover.View, d failover.Decision) bool {
	failing := d.Kind == failover.KindFailover || d.Kind == failover.KindFence
	now := time.Now()
	o.mu.Lock()
	policy, perr := o.policy, o.policyErr
	var returned *outage
	if out := o.outage; out != nil {
		switch {
		case v.Topo.Leader != "" && v.Topo.Leader != out.leader:
			o.outage = nil // replaced
		case !failing && v.Topo.Leader == out.leader && backAfter(v, out.leader, out.answered):
			o.outage, returned = nil, out
		}
	}
	prev := o.outage
	if failing && (prev == nil || prev.leader != d.From) {
		since := d.LastSign
		if since.IsZero() {
			since = now
		}
		o.outage = &outage{leader: d.From, epoch: v.Topo.Epoch, since: since, detected: now, reason: d.Reason, answered: lastAnswer(v, d.From)}
	}
	cur := o.outage
	hold := failing && (policy != coord.FailoverAutomatic || perr != nil)
	firePre := false
	if failing {
		firePre = !hold && !cur.pre
		cur.waiting, cur.pre = hold, cur.pre || firePre
	}
	if hold {
		o.held++
	}
	o.mu.Unlock()

	if returned != nil {
		o.log.Warn("failed leader answers again", "leader", returned.leader, "down_for", now.Sub(returned.since).Round(time.Millisecond))
		o.fire(hooks.Event{Kind: hooks.LeaderReturned, OldLeader: returned.leader, NewLeader: returned.leader, Epoch: v.Topo.Epoch, Time: now, Reason: "the leader answers again"})
		if returned.waiting {
			o.recordEvent(coord.Event{At: now, Kind: "leader-returned", Reason: "the leader answers again", From: returned.leader, To: returned.leader, OldEpoch: v.Topo.Epoch, NewEpoch: v.Topo.Epoch})
		}
	}
	if !failing {
		return d.Kind != failover.KindNone
	}
	if cur != prev {
		o.log.Warn("leader failed", "leader", cur.leader, "epoch", cur.epoch, "reason", cur.reason, "policy", policy, "evidence", evidence(v))
		o.fire(hooks.Event{Kind: hooks.Detected, OldLeader: cur.leader, Epoch: v.Topo.Epoch, Time: now, Reason: d.Reason})
		if hold {
			o.recordEvent(coord.Event{At: now, Kind: "detected", Reason: d.Reason, From: cur.leader, OldEpoch: v.Topo.Epoch, NewEpoch: v.Topo.Epoch})
		}
	}
	if hold {
		why := fmt.Sprintf("failover policy %s", policy)
		if perr != nil {
			why = "failover policy unreadable: " + perr.Error()
		} else if policy == "" {
			why = "failover policy not read yet"
		}
		o.note("held", fmt.Sprintf("orchestrator: leader %s down since %s, waiting for an operator (%s; %s): tandem promote NODE",
			cur.leader, cur.since.UTC().Format(time.RFC3339), why, d.Reason))
		return false
	}
	if firePre {
		o.fire(hooks.Event{Kind: hooks.PreFailover, OldLeader: cur.leader, NewLeader: d.Candidate, Epoch: v.Topo.Epoch, Time: now, Reason: d.Reason})
	}
	return true
}

// lastAnswer is when node's last answer to a probe came, as v has it
// (zero if it never answered).
func lastAnswer(v failover.View, node string) time.Time {
	n := v.Node(node)
	if n == nil || n.Reply == nil {
		return time.Time{}
	}
	return v.Now.Add(-n.Age)
}

// backAfter reports whether node answered a probe after t as the leader
// of the topology's epoch that answers clients: a node that answers
// without leading, or leads without its lease (the rule's own triggers),
// has not come back.
func backAfter(v failover.View, node string, t time.Time) bool {
	n := v.Node(node)
	a := lastAnswer(v, node)
	return !a.IsZero() && a.After(t) && n.Leads(v.Topo.Epoch) && n.Reply.Answering
}

// changed follows a change the rule made: a failover's post_failover
// hooks, and the end of its outage (a quorum failover's fence step ends
// nothing: its second step names the new leader).
func (o *Orchestrator) changed(ev *coord.Event) {
	if ev.Kind != string(failover.KindFailover) {
		return
	}
	o.mu.Lock()
	if o.outage != nil && o.outage.leader == ev.From {
		o.outage = nil
	}
	o.mu.Unlock()
	o.fire(hooks.Event{Kind: hooks.PostFailover, OldLeader: ev.From, NewLeader: ev.To, Epoch: ev.NewEpoch, OldEpoch: ev.OldEpoch, Time: ev.At, Reason: ev.Reason})
}

// fire hands e to the hooks (they run apart; this returns at once).
func (o *Orchestrator) fire(e hooks.Event) {
	e.Cluster = o.cfg.Cluster
	o.hooks.Fire(e)
}

// recordEvent adds ev to etcd's events without holding up the caller.
func (o *Orchestrator) recordEvent(ev coord.Event) {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		ctx, cancel := context.WithTimeout(o.ctx, 2*time.Second)
		defer cancel()
		if err := o.store.AddEvent(ctx, ev); err != nil {
			o.log.Warn("record event", "kind", ev.Kind, "err", err)
		}
	}()
}

// policyStatus is the failover policy and any outage as /status shows
// them; call with o.mu held.
func (o *Orchestrator) policyStatus(st *statusdoc.Orchestrator) {
	st.FailoverPolicy = string(o.policy)
	if o.policyErr != nil {
		st.FailoverPolicyError = o.policyErr.Error()
	}
	if out := o.outage; out != nil && o.active {
		st.LeaderDown = &statusdoc.LeaderDown{Leader: out.leader, Epoch: out.epoch, Since: out.since.UTC().Format(time.RFC3339Nano),
			Detected: out.detected.UTC().Format(time.RFC3339Nano), Reason: out.reason, WaitingForOperator: out.waiting}
	}
}

// evidence is what the rule saw of every node when it found the leader
// failed, for the log: a failover on suspicion that no follower vetoed is
// explained by each follower's answer (its age, and how long before it the
// follower had heard its leader), and a false one by what was late.
func evidence(v failover.View) string {
	var b strings.Builder
	fmt.Fprintf(&b, "orchestrator late %s", v.Late.Round(time.Millisecond))
	for _, n := range v.Nodes {
		fmt.Fprintf(&b, "; %s: ", n.ID)
		if n.Reply == nil {
			b.WriteString("never answered")
			continue
		}
		fmt.Fprintf(&b, "%s, answer %s old, beat %s ago, slow %s", n.Role(), n.Age.Round(time.Millisecond),
			v.Now.Sub(n.LastBeat).Round(time.Millisecond), n.Slow.Round(time.Millisecond))
		if !n.Fresh {
			b.WriteString(", not fresh")
		}
		if ago, ok := n.HeardLeaderAgo(); ok {
			fmt.Fprintf(&b, ", heard %s %s ago (stream gap %s)", n.Reply.Following, ago.Round(time.Millisecond), n.StreamGap.Round(time.Millisecond))
		}
	}
	return b.String()
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/control"
	"github.com/tandemdb/tandem/internal/coord"
)

// decision is what the active orchestrator should do now.
type decision struct {
	kind      string // "", "bootstrap", "fence", "failover"
	reason    string
	candidate string
	from      string
	lastSign  time.Time // the old leader's last heartbeat
	lostLSNs  uint64    // entries the old leader had beyond the candidate, if known
	note      string    // why nothing is done, when worth logging
	noteKey   string    // what kind of note, for rate-limiting its log line
}

// decide is the failover rule of the package comment, over one view. It
// is pure: tests give it views.
func decide(cfg *Config, v view, activeSince time.Time) decision {
	if !v.haveTopo {
		// Bootstrap once every registered member answered (and the
		// members that start together had a quarter of the bootstrap wait
		// to register), or after the bootstrap wait with those that did.
		all := len(v.nodes) > 0
		for _, n := range v.nodes {
			all = all && n.Fresh
		}
		waited := v.now.Sub(activeSince)
		if (!all || waited < cfg.Bootstrap/4) && waited < cfg.Bootstrap {
			return decision{}
		}
		c, err := control.Choose(v.candidates(""))
		if err != nil {
			return decision{note: "bootstrap: " + err.Error(), noteKey: "bootstrap"}
		}
		return decision{kind: "bootstrap", reason: "no topology yet", candidate: c.Candidate}
	}
	quorum, _ := commit.ParseMode(v.topo.Mode)
	if v.topo.Leader == "" && v.topo.Fenced != "" {
		return elect(v, quorum.K)
	}
	leader := v.node(v.topo.Leader)
	if leader == nil {
		c, err := control.Choose(v.candidates(v.topo.Leader))
		if err != nil {
			return decision{note: "leader " + v.topo.Leader + " is not a member: " + err.Error(), noteKey: "not-member"}
		}
		return decision{kind: "failover", reason: "the leader is not a registered member", candidate: c.Candidate, from: v.topo.Leader}
	}
	// The leader's own word that it does not lead (or serve) is enough:
	// no follower's vouching overrides it. A silent or refusing leader is
	// failed over only if no follower still hears it (the holistic check).
	var why string
	selfReported := false
	switch {
	case leader.Fresh && !leader.NotLead.IsZero() && v.now.Sub(leader.NotLead) >= cfg.NotLeadingAfter:
		role := leader.Reply.Role + " " + leader.Reply.Reason
		why = fmt.Sprintf("leader has not led epoch %d for %s (it is %s)", v.topo.Epoch, v.now.Sub(leader.NotLead).Round(time.Millisecond), role)
		selfReported = true
	case leader.Fresh && !leader.NotAnswering.IsZero() && v.now.Sub(leader.NotAnswering) >= cfg.NotAnsweringAfter:
		why = fmt.Sprintf("leader has answered nothing for %s (its lease is not confirmed: cut off from etcd?)", v.now.Sub(leader.NotAnswering).Round(time.Millisecond))
		selfReported = true
	case leader.Refused >= 2:
		why = fmt.Sprintf("leader refused %d probes in a row (%s)", leader.Refused, "process gone")
	case leader.Suspect && v.now.Sub(leader.LastBeat) >= cfg.MinSilence:
		why = fmt.Sprintf("leader suspected (phi %.1f, last heartbeat %s ago)", leader.Phi, v.now.Sub(leader.LastBeat).Round(time.Millisecond))
	default:
		return decision{}
	}
	if !selfReported {
		for _, n := range v.nodes {
			if n.ID == leader.ID || !n.Fresh || n.Reply.Role != "follower" || !follows(n.Reply, leader) {
				continue
			}
			if ms := n.Reply.LeaderHeardAgoMs; ms >= 0 && time.Duration(ms)*time.Millisecond < cfg.FollowerSilence {
				return decision{note: fmt.Sprintf("%s, but follower %s heard it %d ms ago: no failover", why, n.ID, ms), noteKey: "veto " + n.ID}
			}
		}
	}
	if quorum.Kind == commit.Quorum {
		// The old leader may still commit through followers that have not
		// heard of a new epoch, after any candidate is chosen: end its
		// epoch first, then choose among the followers that ended it.
		return decision{kind: "fence", reason: why, from: leader.ID, lastSign: leader.LastBeat}
	}
	c, err := control.Choose(v.candidates(leader.ID))
	if err != nil {
		return decision{note: why + ": " + err.Error(), noteKey: "no-candidate"}
	}
	d := decision{kind: "failover", reason: why, candidate: c.Candidate, from: leader.ID, lastSign: leader.LastBeat}
	if c.CatchUpFrom != "" {
		d.note = fmt.Sprintf("candidate %s is behind %s (priority 0 or ineligible); promoting it anyway", c.Candidate, c.CatchUpFrom)
		d.noteKey = "catch-up"
	}
	if lr := leader.Reply; lr != nil {
		if cand := v.node(c.Candidate); cand != nil {
			ld, cd := durable(lr), durable(cand.Reply)
			if ld.Epoch == cd.Epoch && ld.LSN > cd.LSN {
				d.lostLSNs = ld.LSN - cd.LSN
			}
		}
	}
	return d
}

// elect is a quorum-K failover's second step. The topology's epoch has
// no leader; it ended the epoch of the leader it names Fenced. A node that
// reports this epoch has stopped taking the old leader's entries, so its
// position is final for them. A write the old leader acknowledged is
// durable on K of the other F members; once F-K+1 of them report the new
// epoch, one of those holds it (or the old leader itself, if it reports the
// epoch: it holds all it acknowledged), and the most advanced of them is
// chosen. Until enough report it, nothing is done: promoting anyone else
// could lose acknowledged writes (tandem promote --accept-data-loss can).
func elect(v view, k int) decision {
	others, ended := 0, 0
	oldEnded := false
	eligible := map[string]bool{}
	for _, n := range v.nodes {
		if n.ID != v.topo.Fenced {
			others++
		}
		if !n.Fresh || n.Reply == nil || n.Reply.Epoch < v.topo.Epoch || n.Reply.Role == "leader" {
			continue
		}
		eligible[n.ID] = true
		if n.ID == v.topo.Fenced {
			oldEnded = true
		} else {
			ended++
		}
	}
	need := others - k + 1
	if !oldEnded && ended < need {
		return decision{note: fmt.Sprintf("epoch %d: %d of the %d members other than %s have ended its epoch, %d must (quorum %d) before one is chosen",
			v.topo.Epoch, ended, others, v.topo.Fenced, need, k), noteKey: "elect"}
	}
	// The old leader is chosen only when it is the one that holds every
	// acknowledged write for certain: it was the leader that lost.
	if ended >= need {
		delete(eligible, v.topo.Fenced)
	}
	cands := v.candidates("")
	for i := range cands {
		cands[i].Eligible = cands[i].Eligible && eligible[cands[i].ID]
	}
	c, err := control.Choose(cands)
	if err != nil {
		return decision{note: fmt.Sprintf("epoch %d: %v", v.topo.Epoch, err), noteKey: "no-candidate"}
	}
	reason := v.topo.Reason + fmt.Sprintf("; chosen once %d of %d other members reported epoch %d", ended, others, v.topo.Epoch)
	return decision{kind: "failover", reason: reason, candidate: c.Candidate, from: v.topo.Fenced}
}

// follows reports whether the node that answered r follows leader.
func follows(r interface{ GetFollowing() string }, leader *nodeView) bool {
	f := r.GetFollowing()
	return f == leader.ID || f == leader.Member.PeerAddr
}

// decideLoop evaluates the rule every 10 ms while active.
func (o *Orchestrator) decideLoop() {
	defer o.wg.Done()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var activeSince time.Time
	for {
		select {
		case <-t.C:
		case <-o.ctx.Done():
			return
		}
		if !o.Active() {
			activeSince = time.Time{}
			continue
		}
		if activeSince.IsZero() {
			activeSince = time.Now()
		}
		v := o.snapshot()
		d := decide(&o.cfg, v, activeSince)
		if d.note != "" {
			o.note(d.noteKey, "orchestrator: "+d.note)
		}
		// The failover policy and the hooks act here (policy.go), between
		// the rule, which knows neither, and the change.
		if !o.gate(v, d) {
			continue
		}
		if err := o.change(v, d.kind, d.reason, d.candidate, d.lastSign, d.lostLSNs, false); err != nil {
			o.note("change:"+err.Error(), "orchestrator: topology change failed", "err", err)
		}
	}
}

// change moves the topology to a new epoch led by to, from the topology in
// v, and records the event. It fails if another change got there first.
func (o *Orchestrator) change(v view, kind, reason, to string, lastSign time.Time, lost uint64, accepted bool) error {
	o.opMu.Lock()
	defer o.opMu.Unlock()
	ev, err := o.changeLocked(v, kind, reason, to, lastSign, lost, accepted)
	if err == nil {
		o.changed(ev)
	}
	return err
}

// changeLocked is change with opMu held; it returns the event.
func (o *Orchestrator) changeLocked(v view, kind, reason, to string, lastSign time.Time, lost uint64, accepted bool) (*coord.Event, error) {
	if !o.Active() {
		return nil, errNotActive
	}
	next := coord.Topology{Epoch: v.maxEpoch() + 1, Leader: to, Mode: v.topo.Mode, SyncSet: v.topo.SyncSet, Reason: reason, Changed: time.Now()}
	if kind == "fence" {
		next.Leader, next.Fenced = "", v.topo.Leader
	}
	if !v.haveTopo {
		next.Mode, next.SyncFallback = o.cfg.Mode, o.cfg.SyncFallback
	} else {
		next.SyncFallback, next.SyncMin = v.topo.SyncFallback, v.topo.SyncMin
	}
	from := v.topo.Leader
	if from == "" {
		from = v.topo.Fenced
	}
	ev := &coord.Event{Kind: kind, Reason: reason, From: from, To: next.Leader, OldEpoch: v.topo.Epoch, NewEpoch: next.Epoch,
		LostWrites: lost, Accepted: accepted}
	if !v.haveTopo {
		ev.From = ""
	}
	if !lastSign.IsZero() {
		ev.DetectionMs = float64(next.Changed.Sub(lastSign).Microseconds()) / 1000
	}
	o.mu.Lock()
	if f := o.last; v.topo.Leader == "" && f != nil && f.Kind == "fence" && f.NewEpoch == v.topo.Epoch {
		// A quorum failover's second step: the failure was detected by
		// the first (the old leader's detector has been reset since).
		ev.DetectionMs = f.DetectionMs
	}
	o.mu.Unlock()
	fromEpoch := v.topo.Epoch
	if !v.haveTopo {
		fromEpoch = 0
	}
	ctx, cancel := context.WithTimeout(o.ctx, 2*time.Second)
	defer cancel()
	if err := o.store.SetTopology(ctx, fromEpoch, next, ev); err != nil {
		if errors.Is(err, coord.ErrConflict) {
			return nil, fmt.Errorf("%s to %s: %w", kind, to, err)
		}
		return nil, err
	}
	o.mu.Lock()
	o.topo, o.haveTopo = next, true // the watch confirms it
	if ns := o.nodes[to]; ns != nil {
		ns.giveGrace(o.cfg.Grace)
		ns.notLead, ns.notAnswering = time.Time{}, time.Time{}
	}
	if ns := o.nodes[v.topo.Leader]; ns != nil && v.topo.Leader != to {
		// The silence that ended in this failover was a failure, not the
		// node's heartbeat rhythm: a fresh detector does not learn it
		// (phi accrual would otherwise suspect the node's next failure
		// later). Pauses that end without a failover are still learnt.
		ns.refused = 0
		ns.det = o.detectorFor()
	}
	o.last = ev
	o.mu.Unlock()
	o.log.Warn("topology changed", "kind", kind, "reason", reason, "from", ev.From, "to", to,
		"old_epoch", ev.OldEpoch, "new_epoch", ev.NewEpoch, "detection_ms", ev.DetectionMs, "lost_entries", lost)
	if next.Leader != "" {
		o.wg.Add(1)
		go o.timePromotion(*ev, next.Changed)
	}
	return ev, nil
}

// timePromotion records how long the new leader took to lead.
func (o *Orchestrator) timePromotion(ev coord.Event, decided time.Time) {
	defer o.wg.Done()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v := o.snapshot()
		if n := v.node(ev.To); n != nil && n.Reply != nil && n.Reply.Role == "leader" && n.Reply.LeadingEpoch == ev.NewEpoch {
			ev.PromotionMs = float64(time.Since(decided).Microseconds()) / 1000
			ctx, cancel := context.WithTimeout(o.ctx, 2*time.Second)
			if err := o.store.AddEvent(ctx, ev); err != nil {
				o.log.Warn("record promotion time", "err", err)
			}
			cancel()
			o.mu.Lock()
			if o.last != nil && o.last.At.Equal(ev.At) {
				o.last.PromotionMs = ev.PromotionMs
			}
			o.mu.Unlock()
			o.log.Info("new leader leads", "node", ev.To, "epoch", ev.NewEpoch, "promotion_ms", ev.PromotionMs)
			return
		}
		if !coord.Sleep(o.ctx, 5*time.Millisecond) {
			return
		}
	}
}

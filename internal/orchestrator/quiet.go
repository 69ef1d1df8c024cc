package orchestrator

import (
	"context"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
)

// The quiet cadence. Of the active orchestrator's probes only the
// leader's detect a failure; a follower's answer matters when the rule
// weighs a silent leader (the followers' veto, failover.Decide), chooses a
// candidate, or runs a manual operation, and then it must be fresh. On an
// idle cluster the followers' probes were two thirds of the orchestrator's
// RPCs and each follower's largest source of wake-ups (bench/idle.sh).
//
// So while the cluster is quiet — for quietAfter nothing was amiss
// (decideLoop's calmFor) and the leader's durable position did not move —
// a follower is probed every quietProbeFactor intervals (a second by
// default), and its answers stay fresh for three of those periods. The leader is always probed at
// the interval, so detection is unchanged. Anything that stirs the cluster
// (a late or missing answer of any node, a suspected, refused, not
// leading or not answering node, a moved log position, a topology change,
// a manual operation) puts every prober back on the interval at once
// (stir): the followers are probed right then, and their answers are
// fresh by the time the rule could act on a silent leader (its answer is
// late after 1.5 intervals, the rule waits at least MinSilence, 2.5).
// Writes stir it too: a saturating write load starts on a stirred cluster,
// so a leader busy with clients still has followers that vouch for it.
//
// How long the quiet period is does not enter the rule: no decision uses
// a quiet follower's answer before the stir has fetched a fresh one. At
// five intervals, each quiet follower still cost the active orchestrator
// two probes a second of its 14; at ten, one of its 12
// (TestIdleProbeRate). Its wake-ups did not move measurably with that
// (bench/idle.sh, four A/B pairs): a follower's probe goes out in the
// wake-up of the leader's (the grid) and its answer mostly comes in the
// wake-up of the leader's answer. An idle process's cost follows its
// wake-ups, not its RPCs, and the leader's probe round is most of them. What a longer period costs is how late the
// orchestrator's status sees a follower that failed while all was quiet
// (at most a period, and its refused probe stirs the cluster); the leader
// keeps its own sync set from its streams, not from these answers.
const (
	quietProbeFactor = 10
	quietAfter       = 2 * time.Second
)

// quiet reports whether followers may be probed at the quiet cadence now.
// A zero stirred (an orchestrator that never started deciding) is never
// quiet. Call with o.mu held.
func (o *Orchestrator) quiet(now time.Time) bool {
	return !o.stirred.IsZero() && now.Sub(o.stirred) >= quietAfter
}

// stir ends the quiet cadence at now: every prober keeps the interval
// again, and those waiting out a quiet period probe at once. Call with
// o.mu held.
func (o *Orchestrator) stir(now time.Time) {
	if o.quiet(now) {
		o.stirs++
	}
	o.stirred = now
	slow := false
	for _, ns := range o.nodes {
		if ns.every > o.cfg.Interval {
			slow = true
		}
		o.setPeriod(ns, 0, now)
	}
	if slow && o.hurried != nil {
		close(o.hurried)
		o.hurried = make(chan struct{})
	}
}

// setPeriod sets the node's probe period (0: the interval). Its detector
// learnt the old rhythm: a phi detector that knows 100 ms answers
// suspects a node answering every 500 ms, and one that knows 500 ms is
// slow to suspect a node (a follower that may be promoted next) whose
// answers stop at the interval's rhythm. So a change of rhythm gives the
// node a fresh detector for the new one, which counts now as a heartbeat
// of a node that answered before (as becomeActive does). Call with o.mu
// held.
func (o *Orchestrator) setPeriod(ns *nodeState, every time.Duration, now time.Time) {
	if ns.period(o.cfg.Interval) == max(every, o.cfg.Interval) {
		ns.every = every
		return
	}
	ns.every = every
	det := o.detectorEvery(ns.period(o.cfg.Interval))
	if ns.probe.Reply != nil {
		det.Heartbeat(now)
	}
	ns.probe.Det = det
}

// freshen stirs the cluster and waits (at most probeDeadline intervals)
// until every node has answered since, or its last probe failed: a
// manual operation judges the followers by their answers, which on a
// quiet cluster may be a few intervals old.
func (o *Orchestrator) freshen(ctx context.Context) {
	o.mu.Lock()
	from := time.Now()
	o.stir(from)
	o.mu.Unlock()
	deadline := from.Add(probeDeadline * o.cfg.Interval)
	for time.Now().Before(deadline) {
		o.mu.Lock()
		done := true
		for _, ns := range o.nodes {
			if ns.probe.Replied.Before(from) && ns.probe.LastErr == "" {
				done = false
			}
		}
		o.mu.Unlock()
		if done || !coord.Sleep(ctx, 5*time.Millisecond) {
			return
		}
	}
}

// onGrid moves due to the nearest multiple of interval on the wall clock
// (by less than half an interval), keeping its monotonic reading: the
// probers of one orchestrator then fire together, one wake-up where each
// had its own, and a follower's quiet probe goes with the leader's.
func onGrid(due time.Time, interval time.Duration) time.Time {
	off := due.Sub(due.Truncate(interval)) // wall clock only, in [0, interval)
	if off > interval/2 {
		off -= interval
	}
	return due.Add(-off)
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
)

// decideLoop evaluates the rule (failover.Decide) while active and
// carries out its decision. It runs every decideFast (10 ms) while
// anything is amiss — a node's last answer is late or missing, a probe
// was refused, a node is suspected, does not lead or answer as it should,
// or there is no topology — so that a failure is acted on within 10 ms of
// the rule's timings; while all is calm, when the first node's last
// answer becomes late (1.5 intervals old: calmFor), since nothing the rule
// waits for can happen sooner than that makes it amiss, and at least
// every 1.5 intervals; not at all while standing by; and at once when a
// probe is answered or fails, the topology changes or this orchestrator
// becomes active (wakeDecide).
//
// A round after every answer puts the calm rounds into the wake-up that
// brought the answer: each answer moves the deadline on, so while every
// node answers in time the loop's own timer never fires, and an idle
// cluster costs the active orchestrator no wake-up of its own here (100
// a second at a fixed 10 ms, 20 at half an interval, 10 at the calm
// deadline before), and the standby none. A silent leader is seen at the
// same moment as before: its last answer's round set the timer for the
// moment that answer becomes late. (Rounds moved onto the probers' timer
// instead were reverted, aa4dc2c: a round at the grid instant after the
// deadline sees a late answer up to half an interval later.)
//
// A round that finds anything amiss also ends the followers' quiet
// cadence (stir, quiet.go). A round whose timer fired more than
// stallAllowance late (this process was starved of CPU or stopped) does
// not act on its decision: the answers that arrived meanwhile may still
// wait unread, and the silence it measured is partly its own. The next
// round, decideFast later, decides again and acts.
func (o *Orchestrator) decideLoop() {
	defer o.wg.Done()
	t := time.NewTimer(o.cfg.Interval)
	defer t.Stop()
	due := time.Now().Add(o.cfg.Interval) // when t should fire
	reset := func(d time.Duration) {
		t.Reset(d)
		due = time.Now().Add(d)
	}
	var activeSince time.Time
	held := false // the last round's decision was held back for a stall
	for {
		stalled := false
		select {
		case <-t.C:
			o.timerRounds.Add(1)
			now, late := wokeLate(due)
			stalled = late > stallAllowance && !held
			o.mu.Lock()
			o.late.Add(now, late)
			o.mu.Unlock()
		case <-o.decideNow:
			t.Stop()
		case <-o.ctx.Done():
			return
		}
		if !o.Active() {
			// becomeActive wakes the loop (wakeDecide).
			activeSince = time.Time{}
			t.Stop()
			continue
		}
		if activeSince.IsZero() {
			activeSince = time.Now()
		}
		o.rounds.Add(1)
		v, periods := o.snapshotPeriods()
		if d, ok := calmFor(v, o.cfg.Interval, periods); ok {
			reset(max(d, decideFast))
		} else {
			reset(decideFast)
			o.mu.Lock()
			o.stir(time.Now()) // followers back on the interval (quiet.go)
			o.mu.Unlock()
		}
		d := failover.Decide(o.cfg.rules(), v, activeSince)
		if d.Note != "" {
			o.note(d.NoteKey, "orchestrator: "+d.Note)
		}
		held = false
		if stalled && d.Kind != failover.KindNone {
			// This loop woke late: the process was not running (starved
			// of CPU, paused), and answers that arrived meanwhile may wait
			// unread behind this goroutine. A silence it measured proves
			// nothing yet: the decision is taken again, once, a round
			// later, after the probers have run.
			o.note("stall", "orchestrator: woke late; decision held for a round", "kind", d.Kind, "reason", d.Reason)
			held = true
			reset(decideFast)
			continue
		}
		// The failover policy and the hooks act here (policy.go), between
		// the rule, which knows neither, and the change.
		if !o.gate(v, d) {
			continue
		}
		if err := o.change(v, d.Kind, d.Reason, d.Candidate, d.LastSign, d.LostLSNs, false); err != nil {
			o.note("change:"+err.Error(), "orchestrator: topology change failed", "err", err)
		}
	}
}

// wokeLate reports the time now and how long after due it is. The
// lateness of a timer's round must be read from the clock when the
// goroutine runs, never from the time the timer's channel delivers:
// since Go 1.23 that is the time the timer was due, however late the
// receiver ran (runtime sendTime), so a round of a process that was
// stopped or starved for a second measured itself 0 late and the stall
// rule never held a decision (TestWokeLateSeesTheStall).
func wokeLate(due time.Time) (now time.Time, late time.Duration) {
	now = time.Now()
	return now, now.Sub(due)
}

// decideFast is decideLoop's period while anything is amiss.
const decideFast = 10 * time.Millisecond

// stallAllowance is how late decideLoop's timer may fire before the loop
// counts itself stalled (see decideLoop).
const stallAllowance = 25 * time.Millisecond

// calmFor reports whether all is calm in v — a topology with a leader,
// and every node answering on time (within 1.5 of its probe periods:
// periods, the interval for a node not in it), unsuspected, leading and
// answering as it should — and for how long nothing but a probe's answer
// or failure or a topology change (which wake the loop) can make the rule
// act: until the oldest last answer becomes late, at most 1.5 intervals.
// (Not capped at one interval: a round after a leader's answer would then
// wake the process just before its next answer comes.) An answer exactly
// that old is late: the round its timer starts then sees it.
func calmFor(v failover.View, interval time.Duration, periods map[string]time.Duration) (time.Duration, bool) {
	if !v.HaveTopo || v.TopoErr != nil || v.Topo.Leader == "" {
		return 0, false
	}
	d := interval * 3 / 2
	for _, n := range v.Nodes {
		p := max(periods[n.ID], interval)
		left := n.LastBeat.Add(p * 3 / 2).Sub(v.Now)
		if !n.Fresh || n.Suspect || n.Refused > 0 || !n.NotLead.IsZero() || !n.NotAnswering.IsZero() || left <= 0 {
			return 0, false
		}
		d = min(d, left)
	}
	return d, true
}

// change moves the topology to a new epoch led by to, from the topology in
// v, and records the event. It fails if another change got there first.
func (o *Orchestrator) change(v failover.View, kind failover.Kind, reason, to string, lastSign time.Time, lost uint64, accepted bool) error {
	o.opMu.Lock()
	defer o.opMu.Unlock()
	ev, err := o.changeLocked(v, kind, reason, to, lastSign, lost, accepted)
	if err == nil {
		o.changed(ev)
	}
	return err
}

// changeLocked is change with opMu held; it returns the event.
func (o *Orchestrator) changeLocked(v failover.View, kind failover.Kind, reason, to string, lastSign time.Time, lost uint64, accepted bool) (*coord.Event, error) {
	if !o.Active() {
		return nil, errNotActive
	}
	if v.TopoErr != nil {
		// Its rules are unknown: a new topology would carry stale ones.
		return nil, fmt.Errorf("%w: the topology in etcd does not decode (%v); fix it first", ErrRefused, v.TopoErr)
	}
	next := coord.Topology{Epoch: v.MaxEpoch() + 1, Leader: to, Mode: v.Topo.Mode, SyncSet: v.Topo.SyncSet, Reason: reason, Changed: time.Now()}
	if kind == failover.KindFence {
		next.Leader, next.Fenced = "", v.Topo.Leader
	}
	if !v.HaveTopo {
		next.Mode, next.SyncFallback = o.cfg.Mode, o.cfg.SyncFallback
	} else {
		next.SyncFallback, next.SyncMin = v.Topo.SyncFallback, v.Topo.SyncMin
	}
	from := v.Topo.Leader
	if from == "" {
		from = v.Topo.Fenced
	}
	ev := &coord.Event{Kind: string(kind), Reason: reason, From: from, To: next.Leader, OldEpoch: v.Topo.Epoch, NewEpoch: next.Epoch,
		LostWrites: lost, Accepted: accepted}
	if !v.HaveTopo {
		ev.From = ""
	}
	if !lastSign.IsZero() {
		ev.DetectionMs = float64(next.Changed.Sub(lastSign).Microseconds()) / 1000
	}
	o.mu.Lock()
	if f := o.last; v.Topo.Leader == "" && f != nil && f.Kind == string(failover.KindFence) && f.NewEpoch == v.Topo.Epoch {
		// A quorum failover's second step: the failure was detected by
		// the first (the old leader's detector has been reset since).
		ev.DetectionMs = f.DetectionMs
	}
	o.mu.Unlock()
	fromEpoch := v.Topo.Epoch
	if !v.HaveTopo {
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
		ns.probe.GiveGrace(time.Now(), o.cfg.Grace)
		ns.probe.NotLead, ns.probe.NotAnswering = time.Time{}, time.Time{}
	}
	if ns := o.nodes[v.Topo.Leader]; ns != nil && v.Topo.Leader != to {
		ns.probe.FailedOver(o.detectorFor())
	}
	o.last = ev
	o.mu.Unlock()
	o.log.Warn("topology changed", "kind", kind, "reason", reason, "from", ev.From, "to", to,
		"old_epoch", ev.OldEpoch, "new_epoch", ev.NewEpoch, "detection_ms", ev.DetectionMs, "lost_entries", lost)
	if next.Leader != "" {
		o.wg.Add(1)
		go o.timePromotion(ev, next.Changed)
	}
	return ev, nil
}

// timePromotion records how long the new leader took to lead.
func (o *Orchestrator) timePromotion(ev *coord.Event, decided time.Time) {
	defer o.wg.Done()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v := o.snapshot()
		if n := v.Node(ev.To); n != nil && n.Leads(ev.NewEpoch) {
			ms := float64(time.Since(decided).Microseconds()) / 1000
			if err := o.amendEvent(ev, func(e *coord.Event) { e.PromotionMs = ms }); err != nil {
				o.log.Warn("record promotion time", "err", err)
			}
			o.log.Info("new leader leads", "node", ev.To, "epoch", ev.NewEpoch, "promotion_ms", ms)
			return
		}
		if !coord.Sleep(o.ctx, 5*time.Millisecond) {
			return
		}
	}
}

// amendEvent adds a measurement to a recorded change event (the one
// changeLocked made, also o.last) and records it again under the same
// key. The promotion timer and a switchover's pause amend the same event
// from two goroutines: each records the event with every amendment made
// so far, and evMu orders the records, so the later one never drops the
// field the earlier one added.
func (o *Orchestrator) amendEvent(ev *coord.Event, amend func(*coord.Event)) error {
	o.evMu.Lock()
	defer o.evMu.Unlock()
	o.mu.Lock()
	amend(ev)
	rec := *ev
	o.mu.Unlock()
	ctx, cancel := context.WithTimeout(o.ctx, 2*time.Second)
	defer cancel()
	return o.store.AddEvent(ctx, rec)
}

package orchestrator

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// TestCalm: the decide loop slows down only while nothing is amiss, and
// then only until the oldest last answer becomes late; every sign the
// rule acts on (a late, refused, suspected, not leading or not answering
// node, no topology) makes it evaluate every 10 ms again.
func TestCalm(t *testing.T) {
	now := time.Unix(1000, 0)
	interval := 100 * time.Millisecond
	healthy := func() failover.View {
		v := failover.View{Now: now, HaveTopo: true, Topo: coord.Topology{Epoch: 2, Leader: "n1"}}
		for _, id := range []string{"n1", "n2", "n3"} {
			v.Nodes = append(v.Nodes, failover.NodeView{ID: id, Fresh: true, LastBeat: now.Add(-interval)})
		}
		return v
	}
	if d, ok := calmFor(healthy(), interval, nil); !ok || d != interval/2 {
		t.Fatalf("a healthy cluster whose last answers are an interval old: calm %v for %v, want calm for half an interval", ok, d)
	}
	v := healthy()
	v.Nodes[1].LastBeat = now.Add(-interval * 5 / 4)
	if d, ok := calmFor(v, interval, nil); !ok || d != interval/4 {
		t.Errorf("one last answer 1.25 intervals old: calm %v for %v, want calm for a quarter interval (until it is late)", ok, d)
	}
	v = healthy()
	for i := range v.Nodes {
		v.Nodes[i].LastBeat = now
	}
	if d, ok := calmFor(v, interval, nil); !ok || d != interval*3/2 {
		t.Errorf("every answer just in: calm %v for %v, want calm for 1.5 intervals (until they are late)", ok, d)
	}
	v.Nodes = nil
	if d, ok := calmFor(v, interval, nil); !ok || d != interval*3/2 {
		t.Errorf("no node: calm %v for %v, want calm for 1.5 intervals (the cap)", ok, d)
	}
	for name, spoil := range map[string]func(v *failover.View){
		"no topology":      func(v *failover.View) { v.HaveTopo = false },
		"no leader":        func(v *failover.View) { v.Topo.Leader = "" },
		"topology garbled": func(v *failover.View) { v.TopoErr = errors.New("garbled") },
		"late answer":      func(v *failover.View) { v.Nodes[0].LastBeat = now.Add(-interval*3/2 - time.Millisecond) },
		"not fresh":        func(v *failover.View) { v.Nodes[1].Fresh = false },
		"suspect":          func(v *failover.View) { v.Nodes[0].Suspect = true },
		"refused":          func(v *failover.View) { v.Nodes[2].Refused = 1 },
		"not leading":      func(v *failover.View) { v.Nodes[0].NotLead = now },
		"not answering":    func(v *failover.View) { v.Nodes[0].NotAnswering = now },
	} {
		v := healthy()
		spoil(&v)
		if _, ok := calmFor(v, interval, nil); ok {
			t.Errorf("%s: calm, want amiss", name)
		}
	}
}

// TestCalmRoundsRideAnswers runs decideLoop with the probers of a healthy
// cluster under testing/synctest: while every node answers in time, every
// round comes in the wake-up of an answer and the loop's own timer never
// fires (an idle orchestrator's ten wake-ups a second of its own, before);
// and a leader that stops answering is seen amiss by that timer when its
// last answer becomes late, 1.5 intervals after it, then every decideFast.
func TestCalmRoundsRideAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{ID: "o1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		cfg.setDefaults()
		ctx, cancel := context.WithCancel(context.Background())
		o := &Orchestrator{cfg: cfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
			topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, activated: make(chan struct{}), hurried: make(chan struct{}),
			decideNow: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
		leader := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		follower := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: 5,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		time.Sleep(37 * time.Millisecond) // off the grid, as a real process starts
		o.becomeActive()
		startProbers(ctx, o, &wg, map[string]*fakeNode{"n1": leader, "n2": follower})
		o.wg.Add(1)
		wg.Go(o.decideLoop)
		// Through the first calm spell and into the quiet cadence.
		time.Sleep(3 * time.Second)
		synctest.Wait()
		rounds, own := o.rounds.Load(), o.timerRounds.Load()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := o.timerRounds.Load() - own; n != 0 {
			t.Errorf("%d rounds in 2 s of calm woke the loop on its own timer, want 0 (each rides an answer)", n)
		}
		if n := o.rounds.Load() - rounds; n < 20 {
			t.Errorf("%d rounds in 2 s of calm, want one per answer of the leader at least (20)", n)
		}
		// The leader stops mid-interval: its last answer came at the last
		// grid instant, and is late 1.5 intervals after it.
		last := time.Now().Truncate(cfg.Interval)
		time.Sleep(time.Until(last.Add(cfg.Interval / 2)))
		leader.set("paused")
		time.Sleep(time.Until(last.Add(cfg.Interval*3/2 - time.Millisecond)))
		synctest.Wait()
		own = o.timerRounds.Load()
		quiet := func() bool {
			o.mu.Lock()
			defer o.mu.Unlock()
			return o.quiet(time.Now())
		}
		if !quiet() {
			t.Errorf("the cluster is not quiet before the leader's answer is late")
		}
		time.Sleep(2 * time.Millisecond) // the answer is late now
		synctest.Wait()
		if n := o.timerRounds.Load() - own; n != 1 {
			t.Fatalf("the leader's last answer became late: %d rounds on the loop's timer, want 1 (at that moment)", n)
		}
		if quiet() {
			t.Errorf("a late leader did not end the quiet cadence")
		}
		own = o.timerRounds.Load()
		time.Sleep(5 * decideFast)
		synctest.Wait()
		if n := o.timerRounds.Load() - own; n < 5 {
			t.Errorf("amiss: %d rounds in %v, want one every decideFast", n, 5*decideFast)
		}
		leader.set("alive")
	})
}

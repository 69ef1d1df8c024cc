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
	if d, ok := calmFor(v, interval, nil); !ok || d != interval {
		t.Errorf("every answer just in: calm %v for %v, want calm for an interval (the cap)", ok, d)
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

// TestCalmWake: a calm round wakes on the probers' grid when that delays
// seeing a late answer by at most half of what lies between lateness and
// MinSilence, and at its own time otherwise.
func TestCalmWake(t *testing.T) {
	base := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	interval, minSilence := 100*ms, 250*ms
	for _, tc := range []struct {
		now, d, minSilence, want time.Duration // from base
	}{
		{now: 110 * ms, d: 40 * ms, minSilence: minSilence, want: 200 * ms},  // 50 ms later: allowed
		{now: 101 * ms, d: 40 * ms, minSilence: minSilence, want: 141 * ms},  // 59 ms later: not
		{now: 150 * ms, d: 50 * ms, minSilence: minSilence, want: 200 * ms},  // on the grid already
		{now: 137 * ms, d: 100 * ms, minSilence: minSilence, want: 200 * ms}, // a grid instant before: earlier
		{now: 200 * ms, d: 10 * ms, minSilence: minSilence, want: 210 * ms},  // the next is 90 ms later: not
		{now: 110 * ms, d: 40 * ms, minSilence: 200 * ms, want: 150 * ms},    // a shorter MinSilence allows 25 ms
	} {
		got := calmWake(base.Add(tc.now), tc.d, interval, tc.minSilence)
		if want := base.Add(tc.want); !got.Equal(want) {
			t.Errorf("now +%v, calm for %v, MinSilence %v: wakes at +%v, want +%v", tc.now, tc.d, tc.minSilence, got.Sub(base), tc.want)
		}
	}
}

// TestCalmRoundsShareProbeWakeups runs decideLoop with probers of a quiet,
// healthy cluster under testing/synctest: every calm round comes at an
// instant the probers send at (the interval's grid), none between, so the
// rounds cost the process no wake-up of their own; and a paused leader is
// still seen amiss and failed over as before.
func TestCalmRoundsShareProbeWakeups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{ID: "o1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		cfg.setDefaults()
		ctx, cancel := context.WithCancel(context.Background())
		o := &Orchestrator{cfg: cfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
			topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, activated: make(chan struct{}), hurried: make(chan struct{}),
			decideNow: make(chan struct{}, 1), ctx: ctx, cancel: cancel, policy: coord.FailoverManual}
		leader := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		follower := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: -1,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		// Start off the grid, as a real process does.
		time.Sleep(37 * time.Millisecond)
		o.becomeActive()
		for id, f := range map[string]*fakeNode{"n1": leader, "n2": follower} {
			ns := &nodeState{member: coord.Member{ID: id, PeerAddr: id + ":7380", Priority: 100}, probe: failover.Probe{Det: o.detectorFor()}}
			o.nodes[id] = ns
			wg.Go(func() { o.probeLoop(ctx, ns, f) })
		}
		o.wg.Add(1)
		wg.Go(o.decideLoop)
		o.wakeDecide()
		// Settle onto the grid, then look just after each grid instant
		// and just before the next: no round in between.
		time.Sleep(time.Second - time.Since(time.Now().Truncate(time.Second)) + time.Millisecond)
		for i := range 30 {
			before := o.rounds.Load()
			time.Sleep(interval(o) - 2*time.Millisecond)
			synctest.Wait()
			if n := o.rounds.Load() - before; n != 0 {
				t.Fatalf("grid step %d: %d decide rounds between two probe instants, want 0 (each round its own wake-up)", i, n)
			}
			time.Sleep(2 * time.Millisecond)
		}
		rounds := o.rounds.Load()
		time.Sleep(time.Second)
		if n := o.rounds.Load() - rounds; n < 5 {
			t.Fatalf("%d calm rounds in a second, want one at least every other interval", n)
		}
		// A paused leader: amiss once its answer is 1.5 intervals old
		// (seen on the grid at 2 at most), so rounds every decideFast
		// again well before MinSilence lets the rule act on its silence.
		lastAnswer := time.Now().Truncate(interval(o))              // the last probe's instant
		time.Sleep(lastAnswer.Add(interval(o) / 2).Sub(time.Now())) // mid-interval, as a process stops
		leader.set("paused")
		time.Sleep(lastAnswer.Add(cfg.MinSilence - decideFast - time.Millisecond).Sub(time.Now()))
		synctest.Wait()
		rounds = o.rounds.Load()
		time.Sleep(decideFast)
		synctest.Wait()
		if n := o.rounds.Load() - rounds; n != 1 {
			t.Fatalf("a leader silent for MinSilence: %d decide rounds in the next %v, want 1 (every decideFast)", n, decideFast)
		}
		leader.set("alive")
	})
}

func interval(o *Orchestrator) time.Duration { return o.cfg.Interval }

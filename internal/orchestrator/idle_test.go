package orchestrator

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// TestIdleProbeRate counts the Heartbeat RPCs an idle 3-node cluster
// costs the active orchestrator (its probers and decideLoop, under
// testing/synctest on fake nodes): once quiet, the leader at the interval
// and each follower every quietProbeFactor intervals. Each RPC is a few
// wake-ups of the orchestrator and one of the node (bench/idle.sh), so the
// rate is the idle cost that a busy machine does not blur. At a quiet
// period of five intervals it was 14 a second. A standby orchestrator
// beside it probes every node every standbyProbeFactor intervals: 1 a
// second for the three (3 at 1 s).
func TestIdleProbeRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{ID: "o1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		cfg.setDefaults()
		ctx, cancel := context.WithCancel(context.Background())
		o := &Orchestrator{cfg: cfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
			topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, activated: make(chan struct{}), hurried: make(chan struct{}),
			decideNow: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
		scfg := cfg
		scfg.ID = "o2"
		standby := &Orchestrator{cfg: scfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
			topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, activated: make(chan struct{}), hurried: make(chan struct{}),
			decideNow: make(chan struct{}, 1), ctx: ctx, cancel: cancel}
		at := &peerpb.Position{Epoch: 3, Lsn: 10}
		cluster := func() map[string]*fakeNode {
			return map[string]*fakeNode{
				"n1": {state: "alive", reply: &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true, Durable: at}},
				"n2": {state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: 5, Durable: at}},
				"n3": {state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: 5, Durable: at}},
			}
		}
		fakes, sfakes := cluster(), cluster() // each orchestrator's calls apart
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		time.Sleep(37 * time.Millisecond) // off the grid, as a real process starts
		o.becomeActive()
		startProbers(ctx, o, &wg, fakes)
		startProbers(ctx, standby, &wg, sfakes)
		o.wg.Add(1)
		wg.Go(o.decideLoop)
		calls := func(fakes map[string]*fakeNode) map[string]int {
			m := map[string]int{}
			for id, f := range fakes {
				f.mu.Lock()
				m[id] = f.calls
				f.mu.Unlock()
			}
			return m
		}
		time.Sleep(quietAfter + time.Second) // quiet from quietAfter on
		synctest.Wait()
		before, sbefore := calls(fakes), calls(sfakes)
		const secs = 30
		time.Sleep(secs * time.Second)
		synctest.Wait()
		after, safter := calls(fakes), calls(sfakes)
		probes := func(before, after map[string]int) (map[string]int, float64) {
			d, total := map[string]int{}, 0
			for id := range after {
				d[id] = after[id] - before[id]
				total += d[id]
			}
			return d, float64(total) / secs
		}
		active, rate := probes(before, after)
		if active["n1"] != secs*10 {
			t.Errorf("the leader was probed %d times in %d s, want %d (every interval: its detection is unchanged)", active["n1"], secs, secs*10)
		}
		if rate > 12 {
			t.Errorf("an idle cluster: %.2f probes a second by the active orchestrator (%v in %d s), want at most 12", rate, active, secs)
		}
		if st, rate := probes(sbefore, safter); rate > 1 {
			t.Errorf("an idle cluster: %.2f probes a second by the standby (%v in %d s), want at most 1", rate, st, secs)
		}
	})
}

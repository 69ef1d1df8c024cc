package orchestrator

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// fakeNode answers the prober's Heartbeat as a node in a given state
// would: alive (reply), gone (refused at once) or paused (no answer until
// the probe's deadline).
type fakeNode struct {
	mu    sync.Mutex
	state string // "alive", "gone", "paused", "slow"
	reply *peerpb.HeartbeatReply
	calls int
	delay time.Duration // "slow": how long an answer takes
}

func (f *fakeNode) set(state string) {
	f.mu.Lock()
	f.state = state
	f.mu.Unlock()
}

func (f *fakeNode) Heartbeat(ctx context.Context, _ *peerpb.HeartbeatRequest, _ ...grpc.CallOption) (*peerpb.HeartbeatReply, error) {
	f.mu.Lock()
	f.calls++
	state, rep, delay := f.state, f.reply, f.delay
	f.mu.Unlock()
	switch state {
	case "slow":
		select {
		case <-time.After(delay):
			return rep, nil
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	case "gone":
		return nil, status.Error(codes.Unavailable, "connection refused")
	case "paused":
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return rep, nil
}

// TestProbeLoop runs the probe loop on fake nodes under testing/synctest,
// through the failover rule: a leader whose process is gone is failed over
// within an interval and a quarter (two refusals), a paused one only after
// MinSilence, and a leader that answers never.
func TestProbeLoop(t *testing.T) {
	for _, tc := range []struct {
		fault    string
		noneAt   time.Duration // no failover yet this long after the fault
		failover time.Duration // a failover by this long after it
		reason   string
	}{
		// The fault comes mid-interval (no two events share an instant, so
		// the run does not depend on the order of goroutines woken
		// together): the next probe, 50 ms later, is refused, and so is
		// its retry a quarter interval after.
		{fault: "gone", noneAt: 60 * time.Millisecond, failover: 80 * time.Millisecond, reason: "refused 2 probes in a row"},
		// Paused: probes time out, which says nothing of the process; the
		// leader, silent since its last answer 50 ms before the fault, is
		// failed over once silent for MinSilence (250 ms) and suspected.
		{fault: "paused", noneAt: 190 * time.Millisecond, failover: 230 * time.Millisecond, reason: "leader suspected"},
	} {
		t.Run(tc.fault, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{ID: "o1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				cfg.setDefaults()
				o := &Orchestrator{cfg: cfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
					topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, active: true}
				leader := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true,
					Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
				// The follower lost the leader too (never heard it on its stream):
				// it does not veto.
				follower := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: -1,
					Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				defer wg.Wait()
				defer cancel()
				startProbers(ctx, o, &wg, map[string]*fakeNode{"n1": leader, "n2": follower})
				decide := func() failover.Decision {
					return failover.Decide(o.cfg.rules(), o.snapshot(), time.Now().Add(-time.Minute))
				}
				time.Sleep(2*time.Second + 50*time.Millisecond)
				if d := decide(); d.Kind != failover.KindNone {
					t.Fatalf("a leader that answers: %+v", d)
				}
				leader.mu.Lock()
				if leader.calls != 21 {
					t.Errorf("%d probes in 2.05 s at a 100 ms interval, want 21", leader.calls)
				}
				leader.mu.Unlock()

				leader.set(tc.fault)
				time.Sleep(tc.noneAt)
				if d := decide(); d.Kind != failover.KindNone {
					t.Fatalf("%v after the fault: %+v, want nothing yet", tc.noneAt, d)
				}
				time.Sleep(tc.failover - tc.noneAt)
				d := decide()
				if d.Kind != failover.KindFailover || d.Candidate != "n2" || !strings.Contains(d.Reason, tc.reason) {
					t.Fatalf("%v after the fault: %+v, want a failover to n2 (%s)", tc.failover, d, tc.reason)
				}
			})
		})
	}
}

// TestStandbyProbes: a standby orchestrator probes every standbyProbeFactor
// intervals and sees its live nodes live between those probes; once active it probes at the interval at once, does not
// suspect a live leader it last heard a standby's interval ago, and fails
// over a leader that paused while it stood by within MinSilence of taking
// over.
func TestStandbyProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{ID: "o2", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		cfg.setDefaults()
		o := &Orchestrator{cfg: cfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
			topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, activated: make(chan struct{}), decideNow: make(chan struct{}, 1)}
		leader := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		follower := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: -1,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		startProbers(ctx, o, &wg, map[string]*fakeNode{"n1": leader, "n2": follower})
		calls := func(f *fakeNode) int {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.calls
		}
		decide := func() failover.Decision {
			return failover.Decide(o.cfg.rules(), o.snapshot(), time.Now().Add(-time.Minute))
		}
		// Standing by, it sees the live nodes as live between its probes
		// (its /status and Sentinel endpoint say so).
		synctest.Wait() // the first answers
		down := 0
		for range 301 {
			v := o.snapshot()
			for _, n := range v.Nodes {
				if !n.Fresh || n.Suspect {
					down++
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if down > 0 {
			t.Errorf("a standby saw its live nodes unreachable or suspected in %d of 602 looks over 15 s", down)
		}
		if n := calls(leader); n != 6 {
			t.Fatalf("a standby probed %d times in 15.05 s, want 6 (every 3 s)", n)
		}

		// Active 950 ms after the last probe: a live leader is probed at
		// once and never suspected.
		time.Sleep(900 * time.Millisecond)
		o.becomeActive()
		for range 19 {
			time.Sleep(25 * time.Millisecond)
			if d := decide(); d.Kind != failover.KindNone {
				t.Fatalf("a live leader, just after taking over: %+v", d)
			}
		}
		if n := calls(leader); n != 6+6 {
			t.Fatalf("%d probes 475 ms after taking over, want 6 more (at once, 50 ms later on the interval's grid, then every 100 ms)", n-6)
		}

		// Back to standing by, the leader pauses, then this one takes over.
		o.mu.Lock()
		o.active = false
		o.mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		leader.set("paused")
		time.Sleep(700 * time.Millisecond)
		o.becomeActive()
		time.Sleep(o.cfg.MinSilence - 50*time.Millisecond)
		if d := decide(); d.Kind != failover.KindNone {
			t.Fatalf("a paused leader failed over %v after taking over, before MinSilence: %+v", o.cfg.MinSilence-50*time.Millisecond, d)
		}
		time.Sleep(100 * time.Millisecond)
		if d := decide(); d.Kind != failover.KindFailover || d.Candidate != "n2" {
			t.Fatalf("a leader paused before this orchestrator took over, %v after: %+v, want a failover to n2", o.cfg.MinSilence+50*time.Millisecond, d)
		}
	})
}

// TestSlowLeaderIsAlive: a leader saturated by clients answers each probe
// late (120 ms here, past the 100 ms interval) while no follower vouches
// for it. Its late answers are signs of life: it is not failed over.
// (With probes that gave up at the interval, every one failed and the
// leader was failed over within MinSilence.)
func TestSlowLeaderIsAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{ID: "o1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
		cfg.setDefaults()
		o := &Orchestrator{cfg: cfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
			topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, active: true, stats: newDetectStats()}
		leader := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		follower := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: -1,
			Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		defer wg.Wait()
		defer cancel()
		startProbers(ctx, o, &wg, map[string]*fakeNode{"n1": leader, "n2": follower})
		time.Sleep(time.Second + 50*time.Millisecond)
		leader.mu.Lock()
		leader.state, leader.delay = "slow", 120*time.Millisecond
		leader.mu.Unlock()
		for range 300 {
			time.Sleep(10 * time.Millisecond)
			if d := failover.Decide(o.cfg.rules(), o.snapshot(), time.Now().Add(-time.Minute)); d.Kind != failover.KindNone {
				t.Fatalf("a leader that answers every probe in 120 ms: %+v", d)
			}
		}
	})
}

// TestQuietCadence: on a quiet cluster the active orchestrator probes a
// follower every quietProbeFactor intervals and the leader at the
// interval; a write (the leader's durable position moves) or anything
// amiss (here a paused leader, seen as decideLoop sees it) brings the
// followers back to the interval at once, so that a follower that still
// hears the leader vouches for it in time (no failover while it does)
// and a paused leader whose followers lost it too is failed over as
// fast as on a busy cluster.
func TestQuietCadence(t *testing.T) {
	for _, vouch := range []bool{true, false} {
		name := "follower-lost-leader"
		if vouch {
			name = "follower-vouches"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{ID: "o1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
				cfg.setDefaults()
				o := &Orchestrator{cfg: cfg, log: cfg.Logger, nodes: map[string]*nodeState{}, noted: map[string]time.Time{},
					topo: coord.Topology{Epoch: 3, Leader: "n1"}, haveTopo: true, activated: make(chan struct{}), hurried: make(chan struct{}),
					decideNow: make(chan struct{}, 1)}
				leader := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true,
					Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
				heard := int64(-1)
				if vouch {
					heard = 0 // its stream from the leader keeps going (a partition between orchestrator and leader)
				}
				follower := &fakeNode{state: "alive", reply: &peerpb.HeartbeatReply{Role: "follower", Epoch: 3, Following: "n1", LeaderHeardAgoMs: heard,
					Durable: &peerpb.Position{Epoch: 3, Lsn: 10}}}
				ctx, cancel := context.WithCancel(context.Background())
				var wg sync.WaitGroup
				defer wg.Wait()
				defer cancel()
				o.becomeActive()
				startProbers(ctx, o, &wg, map[string]*fakeNode{"n1": leader, "n2": follower})
				calls := func(f *fakeNode) int {
					f.mu.Lock()
					defer f.mu.Unlock()
					return f.calls
				}
				// decideLoop's part, every 10 ms: stir when not calm.
				stirred := 0
				round := func() failover.Decision {
					v, periods := o.snapshotPeriods()
					if _, ok := calmFor(v, o.cfg.Interval, periods); !ok {
						o.mu.Lock()
						o.stir(time.Now())
						o.mu.Unlock()
						stirred++
					}
					return failover.Decide(o.cfg.rules(), v, time.Now().Add(-time.Minute))
				}
				run := func(d time.Duration) failover.Decision {
					var last failover.Decision
					for range d / (10 * time.Millisecond) {
						time.Sleep(10 * time.Millisecond)
						if last = round(); last.Kind != failover.KindNone {
							return last
						}
					}
					return last
				}
				// Quiet from quietAfter on: the follower every second.
				time.Sleep(5 * time.Millisecond)
				if d := run(quietAfter + 500*time.Millisecond); d.Kind != failover.KindNone {
					t.Fatalf("a quiet healthy cluster: %+v", d)
				}
				l0, f0 := calls(leader), calls(follower)
				if d := run(5 * time.Second); d.Kind != failover.KindNone {
					t.Fatalf("a quiet healthy cluster: %+v", d)
				}
				if n, m := calls(leader)-l0, calls(follower)-f0; n != 50 || m != 5 {
					t.Fatalf("quiet for 5 s: %d probes of the leader, %d of the follower; want 50 and 5", n, m)
				}
				if stirred != 0 {
					t.Fatalf("the quiet cadence made the cluster look amiss %d times", stirred)
				}

				// A write: the follower is probed at the interval again.
				leader.mu.Lock()
				leader.reply = &peerpb.HeartbeatReply{Role: "leader", Epoch: 3, LeadingEpoch: 3, Answering: true, Durable: &peerpb.Position{Epoch: 3, Lsn: 11}}
				leader.mu.Unlock()
				time.Sleep(105 * time.Millisecond) // the leader's next probe sees it
				f0 = calls(follower)
				run(time.Second)
				if m := calls(follower) - f0; m < 9 {
					t.Fatalf("after a write: %d probes of the follower in 1 s, want 10", m)
				}
				// Quiet again after quietAfter without writes or trouble.
				run(quietAfter + time.Second)
				f0 = calls(follower)
				run(time.Second)
				if m := calls(follower) - f0; m > 1 {
					t.Fatalf("quiet again: %d probes of the follower in 1 s, want 1", m)
				}

				// The leader pauses mid-interval, the follower on its quiet
				// cadence.
				time.Sleep(50 * time.Millisecond)
				leader.set("paused")
				f0 = calls(follower)
				start := time.Now()
				d := run(time.Second)
				took := time.Since(start)
				if vouch {
					if d.Kind != failover.KindNone {
						t.Fatalf("a follower that hears the leader vouches for it: %+v", d)
					}
					if m := calls(follower) - f0; m < 9 {
						t.Fatalf("a paused leader: the follower probed %d times in the next second, want it on the interval", m)
					}
					// The quiet spell before its early probe was the
					// cadence's: were it counted as the follower's
					// lateness, a follower promoted now would be waited
					// for longer should it fail too (Rules.minSilence).
					if slow := o.snapshot().Node("n2").Slow; slow > 10*time.Millisecond {
						t.Fatalf("the follower, woken from the quiet cadence, looks slow: %v", slow)
					}
					return
				}
				// As TestProbeLoop's paused leader on a busy cluster: silent
				// since its last answer 50 ms before the pause, failed over
				// once silent for MinSilence and suspected.
				if d.Kind != failover.KindFailover || d.Candidate != "n2" || took > 230*time.Millisecond || took < 190*time.Millisecond {
					t.Fatalf("a paused leader nobody hears: %+v %v after the pause, want a failover to n2 in 190-230 ms", d, took)
				}
			})
		})
	}
}

// startProbers runs a prober per fake node, each in wg. Every node is in
// o.nodes before any prober runs: a prober reads the map under o.mu
// (observeAnswer reads the leader's state), which the tests' setup does
// not hold (the race detector caught TestSlowLeaderIsAlive so in CI at
// 4e96be1).
func startProbers(ctx context.Context, o *Orchestrator, wg *sync.WaitGroup, fakes map[string]*fakeNode) {
	for id := range fakes {
		o.nodes[id] = &nodeState{member: coord.Member{ID: id, PeerAddr: id + ":7380", Priority: 100}, probe: failover.Probe{Det: o.detectorFor()}}
	}
	for id, f := range fakes {
		ns := o.nodes[id]
		wg.Go(func() { o.probeLoop(ctx, ns, f) })
	}
}

package failover

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/detector"
	"github.com/tandemdb/tandem/internal/peerpb"
)

var (
	errRefused = status.Error(codes.Unavailable, "connection refused")
	errTimeout = status.Error(codes.DeadlineExceeded, "context deadline exceeded")
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err      error
		stopping bool
		want     Outcome
	}{
		{nil, false, Answered},
		{errRefused, false, Refused},
		{fmt.Errorf("probe: %w", errRefused), false, Refused},
		// The prober's own context ended: its Unavailable says nothing.
		{errRefused, true, Failed},
		{errTimeout, false, Failed},
		{context.DeadlineExceeded, false, Failed},
		{status.Error(codes.Internal, "boom"), false, Failed},
		{errors.New("no status"), false, Failed},
	}
	for _, tc := range tests {
		if got := Classify(tc.err, tc.stopping); got != tc.want {
			t.Errorf("Classify(%v, stopping %v) = %v, want %v", tc.err, tc.stopping, got, tc.want)
		}
	}
}

// probeRun feeds one node's probe results, 100 ms apart as the prober
// paces them, and returns the probe and the time of the last result.
type probeStep struct {
	rep *peerpb.HeartbeatReply
	err error
}

func runProbe(t *testing.T, start time.Time, want Expect, steps ...probeStep) (*Probe, time.Time) {
	t.Helper()
	p := &Probe{Det: detector.NewTimeout(500 * time.Millisecond)}
	now := start
	for _, s := range steps {
		next := p.Observe(now, now, s.rep, s.err, false, want, 100*time.Millisecond)
		if s.err == nil && next != 100*time.Millisecond {
			t.Fatalf("after an answer the next probe is in %v, want the interval", next)
		}
		if s.err != nil && next != 25*time.Millisecond {
			t.Fatalf("after a failure the next probe is in %v, want a quarter interval", next)
		}
		now = now.Add(next)
	}
	return p, now
}

// TestProbeObserve: what a run of probe results establishes.
func TestProbeObserve(t *testing.T) {
	start := time.Unix(1000, 0)
	leads := Expect{ShouldLead: true, Epoch: 3}
	leader := leaderReply(3, 10)
	notAnswering := leaderReply(3, 10)
	notAnswering.Answering = false
	fenced := &peerpb.HeartbeatReply{Role: "fenced", Epoch: 3}
	ok, refused, timeout := probeStep{rep: leader}, probeStep{err: errRefused}, probeStep{err: errTimeout}

	p, _ := runProbe(t, start, leads, ok, refused, refused)
	if p.Refused != 2 || p.LastErr == "" || p.Reply != leader {
		t.Fatalf("two refusals: %+v", p)
	}
	// A timeout in between proves nothing of the process: the count starts again.
	if p, _ = runProbe(t, start, leads, refused, timeout, refused); p.Refused != 1 {
		t.Fatalf("refused, timed out, refused: Refused %d, want 1", p.Refused)
	}
	// An answer clears it.
	if p, _ = runProbe(t, start, leads, refused, ok); p.Refused != 0 || p.LastErr != "" {
		t.Fatalf("refused then answered: %+v", p)
	}
	// A leader that does not lead its epoch is marked from its first such answer.
	p, _ = runProbe(t, start, leads, ok, probeStep{rep: fenced}, probeStep{rep: fenced})
	if want := start.Add(100 * time.Millisecond); !p.NotLead.Equal(want) || !p.NotAnswering.IsZero() {
		t.Fatalf("fenced leader: NotLead %v (want %v), NotAnswering %v", p.NotLead, want, p.NotAnswering)
	}
	// One that leads without a lease, from its first such answer; cleared by an answering one.
	p, _ = runProbe(t, start, leads, probeStep{rep: notAnswering}, probeStep{rep: notAnswering})
	if !p.NotAnswering.Equal(start) || !p.NotLead.IsZero() {
		t.Fatalf("leader without a lease: %+v", p)
	}
	if p, _ = runProbe(t, start, leads, probeStep{rep: notAnswering}, ok); !p.NotAnswering.IsZero() {
		t.Fatalf("lease back: NotAnswering %v", p.NotAnswering)
	}
	// A node not expected to lead is never marked.
	p, _ = runProbe(t, start, Expect{Epoch: 3}, probeStep{rep: fenced}, probeStep{rep: notAnswering})
	if !p.NotLead.IsZero() || !p.NotAnswering.IsZero() {
		t.Fatalf("not the topology's leader: %+v", p)
	}
	// A leader of an older epoch does not lead this one.
	if p, _ = runProbe(t, start, Expect{ShouldLead: true, Epoch: 4}, ok); !p.NotLead.Equal(start) {
		t.Fatalf("leads epoch 3 of 4: NotLead %v", p.NotLead)
	}
}

// TestProbeGrace: a new leader's grace ends at its first answer as the
// leader that answers, so that it is suspected at once if it dies then.
func TestProbeGrace(t *testing.T) {
	start := time.Unix(1000, 0)
	p := &Probe{Det: detector.NewTimeout(500 * time.Millisecond)}
	p.Observe(start, start, followerReply(3, 10, 5), nil, false, Expect{Epoch: 3}, 100*time.Millisecond)
	p.GiveGrace(start, time.Second)
	if p.Det.Suspect(start.Add(900 * time.Millisecond)) {
		t.Fatal("suspected within its grace")
	}
	p.Observe(start.Add(100*time.Millisecond), start.Add(100*time.Millisecond), leaderReply(4, 10), nil, false, Expect{ShouldLead: true, Epoch: 4}, 100*time.Millisecond)
	if !p.GraceEnds.IsZero() {
		t.Fatalf("grace not ended by an answer as leader: %v", p.GraceEnds)
	}
	if !p.Det.Suspect(start.Add(700 * time.Millisecond)) {
		t.Fatal("a silent new leader is not suspected after its grace ended")
	}
}

// TestProbeToDecision runs the probe's findings into Decide: the rule as
// the orchestrator applies it, from RPC results to a failover.
func TestProbeToDecision(t *testing.T) {
	start := time.Unix(1000, 0)
	topo := coord.Topology{Epoch: 3, Leader: "n1"}
	leads := Expect{ShouldLead: true, Epoch: 3}
	ok, refused, timeout := probeStep{rep: leaderReply(3, 10)}, probeStep{err: errRefused}, probeStep{err: errTimeout}
	decideAfter := func(steps ...probeStep) Decision {
		p, now := runProbe(t, start, leads, steps...)
		v := View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
			p.View("n1", member("n1"), now, 300*time.Millisecond),
			{ID: "n2", Member: member("n2"), Reply: followerReply(3, 10, 400), Fresh: true},
		}}
		return Decide(testRules, v, start.Add(-time.Minute))
	}
	if d := decideAfter(ok, refused, refused); d.Kind != KindFailover || d.Candidate != "n2" || !strings.Contains(d.Reason, "refused 2 probes") {
		t.Fatalf("refused twice: %+v, want a failover to n2", d)
	}
	if d := decideAfter(ok, refused); d.Kind != KindNone {
		t.Fatalf("refused once: %+v, want nothing yet", d)
	}
	if d := decideAfter(ok, timeout, timeout); d.Kind != KindNone {
		t.Fatalf("two timeouts 150 ms after an answer: %+v, want nothing (not suspected yet)", d)
	}
	if d := decideAfter(ok, refused, ok, refused); d.Kind != KindNone {
		t.Fatalf("refusals not in a row: %+v, want nothing", d)
	}
}

// TestViewAgesWhatFollowersHeard: a follower's "heard my leader 10 ms ago"
// is 10 ms plus the answer's age by the time the rule reads it, so a
// paused leader's followers stop vouching for it FollowerSilence after it
// stopped, not FollowerSilence after their next answer.
func TestViewAgesWhatFollowersHeard(t *testing.T) {
	start := time.Unix(1000, 0)
	p := &Probe{Det: detector.NewTimeout(500 * time.Millisecond)}
	p.Observe(start, start, followerReply(3, 10, 10), nil, false, Expect{Epoch: 3}, 100*time.Millisecond)
	v := p.View("n2", member("n2"), start.Add(150*time.Millisecond), 300*time.Millisecond)
	if ago, ok := v.HeardLeaderAgo(); !ok || ago != 160*time.Millisecond {
		t.Fatalf("heard %v ago (%v), want 160ms", ago, ok)
	}
	p.Observe(start.Add(200*time.Millisecond), start.Add(200*time.Millisecond), followerReply(3, 10, -1), nil, false, Expect{Epoch: 3}, 100*time.Millisecond)
	if v := p.View("n2", member("n2"), start.Add(250*time.Millisecond), 300*time.Millisecond); func() bool { _, ok := v.HeardLeaderAgo(); return ok }() {
		t.Fatal("a follower that never heard its leader on this stream vouches for it")
	}
}

// TestProbeSlowness: late answers raise a node's Slow (round trip, or the
// silence between answers less the interval) for one to two SlowWindows;
// a node that stops answering cannot raise it, and what it showed before
// expires.
func TestProbeSlowness(t *testing.T) {
	start := time.Unix(1000, 0)
	ms := time.Millisecond
	iv := 100 * ms
	want := Expect{ShouldLead: true, Epoch: 3}
	p := &Probe{Det: detector.NewTimeout(500 * ms)}
	at := func(d time.Duration) time.Time { return start.Add(d) }
	p.Observe(at(0), at(5*ms), leaderReply(3, 10), nil, false, want, iv)
	p.Observe(at(100*ms), at(250*ms), leaderReply(3, 10), nil, false, want, iv) // 150 ms round trip
	if s := p.View("n1", member("n1"), at(300*ms), 3*iv).Slow; s != 150*ms {
		t.Fatalf("slow %v after a 150 ms answer, want 150ms", s)
	}
	// 400 ms between answers (a probe lost, or this orchestrator late): 300.
	p.Observe(at(640*ms), at(650*ms), leaderReply(3, 10), nil, false, want, iv)
	if s := p.View("n1", member("n1"), at(700*ms), 3*iv).Slow; s != 300*ms {
		t.Fatalf("slow %v after 400 ms between answers, want 300ms", s)
	}
	// It stops answering: Slow stays what it was, then expires.
	if s := p.View("n1", member("n1"), at(2500*ms), 3*iv).Slow; s != 300*ms {
		t.Fatalf("slow %v 1.85 s later, want 300ms still", s)
	}
	if s := p.View("n1", member("n1"), at(4100*ms), 3*iv).Slow; s != 0 {
		t.Fatalf("slow %v two windows later, want 0", s)
	}
	p.Restart(detector.NewTimeout(500 * ms))
	if s := p.View("n1", member("n1"), at(700*ms), 3*iv).Slow; s != 0 {
		t.Fatalf("slow %v after Restart, want 0", s)
	}
}

// TestFollowerStreamGaps: a silence of the leader's stream a follower
// reported counts (StreamGap) once a later report shows the stream heard
// again; a silence still going on, as a paused leader's, never does, even
// with answers arriving with some jitter.
func TestFollowerStreamGaps(t *testing.T) {
	start := time.Unix(1000, 0)
	ms := time.Millisecond
	iv := 100 * ms
	at := func(d time.Duration) time.Time { return start.Add(d) }
	obs := func(p *Probe, d time.Duration, heardAgo int64) {
		p.Observe(at(d), at(d), followerReply(3, 10, heardAgo), nil, false, Expect{Epoch: 3}, iv)
	}
	p := &Probe{Det: detector.NewTimeout(500 * ms)}
	obs(p, 0, 10)
	obs(p, 100*ms, 170) // silent for 170 ms so far
	obs(p, 200*ms, 20)  // heard again: that silence ended
	if g := p.View("n2", member("n2"), at(250*ms), 3*iv).StreamGap; g != 170*ms {
		t.Fatalf("stream gap %v, want 170ms", g)
	}
	paused := &Probe{Det: detector.NewTimeout(500 * ms)}
	obs(paused, 0, 10)
	obs(paused, 130*ms, 100) // arrived 40 ms late: heard at 30 ms looks 40 ms newer
	obs(paused, 200*ms, 210)
	obs(paused, 330*ms, 300)
	if g := paused.View("n2", member("n2"), at(350*ms), 3*iv).StreamGap; g != 0 {
		t.Fatalf("a silence still going on counted as a stream gap: %v", g)
	}
}

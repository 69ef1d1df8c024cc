package failover

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/peerpb"
)

func leaderReply(epoch, lsn uint64) *peerpb.HeartbeatReply {
	return &peerpb.HeartbeatReply{Role: "leader", Epoch: epoch, LeadingEpoch: epoch, Answering: true, Durable: &peerpb.Position{Epoch: epoch, Lsn: lsn}}
}

func followerReply(epoch, lsn uint64, heardAgoMs int64) *peerpb.HeartbeatReply {
	return &peerpb.HeartbeatReply{Role: "follower", Epoch: epoch, Following: "n1", LeaderHeardAgoMs: heardAgoMs, Durable: &peerpb.Position{Epoch: epoch, Lsn: lsn}}
}

// testRules are the orchestrator's defaults.
var testRules = Rules{Bootstrap: 2 * time.Second, Interval: 100 * time.Millisecond, MinSilence: 250 * time.Millisecond, FollowerSilence: 200 * time.Millisecond,
	NotLeadingAfter: 2 * time.Second, NotAnsweringAfter: 2 * time.Second}

func mode(s string) coord.Mode {
	m, err := coord.ParseMode(s)
	if err != nil {
		panic(err)
	}
	return m
}

func member(id string) coord.Member {
	return coord.Member{ID: id, PeerAddr: id + ":7380", Priority: 100}
}

// TestDecide is the failover rule as a table: views in, decisions out.
func TestDecide(t *testing.T) {
	cfg := testRules
	now := time.Unix(1000, 0)
	topo := coord.Topology{Epoch: 3, Leader: "n1"}
	healthy := NodeView{ID: "n1", Member: member("n1"), Reply: leaderReply(3, 100), Fresh: true, LastBeat: now.Add(-50 * time.Millisecond)}
	suspect := healthy
	suspect.Suspect, suspect.Fresh, suspect.Phi, suspect.LastBeat = true, false, 9, now.Add(-600*time.Millisecond)
	// Suspected by phi but silent for less than MinSilence: a saturated
	// leader missing a few heartbeats.
	stalled := suspect
	stalled.LastBeat = now.Add(-200 * time.Millisecond)
	refused := healthy
	refused.Refused, refused.Fresh = 2, false
	f := func(id string, lsn uint64, heard int64) NodeView {
		return NodeView{ID: id, Member: member(id), Reply: followerReply(3, lsn, heard), Fresh: true}
	}
	inZone := func(n NodeView, zone string) NodeView { n.Member.Zone = zone; return n }
	aged := func(n NodeView, age time.Duration) NodeView { n.Age = age; return n }
	// A quorum failover's second step: epoch 4 has no leader and ended n1's.
	fencing := coord.Topology{Epoch: 4, Fenced: "n1", Mode: mode("quorum 2"), Reason: "leader suspected"}
	ended := func(id string, lsn uint64) NodeView {
		return NodeView{ID: id, Member: member(id), Reply: &peerpb.HeartbeatReply{Role: "fenced", Epoch: 4, Durable: &peerpb.Position{Epoch: 3, Lsn: lsn}}, Fresh: true}
	}
	tests := []struct {
		name      string
		v         View
		kind      Kind
		candidate string
		note      string // a substring of the note
	}{
		{name: "healthy leader", v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{healthy, f("n2", 100, 10), f("n3", 100, 10)}}},
		{name: "suspected, followers lost it too: the most advanced follower",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 90, 400), f("n3", 99, 400)}},
			kind: KindFailover, candidate: "n3"},
		{name: "suspected but silent less than MinSilence, followers lost it too: no failover yet",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{stalled, f("n2", 90, 400), f("n3", 99, 400)}}},
		{name: "suspected, a follower still hears it: veto",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 100, 20), f("n3", 100, 400)}},
			note: "follower n2 heard it 20 ms ago"},
		{name: "suspected, a follower heard it 190 ms ago (just within FollowerSilence): veto",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 100, 190), f("n3", 100, 400)}},
			note: "follower n2 heard it 190 ms ago"},
		{name: "suspected; a follower heard it 20 ms before an answer 200 ms old (late: 1.5 intervals): its next answer is waited for",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView { n := f("n2", 100, 20); n.Age = 200 * time.Millisecond; return n }(), f("n3", 99, 400)}},
			note: "follower n2 had heard it 20 ms before its answer, which is 200 ms old (late): waiting for its next answer"},
		{name: "suspected; a follower heard it 80 ms before an answer 140 ms old (on time): silent 220 ms by now, no veto",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView { n := f("n2", 100, 80); n.Age = 140 * time.Millisecond; return n }(), f("n3", 99, 400)}},
			kind: KindFailover, candidate: "n2"},
		{name: "suspected; a follower probed every 500 ms (quiet cadence) heard it 20 ms before an answer 400 ms old (on time for its period): no veto",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView {
					n := f("n2", 100, 20)
					n.Age, n.Period = 400*time.Millisecond, 500*time.Millisecond
					return n
				}(), f("n3", 99, 400)}},
			kind: KindFailover, candidate: "n2"},
		{name: "suspected; a follower's answer is 200 ms old (late), but it had not heard the leader for 250 ms then: failed over",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView { n := f("n2", 100, 250); n.Age = 200 * time.Millisecond; return n }(), f("n3", 99, 400)}},
			kind: KindFailover, candidate: "n2"},
		{name: "suspected; a late follower that had heard it within twice its stream's gap is waited for",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView {
					n := f("n2", 100, 250)
					n.Age, n.StreamGap = 200*time.Millisecond, 150*time.Millisecond
					return n
				}(), f("n3", 99, 400)}},
			note: "waiting for its next answer"},
		{name: "refused twice; a late follower had heard it 20 ms before its answer: the process is gone, not waited for",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{refused,
				func() NodeView { n := f("n2", 100, 20); n.Age = 200 * time.Millisecond; return n }(), f("n3", 99, 400)}},
			kind: KindFailover, candidate: "n2"},
		{name: "suspected; a follower heard it 20 ms before an answer 100 ms old: heard 120 ms ago, veto",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView { n := f("n2", 100, 20); n.Age = 100 * time.Millisecond; return n }(), f("n3", 99, 400)}},
			note: "follower n2 heard it 120 ms ago"},
		{name: "suspected, silent 600 ms, but it answered 300 ms late lately (a saturated leader): waited for up to 700 ms",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
				func() NodeView { n := suspect; n.Slow = 300 * time.Millisecond; return n }(), f("n2", 90, 400), f("n3", 99, 400)}}},
		{name: "suspected, silent 600 ms, but the orchestrator itself ran 300 ms late lately (the machine is overloaded): waited for up to 700 ms",
			v: View{Now: now, Topo: topo, HaveTopo: true, Late: 300 * time.Millisecond, Nodes: []NodeView{suspect, f("n2", 90, 400), f("n3", 99, 400)}}},
		{name: "suspected, silent 600 ms, but every follower answered 300 ms late lately (the machine is overloaded; the orchestrator was on time): waited for up to 700 ms",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView { n := f("n2", 90, 400); n.Slow = 300 * time.Millisecond; return n }(),
				func() NodeView { n := f("n3", 99, 400); n.Slow = 400 * time.Millisecond; return n }()}}},
		{name: "suspected, silent 600 ms, one follower answered 400 ms late lately, the other on time: failed over",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 90, 400),
				func() NodeView { n := f("n3", 99, 400); n.Slow = 400 * time.Millisecond; return n }()}},
			kind: KindFailover, candidate: "n3"},
		{name: "suspected; a follower heard it 400 ms ago, the orchestrator ran 250 ms late lately: veto",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Late: 250 * time.Millisecond, Nodes: []NodeView{suspect, f("n2", 90, 400), f("n3", 99, 600)}},
			note: "follower n2 heard it 400 ms ago"},
		{name: "suspected, silent 600 ms, answered 200 ms late lately: waited for 500 ms, failed over",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
				func() NodeView { n := suspect; n.Slow = 200 * time.Millisecond; return n }(), f("n2", 90, 400), f("n3", 99, 400)}},
			kind: KindFailover, candidate: "n3"},
		{name: "suspected; a follower heard it 300 ms ago, but its stream went silent 180 ms lately: veto",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView { n := f("n2", 100, 300); n.StreamGap = 180 * time.Millisecond; return n }(), f("n3", 99, 400)}},
			note: "follower n2 heard it 300 ms ago"},
		{name: "suspected; a follower heard it 300 ms ago, its stream's silences lately under 150 ms: no veto",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect,
				func() NodeView { n := f("n2", 100, 300); n.StreamGap = 140 * time.Millisecond; return n }(), f("n3", 99, 400)}},
			kind: KindFailover, candidate: "n2"},
		{name: "refused twice: the process is gone",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{refused, f("n2", 100, 200), f("n3", 100, 200)}},
			kind: KindFailover, candidate: "n2"},
		{name: "refused but a follower hears it (a restart in place): veto",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{refused, f("n2", 100, 0), f("n3", 100, 200)}},
			note: "no failover"},
		{name: "follower that never heard it does not vouch",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 100, -1), f("n3", 100, 400)}},
			kind: KindFailover, candidate: "n2"},
		{name: "no reachable follower: nothing to promote",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect}},
			note: "no node can be promoted"},
		{name: "priority 0 is never promoted",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 100, 400),
				{ID: "n3", Member: coord.Member{ID: "n3", Priority: 0}, Reply: followerReply(3, 120, 400), Fresh: true}}},
			kind: KindFailover, candidate: "n2"},
		{name: "leader answers but does not lead: failed over after NotLeadingAfter",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
				{ID: "n1", Member: member("n1"), Reply: &peerpb.HeartbeatReply{Role: "fenced", Reason: "boom", Durable: &peerpb.Position{Epoch: 3, Lsn: 100}}, Fresh: true, NotLead: now.Add(-3 * time.Second)},
				f("n2", 100, 10), f("n3", 100, 10)}},
			kind: KindFailover, candidate: "n2"},
		{name: "leader without a lease (cut from etcd) past NotAnsweringAfter: no veto",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
				func() NodeView { n := healthy; n.NotAnswering = now.Add(-2100 * time.Millisecond); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}},
			kind: KindFailover, candidate: "n2"},
		{name: "leader without a lease for 600 ms (saturated: etcd and followers confirm late): no failover yet",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
				func() NodeView { n := healthy; n.NotAnswering = now.Add(-600 * time.Millisecond); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}}},
		{name: "leader without a lease for less than NotAnsweringAfter (a new leader's fence)",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
				func() NodeView { n := healthy; n.NotAnswering = now.Add(-100 * time.Millisecond); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}}},
		{name: "refused, with a stale not-answering mark from its fence: the followers still veto",
			v: View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{
				func() NodeView { n := refused; n.NotAnswering = now.Add(-time.Second); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}},
			note: "no failover"},
		{name: "semisync: only the published sync set's member may be promoted, even behind another",
			v:    View{Now: now, Topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: mode("semisync"), SyncSet: []string{"n3"}}, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 100, 400), f("n3", 90, 400)}},
			kind: KindFailover, candidate: "n3"},
		{name: "semisync: no reachable member of the set: wait rather than lose writes",
			v:    View{Now: now, Topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: mode("semisync"), SyncSet: []string{"n4"}}, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 100, 400), f("n3", 90, 400)}},
			note: "no node can be promoted"},
		{name: "quorum 2: a lost leader's epoch is fenced first, nobody chosen yet",
			v:    View{Now: now, Topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: mode("quorum 2")}, HaveTopo: true, Nodes: []NodeView{suspect, f("n2", 100, 400), f("n3", 90, 400), f("n4", 95, 400)}},
			kind: KindFence},
		{name: "quorum 2, fenced: 1 of 3 followers reported the new epoch, 2 must",
			v: View{Now: now, Topo: fencing, HaveTopo: true, Nodes: []NodeView{suspect,
				ended("n2", 100), f("n3", 120, 400), f("n4", 110, 400)}},
			note: "1 of the 3 members other than n1 have ended its epoch, 2 must"},
		{name: "quorum 2, fenced: the most advanced of those that ended the epoch, not one still following",
			v: View{Now: now, Topo: fencing, HaveTopo: true, Nodes: []NodeView{suspect,
				ended("n2", 100), ended("n3", 105), f("n4", 120, 400)}},
			kind: KindFailover, candidate: "n3"},
		{name: "quorum 2, fenced: the old leader ended its epoch itself and holds all it acknowledged",
			v: View{Now: now, Topo: fencing, HaveTopo: true, Nodes: []NodeView{
				{ID: "n1", Member: member("n1"), Reply: &peerpb.HeartbeatReply{Role: "fenced", Epoch: 4, Durable: &peerpb.Position{Epoch: 3, Lsn: 130}}, Fresh: true},
				ended("n2", 100), f("n3", 120, 400), f("n4", 110, 400)}},
			kind: KindFailover, candidate: "n1"},
		{name: "quorum 2, fenced: with enough others, the old leader is not taken back",
			v: View{Now: now, Topo: fencing, HaveTopo: true, Nodes: []NodeView{
				{ID: "n1", Member: member("n1"), Reply: &peerpb.HeartbeatReply{Role: "fenced", Epoch: 4, Durable: &peerpb.Position{Epoch: 3, Lsn: 130}}, Fresh: true},
				ended("n2", 100), ended("n3", 120), f("n4", 110, 400)}},
			kind: KindFailover, candidate: "n3"},
		{name: "no topology, all answered: bootstrap the most advanced",
			v:    View{Now: now, Nodes: []NodeView{f("n1", 5, -1), f("n2", 7, -1)}},
			kind: KindBootstrap, candidate: "n2"},
		{name: "no topology, preferred zone: bootstrap in it among equals",
			v:    View{Now: now, PreferredZone: "b", Nodes: []NodeView{f("n1", 7, -1), inZone(f("n2", 7, -1), "a"), inZone(f("n3", 7, -1), "b")}},
			kind: KindBootstrap, candidate: "n3"},
		{name: "preferred zone: the failover candidate in it among equally advanced followers",
			v:    View{Now: now, Topo: topo, HaveTopo: true, PreferredZone: "b", Nodes: []NodeView{refused, inZone(f("n2", 100, 200), "a"), inZone(f("n3", 100, 200), "b")}},
			kind: KindFailover, candidate: "n3"},
		{name: "preferred zone: never a follower behind another",
			v:    View{Now: now, Topo: topo, HaveTopo: true, PreferredZone: "b", Nodes: []NodeView{refused, inZone(f("n2", 100, 200), "a"), inZone(f("n3", 99, 200), "b")}},
			kind: KindFailover, candidate: "n2"},
		{name: "semisync, preferred zone: the sync set's member, not the preferred node outside it",
			v: View{Now: now, Topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: mode("semisync"), SyncSet: []string{"n2"}}, HaveTopo: true, PreferredZone: "b",
				Nodes: []NodeView{refused, inZone(f("n2", 100, 200), "a"), inZone(f("n3", 100, 200), "b")}},
			kind: KindFailover, candidate: "n2"},
		{name: "suspected, followers lost it too, but neither answered since this orchestrator became active (1 s ago): no failover yet",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, aged(f("n2", 90, 400), 1100*time.Millisecond), aged(f("n3", 99, 400), 1200*time.Millisecond)}},
			note: "no other member has answered since this orchestrator became active"},
		{name: "suspected, followers lost it too, one answered since this orchestrator became active: failover",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{suspect, aged(f("n2", 90, 400), 1100*time.Millisecond), aged(f("n3", 99, 400), 900*time.Millisecond)}},
			kind: KindFailover, candidate: "n3"},
		{name: "refused since before this orchestrator became active: failover (refusals are the process gone, not a suspicion)",
			v:    View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{refused, aged(f("n2", 100, 200), 1100*time.Millisecond), aged(f("n3", 99, 200), 1200*time.Millisecond)}},
			kind: KindFailover, candidate: "n2"},
		{name: "no topology, one silent: wait out the bootstrap period",
			v: View{Now: now, Nodes: []NodeView{f("n1", 5, -1), {ID: "n2", Member: member("n2")}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(cfg, tc.v, now.Add(-time.Second))
			if d.Kind != tc.kind || d.Candidate != tc.candidate {
				t.Fatalf("decision %+v, want kind %q candidate %q", d, tc.kind, tc.candidate)
			}
			if !strings.Contains(d.Note, tc.note) {
				t.Fatalf("note %q, want it to contain %q", d.Note, tc.note)
			}
		})
	}
}

// TestDecideRefusesGarbledTopology: a topology that does not decode is
// never acted on, however dead the leader looks; the note says why.
func TestDecideRefusesGarbledTopology(t *testing.T) {
	now := time.Unix(1000, 0)
	dead := NodeView{ID: "n1", Member: member("n1"), Reply: leaderReply(3, 100), Refused: 5}
	v := View{Now: now, Topo: coord.Topology{Epoch: 3, Leader: "n1"}, HaveTopo: true, TopoErr: errors.New(`coord: topology mode: unknown mode "quorum two"`),
		Nodes: []NodeView{dead, {ID: "n2", Member: member("n2"), Reply: followerReply(3, 100, 900), Fresh: true}}}
	d := Decide(testRules, v, now.Add(-time.Minute))
	if d.Kind != KindNone || !strings.Contains(d.Note, "does not decode") || !strings.Contains(d.Note, "quorum two") {
		t.Fatalf("decision %+v, want nothing and a note naming the error", d)
	}
	v.TopoErr = nil
	if d := Decide(testRules, v, now.Add(-time.Minute)); d.Kind != KindFailover {
		t.Fatalf("the same view with a topology that decodes: %+v, want a failover", d)
	}
}

// TestCandidates: who may be chosen. In sync and semisync a follower
// outside the published set holds no guarantee and is not eligible.
func TestCandidates(t *testing.T) {
	now := time.Unix(1000, 0)
	f := func(id string, fresh bool) NodeView {
		return NodeView{ID: id, Member: member(id), Reply: followerReply(3, 10, 5), Fresh: fresh}
	}
	nodes := []NodeView{f("n1", true), f("n2", true), f("n3", true), f("n4", false), {ID: "n5", Member: member("n5")}}
	type want struct{ reachable, eligible bool }
	tests := []struct {
		mode string
		set  []string
		want map[string]want
	}{
		{"semisync", []string{"n2"}, map[string]want{"n2": {true, true}, "n3": {true, false}, "n4": {false, false}, "n5": {false, false}}},
		{"sync", []string{"n2", "n3"}, map[string]want{"n2": {true, true}, "n3": {true, true}, "n4": {false, false}, "n5": {false, false}}},
		{"sync", nil, map[string]want{"n2": {true, false}, "n3": {true, false}, "n4": {false, false}, "n5": {false, false}}},
		{"async", []string{"n2"}, map[string]want{"n2": {true, true}, "n3": {true, true}, "n4": {false, true}, "n5": {false, true}}},
		{"quorum 1", nil, map[string]want{"n2": {true, true}, "n3": {true, true}, "n4": {false, true}, "n5": {false, true}}},
	}
	for _, tc := range tests {
		v := View{Now: now, Topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: mode(tc.mode), SyncSet: tc.set}, HaveTopo: true, Nodes: nodes}
		got := v.Candidates("n1")
		if len(got) != 4 {
			t.Fatalf("%s: %d candidates, want 4 (the excluded leader left out)", tc.mode, len(got))
		}
		for _, c := range got {
			if w := tc.want[c.ID]; c.Reachable != w.reachable || c.Eligible != w.eligible {
				t.Errorf("%s %v: %s reachable %v eligible %v, want %v %v", tc.mode, tc.set, c.ID, c.Reachable, c.Eligible, w.reachable, w.eligible)
			}
		}
	}
}

// TestSwitchoverTarget: a switchover needs a leader that leads the epoch
// now and a target that follows it and answers.
func TestSwitchoverTarget(t *testing.T) {
	now := time.Unix(1000, 0)
	topo := coord.Topology{Epoch: 3, Leader: "n1"}
	leader := NodeView{ID: "n1", Member: member("n1"), Reply: leaderReply(3, 100), Fresh: true}
	f := func(id string, lsn uint64) NodeView {
		return NodeView{ID: id, Member: member(id), Reply: followerReply(3, lsn, 5), Fresh: true}
	}
	stale := f("n3", 100)
	stale.Fresh = false
	other := f("n4", 100)
	other.Reply.Following = "n9"
	oldEpoch := leader
	oldEpoch.Reply = leaderReply(2, 100)
	tests := []struct {
		name   string
		v      View
		to     string
		target string
		err    string
	}{
		{"to the best follower", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{leader, f("n2", 99), f("n3", 100)}}, "", "n3", ""},
		{"to a named follower", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{leader, f("n2", 99), f("n3", 100)}}, "n2", "n2", ""},
		{"to the leader itself", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{leader, f("n2", 99)}}, "n1", "n1", ""},
		{"no topology", View{Now: now, Nodes: []NodeView{leader}}, "n2", "", "no leader yet"},
		{"leader of an older epoch", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{oldEpoch, f("n2", 99)}}, "n2", "", "not leading epoch 3"},
		{"target does not answer", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{leader, stale}}, "n3", "", "not a follower of n1 that answers"},
		{"target follows another", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{leader, other}}, "n4", "", "not a follower of n1"},
		{"target unknown", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{leader}}, "n7", "", "not a follower"},
		{"no follower to choose", View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{leader, stale}}, "", "", "no node can be promoted"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, target, err := SwitchoverTarget(tc.v, tc.to)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || target.ID != tc.target {
				t.Fatalf("target %v err %v, want %s", target, err, tc.target)
			}
		})
	}
}

// TestPromoteCheck: a manual promote refuses a node behind another
// reachable one unless data loss is accepted, and counts what is lost.
func TestPromoteCheck(t *testing.T) {
	now := time.Unix(1000, 0)
	topo := coord.Topology{Epoch: 3, Leader: "n1"}
	dead := NodeView{ID: "n1", Member: member("n1"), Reply: leaderReply(3, 100)}
	f := func(id string, lsn uint64) NodeView {
		return NodeView{ID: id, Member: member(id), Reply: followerReply(3, lsn, 900), Fresh: true}
	}
	v := View{Now: now, Topo: topo, HaveTopo: true, Nodes: []NodeView{dead, f("n2", 90), f("n3", 97)}}
	if lost, _, err := PromoteCheck(v, "n3", false); err != nil || lost != 0 {
		t.Fatalf("the most advanced: lost %d err %v", lost, err)
	}
	if _, _, err := PromoteCheck(v, "n2", false); err == nil || !strings.Contains(err.Error(), "behind n3") {
		t.Fatalf("behind n3: %v", err)
	}
	if lost, _, err := PromoteCheck(v, "n2", true); err != nil || lost != 7 {
		t.Fatalf("accepted: lost %d err %v, want 7", lost, err)
	}
	if _, _, err := PromoteCheck(v, "n1", true); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("silent node: %v", err)
	}
	if _, _, err := PromoteCheck(v, "n9", true); err == nil || !strings.Contains(err.Error(), "not a registered member") {
		t.Fatalf("unknown node: %v", err)
	}
	v.Nodes[0].Fresh = true
	if _, already, err := PromoteCheck(v, "n1", false); err != nil || !already {
		t.Fatalf("the leader: already %v err %v", already, err)
	}
}

package orchestrator

import (
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

func member(id string) coord.Member {
	return coord.Member{ID: id, PeerAddr: id + ":7380", Priority: 100}
}

// TestDecide is the failover rule as a table: views in, decisions out.
func TestDecide(t *testing.T) {
	cfg := Config{}
	cfg.setDefaults()
	now := time.Unix(1000, 0)
	topo := coord.Topology{Epoch: 3, Leader: "n1"}
	healthy := nodeView{ID: "n1", Member: member("n1"), Reply: leaderReply(3, 100), Fresh: true, LastBeat: now.Add(-50 * time.Millisecond)}
	suspect := healthy
	suspect.Suspect, suspect.Fresh, suspect.Phi, suspect.LastBeat = true, false, 9, now.Add(-600*time.Millisecond)
	// Suspected by phi but silent for less than MinSilence: a saturated
	// leader missing a few heartbeats.
	stalled := suspect
	stalled.LastBeat = now.Add(-300 * time.Millisecond)
	refused := healthy
	refused.Refused, refused.Fresh = 2, false
	f := func(id string, lsn uint64, heard int64) nodeView {
		return nodeView{ID: id, Member: member(id), Reply: followerReply(3, lsn, heard), Fresh: true}
	}
	// A quorum failover's second step: epoch 4 has no leader and ended n1's.
	fencing := coord.Topology{Epoch: 4, Fenced: "n1", Mode: "quorum 2", Reason: "leader suspected"}
	ended := func(id string, lsn uint64) nodeView {
		return nodeView{ID: id, Member: member(id), Reply: &peerpb.HeartbeatReply{Role: "fenced", Epoch: 4, Durable: &peerpb.Position{Epoch: 3, Lsn: lsn}}, Fresh: true}
	}
	tests := []struct {
		name      string
		v         view
		kind      string
		candidate string
		note      string // a substring of the note
	}{
		{name: "healthy leader", v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{healthy, f("n2", 100, 10), f("n3", 100, 10)}}},
		{name: "suspected, followers lost it too: the most advanced follower",
			v:    view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{suspect, f("n2", 90, 400), f("n3", 99, 400)}},
			kind: "failover", candidate: "n3"},
		{name: "suspected but silent less than MinSilence, followers lost it too: no failover yet",
			v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{stalled, f("n2", 90, 400), f("n3", 99, 400)}}},
		{name: "suspected, a follower still hears it: veto",
			v:    view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{suspect, f("n2", 100, 20), f("n3", 100, 400)}},
			note: "follower n2 heard it 20 ms ago"},
		{name: "refused twice: the process is gone",
			v:    view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{refused, f("n2", 100, 200), f("n3", 100, 200)}},
			kind: "failover", candidate: "n2"},
		{name: "refused but a follower hears it (a restart in place): veto",
			v:    view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{refused, f("n2", 100, 0), f("n3", 100, 200)}},
			note: "no failover"},
		{name: "follower that never heard it does not vouch",
			v:    view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{suspect, f("n2", 100, -1), f("n3", 100, 400)}},
			kind: "failover", candidate: "n2"},
		{name: "no reachable follower: nothing to promote",
			v:    view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{suspect}},
			note: "no node can be promoted"},
		{name: "priority 0 is never promoted",
			v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{suspect, f("n2", 100, 400),
				{ID: "n3", Member: coord.Member{ID: "n3", Priority: 0}, Reply: followerReply(3, 120, 400), Fresh: true}}},
			kind: "failover", candidate: "n2"},
		{name: "leader answers but does not lead: failed over after NotLeadingAfter",
			v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{
				{ID: "n1", Member: member("n1"), Reply: &peerpb.HeartbeatReply{Role: "fenced", Reason: "boom", Durable: &peerpb.Position{Epoch: 3, Lsn: 100}}, Fresh: true, NotLead: now.Add(-3 * time.Second)},
				f("n2", 100, 10), f("n3", 100, 10)}},
			kind: "failover", candidate: "n2"},
		{name: "leader without a lease (cut from etcd) past NotAnsweringAfter: no veto",
			v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{
				func() nodeView { n := healthy; n.NotAnswering = now.Add(-2100 * time.Millisecond); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}},
			kind: "failover", candidate: "n2"},
		{name: "leader without a lease for 600 ms (saturated: etcd and followers confirm late): no failover yet",
			v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{
				func() nodeView { n := healthy; n.NotAnswering = now.Add(-600 * time.Millisecond); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}}},
		{name: "leader without a lease for less than NotAnsweringAfter (a new leader's fence)",
			v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{
				func() nodeView { n := healthy; n.NotAnswering = now.Add(-100 * time.Millisecond); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}}},
		{name: "refused, with a stale not-answering mark from its fence: the followers still veto",
			v: view{now: now, topo: topo, haveTopo: true, nodes: []nodeView{
				func() nodeView { n := refused; n.NotAnswering = now.Add(-time.Second); return n }(),
				f("n2", 100, 10), f("n3", 100, 10)}},
			note: "no failover"},
		{name: "semisync: only the published sync set's member may be promoted, even behind another",
			v:    view{now: now, topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: "semisync", SyncSet: []string{"n3"}}, haveTopo: true, nodes: []nodeView{suspect, f("n2", 100, 400), f("n3", 90, 400)}},
			kind: "failover", candidate: "n3"},
		{name: "semisync: no reachable member of the set: wait rather than lose writes",
			v:    view{now: now, topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: "semisync", SyncSet: []string{"n4"}}, haveTopo: true, nodes: []nodeView{suspect, f("n2", 100, 400), f("n3", 90, 400)}},
			note: "no node can be promoted"},
		{name: "quorum 2: a lost leader's epoch is fenced first, nobody chosen yet",
			v:    view{now: now, topo: coord.Topology{Epoch: 3, Leader: "n1", Mode: "quorum 2"}, haveTopo: true, nodes: []nodeView{suspect, f("n2", 100, 400), f("n3", 90, 400), f("n4", 95, 400)}},
			kind: "fence"},
		{name: "quorum 2, fenced: 1 of 3 followers reported the new epoch, 2 must",
			v: view{now: now, topo: fencing, haveTopo: true, nodes: []nodeView{suspect,
				ended("n2", 100), f("n3", 120, 400), f("n4", 110, 400)}},
			note: "1 of the 3 members other than n1 have ended its epoch, 2 must"},
		{name: "quorum 2, fenced: the most advanced of those that ended the epoch, not one still following",
			v: view{now: now, topo: fencing, haveTopo: true, nodes: []nodeView{suspect,
				ended("n2", 100), ended("n3", 105), f("n4", 120, 400)}},
			kind: "failover", candidate: "n3"},
		{name: "quorum 2, fenced: the old leader ended its epoch itself and holds all it acknowledged",
			v: view{now: now, topo: fencing, haveTopo: true, nodes: []nodeView{
				{ID: "n1", Member: member("n1"), Reply: &peerpb.HeartbeatReply{Role: "fenced", Epoch: 4, Durable: &peerpb.Position{Epoch: 3, Lsn: 130}}, Fresh: true},
				ended("n2", 100), f("n3", 120, 400), f("n4", 110, 400)}},
			kind: "failover", candidate: "n1"},
		{name: "quorum 2, fenced: with enough others, the old leader is not taken back",
			v: view{now: now, topo: fencing, haveTopo: true, nodes: []nodeView{
				{ID: "n1", Member: member("n1"), Reply: &peerpb.HeartbeatReply{Role: "fenced", Epoch: 4, Durable: &peerpb.Position{Epoch: 3, Lsn: 130}}, Fresh: true},
				ended("n2", 100), ended("n3", 120), f("n4", 110, 400)}},
			kind: "failover", candidate: "n3"},
		{name: "no topology, all answered: bootstrap the most advanced",
			v:    view{now: now, nodes: []nodeView{f("n1", 5, -1), f("n2", 7, -1)}},
			kind: "bootstrap", candidate: "n2"},
		{name: "no topology, one silent: wait out the bootstrap period",
			v: view{now: now, nodes: []nodeView{f("n1", 5, -1), {ID: "n2", Member: member("n2")}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := decide(&cfg, tc.v, now.Add(-time.Second))
			if d.kind != tc.kind || d.candidate != tc.candidate {
				t.Fatalf("decision %+v, want kind %q candidate %q", d, tc.kind, tc.candidate)
			}
			if !strings.Contains(d.note, tc.note) {
				t.Fatalf("note %q, want it to contain %q", d.note, tc.note)
			}
		})
	}
}

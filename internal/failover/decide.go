package failover

import (
	"fmt"
	"slices"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// Rules are the failover rule's timings (the orchestrator's Config gives
// them; see there for the defaults and why).
type Rules struct {
	// Bootstrap: how long to wait for every registered member to answer
	// before choosing the first leader.
	Bootstrap time.Duration
	// Interval is the probe interval.
	Interval time.Duration
	// MinSilence: a suspected leader is failed over only once silent this
	// long, or Interval plus twice its recent slowness if that is longer
	// (NodeView.Slow), or twice the machine's: the observer's own
	// (View.Late) or, when every answering follower answered late lately,
	// the least of their slowness (machineSlow).
	MinSilence time.Duration
	// FollowerSilence: a follower that heard its leader more recently than
	// this, or than twice the longest recent silence of the stream it
	// reported (NodeView.StreamGap), vetoes a failover on the
	// orchestrator's own evidence.
	FollowerSilence time.Duration
	// NotLeadingAfter: a leader that answers but does not lead the
	// topology's epoch for this long is failed over.
	NotLeadingAfter time.Duration
	// NotAnsweringAfter: a leader that leads without a confirmed lease for
	// this long is failed over.
	NotAnsweringAfter time.Duration
}

// minSilence is how long leader must be silent to be failed over on
// suspicion: MinSilence, or more for a leader that answered late lately.
// Between two answers of a live leader the silence is at most the
// interval plus the later answer's round trip; twice the recent lateness
// allows the next answer to be twice as late as any lately. Under
// 50-stream bulk load on 2 cores a live leader went 342 ms without an
// answer (round trips up to 300 ms), where a quiet or moderately loaded
// one answers within a few tens of milliseconds.
//
// late is how late the machine ran lately, counted as the leader's: the
// observer's own recent lateness (View.Late), or the followers' (machineSlow).
func (r Rules) minSilence(leader *NodeView, late time.Duration) time.Duration {
	return max(r.MinSilence, r.Interval+2*max(leader.Slow, late))
}

// machineSlow is how late every answering follower of leader answered
// lately: the least of their NodeView.Slow (0 if none answers). A
// leader's silence is no sign of its failure when every process beside
// it is as late: the machine is overloaded, not the leader gone. The
// observer's own lateness (View.Late) says so only if it is starved too,
// and it is a small process: in bench/run.sh's 50-stream bulk load at a
// load average of 35-45 on 2 cores, four false failovers came with the
// orchestrator on time (Late 0) and both followers answering 100-630 ms
// late lately, after the leader was silent 271 ms-1.1 s; three of them
// waited for this would not have been decided at that moment. The least
// follower, not the most: one slow follower (its own disk) must not hold
// back the failover of a leader that is gone.
func machineSlow(v View, leader *NodeView) time.Duration {
	var least time.Duration
	found := false
	for _, n := range v.Nodes {
		if n.ID == leader.ID || !n.Fresh || !n.Follows(leader) {
			continue
		}
		if !found || n.Slow < least {
			least, found = n.Slow, true
		}
	}
	return least
}

// View is one consistent reading of what the orchestrator knows.
type View struct {
	Now      time.Time
	Topo     coord.Topology
	HaveTopo bool
	// TopoErr: the topology stored in etcd does not decode (Topo is then
	// the last one that did). Nothing is decided on it.
	TopoErr error
	Nodes   []NodeView // sorted by ID
	// Late is how late the observer itself ran lately (its decide loop's
	// timers; the largest in the last one to two SlowWindows). On a
	// machine so loaded that the orchestrator runs late, the nodes beside
	// it do too, and every silence it measures is waited for as if the
	// leader had answered that late (see Rules.MinSilence).
	Late time.Duration
	// PreferredZone: among equally advanced candidates of equal priority,
	// one whose member record names this zone is chosen ("" prefers none;
	// see Choose for the rank).
	PreferredZone string
}

// NodeView is one node in a View: its member record and its Probe's
// findings at View.Now.
type NodeView struct {
	ID     string
	Member coord.Member
	Reply  *peerpb.HeartbeatReply // nil if never answered
	// Age is how old Reply is at View.Now: what a follower reports it
	// heard of its leader is that much older by now.
	Age   time.Duration
	Fresh bool // answered within 3 intervals
	// Slow is how late its answers came lately (round trip, or silence
	// between answers less the interval; the largest in the last one to
	// two SlowWindows): a node loaded enough to answer late may be as late
	// again, and is waited for accordingly. A stopped one answers nothing,
	// so it cannot raise its own.
	Slow time.Duration
	// StreamGap (a follower): the longest recent silence of its leader's
	// stream it reported and that ended.
	StreamGap time.Duration
	// Period is how often the node is probed (0: Rules.Interval). Its
	// next answer is late once its last is 1.5 periods old, as the
	// orchestrator counts lateness for its calm rounds.
	Period   time.Duration
	Suspect  bool
	Refused  int
	Phi      float64
	LastBeat time.Time
	NotLead  time.Time
	// NotAnswering: since when it leads without a valid lease (zero: it
	// answers, or does not lead).
	NotAnswering time.Time
}

// Node is the node with id, or nil.
func (v View) Node(id string) *NodeView {
	for i := range v.Nodes {
		if v.Nodes[i].ID == id {
			return &v.Nodes[i]
		}
	}
	return nil
}

// Role is the node's reported role ("" if it never answered).
func (n *NodeView) Role() string {
	if n.Reply == nil {
		return ""
	}
	return n.Reply.Role
}

// Leads reports whether the node answered as the leader of epoch.
func (n *NodeView) Leads(epoch uint64) bool {
	return n.Reply != nil && n.Reply.Role == statusdoc.RoleLeader && n.Reply.LeadingEpoch == epoch
}

// Follows reports whether the node answered as a follower of leader.
func (n *NodeView) Follows(leader *NodeView) bool {
	if n.Reply == nil || n.Reply.Role != statusdoc.RoleFollower {
		return false
	}
	f := n.Reply.Following
	return f == leader.ID || f == leader.Member.PeerAddr
}

// HeardLeaderAgo is how long before View.Now the follower last heard its
// leader's stream, as far as its last answer tells: what it reported then
// plus the answer's Age (it may have heard the leader since, but nothing
// says so). ok is false if it never heard it (on this stream).
func (n *NodeView) HeardLeaderAgo() (ago time.Duration, ok bool) {
	if n.Reply == nil || n.Reply.LeaderHeardAgoMs < 0 {
		return 0, false
	}
	return time.Duration(n.Reply.LeaderHeardAgoMs)*time.Millisecond + n.Age, true
}

// AnswerLate reports whether the node's next answer is overdue: its last
// is 1.5 of its probe periods old (NodeView.Period, else interval) or
// more. A late answer's age is the node's own lateness, not news of its
// leader.
func (n *NodeView) AnswerLate(interval time.Duration) bool {
	p := n.Period
	if p <= 0 {
		p = interval
	}
	return n.Reply != nil && n.Age >= p*3/2
}

// vouchesWithin is how recently a follower must have heard its leader
// to vouch for it: Rules.FollowerSilence, or twice the longest recent
// silence of the stream it reported, or twice the observer's own recent
// lateness, whichever is longest.
func (r Rules) vouchesWithin(v View, n *NodeView) time.Duration {
	return max(r.FollowerSilence, 2*n.StreamGap, 2*v.Late)
}

// Durable is the durable position a heartbeat reported (zero for none).
func Durable(r *peerpb.HeartbeatReply) logrec.Position {
	if r == nil || r.Durable == nil {
		return logrec.Position{}
	}
	return logrec.Position{Epoch: r.Durable.Epoch, LSN: r.Durable.Lsn}
}

// Candidates are the nodes other than exclude as Choose sees them: a node
// is reachable if it answered lately with a role; in sync and semisync
// only members of the published sync set are eligible, since they alone
// hold every acknowledged write; a node whose member record names
// v.PreferredZone is Preferred.
func (v View) Candidates(exclude string) []Node {
	restricted := v.HaveTopo && v.Topo.Mode.Set && v.Topo.Mode.NeedsSyncSet()
	var out []Node
	for _, n := range v.Nodes {
		if n.ID == exclude {
			continue
		}
		out = append(out, Node{ID: n.ID, Durable: Durable(n.Reply), Priority: n.Member.Priority,
			Reachable: n.Fresh && n.Role() != "", Eligible: !restricted || slices.Contains(v.Topo.SyncSet, n.ID),
			Preferred: v.PreferredZone != "" && n.Member.Zone == v.PreferredZone})
	}
	return out
}

// MaxEpoch is the highest epoch any node reported or the topology holds.
func (v View) MaxEpoch() uint64 {
	e := v.Topo.Epoch
	for _, n := range v.Nodes {
		if n.Reply != nil && n.Reply.Epoch > e {
			e = n.Reply.Epoch
		}
	}
	return e
}

// Kind is what a decision or a manual operation does to the topology; it
// is also the kind of the event it records (coord.Event.Kind).
type Kind string

const (
	// KindNone: nothing to do.
	KindNone Kind = ""
	// KindBootstrap: the first topology, naming the first leader.
	KindBootstrap Kind = "bootstrap"
	// KindFence: a new epoch with no leader, ending the lost leader's
	// (quorum K's first step; Elect is the second).
	KindFence Kind = "fence"
	// KindFailover: a new epoch led by the candidate.
	KindFailover Kind = "failover"
	// KindPromote: a manual promote.
	KindPromote Kind = "promote"
	// KindSwitchover: a planned switchover.
	KindSwitchover Kind = "switchover"
	// KindSwitchoverAbort: the old leader leads again at a new epoch after
	// a switchover that could not complete.
	KindSwitchoverAbort Kind = "switchover-abort"
)

// Decision is what the active orchestrator should do now.
type Decision struct {
	Kind      Kind
	Reason    string
	Candidate string
	From      string
	LastSign  time.Time // the old leader's last heartbeat
	LostLSNs  uint64    // entries the old leader had beyond the candidate, if known
	Note      string    // why nothing is done, when worth logging
	NoteKey   string    // what kind of note, for rate-limiting its log line
}

// Decide is the failover rule of the package comment, over one view: what
// to do now. activeSince is when this orchestrator became active (the
// bootstrap wait counts from it).
func Decide(r Rules, v View, activeSince time.Time) Decision {
	if v.TopoErr != nil {
		return Decision{Note: "the topology in etcd does not decode; no failover until it is fixed: " + v.TopoErr.Error(), NoteKey: "topology"}
	}
	if !v.HaveTopo {
		// Bootstrap once every registered member answered (and the
		// members that start together had a quarter of the bootstrap wait
		// to register), or after the bootstrap wait with those that did.
		all := len(v.Nodes) > 0
		for _, n := range v.Nodes {
			all = all && n.Fresh
		}
		waited := v.Now.Sub(activeSince)
		if (!all || waited < r.Bootstrap/4) && waited < r.Bootstrap {
			return Decision{}
		}
		c, err := Choose(v.Candidates(""))
		if err != nil {
			return Decision{Note: "bootstrap: " + err.Error(), NoteKey: "bootstrap"}
		}
		return Decision{Kind: KindBootstrap, Reason: "no topology yet", Candidate: c.Candidate}
	}
	mode := v.Topo.Mode
	if v.Topo.Leader == "" && v.Topo.Fenced != "" {
		k := 0 // not quorum: only the old leader's own report will do
		if mode.Set && mode.Kind == commit.Quorum {
			k = mode.K
		}
		return Elect(v, k)
	}
	leader := v.Node(v.Topo.Leader)
	if leader == nil {
		c, err := Choose(v.Candidates(v.Topo.Leader))
		if err != nil {
			return Decision{Note: "leader " + v.Topo.Leader + " is not a member: " + err.Error(), NoteKey: "not-member"}
		}
		return Decision{Kind: KindFailover, Reason: "the leader is not a registered member", Candidate: c.Candidate, From: v.Topo.Leader}
	}
	// The leader's own word that it does not lead (or serve) is enough:
	// no follower's vouching overrides it. A silent or refusing leader is
	// failed over only if no follower still hears it (the holistic check).
	var why string
	selfReported, suspected := false, false
	switch {
	case leader.Fresh && !leader.NotLead.IsZero() && v.Now.Sub(leader.NotLead) >= r.NotLeadingAfter:
		role := leader.Reply.Role + " " + leader.Reply.Reason
		why = fmt.Sprintf("leader has not led epoch %d for %s (it is %s)", v.Topo.Epoch, v.Now.Sub(leader.NotLead).Round(time.Millisecond), role)
		selfReported = true
	case leader.Fresh && !leader.NotAnswering.IsZero() && v.Now.Sub(leader.NotAnswering) >= r.NotAnsweringAfter:
		why = fmt.Sprintf("leader has answered nothing for %s (its lease is not confirmed: cut off from etcd?)", v.Now.Sub(leader.NotAnswering).Round(time.Millisecond))
		selfReported = true
	case leader.Refused >= RefusedIsGone:
		why = fmt.Sprintf("leader refused %d probes in a row (%s)", leader.Refused, "process gone")
	case leader.Suspect && v.Now.Sub(leader.LastBeat) >= r.minSilence(leader, max(v.Late, machineSlow(v, leader))):
		why = fmt.Sprintf("leader suspected (phi %.1f, last heartbeat %s ago)", leader.Phi, v.Now.Sub(leader.LastBeat).Round(time.Millisecond))
		suspected = true
	default:
		return Decision{}
	}
	if suspected && !heardSince(v, leader, activeSince) {
		// The holistic check below is the rule's guard against a leader
		// that is slow, not gone, and it is only as good as the followers'
		// answers: a standby's were taken at its slow rhythm, before the
		// load that may have cost it its election. An orchestrator that
		// just became active waits for one answer to a probe of its own
		// before it acts on a suspicion alone (one probe round trip;
		// saturated machines showed false failovers within 2 s of a
		// takeover, none vetoed).
		return Decision{Note: why + ", but no other member has answered since this orchestrator became active: no failover yet", NoteKey: "new-active"}
	}
	if !selfReported {
		for _, n := range v.Nodes {
			if n.ID == leader.ID || !n.Fresh || !n.Follows(leader) {
				continue
			}
			if ago, ok := n.HeardLeaderAgo(); ok && ago < r.vouchesWithin(v, &n) {
				return Decision{Note: fmt.Sprintf("%s, but follower %s heard it %d ms ago: no failover", why, n.ID, ago.Milliseconds()), NoteKey: "veto " + n.ID}
			}
		}
	}
	if suspected {
		// A follower whose answer is late is itself late (starved,
		// paused): the age of its last answer is its silence, not the
		// leader's. If that answer still vouched for the leader, the
		// follower is waited for: its next answer, or its answer growing
		// stale (3 periods), decides. Counting the age as the leader's
		// silence failed over live leaders on loaded machines, where the
		// leader and its followers answer late together (bench chaos at
		// load 27: every answer 255-259 ms old, the followers had heard
		// the leader 94 and 124 ms before theirs). A refusing leader is
		// not waited for: its process is gone.
		for _, n := range v.Nodes {
			if n.ID == leader.ID || !n.Fresh || !n.Follows(leader) || !n.AnswerLate(r.Interval) || n.Reply.LeaderHeardAgoMs < 0 {
				continue
			}
			if heard := time.Duration(n.Reply.LeaderHeardAgoMs) * time.Millisecond; heard < r.vouchesWithin(v, &n) {
				return Decision{Note: fmt.Sprintf("%s, but follower %s had heard it %d ms before its answer, which is %d ms old (late): waiting for its next answer",
					why, n.ID, heard.Milliseconds(), n.Age.Milliseconds()), NoteKey: "late " + n.ID}
			}
		}
	}
	if mode.Set && mode.Kind == commit.Quorum {
		// The old leader may still commit through followers that have not
		// heard of a new epoch, after any candidate is chosen: end its
		// epoch first, then choose among the followers that ended it.
		return Decision{Kind: KindFence, Reason: why, From: leader.ID, LastSign: leader.LastBeat}
	}
	c, err := Choose(v.Candidates(leader.ID))
	if err != nil {
		return Decision{Note: why + ": " + err.Error(), NoteKey: "no-candidate"}
	}
	d := Decision{Kind: KindFailover, Reason: why, Candidate: c.Candidate, From: leader.ID, LastSign: leader.LastBeat}
	if c.CatchUpFrom != "" {
		d.Note = fmt.Sprintf("candidate %s is behind %s (priority 0 or ineligible); promoting it anyway", c.Candidate, c.CatchUpFrom)
		d.NoteKey = "catch-up"
	}
	if lr := leader.Reply; lr != nil {
		if cand := v.Node(c.Candidate); cand != nil {
			ld, cd := Durable(lr), Durable(cand.Reply)
			if ld.Epoch == cd.Epoch && ld.LSN > cd.LSN {
				d.LostLSNs = ld.LSN - cd.LSN
			}
		}
	}
	return d
}

// heardSince reports whether a member other than leader answered a probe
// after since (its answer, Age old at v.Now, is younger than since), or
// none answered lately at all (then no follower could vouch for the
// leader anyway, and the rule goes on to say nothing can be promoted).
func heardSince(v View, leader *NodeView, since time.Time) bool {
	fresh := false
	for _, n := range v.Nodes {
		if n.ID == leader.ID || !n.Fresh || n.Reply == nil {
			continue
		}
		if v.Now.Sub(since) > n.Age {
			return true
		}
		fresh = true
	}
	return !fresh
}

// Elect is a quorum-K failover's second step. The topology's epoch has
// no leader; it ended the epoch of the leader it names Fenced. A node that
// reports this epoch has stopped taking the old leader's entries, so its
// position is final for them. A write the old leader acknowledged is
// durable on K of the other F members; once F-K+1 of them report the new
// epoch, one of those holds it (or the old leader itself, if it reports the
// epoch: it holds all it acknowledged), and the most advanced of them is
// chosen. Until enough report it, nothing is done: promoting anyone else
// could lose acknowledged writes (tandem promote --accept-data-loss can).
func Elect(v View, k int) Decision {
	others, ended := 0, 0
	oldEnded := false
	eligible := map[string]bool{}
	for _, n := range v.Nodes {
		if n.ID != v.Topo.Fenced {
			others++
		}
		if !n.Fresh || n.Reply == nil || n.Reply.Epoch < v.Topo.Epoch || n.Reply.Role == statusdoc.RoleLeader {
			continue
		}
		eligible[n.ID] = true
		if n.ID == v.Topo.Fenced {
			oldEnded = true
		} else {
			ended++
		}
	}
	need := others - k + 1
	if !oldEnded && ended < need {
		return Decision{Note: fmt.Sprintf("epoch %d: %d of the %d members other than %s have ended its epoch, %d must (quorum %d) before one is chosen",
			v.Topo.Epoch, ended, others, v.Topo.Fenced, need, k), NoteKey: "elect"}
	}
	// The old leader is chosen only when it is the one that holds every
	// acknowledged write for certain: it was the leader that lost.
	if ended >= need {
		delete(eligible, v.Topo.Fenced)
	}
	cands := v.Candidates("")
	for i := range cands {
		cands[i].Eligible = cands[i].Eligible && eligible[cands[i].ID]
	}
	c, err := Choose(cands)
	if err != nil {
		return Decision{Note: fmt.Sprintf("epoch %d: %v", v.Topo.Epoch, err), NoteKey: "no-candidate"}
	}
	reason := v.Topo.Reason + fmt.Sprintf("; chosen once %d of %d other members reported epoch %d", ended, others, v.Topo.Epoch)
	return Decision{Kind: KindFailover, Reason: reason, Candidate: c.Candidate, From: v.Topo.Fenced}
}

// SwitchoverTarget checks a planned switchover from the topology's leader
// to to ("" for the best candidate) and returns the leader and the target.
// It refuses (with a reason) a leader that does not lead the topology's
// epoch now and a target that is not an answering follower of it.
func SwitchoverTarget(v View, to string) (leader, target *NodeView, err error) {
	if !v.HaveTopo {
		return nil, nil, fmt.Errorf("the cluster has no leader yet")
	}
	leader = v.Node(v.Topo.Leader)
	if leader == nil || !leader.Fresh || !leader.Leads(v.Topo.Epoch) {
		return nil, nil, fmt.Errorf("leader %s is not leading epoch %d now; use promote", v.Topo.Leader, v.Topo.Epoch)
	}
	if to == "" {
		c, err := Choose(v.Candidates(leader.ID))
		if err != nil {
			return nil, nil, err
		}
		to = c.Candidate
	}
	if to == leader.ID {
		return leader, leader, nil
	}
	target = v.Node(to)
	if target == nil || !target.Fresh || !target.Follows(leader) {
		return nil, nil, fmt.Errorf("%s is not a follower of %s that answers", to, leader.ID)
	}
	return leader, target, nil
}

// PromoteCheck checks a manual promote of node: it must be a registered
// member that answers, and not behind another reachable node (that would
// lose what only the other has) unless acceptDataLoss. lost is the number
// of entries the most advanced node has beyond it, when known; already
// reports that node leads the topology's epoch (nothing to do).
func PromoteCheck(v View, node string, acceptDataLoss bool) (lost uint64, already bool, err error) {
	target := v.Node(node)
	switch {
	case target == nil:
		return 0, false, fmt.Errorf("%s is not a registered member", node)
	case !target.Fresh:
		return 0, false, fmt.Errorf("%s does not answer the orchestrator", node)
	case v.HaveTopo && v.Topo.Leader == node:
		return 0, true, nil
	}
	var all []Node
	for _, n := range v.Nodes {
		all = append(all, Node{ID: n.ID, Durable: Durable(n.Reply), Priority: 100, Reachable: n.Fresh, Eligible: true})
	}
	best, _ := Choose(all)
	if best.Candidate == node {
		return 0, false, nil
	}
	b := v.Node(best.Candidate)
	if b == nil {
		return 0, false, nil
	}
	bd, td := Durable(b.Reply), Durable(target.Reply)
	if bd == td {
		return 0, false, nil
	}
	if !acceptDataLoss {
		return 0, false, fmt.Errorf("%s (durable %d/%d) is behind %s (durable %d/%d); promoting it would lose what only %s has: use switchover, or --accept-data-loss",
			node, td.Epoch, td.LSN, b.ID, bd.Epoch, bd.LSN, b.ID)
	}
	if bd.Epoch == td.Epoch && bd.LSN > td.LSN {
		lost = bd.LSN - td.LSN
	}
	return lost, false, nil
}

package failover

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/detector"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// RefusedIsGone is how many probes in a row refused outright mean the
// process is gone (one may be a restart's moment without a listener).
const RefusedIsGone = 2

// Outcome classifies one probe's result.
type Outcome int

const (
	// Answered: the node replied.
	Answered Outcome = iota
	// Refused: the connection was refused at once (gRPC Unavailable):
	// nothing listens at the node's address, its process is gone.
	Refused
	// Failed: anything else (a deadline: the node is slow, paused or cut
	// off; the probe's own context ended). It says nothing of the process.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Answered:
		return "answered"
	case Refused:
		return "refused"
	}
	return "failed"
}

// Classify is the outcome of a probe that returned err. stopping: the
// prober itself is stopping, so an Unavailable is its own doing.
func Classify(err error, stopping bool) Outcome {
	switch {
	case err == nil:
		return Answered
	case stopping || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return Failed
	case status.Code(err) == codes.Unavailable:
		return Refused
	}
	return Failed
}

// Expect is what the topology expects of the probed node, read when the
// probe was sent.
type Expect struct {
	// ShouldLead: the topology names it leader of Epoch.
	ShouldLead bool
	Epoch      uint64
}

// Probe is what one node's probes have established. The orchestrator keeps
// one per node, under its lock; its methods take the time.
type Probe struct {
	Det     detector.Detector
	Reply   *peerpb.HeartbeatReply // the last answer (nil: none yet)
	Replied time.Time              // when Reply arrived
	Refused int                    // probes refused in a row
	LastErr string
	// NotLead: since when it does not lead the epoch it should.
	NotLead time.Time
	// NotAnswering: since when it leads but answers nothing (its lease is
	// not confirmed: cut off from etcd, and not every follower echoes it).
	NotAnswering time.Time
	// GraceEnds: the grace given as a new leader, until it answers.
	GraceEnds time.Time

	// slow: how late its recent answers came (see NodeView.Slow).
	slow RecentMax
	// gaps: the longest recent silences of its leader's stream that it
	// reported and that ended (a follower; see NodeView.StreamGap).
	// heardAt and heardAgo are its last report: when it last heard its
	// leader, by this clock, and how long before that report.
	gaps     RecentMax
	heardAt  time.Time
	heardAgo time.Duration
}

// SlowWindow is how long a sign of slowness counts: a late answer, or a
// follower's report of a long silence of its leader's stream, raises the
// silence the rule waits for (Decide) for one to two windows.
const SlowWindow = 2 * time.Second

// RecentMax is the largest duration added within the last one to two
// SlowWindows: the current window's and the previous one's. The zero
// value is empty.
type RecentMax struct {
	start     time.Time
	cur, prev time.Duration
}

// Add records d at now.
func (m *RecentMax) Add(now time.Time, d time.Duration) {
	switch age := now.Sub(m.start); {
	case m.start.IsZero() || age >= 2*SlowWindow:
		m.start, m.cur, m.prev = now, 0, 0
	case age >= SlowWindow:
		m.start, m.cur, m.prev = m.start.Add(SlowWindow), 0, m.cur
	}
	m.cur = max(m.cur, d)
}

// At is the largest duration added in the one to two windows before now.
func (m RecentMax) At(now time.Time) time.Duration {
	switch age := now.Sub(m.start); {
	case m.start.IsZero() || age >= 2*SlowWindow:
		return 0
	case age >= SlowWindow:
		return m.cur
	}
	return max(m.cur, m.prev)
}

// Observe records one probe's result at now, for a probe sent at sent: rep
// and err as the RPC returned them, stopping as for Classify. It returns
// when to probe next: after interval, or after a quarter of it when the
// probe failed (two refusals in a row mean the process is gone, and that
// should take a fraction of the interval).
//
// An answer also measures slowness, which only answers can show (a
// stopped process gives none, so what it showed before it stopped stays
// and then expires): how late it came, the larger of its round trip and
// its silence since the previous answer less the interval; and for a
// follower, a silence of its leader's stream it reported earlier, once a
// later report shows the stream heard again (a silence still going on is
// not counted: it may be the leader's failure).
func (p *Probe) Observe(sent, now time.Time, rep *peerpb.HeartbeatReply, err error, stopping bool, want Expect, interval time.Duration) time.Duration {
	out := Classify(err, stopping)
	if out != Answered {
		p.LastErr = err.Error()
		if out == Refused {
			p.Refused++
		} else {
			p.Refused = 0
		}
		return interval / 4
	}
	p.Det.Heartbeat(now)
	late := now.Sub(sent)
	if !p.Replied.IsZero() {
		late = max(late, now.Sub(p.Replied)-interval)
	}
	p.slow.Add(now, late)
	if rep.Role == statusdoc.RoleFollower && rep.LeaderHeardAgoMs >= 0 {
		ago := time.Duration(rep.LeaderHeardAgoMs) * time.Millisecond
		heardAt := now.Add(-ago)
		// Heard again since the last report: the silence that report saw
		// has ended. The margin keeps the jitter of when answers arrive
		// from passing for new contact.
		if !p.heardAt.IsZero() && heardAt.Sub(p.heardAt) > interval/2 {
			p.gaps.Add(now, p.heardAgo)
		}
		p.heardAt, p.heardAgo = heardAt, ago
	} else {
		p.heardAt, p.heardAgo = time.Time{}, 0
	}
	p.Reply, p.Replied, p.Refused, p.LastErr = rep, now, 0, ""
	leads := rep.Role == statusdoc.RoleLeader && rep.LeadingEpoch == want.Epoch
	if want.ShouldLead && leads && rep.Answering && p.GraceEnds.After(now) {
		// Taking over is done: the grace ends early, so a new leader
		// that dies at once is failed over at once.
		p.Det.Grace(now)
		p.GraceEnds = time.Time{}
	}
	if want.ShouldLead && leads && !rep.Answering {
		if p.NotAnswering.IsZero() {
			p.NotAnswering = now
		}
	} else {
		p.NotAnswering = time.Time{}
	}
	if want.ShouldLead && !leads {
		if p.NotLead.IsZero() {
			p.NotLead = now
		}
	} else {
		p.NotLead = time.Time{}
	}
	return interval
}

// GiveGrace keeps the detector from suspecting a new leader for d from
// now, or until it answers as leader, whichever comes first.
func (p *Probe) GiveGrace(now time.Time, d time.Duration) {
	p.GraceEnds = now.Add(d)
	p.Det.Grace(p.GraceEnds)
}

// FailedOver resets what the probes learnt of a node that was just failed
// over, with det a fresh detector: the silence that ended in the failover
// was a failure, not the node's heartbeat rhythm, and a detector that
// learnt it would suspect the node's next failure later. Pauses that end
// without a failover are still learnt.
func (p *Probe) FailedOver(det detector.Detector) {
	p.Refused = 0
	p.Restart(det)
}

// Restart gives the probe a fresh detector and forgets the slowness it
// measured: the orchestrator's rhythm changed (it became active) or the
// node was failed over, and what was measured before says nothing of
// what comes.
func (p *Probe) Restart(det detector.Detector) {
	p.Det = det
	p.slow, p.gaps = RecentMax{}, RecentMax{}
}

// View is the node as Decide sees it at now; fresh is how long an answer
// stays fresh (the orchestrator: 3 intervals).
func (p *Probe) View(id string, m coord.Member, now time.Time, fresh time.Duration) NodeView {
	var age time.Duration
	if p.Reply != nil {
		age = now.Sub(p.Replied)
	}
	return NodeView{ID: id, Member: m, Reply: p.Reply, Age: age, Refused: p.Refused,
		Slow: p.slow.At(now), StreamGap: p.gaps.At(now),
		Suspect: p.Det.Suspect(now), Phi: p.Det.Phi(now), LastBeat: p.Det.LastHeartbeat(), NotLead: p.NotLead,
		NotAnswering: p.NotAnswering, Fresh: p.Reply != nil && now.Sub(p.Replied) < fresh}
}

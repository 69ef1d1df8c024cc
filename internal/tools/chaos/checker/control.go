package checker

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Leadership is one node taking the leader role at an epoch, as its log
// says (`role: leader ... epoch=N`). Every leadership starts a new epoch,
// also a node's after a restart (replication.BeginEpoch): a node that
// logs the same epoch twice resumed it, which is a violation too.
type Leadership struct {
	Node  int    `json:"node"`
	Epoch uint64 `json:"epoch"`
	// At is when the node logged it, on the history's clock.
	At int64 `json:"at"`
}

// OneLeaderPerEpoch checks that no two leaderships, of two nodes or of
// one node twice, had the same epoch in the whole run (the fencing token
// would mean nothing otherwise, and a leader that sent entries it then
// lost in a crash would reuse their (epoch, LSN)).
func OneLeaderPerEpoch(ls []Leadership) []Violation {
	first := map[uint64]Leadership{}
	reported := map[[2]uint64]bool{}
	var vs []Violation
	sorted := slices.Clone(ls)
	slices.SortStableFunc(sorted, func(a, b Leadership) int { return compare(a.At, b.At) })
	for _, l := range sorted {
		f, ok := first[l.Epoch]
		if !ok {
			first[l.Epoch] = l
			continue
		}
		if reported[[2]uint64{l.Epoch, uint64(l.Node)}] {
			continue
		}
		reported[[2]uint64{l.Epoch, uint64(l.Node)}] = true
		detail := fmt.Sprintf("n%d led epoch %d at %v, which n%d had led since %v", l.Node, l.Epoch, time.Duration(l.At), f.Node, time.Duration(f.At))
		if f.Node == l.Node {
			detail = fmt.Sprintf("n%d led epoch %d again at %v (it had since %v): a leadership resumed an epoch", l.Node, l.Epoch, time.Duration(l.At), time.Duration(f.At))
		}
		vs = append(vs, Violation{Kind: TwoLeaders, Node: l.Node, At: l.At, Detail: detail})
	}
	return vs
}

// Change is one topology change the control plane recorded in etcd
// (coord.Event), with its nodes as ids and its time on the history's
// clock.
type Change struct {
	At       int64   `json:"at"`
	Kind     string  `json:"kind"` // bootstrap, failover, switchover, promote
	Reason   string  `json:"reason"`
	From     int     `json:"from"` // 0 for a bootstrap
	To       int     `json:"to"`
	OldEpoch uint64  `json:"old_epoch"`
	NewEpoch uint64  `json:"new_epoch"`
	Detect   float64 `json:"detection_ms,omitempty"`
	Promote  float64 `json:"promotion_ms,omitempty"`
}

// Failover is one failover as the report shows it.
type Failover struct {
	Change
	// Cause is the fault that excuses it (its name), "" for a false
	// failover.
	Cause string `json:"cause,omitempty"`
	False bool   `json:"false,omitempty"`
	// Unavailable is the gap in acknowledged writes around the decision:
	// from the last write acknowledged before it (or the cause's
	// injection, if later) to the first one after; -1 if no write was
	// acknowledged after it.
	Unavailable time.Duration `json:"unavailable"`
}

// FailoverWindow is how long after a fault was healed a failover away from
// one of its suspects is still put down to it. It covers the decision in
// flight at the heal (a detector that already suspected the paused node)
// and the orchestrator's NotLeadingAfter (2 s) for a restarted leader that
// does not take up its epoch again, plus slack.
const FailoverWindow = 3 * time.Second

// Failovers judges every failover recorded in changes against the faults
// of the history (other kinds of change are not failovers and are left
// out):
//
// A failover away from node L at time D is excused when some fault that
// was injected (no InjectErr), and names L among its Suspects (it killed
// or paused L, or cut L off from etcd), was injected at or before D and
// healed no earlier than window before D (or not healed). Every other
// failover is false: the leader was alive and reachable from all but at
// most one link (a cut orchestrator probe, a partitioned follower, an
// orchestrator killed), which the holistic check must tolerate. A false
// failover is a FalseFailover violation.
func Failovers(h history.History, changes []Change, window time.Duration) ([]Failover, []Violation) {
	acks := ackTimes(h.Ops)
	var out []Failover
	var vs []Violation
	for _, c := range changes {
		if c.Kind != "failover" {
			continue
		}
		f := Failover{Change: c}
		var since int64 // the cause's injection
		for _, ft := range h.Faults {
			if ft.InjectErr != "" || !slices.Contains(ft.Suspects, c.From) || ft.Inject > c.At {
				continue
			}
			if ft.Heal == 0 || ft.Heal+int64(window) >= c.At {
				f.Cause, since = ft.Name, ft.Inject
			}
		}
		f.Unavailable = gapAround(acks, c.At, since)
		if f.Cause == "" {
			f.False = true
			vs = append(vs, Violation{Kind: FalseFailover, Node: c.From, At: c.At, Detail: fmt.Sprintf(
				"failover n%d -> n%d (epoch %d -> %d) at %v, but no fault could make n%d look dead then (%s); faults around it: %s",
				c.From, c.To, c.OldEpoch, c.NewEpoch, time.Duration(c.At), c.From, c.Reason, faultsAround(h.Faults, c.At, window))})
		}
		out = append(out, f)
	}
	return out, vs
}

// faultsAround names the faults active within window of t, for a report.
func faultsAround(fs []history.FaultEvent, t int64, window time.Duration) string {
	var names []string
	for _, f := range fs {
		end := f.Heal
		if end == 0 {
			end = t
		}
		if f.Inject <= t+int64(window) && end+int64(window) >= t {
			names = append(names, fmt.Sprintf("%s [%v..%v]", f.Name, time.Duration(f.Inject), time.Duration(f.Heal)))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "; ")
}

// ackTimes are the acknowledgement times of the workload's acknowledged
// writes, in order.
func ackTimes(ops []history.Op) []int64 {
	var ts []int64
	for _, o := range ops {
		if !o.Final && o.Outcome == history.OK && (o.Kind == history.Write || o.Kind == history.Incr) {
			ts = append(ts, o.Return)
		}
	}
	slices.Sort(ts)
	return ts
}

// gapAround is the gap between the last acknowledgement at or before t
// (or since, if later: writes that stopped under an earlier fault are not
// this failover's doing) and the first after t; -1 if none follows.
func gapAround(acks []int64, t, since int64) time.Duration {
	i, _ := slices.BinarySearch(acks, t+1) // first ack > t
	if i == len(acks) {
		return -1
	}
	from := since
	if i > 0 {
		from = max(from, acks[i-1])
	}
	return time.Duration(acks[i] - from)
}

func compare(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

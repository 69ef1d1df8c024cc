package failover

import (
	"cmp"
	"errors"
	"slices"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Ranking: which node to promote.

// Node is what the orchestrator knows of one node when it must choose.
type Node struct {
	ID string
	// Durable is the node's last durable log position.
	Durable logrec.Position
	// Priority is 0-100; 0 means never promote (Patroni's
	// failover_priority, MongoDB's priority).
	Priority int
	// Reachable: the orchestrator heard from it and it can take the role.
	Reachable bool
	// Eligible: it may be chosen under the commit mode (in a synchronous
	// mode, only a member of the published sync set may be).
	Eligible bool
	// Preferred: the node is in the orchestrator's preferred zone
	// (View.PreferredZone); among equally advanced nodes of equal priority
	// it is chosen first.
	Preferred bool
}

// Choice is the outcome of Choose.
type Choice struct {
	// Candidate is the node to promote.
	Candidate string
	// CatchUpFrom, if not empty, is the reachable node whose log is ahead
	// of the candidate's: the candidate must first catch up from it, so
	// that promoting it loses nothing that node has.
	CatchUpFrom string
}

// ErrNoCandidate: no reachable, eligible node with a priority above 0.
var ErrNoCandidate = errors.New("failover: no node can be promoted")

// ahead orders positions: a later epoch wins, then a higher LSN.
func ahead(a, b logrec.Position) int {
	return cmp.Or(cmp.Compare(a.Epoch, b.Epoch), cmp.Compare(a.LSN, b.LSN))
}

// Choose picks the node to promote: among reachable, eligible nodes with a
// priority above 0, the one with the highest durable (epoch, LSN), ties
// broken by the higher priority, then by the preferred zone, then by the
// lower id (so the choice is deterministic).
//
// The rank, and why in this order:
//
//  1. durable (epoch, LSN): a promise. The most advanced node holds every
//     write any candidate holds; a preference never outranks it, so no
//     setting makes a failover lose (or wait to catch up on) what a
//     candidate it passed over has.
//  2. priority: the operator's word about one node (a small machine, a
//     reporting replica), so it outranks a cluster-wide default.
//  3. preferred zone: the cluster-wide default placement (the zone where
//     the clients and proxies that need the leader run). It ranks the
//     nodes the operator did not tell apart: with the default priorities
//     it decides among equally advanced nodes, which is the case at
//     bootstrap and on a quiet cluster (so `tandem switchover` without
//     --to moves the leader back to the preferred zone when writes are
//     few).
//  4. id: determinism.
//
// If a reachable node that may not be chosen (priority 0, or not
// eligible) is further ahead than the candidate, the candidate must catch
// up from the most advanced such node before it takes writes (VTOrc and
// Orchestrator do this).
func Choose(nodes []Node) (Choice, error) {
	var best, furthest *Node
	for i := range nodes {
		n := &nodes[i]
		if !n.Reachable {
			continue
		}
		if furthest == nil || ahead(n.Durable, furthest.Durable) > 0 {
			furthest = n
		}
		if !n.Eligible || n.Priority <= 0 {
			continue
		}
		if best == nil || better(n, best) {
			best = n
		}
	}
	if best == nil {
		return Choice{}, ErrNoCandidate
	}
	c := Choice{Candidate: best.ID}
	if ahead(furthest.Durable, best.Durable) > 0 {
		c.CatchUpFrom = furthest.ID
	}
	return c, nil
}

func better(a, b *Node) bool {
	if d := ahead(a.Durable, b.Durable); d != 0 {
		return d > 0
	}
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	if a.Preferred != b.Preferred {
		return a.Preferred
	}
	return a.ID < b.ID
}

// Sorted returns the ids of nodes in the order Choose prefers them (the
// unreachable, ineligible and priority-0 ones left out), for status and
// for a manual promote's warning about a less advanced target.
func Sorted(nodes []Node) []string {
	var ok []*Node
	for i := range nodes {
		if n := &nodes[i]; n.Reachable && n.Eligible && n.Priority > 0 {
			ok = append(ok, n)
		}
	}
	slices.SortFunc(ok, func(a, b *Node) int {
		if better(a, b) {
			return -1
		}
		if better(b, a) {
			return 1
		}
		return 0
	})
	ids := make([]string, len(ok))
	for i, n := range ok {
		ids[i] = n.ID
	}
	return ids
}

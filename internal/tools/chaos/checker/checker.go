// Package checker judges a recorded chaos history. Each check is a separate
// pure function over history data, so each can be tested with hand-written
// histories and a new check is a new function:
//
//   - Linearizable: every key's history of leader operations is
//     linearizable (porcupine; register and counter models).
//   - Durability: the final value of every key reflects every acknowledged
//     write (no acknowledged write lost across kills and restarts).
//   - Replicas: once healed, replicas at the same applied LSN have the same
//     keyspace digest.
//   - FollowerReads: reads from one follower never go backwards, and never
//     return a value that was never written.
//   - Sessions: sessions under read policies read their own writes (ryw,
//     monotonic, linearizable), never go backwards (monotonic,
//     linearizable), and stay within their bound (bounded); linearizable
//     follower reads are also in Linearizable's histories.
//   - Recovery: after each healed fault, writes succeed again; how long that
//     took.
//   - CatchUps: after each healed fault, every follower applies what the
//     leader had applied at the heal within a bound.
//   - OneLeaderPerEpoch: no two nodes led the same epoch (from the node
//     logs' leaderships).
//   - Failovers: every failover the control plane made had a cause (a
//     fault that could make the old leader look dead); the unavailability
//     around each.
//   - Vanished: in async mode, every lost acknowledged write is in some
//     node's rollback file.
//   - Typed: the typed workload's sets (grow-only), lists (append-only),
//     transfers (the sum of the balances never changes, on any node) and
//     queue (no job popped twice, none lost); see typed.go.
//
// A check reports Violations and never fails silently: a key it could not
// decide is reported (as inconclusive or unverified), not passed.
package checker

import (
	"fmt"
	"sort"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// ViolationKind names the promise a violation breaks. The names appear in
// reports and are matched by tests and scripts.
type ViolationKind string

// The violation kinds.
const (
	// NotLinearizable: a key's leader history has no linearization (a stale
	// read, a lost update, an INCR result out of order).
	NotLinearizable ViolationKind = "not-linearizable"
	// LostWrite: an acknowledged write is missing from the final state.
	LostWrite ViolationKind = "lost-write"
	// Unverified: a key with acknowledged writes had no successful final
	// read, so durability could not be checked.
	Unverified ViolationKind = "unverified"
	// ReplicaDiverged: two replicas at the same applied LSN have different
	// keyspace digests.
	ReplicaDiverged ViolationKind = "replica-diverged"
	// ReplicasNotConverged: the replicas never reached the same applied
	// LSN (or did not answer) after healing.
	ReplicasNotConverged ViolationKind = "replicas-not-converged"
	// NonMonotonicRead: a follower returned an older value than it had
	// returned before for the same key.
	NonMonotonicRead ViolationKind = "non-monotonic-read"
	// NeverWritten: a read returned a value that no write (acknowledged or
	// of unknown outcome) had written by then, or more increments than
	// were ever sent.
	NeverWritten ViolationKind = "never-written"
	// NotRecovered: after a fault was healed, no write succeeded again.
	NotRecovered ViolationKind = "not-recovered"
	// TwoLeaders: two nodes led the same epoch.
	TwoLeaders ViolationKind = "two-leaders"
	// FalseFailover: the control plane failed over from a leader that no
	// fault could have made look dead (see Failovers).
	FalseFailover ViolationKind = "false-failover"
	// FollowerBehind: a follower had not applied, within the catch-up
	// bound after a fault was healed, what the leader had applied at the
	// heal (a stream that went silent and was never left, a follower
	// that never reconnected).
	FollowerBehind ViolationKind = "follower-behind"
	// Inconclusive: porcupine timed out on a key; the key is neither
	// passed nor failed. Reported so that a run cannot pass unchecked.
	Inconclusive ViolationKind = "inconclusive"
)

// Violation is one broken promise.
type Violation struct {
	Kind ViolationKind `json:"kind"`
	Key  string        `json:"key,omitempty"`
	// Node is the node concerned (follower reads, replicas), 0 if none.
	Node   int    `json:"node,omitempty"`
	Detail string `json:"detail"`
	// File is an artefact that shows the violation (porcupine's HTML).
	File string `json:"file,omitempty"`
	// At is when the operation that shows the violation was invoked (the
	// last lost write, the stale read), so a report can tell which fault it
	// followed; 0 when it is not tied to one operation.
	At int64 `json:"at,omitempty"`
	// Lost is the number of acknowledged writes a LostWrite stands for.
	Lost int `json:"lost,omitempty"`
}

func (v Violation) String() string {
	s := string(v.Kind)
	if v.Key != "" {
		s += " key=" + v.Key
	}
	if v.Node != 0 {
		s += fmt.Sprintf(" node=n%d", v.Node)
	}
	s += ": " + v.Detail
	if v.File != "" {
		s += " (see " + v.File + ")"
	}
	return s
}

// sortedKeys returns m's keys in order, so that reports are deterministic.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// writesByValue indexes a register key's writes by their (unique) value.
func writesByValue(ops []history.Op) map[string]history.Op {
	m := make(map[string]history.Op)
	for _, o := range ops {
		if o.Kind == history.Write {
			m[o.Value] = o
		}
	}
	return m
}

// before reports whether a certainly took effect before b did: a completed
// (and was acknowledged) before b was invoked. An Unknown operation may take
// effect at any time after its call, so it is before nothing.
func before(a, b history.Op) bool {
	return a.Outcome == history.OK && a.Return < b.Call
}

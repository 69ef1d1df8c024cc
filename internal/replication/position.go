package replication

import (
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Errors of the read positions (a session's token, see package resp).
var (
	// ErrReadElsewhere: this node cannot serve the read under its policy
	// now (it has not applied the session's position within the wait, its
	// history differs from the token's, it is too stale for the bound, or
	// the policy wants the leader). Another node, at the latest the
	// leader, can.
	ErrReadElsewhere = errors.New("replication: read elsewhere")
	// ErrPositionLost: the leader's history holds another entry at the
	// token's LSN, from a later epoch: the entry the token names was lost
	// in a failover (possible under async commit, where an acknowledged
	// write can be lost), and no node will ever apply it.
	ErrPositionLost = errors.New("replication: the position is not in this history")
)

// Verdict is what a node's history says about a wanted position.
type Verdict int

const (
	// Reached: the node has applied the wanted entry.
	Reached Verdict = iota
	// Behind: the node has not applied it yet and may still.
	Behind
	// Older: the node's history holds an older epoch at the wanted
	// position than the wanted entry's: the node itself is behind a
	// failover (its suffix will be truncated or re-seeded) and cannot
	// serve the position now.
	Older
	// Replaced: the node's history holds a newer epoch at (or before) the
	// wanted position: the wanted entry was replaced by a later
	// leadership. Only a leader's verdict is final (ErrPositionLost); a
	// follower's own history may yet be replaced in turn.
	Replaced
)

func (v Verdict) String() string {
	return [...]string{"reached", "behind", "older", "replaced"}[v]
}

// EpochAt returns the epoch of the entry at lsn in a log whose epoch
// history (each epoch's first LSN, in order) is history: the epoch of the
// last start at or before lsn. A start that a later start at the same LSN
// follows is a leadership that wrote nothing, and the later one wins. 0
// when lsn precedes every start.
func EpochAt(history []logrec.Position, lsn uint64) uint64 {
	var e uint64
	for _, s := range history {
		if s.LSN > lsn {
			break
		}
		e = s.Epoch
	}
	return e
}

// Lineage judges want against a node whose epoch history is history and
// whose applied position is applied. It is pure; every read with a floor
// asks it.
//
// Positions name an entry by its epoch and LSN, and a log's epochs never
// decrease with the LSN, so one entry of the node's history decides: the
// one at want.LSN if applied, else the last applied one.
func Lineage(history []logrec.Position, applied, want logrec.Position) Verdict {
	if want.LSN == 0 {
		return Reached // the empty position: every history holds it
	}
	if want.LSN <= applied.LSN {
		switch e := EpochAt(history, want.LSN); {
		case e == want.Epoch:
			return Reached
		case e < want.Epoch:
			return Older
		default:
			return Replaced
		}
	}
	// Not applied yet: the entries the node will apply next have an
	// epoch at least that of its last applied one.
	if EpochAt(history, applied.LSN) > want.Epoch && applied.LSN > 0 {
		return Replaced
	}
	return Behind
}

// Compare orders positions: by epoch, then LSN. Within one history this is
// the LSN order; across two (a failover under async dropped a suffix) the
// later epoch wins, as it is the history that survives.
func Compare(a, b logrec.Position) int {
	switch {
	case a.Epoch != b.Epoch:
		if a.Epoch < b.Epoch {
			return -1
		}
		return 1
	case a.LSN < b.LSN:
		return -1
	case a.LSN > b.LSN:
		return 1
	}
	return 0
}

// verdictErr is the error for a verdict other than Reached, on a node that
// is a leader (final) or not.
func verdictErr(v Verdict, leader bool, want, applied logrec.Position) error {
	switch {
	case v == Replaced && leader:
		return fmt.Errorf("%w: position %d:%d (applied %d:%d)", ErrPositionLost, want.Epoch, want.LSN, applied.Epoch, applied.LSN)
	case v == Replaced || v == Older:
		return fmt.Errorf("%w: this node's history differs from the position %d:%d at its lsn (applied %d:%d)", ErrReadElsewhere, want.Epoch, want.LSN, applied.Epoch, applied.LSN)
	}
	return fmt.Errorf("%w: this node has not applied the position %d:%d within the read wait (applied %d:%d)", ErrReadElsewhere, want.Epoch, want.LSN, applied.Epoch, applied.LSN)
}

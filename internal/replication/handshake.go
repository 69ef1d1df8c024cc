package replication

import (
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// LogView is what the handshake needs to know about a log: the leader's in
// Decide, the follower's own in TruncatePoint. *storage.DB is one.
type LogView interface {
	LogBase() logrec.Position
	Durable() logrec.Position
	// EpochAt returns the epoch of the entry at lsn (of the log base at
	// LogBase().LSN), storage.ErrCompacted if it precedes the log base.
	EpochAt(lsn uint64) (uint64, error)
}

// Action is what the leader tells a follower after its Hello.
type Action int

const (
	// ActStream: the follower's log is a prefix of the leader's; stream
	// from Decision.LSN.
	ActStream Action = iota
	// ActTruncate: the follower's log diverged; it must drop its entries
	// after TruncatePoint(its log, Decision.LSN, Decision.Epoch) and
	// reconnect.
	ActTruncate
	// ActSnapshot: the follower is empty or behind the retained log.
	ActSnapshot
)

func (a Action) String() string {
	return [...]string{"stream", "truncate", "snapshot"}[a]
}

// Decision is the outcome of a handshake.
type Decision struct {
	Action Action
	LSN    uint64 // first LSN to stream, or the LSN to truncate after
	// Epoch (ActTruncate only) is the epoch of the leader's entry at LSN
	// (of its log base if LSN is the base; 0 at LSN 0).
	Epoch uint64
}

// Decide compares a follower's last durable position f with the leader's log.
//
// Entries are identified by (epoch, LSN): every leadership starts a new epoch
// at its first LSN, and a follower takes an epoch's entries only from its
// leader, once the handshake has made its log agree with the leader's up to
// them. So two logs that hold the same entry hold the same entries before it,
// and epochs never decrease along a log. The follower must end up at P, the
// last LSN where both logs hold the same entry. The rule:
//
//   - ActSnapshot if the follower is empty and the leader is not, or f.LSN
//     precedes the leader's log base.
//   - ActStream from f.LSN+1 if the leader's entry at f.LSN has epoch
//     f.Epoch: the follower's log is a prefix of the leader's.
//   - Otherwise ActTruncate with LSN A = min(f.LSN, the last LSN of the
//     leader's entries of epoch ≤ f.Epoch) and Epoch e = the epoch of the
//     leader's entry at A; ActSnapshot instead if no retained leader entry
//     has epoch ≤ f.Epoch (P precedes the log base), or if A is 0 while the
//     leader has entries (a follower diverged from its first entry is
//     seeded rather than replayed).
//
// Why that ends at P. The entry at P is the same in both logs and its epoch
// is at most f.Epoch, so P ≤ A (P ≤ f.LSN, and the leader's entry at P has
// epoch ≤ f.Epoch) and its epoch is at most e (P ≤ A, and epochs do not
// decrease). The follower truncates after T = min(A, the last LSN of its
// own entries of epoch ≤ e) (TruncatePoint), so P ≤ T: it keeps every entry
// it shares with the leader. And T < f.LSN: either A < f.LSN, or A = f.LSN
// and then e ≠ f.Epoch (else the leader would stream), so e < f.Epoch and
// the follower's last entry of epoch ≤ e precedes f.LSN. So every round
// drops at least the follower's last entry, and the rounds end. If the
// follower's entry at T has epoch e, it is the leader's entry at T (the
// leader holds epoch e's entries from that epoch's first LSN up to A ≥ T),
// T = P, and the next handshake streams; otherwise the next round starts
// from a lower epoch and LSN.
//
// A follower with entries past the leader's durable LSN (say ahead in the
// leader's own epoch) is a case of the last rule: A is the leader's last
// entry of epoch ≤ f.Epoch.
//
// applied is the leader's applied LSN, where a snapshot would be taken.
// While it is 0 no answer is ActSnapshot: a snapshot would be empty, at LSN
// 0, and the follower would be sent for another one, forever (under quorum
// nothing commits until a follower streams, so applied would stay 0).
// Retention never trims past the applied LSN, so the leader's log is then
// whole and is replayed instead: ActStream from 1 to an empty follower,
// ActTruncate after 0 (drop everything) to one that holds entries.
func Decide(log LogView, applied uint64, f logrec.Position) (Decision, error) {
	d, err := decide(log, f)
	if err == nil && d.Action == ActSnapshot && applied == 0 {
		if f.LSN == 0 {
			return Decision{Action: ActStream, LSN: 1}, nil
		}
		return Decision{Action: ActTruncate}, nil
	}
	return d, err
}

// decide is Decide's rule for a leader that has applied entries.
func decide(log LogView, f logrec.Position) (Decision, error) {
	base, durable := log.LogBase(), log.Durable()
	if f.LSN == 0 && durable.LSN > 0 {
		return Decision{Action: ActSnapshot}, nil
	}
	if f.LSN < base.LSN {
		return Decision{Action: ActSnapshot}, nil
	}
	if f.LSN <= durable.LSN {
		epoch, err := log.EpochAt(f.LSN)
		if errors.Is(err, storage.ErrCompacted) {
			return Decision{Action: ActSnapshot}, nil
		}
		if err != nil {
			return Decision{}, fmt.Errorf("replication: handshake at lsn %d: %w", f.LSN, err)
		}
		if epoch == f.Epoch {
			return Decision{Action: ActStream, LSN: f.LSN + 1}, nil
		}
	}
	a, e, ok, err := lastAtOrBelow(log, f.Epoch, f.LSN)
	if errors.Is(err, storage.ErrCompacted) || (err == nil && (!ok || (a == 0 && durable.LSN > 0))) {
		return Decision{Action: ActSnapshot}, nil
	}
	if err != nil {
		return Decision{}, fmt.Errorf("replication: handshake for (%d, %d): %w", f.Epoch, f.LSN, err)
	}
	return Decision{Action: ActTruncate, LSN: a, Epoch: e}, nil
}

// TruncatePoint is the follower's side of ActTruncate: given its own log
// and the leader's answer (truncate after lsn, where the leader's entry has
// epoch), it returns the LSN after which the follower drops its entries:
// min(lsn, the last LSN of its entries of epoch ≤ epoch). See Decide for why
// that keeps every entry the follower shares with the leader and drops at
// least its last one.
//
// If the log base has a higher epoch (or lsn precedes it), the point
// precedes the log base and TruncatePoint returns min(lsn, LogBase().LSN-1):
// the entries after it are applied (the log is never trimmed past the
// applied LSN), so the node saves the retained ones and re-seeds. An epoch of 0 with an lsn above 0 comes
// from a leader that predates the field: the answer is lsn, as it was then.
func TruncatePoint(log LogView, lsn, epoch uint64) (uint64, error) {
	if epoch == 0 {
		return lsn, nil
	}
	t, _, ok, err := lastAtOrBelow(log, epoch, lsn)
	if err != nil {
		return 0, fmt.Errorf("replication: truncate point for (%d, %d): %w", epoch, lsn, err)
	}
	if !ok {
		// The last shared entry precedes the log base.
		if b := log.LogBase().LSN; b > 0 {
			return min(lsn, b-1), nil
		}
		return 0, nil
	}
	return t, nil
}

// lastAtOrBelow returns the last LSN ≤ limit in log (from the log base on)
// whose entry has an epoch ≤ epoch, and that entry's epoch; ok is false if
// the log base already has a higher epoch. Epochs never decrease along a
// log, so it is a binary search on EpochAt: it reads the entries themselves
// rather than the epoch history, which can name an epoch that has no entries.
func lastAtOrBelow(log LogView, epoch, limit uint64) (lsn, at uint64, ok bool, err error) {
	base, durable := log.LogBase(), log.Durable()
	if base.Epoch > epoch {
		return 0, 0, false, nil
	}
	hi := min(limit, durable.LSN)
	if hi < base.LSN {
		return 0, 0, false, nil
	}
	// Invariant: the entry at lo has epoch ≤ epoch (at is its epoch); every
	// entry after hi has a higher one (or is beyond limit).
	lo, at := base.LSN, base.Epoch
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		e, err := log.EpochAt(mid)
		if err != nil {
			return 0, 0, false, err
		}
		if e <= epoch {
			lo, at = mid, e
		} else {
			hi = mid - 1
		}
	}
	return lo, at, true, nil
}

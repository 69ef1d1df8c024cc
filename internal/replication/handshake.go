package replication

import (
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/storage"
)

// LogView is what the handshake needs to know about the leader's log.
type LogView interface {
	LogBase() storage.Position
	Durable() storage.Position
	// EpochAt returns the epoch of the entry at lsn, storage.ErrCompacted
	// if it precedes the log base.
	EpochAt(lsn uint64) (uint64, error)
	EpochHistory() []storage.Position
}

// Action is what the leader tells a follower after its Hello.
type Action int

const (
	// ActStream: the follower's log is a prefix of the leader's; stream
	// from Decision.LSN.
	ActStream Action = iota
	// ActTruncate: the follower's log diverged; it must drop entries after
	// Decision.LSN.
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
}

// Decide compares a follower's last durable position with the leader's log.
//
// A follower is consistent when the leader's entry at its LSN has its epoch
// (entries are identified by (epoch, LSN): two logs that agree on one entry
// agree on every entry before it). Otherwise the follower holds entries of an
// epoch the leader superseded; those end where the leader's next epoch
// starts, which is where the follower must truncate. An empty follower of a
// leader that has data is seeded from a snapshot rather than replaying the
// whole log.
func Decide(log LogView, f storage.Position) (Decision, error) {
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
	// Diverged: the follower's entries of epoch f.Epoch are valid only up to
	// the start of the leader's first later epoch.
	end := durable.LSN
	for _, s := range log.EpochHistory() {
		if s.Epoch > f.Epoch {
			end = s.LSN - 1
			break
		}
	}
	end = min(end, f.LSN)
	if end < base.LSN || (end == 0 && durable.LSN > 0) {
		return Decision{Action: ActSnapshot}, nil
	}
	return Decision{Action: ActTruncate, LSN: end}, nil
}

package replication

import (
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/storage"
)

// ErrEpochUsed: a leadership was asked to start at an epoch this node has
// already seen (led before a restart, led by a leadership that stopped,
// or heard of from another node). A leadership never resumes an epoch: the
// control plane must hand out a new one (the node's agent asks etcd for it
// with a compare and swap).
var ErrEpochUsed = errors.New("replication: epoch already used")

// EpochFree reports whether a leadership may start at epoch want on db
// (want 0: the next after every epoch db has seen, always free). See
// BeginEpoch.
func EpochFree(db *storage.DB, want uint64, bug Buggify) bool {
	if want == 0 || want > db.Epoch() {
		return true
	}
	return bug.LeaderResumesEpoch && resumable(db, want)
}

// BeginEpoch starts a leadership's epoch on db and returns it: want, which
// the control plane handed out, or, when want is 0 (a static topology),
// the one after the highest epoch db has seen. The epoch must be above
// every epoch db has seen, else ErrEpochUsed. Its start is recorded at
// durable+1 and synced (storage.StartEpoch raises the seen epoch in the
// same batch) before the leadership's first entry exists, so that after a
// crash the node still knows the epoch is taken even if none of its
// entries survived in the local log.
//
// Why it matters: the leader sends entries to its followers while its own
// append of them is still being synced (queueSends), so a leader that
// crashes can lose from its log entries that a follower holds durably. If
// it then led the same epoch again, it would give those LSNs to other
// entries, (epoch, LSN) would no longer name one entry, and the
// handshake (Decide) would take the follower's stale entry for the
// leader's and keep it. Under a fresh epoch, the follower's entries are of
// an older epoch than the leader's entries at the same LSNs, and Decide
// truncates them (TestLeaderCrashAfterSendingConverges).
//
// bug.LeaderResumesEpoch is the planted fault of the tests: the epoch this
// node started last is resumed, as tandem did before it sent entries
// early.
func BeginEpoch(db *storage.DB, want uint64, bug Buggify) (uint64, error) {
	seen := db.Epoch()
	if bug.LeaderResumesEpoch && (want == 0 || want == seen) && resumable(db, seen) {
		return seen, nil
	}
	if want == 0 {
		want = seen + 1
	}
	if want <= seen {
		return 0, fmt.Errorf("%w: epoch %d (this node has seen epoch %d)", ErrEpochUsed, want, seen)
	}
	if err := db.StartEpoch(want, db.Durable().LSN+1); err != nil {
		return 0, fmt.Errorf("replication: start epoch %d: %w", want, err)
	}
	return want, nil
}

// resumable reports whether epoch is the last one db started (the planted
// fault resumes only its own epoch, as the old rule did).
func resumable(db *storage.DB, epoch uint64) bool {
	h := db.EpochHistory()
	return epoch > 0 && len(h) > 0 && h[len(h)-1].Epoch == epoch
}

// Package replication is tandem's leader/follower log shipping.
//
// The leader (Leader) serialises writes: Propose computes a command against
// the committed data overlaid with the uncommitted writes, assigns the next
// LSN, and queues the entry; one committer goroutine appends every queued
// entry in one durable batch (group commit); an applier goroutine beside it
// advances the commit point by the rule of package commit, applies committed
// entries, and wakes their writers, so that applying one batch overlaps the
// fsync of the next. Followers each hold one stream (Leader.Serve) on which the leader
// sends entries from the follower's position, with its commit LSN;
// heartbeats are empty appends.
//
// The follower (Follower) opens the stream with its last durable position;
// the handshake (Decide, a pure function) answers stream, truncate or
// snapshot. followerCore, a pure state machine, checks what arrives and says
// what to persist and what to apply; the driver does the I/O.
//
// # Invariants
//
//   - An entry is applied, visible to readers and acknowledged only once
//     committed, and committed only once durable on the leader (and on as many
//     followers as the mode requires).
//   - A follower persists entries before it reports them durable, and applies
//     only up to min(commit LSN, durable LSN).
//   - Every message carries an epoch; a node never accepts a message from a
//     lower epoch than the highest it has persisted.
//   - A leader serves reads only once every entry that was durable when its
//     leadership began is applied (Leader.ReadBarrier): such an entry may
//     have been acknowledged before a crash, and a read that missed it would
//     go back in time.
package replication

import (
	"errors"

	"github.com/tandemdb/tandem/internal/transport"
)

// Errors of this package.
var (
	// ErrStaleEpoch: a message came from a lower epoch than the node has
	// seen; the sender is an old leader or follower and is refused.
	ErrStaleEpoch = errors.New("replication: stale epoch")
	// ErrNotLeader: the leader stopped (stepped down, fenced or closed) and
	// takes no more writes.
	ErrNotLeader = errors.New("replication: not leader")
	// ErrOutOfOrder: a follower received entries that do not continue its log.
	ErrOutOfOrder = errors.New("replication: entries out of order")
	// ErrNotReady: a new leader cannot serve reads yet; entries it found in
	// its log may have been acknowledged and are not committed again yet.
	ErrNotReady = errors.New("replication: leader not ready for reads")
	// ErrWriteTimeout: a write was sequenced and made durable on the
	// leader but not committed within LeaderConfig.WriteTimeout (too few
	// followers acknowledged it). Its outcome is unknown: it may still
	// commit later, if enough followers report it before this leadership
	// ends, or never.
	ErrWriteTimeout = errors.New("replication: write not committed within the write timeout")
	// ErrOverloaded: the writes in flight (sequenced, not yet committed)
	// reached LeaderConfig.MaxInFlight or MaxInFlightBytes and no room
	// freed up within the write timeout. The write was not sequenced, so a
	// retry is safe.
	ErrOverloaded = errors.New("replication: too many writes waiting for commit")
)

// The stream types live in package transport (so that tests of any
// package can carry replication in memory without importing replication);
// these aliases keep their names here.
type (
	LeaderStream     = transport.LeaderStream
	FollowerStream   = transport.FollowerStream
	SnapshotSender   = transport.SnapshotSender
	SnapshotReceiver = transport.SnapshotReceiver
	Dialer           = transport.Dialer
)

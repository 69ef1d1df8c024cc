// Package replication is tandem's leader/follower log shipping.
//
// The leader is a pure state machine, leaderCore, and a driver, Leader,
// in the manner of etcd-io/raft's RawNode. Inputs go into the core (a
// proposal, a durable append, an apply, a follower's join, progress or
// departure, a tick with the time); a leaderReady comes out saying what to
// append (durable before anything depends on it), how far each follower
// stream may be sent, what is committed and may be applied, which writers
// to acknowledge or time out, which waits are done (WAIT, reads, and
// writers waiting for room, whose admission deadline the core keeps), what
// the log may be trimmed to and which streams to close. The core's
// follower table also holds each follower's lease echo
// (ConfirmedByFollowers). The commit rule is package commit's. The driver owns the goroutines and decides nothing.
// Work runs to completion where it can, as in PostgreSQL's group commit: a
// writer blocked waiting for its group, which must be woken anyway, is
// given the group's Append (one durable log write) or Apply (data and
// applied LSN in one batch) to run itself, and a writer that leaves a
// Then callback (Pending.Then) is answered by the goroutine that applied
// its group, which writes its reply; a committer and an applier
// goroutine run only the batches no waiting writer can take (an idle
// leader's, a held group's, the tail a leadership starts with), and the
// committer applies what it made durable itself unless a next group waits
// for its fsync. Applying
// one batch overlaps the fsync of the next. Besides them: a ticker, and per
// follower stream a handler, a receiver and a sender that calls gRPC's
// Send itself. Handoffs counts the goroutine wake-ups of the write path. Propose runs a command against the
// committed data overlaid with the uncommitted writes (overlay.go) and
// sequences it; Leader.Serve is one follower's stream, on which the
// leader sends entries from the follower's position with its commit LSN;
// heartbeats are empty appends. An entry larger than PartBytes goes to a
// follower that takes parts as several messages, which the follower puts
// together before anything checks, persists or applies the entry
// (parts.go), so neither side ever holds a message of more than a part.
//
// Writes are bounded: at most MaxInFlight writes (MaxInFlightBytes) are
// sequenced and not applied; past that a write waits for room and then
// fails with ErrOverloaded, unsequenced. A write not committed within
// WriteTimeout fails with ErrWriteTimeout, its outcome unknown: it stays
// in the log and may commit later. Leader.Close returns only once every
// goroutine that can touch storage has returned, and never waits for a
// follower: a send blocked on a follower that stopped reading is given up.
//
// The follower (Follower) opens the stream with its last durable position;
// the handshake (Decide, a pure function) answers stream, truncate or
// snapshot; on truncate, TruncatePoint (pure too) says where the follower
// cuts its log so that it keeps exactly what it shares with the leader, over
// as many handshakes as it takes. followerCore, a pure state machine, checks what arrives and says
// what to persist and what to apply; the driver does the I/O.
//
// # Invariants
//
//   - An entry is applied, visible to readers and acknowledged only once
//     committed, and committed only once durable on the leader (and on as many
//     followers as the mode requires).
//   - Send while syncing: an entry is sent to the followers once it is handed
//     out in an Append, while the leader's fdatasync of it runs (etcd-io/raft,
//     the Raft thesis §10.2.1), so a follower may hold durably entries the
//     leader loses in a crash. The commit LSN a leader sends never passes its
//     own durable LSN, so a follower never applies such an entry.
//   - Every leadership starts at an epoch never used before, on any node, not
//     even by the same node before a restart (BeginEpoch: above every epoch
//     the node has seen, its start synced before the first entry; under the
//     control plane from etcd's compare and swap). So (epoch, LSN) names one
//     entry cluster-wide: a restarted leader's entries at the LSNs it lost
//     have a higher epoch than the lost ones a follower holds, and the
//     handshake (Decide) truncates those.
//   - A follower persists entries before it reports them durable, and applies
//     only entries its leader has said are committed: those durable, and
//     those whose own log append (fdatasync) runs, during it (applyAhead,
//     applyAsCommitted: committed means durable on the leader and on as
//     many followers as the mode asks, so a read may see them first).
//     Between two steps its applied LSN is at or below its durable one,
//     and on disk always (the storage's flush fence): a restarted
//     follower comes back at or below what it served and replays.
//   - Every message carries an epoch; a node never accepts a message from a
//     lower epoch than the highest it has persisted. A leader that hears of a
//     higher epoch persists it and steps down; if it cannot persist it, the
//     process stops (LeaderConfig.Fatal), so that it never starts a
//     leadership under an epoch number already taken.
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
	// ErrEntryTooLarge: a write's log entry would be larger than
	// LeaderConfig.MaxEntryBytes, more than the stream carries in one
	// message. The write was not sequenced (nothing logged, nothing
	// changed) and the error is also a commands input error, answered to
	// the client as "ERR this write's log entry would be ...".
	ErrEntryTooLarge = errors.New("replication: log entry too large")
	// ErrLeaderSilent: a follower waited FollowerConfig.LeaderTimeout on
	// its stream and heard nothing, neither entries nor a heartbeat: the
	// stream is dead even if its connection is not (a lost FIN, a one-way
	// partition, a middlebox that dropped the flow). The follower closes
	// it and connects again.
	ErrLeaderSilent = errors.New("replication: leader silent")
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

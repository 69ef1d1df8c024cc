package resp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
)

// Backend is the node behind the RESP front end. The resp package owns the
// protocol, sessions and the error table; the Backend owns data and roles.
//
// The ctx of every call is its connection's: it ends when the client
// leaves (a call that blocks longer than a few milliseconds has its socket
// watched for that), when the connection closes, and on Server.Close. A
// call that blocks should return soon after ctx ends, with ctx.Err()
// (possibly wrapped) or, for Wait, what it counted so far.
type Backend interface {
	// Read runs a FlagRead command against committed data. It returns
	// ErrLoading while the node is being seeded, ErrFenced on a node with
	// no role.
	Read(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, error)
	// Write runs a FlagWrite command on the leader and returns once it is
	// committed and applied, with the LSN of its entry (0 when the command
	// logged nothing). It returns ErrReadOnly on a follower, ErrFenced on
	// a node with no role, ErrOverloaded when too many writes wait for
	// commit, and ErrNoReplicas when the write was not committed within
	// the write timeout (it may still commit later), ErrLeadershipLost when
	// the leader stopped after it sequenced the write (outcome unknown).
	Write(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, uint64, error)
	// Info returns the INFO text for the given lower-case sections
	// (empty means the default set: server, replication, keyspace).
	Info(sections []string) string
	// Role returns the ROLE reply.
	Role() commands.Reply
	// Wait blocks until n followers have durably stored lsn or the timeout
	// passes (0 means forever) and returns how many have.
	Wait(ctx context.Context, lsn uint64, n int, timeout time.Duration) int
	// ReplicaOf makes the node follow the node whose RESP address is
	// host:port; ReplicaOfNoOne makes it a leader.
	ReplicaOf(ctx context.Context, host, port string) error
	ReplicaOfNoOne(ctx context.Context) error
}

// Errors a Backend returns; the resp package maps them to Redis replies.
var (
	// ErrReadOnly: a write reached a follower.
	ErrReadOnly = errors.New("resp: read only replica")
	// ErrLoading: a read reached a follower that is being seeded.
	ErrLoading = errors.New("resp: loading")
	// ErrNotLeader: the node is between roles and takes no writes.
	ErrNotLeader = errors.New("resp: not leader")
	// ErrFenced: the node has no role (it lost its lease, or a role
	// change failed) and serves neither reads nor writes. A wrapping
	// error may give the reason: fmt.Errorf("lease lost: %w", ErrFenced).
	ErrFenced = errors.New("resp: fenced")
	// ErrNoReplicas: a write was not committed within the write timeout,
	// for want of followers; it may still commit later.
	ErrNoReplicas = errors.New("resp: not enough replicas")
	// ErrBusy: a write was refused because a script has run in the
	// leader's sequencer longer than the busy threshold; it was not
	// applied.
	ErrBusy = errors.New("resp: busy running a script")
	// ErrBusyFunction is ErrBusy (errors.Is holds) while what runs is a
	// function: its reply names FUNCTION KILL, not SCRIPT KILL.
	ErrBusyFunction = fmt.Errorf("%w (a function)", ErrBusy)
	// ErrOverloaded: a write was refused because too many writes wait for
	// commit; it was not applied.
	ErrOverloaded = errors.New("resp: overloaded")
	// ErrLeadershipLost: the leader stopped after it had sequenced the
	// write and before the write committed. The write may still commit
	// under a later leadership or be lost: its outcome is unknown, so a
	// client must not take it as refused (nor retry a write that is not
	// idempotent blindly).
	ErrLeadershipLost = errors.New("resp: leadership lost before commit")
	// ErrReadElsewhere: this node cannot serve the read under the
	// session's read policy now (it has not applied the session's
	// position within the read wait, it is staler than the bound, the
	// policy wants the leader); another node can, at the latest the
	// leader. A wrapping error gives the reason:
	// fmt.Errorf("%s: %w", why, ErrReadElsewhere).
	ErrReadElsewhere = errors.New("resp: read elsewhere")
	// ErrPositionLost: the session's floor names an entry the leader's
	// history replaced (a write acknowledged under async commit was lost
	// in a failover): no node will ever serve it. A wrapping error gives
	// the detail.
	ErrPositionLost = errors.New("resp: position lost")
)

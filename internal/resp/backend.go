package resp

import (
	"context"
	"errors"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
)

// Backend is the node behind the RESP front end. The resp package owns the
// protocol, sessions and the error table; the Backend owns data and roles.
type Backend interface {
	// Read runs a FlagRead command against committed data. It returns
	// ErrLoading while the node is being seeded.
	Read(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, error)
	// Write runs a FlagWrite command on the leader and returns once it is
	// committed and applied, with the LSN of its entry (0 when the command
	// logged nothing). It returns ErrReadOnly on a follower.
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
	// ErrNotLeader: the node is between roles or fenced and takes no writes.
	ErrNotLeader = errors.New("resp: not leader")
	// ErrFenced: the node has no role (between roles or fenced) and serves no reads.
	ErrFenced = errors.New("resp: fenced")
	// ErrNoReplicas: a write was not committed within the write timeout.
	ErrNoReplicas = errors.New("resp: not enough replicas")
	// ErrOverloaded: too many writes are waiting for commit.
	ErrOverloaded = errors.New("resp: overloaded")
)

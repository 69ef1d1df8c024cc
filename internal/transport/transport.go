// Package transport declares the streams that carry replication between a
// leader and its followers. The gRPC client and server streams of package
// peerpb implement them; package inmem implements them in memory for tests.
//
// It depends on nothing but peerpb, so any package (and replication's own
// internal tests) can use it without an import cycle; package replication
// names these types through aliases.
package transport

import (
	"context"

	"github.com/tandemdb/tandem/internal/peerpb"
)

// LeaderStream is the leader's side of one follower's stream; the gRPC
// server stream implements it, and so does package inmem's.
type LeaderStream interface {
	Send(*peerpb.LeaderMessage) error
	Recv() (*peerpb.FollowerMessage, error)
}

// FollowerStream is the follower's side of its stream to the leader.
type FollowerStream interface {
	Send(*peerpb.FollowerMessage) error
	Recv() (*peerpb.LeaderMessage, error)
	CloseSend() error
}

// SnapshotSender streams snapshot chunks to a follower.
type SnapshotSender interface {
	Send(*peerpb.SnapshotChunk) error
}

// SnapshotReceiver receives snapshot chunks from the leader.
type SnapshotReceiver interface {
	Recv() (*peerpb.SnapshotChunk, error)
}

// Dialer opens streams to the current leader.
type Dialer interface {
	Replicate(ctx context.Context) (FollowerStream, error)
	Snapshot(ctx context.Context, req *peerpb.SnapshotRequest) (SnapshotReceiver, error)
}

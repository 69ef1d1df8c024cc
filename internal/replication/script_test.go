package replication

import (
	"context"
	"io"

	"github.com/tandemdb/tandem/internal/peerpb"
)

// Scripted fakes: a leader that plays fixed messages, for tests of how a
// follower meets what it is sent. They are not a transport (see package
// inmem for that): nothing runs on the other side.

// scriptDialer plays a fixed leader: Replicate's stream answers with msgs in
// order, then io.EOF; Snapshot's receiver yields chunks.
type scriptDialer struct {
	msgs   []*peerpb.LeaderMessage
	chunks []*peerpb.SnapshotChunk
	sent   []*peerpb.FollowerMessage
}

func (s *scriptDialer) Replicate(context.Context) (FollowerStream, error) { return s, nil }

func (s *scriptDialer) Snapshot(context.Context, *peerpb.SnapshotRequest) (SnapshotReceiver, error) {
	return (*scriptSnap)(s), nil
}

func (s *scriptDialer) Send(m *peerpb.FollowerMessage) error {
	s.sent = append(s.sent, m)
	return nil
}

func (s *scriptDialer) Recv() (*peerpb.LeaderMessage, error) {
	if len(s.msgs) == 0 {
		return nil, io.EOF
	}
	m := s.msgs[0]
	s.msgs = s.msgs[1:]
	return m, nil
}

func (s *scriptDialer) CloseSend() error { return nil }

type scriptSnap scriptDialer

func (s *scriptSnap) Recv() (*peerpb.SnapshotChunk, error) {
	if len(s.chunks) == 0 {
		return nil, io.EOF
	}
	c := s.chunks[0]
	s.chunks = s.chunks[1:]
	return c, nil
}

package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// peerService serves the replication stream and snapshots while the node
// leads; otherwise it refuses with FailedPrecondition. A handler runs on
// the role's Leader, which ends it, and waits for it, when it closes.
type peerService struct {
	peerpb.UnimplementedPeerServer
	n *Node
}

func (s *peerService) Replicate(stream grpc.BidiStreamingServer[peerpb.FollowerMessage, peerpb.LeaderMessage]) error {
	r, ok := s.n.current().(*leading)
	if !ok {
		return status.Error(codes.FailedPrecondition, "tandem: not the leader")
	}
	if err := r.l.Serve(stream.Context(), stream); err != nil {
		s.n.log.Debug("follower stream ended", "err", err)
		return status.Error(codes.Unavailable, err.Error())
	}
	return nil
}

func (s *peerService) Snapshot(req *peerpb.SnapshotRequest, stream grpc.ServerStreamingServer[peerpb.SnapshotChunk]) error {
	r, ok := s.n.current().(*leading)
	if !ok {
		return status.Error(codes.FailedPrecondition, "tandem: not the leader")
	}
	// ServeSnapshot refuses a follower from a newer epoch and steps down.
	return r.l.ServeSnapshot(req, stream)
}

// Heartbeat answers the orchestrator's probe with the node's role and
// positions.
func (s *peerService) Heartbeat(ctx context.Context, req *peerpb.HeartbeatRequest) (*peerpb.HeartbeatReply, error) {
	n := s.n
	PokeProcs() // a wake-up the process has anyway (procs.go)
	// The epoch before the position: a node that reports an epoch has
	// stopped taking entries of older ones (agent.apply), so the position
	// read after it is final for them, which a quorum election relies on.
	epoch := n.db.Epoch()
	d := n.db.Durable()
	rep := &peerpb.HeartbeatReply{
		NodeId:           n.cfg.ID,
		Epoch:            epoch,
		Durable:          &peerpb.Position{Epoch: d.Epoch, Lsn: d.LSN},
		AppliedLsn:       n.db.Applied(),
		LeaderHeardAgoMs: -1,
	}
	switch r := n.current().(type) {
	case *leading:
		// Answering: it answers now, or would after one confirmation (an
		// idle leader lets its lease lapse between keepalives: agent.renew).
		rep.Role, rep.LeadingEpoch, rep.Answering = statusdoc.RoleLeader, r.l.Epoch(), r.lease.Answerable(n.answerSlack())
		r.l.Beat() // the streams' heartbeats ride on this wake-up (idle.sh)
	case *following:
		rep.Role, rep.Following = statusdoc.RoleFollower, r.leaderPeer
		if r.leaderID != "" {
			rep.Following = r.leaderID
		}
		if st := r.f.Status(); st.Connected && !st.LastContact.IsZero() {
			rep.LeaderHeardAgoMs = time.Since(st.LastContact).Milliseconds()
		}
	case *fenced:
		rep.Role, rep.Reason = statusdoc.RoleFenced, r.reason
	}
	return rep, nil
}

// StopWrites hands over a planned switchover: see the proto.
func (s *peerService) StopWrites(ctx context.Context, req *peerpb.StopWritesRequest) (*peerpb.StopWritesReply, error) {
	r, ok := s.n.current().(*leading)
	if !ok || r.l.Epoch() != req.Epoch {
		return nil, status.Errorf(codes.FailedPrecondition, "tandem: not the leader of epoch %d", req.Epoch)
	}
	pos, err := r.l.StopWrites(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if r.lease != nil {
		r.lease.Revoke()
	}
	s.n.log.Info("switchover: writes stopped", "epoch", req.Epoch, "durable_lsn", pos.LSN)
	return &peerpb.StopWritesReply{Durable: &peerpb.Position{Epoch: pos.Epoch, Lsn: pos.LSN}}, nil
}

func dialPeer(addr string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// peerpb.Codec decodes a leader's Appends with their entries as
		// slices of one copy of the message, not a copy each.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage), grpc.ForceCodecV2(peerpb.Codec{})),
		grpc.WithStaticStreamWindowSize(PeerWindow), grpc.WithStaticConnWindowSize(PeerWindow),
		// gRPC's default reconnect backoff starts at 1 s; a follower whose
		// leader restarts or is not up yet should find it within ~100 ms.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("node: dial leader %s: %w", addr, err)
	}
	return conn, nil
}

// peerConn is a follower's gRPC connection to its leader: the
// replication.Dialer its streams open on, and the client of its
// ReadIndex calls. Redial replaces the connection: after a stream went
// silent (replication.ErrLeaderSilent) a new stream on the same
// connection would go over the same dead TCP connection (gRPC carries
// every call to a peer on one), and gRPC itself notices a dead
// connection only when TCP gives up.
type peerConn struct {
	addr string
	mu   sync.Mutex
	conn *grpc.ClientConn
}

func newPeerConn(addr string) (*peerConn, error) {
	conn, err := dialPeer(addr)
	if err != nil {
		return nil, err
	}
	return &peerConn{addr: addr, conn: conn}, nil
}

func (p *peerConn) client() peerpb.PeerClient {
	p.mu.Lock()
	defer p.mu.Unlock()
	return peerpb.NewPeerClient(p.conn)
}

func (p *peerConn) Replicate(ctx context.Context) (replication.FollowerStream, error) {
	return p.client().Replicate(ctx)
}

func (p *peerConn) Snapshot(ctx context.Context, req *peerpb.SnapshotRequest) (replication.SnapshotReceiver, error) {
	return p.client().Snapshot(ctx, req)
}

func (p *peerConn) ReadIndex(ctx context.Context, req *peerpb.ReadIndexRequest, opts ...grpc.CallOption) (*peerpb.ReadIndexReply, error) {
	return p.client().ReadIndex(ctx, req, opts...)
}

// Redial implements replication.Redialer: later calls go on a new
// connection, and the old one is closed (failing the calls still on it).
func (p *peerConn) Redial() error {
	conn, err := dialPeer(p.addr)
	if err != nil {
		return err
	}
	p.mu.Lock()
	old := p.conn
	p.conn = conn
	p.mu.Unlock()
	return old.Close()
}

// Close closes the connection.
func (p *peerConn) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conn.Close()
}

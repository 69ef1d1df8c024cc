package replication

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/proto"

	"github.com/tandemdb/tandem/internal/peerpb"
)

// errCut is what both ends of a cut connection see.
var errCut = errors.New("inmem: connection cut")

// memDialer is an in-memory transport to one leader: Replicate runs
// Leader.Serve on a goroutine connected by unbuffered channels, Snapshot runs
// Leader.ServeSnapshot the same way. Messages are cloned, as a wire would.
// Cut breaks every open connection; SetLeader(nil) makes dials fail.
type memDialer struct {
	mu     sync.Mutex
	leader *Leader
	conns  map[*conn]struct{}
	wg     sync.WaitGroup // Serve and ServeSnapshot goroutines

	replicates atomic.Int32
	snapshots  atomic.Int32
	serveErrs  chan error // every Serve result, if not nil
}

func newMemDialer(l *Leader) *memDialer {
	return &memDialer{leader: l, conns: map[*conn]struct{}{}, serveErrs: make(chan error, 1000)}
}

// SetLeader points later dials at l (nil: unreachable).
func (d *memDialer) SetLeader(l *Leader) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.leader = l
}

// Cut breaks every open stream: both sides' Send and Recv fail.
func (d *memDialer) Cut() {
	d.mu.Lock()
	conns := make([]*conn, 0, len(d.conns))
	for c := range d.conns {
		conns = append(conns, c)
	}
	d.mu.Unlock()
	for _, c := range conns {
		c.cutNow()
	}
}

// Wait waits until every leader-side goroutine has returned.
func (d *memDialer) Wait() { d.wg.Wait() }

// conn is what both stream kinds share: a cut signal and the server's end.
type conn struct {
	cut       chan struct{} // closed when the connection breaks
	cutOnce   sync.Once
	served    chan struct{} // closed when the server handler returned
	serverErr error         // the handler's result, set before served closes
}

func newConn() *conn {
	return &conn{cut: make(chan struct{}), served: make(chan struct{})}
}

func (c *conn) cutNow() { c.cutOnce.Do(func() { close(c.cut) }) }

// endErr is what the client sees once the server handler returned: like
// gRPC, the error's text survives but not its identity.
func (c *conn) endErr() error {
	if c.serverErr == nil {
		return io.EOF
	}
	return fmt.Errorf("inmem: stream ended by server: %v", c.serverErr)
}

// register tracks c until the server handler returns and breaks it when ctx
// (the client's) ends, as a cancelled gRPC call does. The returned context is
// the server handler's: it ends when the connection breaks.
func (d *memDialer) register(ctx context.Context, c *conn) context.Context {
	d.conns[c] = struct{}{}
	sctx, cancel := context.WithCancel(context.Background())
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer cancel()
		select {
		case <-ctx.Done():
			c.cutNow()
		case <-c.cut:
		case <-c.served:
		}
	}()
	return sctx
}

func (d *memDialer) finish(c *conn, err error) {
	c.serverErr = err
	close(c.served)
	d.mu.Lock()
	delete(d.conns, c)
	d.mu.Unlock()
}

// Replicate implements Dialer.
func (d *memDialer) Replicate(ctx context.Context) (FollowerStream, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.leader
	if l == nil {
		return nil, errors.New("inmem: leader unreachable")
	}
	d.replicates.Add(1)
	p := &pipe{
		conn:       newConn(),
		toLeader:   make(chan *peerpb.FollowerMessage),
		toFollower: make(chan *peerpb.LeaderMessage),
		sendClosed: make(chan struct{}),
	}
	sctx := d.register(ctx, p.conn)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		err := l.Serve(sctx, leaderEnd{p})
		if err != nil {
			d.serveErrs <- err
		}
		d.finish(p.conn, err)
	}()
	return followerEnd{p}, nil
}

// pipe is one replication stream.
type pipe struct {
	*conn
	toLeader      chan *peerpb.FollowerMessage
	toFollower    chan *peerpb.LeaderMessage
	sendClosed    chan struct{}
	closeSendOnce sync.Once
}

type followerEnd struct{ p *pipe }

func (f followerEnd) Send(m *peerpb.FollowerMessage) error {
	select {
	case f.p.toLeader <- proto.Clone(m).(*peerpb.FollowerMessage):
		return nil
	case <-f.p.cut:
		return errCut
	case <-f.p.served:
		return f.p.endErr()
	}
}

func (f followerEnd) Recv() (*peerpb.LeaderMessage, error) {
	// The channel is unbuffered: a message the leader sent before its
	// handler returned has been received, so served never hides one.
	select {
	case m := <-f.p.toFollower:
		return m, nil
	case <-f.p.cut:
		return nil, errCut
	case <-f.p.served:
		return nil, f.p.endErr()
	}
}

func (f followerEnd) CloseSend() error {
	f.p.closeSendOnce.Do(func() { close(f.p.sendClosed) })
	return nil
}

type leaderEnd struct{ p *pipe }

func (l leaderEnd) Send(m *peerpb.LeaderMessage) error {
	select {
	case l.p.toFollower <- proto.Clone(m).(*peerpb.LeaderMessage):
		return nil
	case <-l.p.cut:
		return errCut
	}
}

func (l leaderEnd) Recv() (*peerpb.FollowerMessage, error) {
	select {
	case m := <-l.p.toLeader:
		return m, nil
	case <-l.p.sendClosed:
		return nil, io.EOF
	case <-l.p.cut:
		return nil, errCut
	case <-l.p.served:
		return nil, errors.New("inmem: handler returned")
	}
}

// Snapshot implements Dialer.
func (d *memDialer) Snapshot(ctx context.Context, req *peerpb.SnapshotRequest) (SnapshotReceiver, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.leader
	if l == nil {
		return nil, errors.New("inmem: leader unreachable")
	}
	d.snapshots.Add(1)
	s := &snapPipe{conn: newConn(), chunks: make(chan *peerpb.SnapshotChunk)}
	d.register(ctx, s.conn)
	req = proto.Clone(req).(*peerpb.SnapshotRequest)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		d.finish(s.conn, l.ServeSnapshot(req, snapSender{s}))
	}()
	return snapReceiver{s}, nil
}

type snapPipe struct {
	*conn
	chunks chan *peerpb.SnapshotChunk
}

type snapSender struct{ s *snapPipe }

func (x snapSender) Send(c *peerpb.SnapshotChunk) error {
	select {
	case x.s.chunks <- proto.Clone(c).(*peerpb.SnapshotChunk):
		return nil
	case <-x.s.cut:
		return errCut
	}
}

type snapReceiver struct{ s *snapPipe }

func (x snapReceiver) Recv() (*peerpb.SnapshotChunk, error) {
	select {
	case c := <-x.s.chunks:
		return c, nil
	case <-x.s.cut:
		return nil, errCut
	case <-x.s.served:
		return nil, x.s.endErr()
	}
}

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

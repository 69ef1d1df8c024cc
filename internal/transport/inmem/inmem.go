// Package inmem is an in-memory network for the replication streams of
// package transport, for tests of any package: named endpoints, a dialer per
// (from, to) pair, and faults — partitions, cut connections, and a per-link
// hook that drops, delays or reorders single messages or cuts the
// connection one travels on, drawing from a random source seeded per link.
//
// A server is anything with the leader's two handlers (Server;
// *replication.Leader is one). Network.Listen puts one at a name;
// Network.Dialer(from, to) gives the node named from a transport.Dialer to
// it. Every stream call runs the handler on a goroutine of its own, like a
// gRPC server, and every message is cloned (proto.Clone) on its way, as a
// wire would: neither side ever sees the other's memory.
//
// # What a stream promises
//
//   - Messages arrive in the order they were sent unless a hook says
//     otherwise (Action.Reorder).
//   - When a handler returns, the client still receives every message the
//     handler sent that was not dropped, then the handler's end: io.EOF for
//     nil, else an error with the handler's error text but not its
//     identity (as with gRPC).
//   - A cut connection (Cut, Partition, Stop, a hook's Action.Cut, or
//     the client's context ending) fails every Send and Recv on both sides at once with
//     ErrCut, losing what was in flight, and ends the handler's context.
//   - At most Config.Window messages are in flight per direction; past that
//     Send blocks until the receiver catches up (flow control).
//
// # Determinism
//
// Each directed link (from, to) has its own random source seeded from
// Config.Seed and the two names, and its hook runs for one message at a
// time in send order. So given the seed, the same sequence of messages on a
// link meets the same faults, however other links interleave with it. Run
// the test under testing/synctest and delays cost no real time: the fake
// clock jumps to the next delivery once every goroutine is blocked. Create
// the Network inside the bubble.
package inmem

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/transport"
)

// Errors a dial or a stream returns.
var (
	// ErrCut: the connection was cut (Cut, Partition, Stop, or the
	// client's context ended); what was in flight is lost.
	ErrCut = errors.New("inmem: connection cut")
	// ErrUnreachable: nothing listens at the name dialed.
	ErrUnreachable = errors.New("inmem: endpoint unreachable")
	// ErrPartitioned: the two endpoints are partitioned from each other.
	ErrPartitioned = errors.New("inmem: endpoints partitioned")
)

// Server is what an endpoint serves: the leader's side of both stream
// kinds. *replication.Leader implements it.
type Server interface {
	// Serve runs one replication stream; ctx ends when the connection is
	// cut.
	Serve(ctx context.Context, stream transport.LeaderStream) error
	// ServeSnapshot streams one snapshot.
	ServeSnapshot(req *peerpb.SnapshotRequest, out transport.SnapshotSender) error
}

// Kind names a stream kind.
type Kind int

const (
	// Replicate is the follower's replication stream.
	Replicate Kind = iota
	// Snapshot is a snapshot stream.
	Snapshot
)

func (k Kind) String() string {
	if k == Snapshot {
		return "snapshot"
	}
	return "replicate"
}

// Message is what a hook sees: one message about to travel From -> To.
type Message struct {
	From, To string
	Kind     Kind
	// Seq counts the messages offered on this directed link, from 1,
	// across all its connections.
	Seq uint64
	// Msg is the clone that will be delivered: a *peerpb.FollowerMessage,
	// *peerpb.LeaderMessage or *peerpb.SnapshotChunk. A hook may read it;
	// it must not keep it.
	Msg proto.Message
}

// Action is a hook's verdict on one message. The zero Action delivers it
// at once, in order.
type Action struct {
	// Drop loses the message: Send succeeds and nothing arrives.
	Drop bool
	// Delay holds the message back this long before it can be received.
	// Without Reorder, messages behind it wait too (a slow link keeps its
	// order).
	Delay time.Duration
	// Reorder lets later messages overtake this one while it is delayed.
	Reorder bool
	// Cut loses the message and cuts the connection it travels on, as a
	// reset would: this Send and every later Send and Recv on both sides
	// fail with ErrCut. Other connections on the link are left alone.
	Cut bool
}

// Hook decides the fate of each message on one directed link. r is the
// link's own seeded source; a hook that draws only from r keeps the run
// deterministic. A hook runs for one message at a time per link; it may
// call the Network's methods.
type Hook func(m Message, r *rand.Rand) Action

// LinkStats counts what happened on one directed link.
type LinkStats struct {
	// Replicates and Snapshots count the streams From dialed to To
	// (including refused dials).
	Replicates, Snapshots int
	// Sent counts messages offered, Dropped those a hook dropped or cut,
	// Delivered those received.
	Sent, Dropped, Delivered int
	// Cuts counts the connections a hook cut (Action.Cut).
	Cuts int
}

// Config configures a Network.
type Config struct {
	// Seed seeds every link's random source.
	Seed uint64
	// Window bounds the messages in flight per stream direction (default
	// 64).
	Window int
	// ServeDone, if set, is called with the result of every handler run
	// as soon as the handler returned, on the handler's goroutine: before
	// the client sees the stream's end, and before Close or Wait returns.
	ServeDone func(server, client string, kind Kind, err error)
}

// Network is a set of named endpoints and the links between them. Its
// methods are safe for concurrent use.
type Network struct {
	cfg Config

	mu         sync.Mutex
	servers    map[string]Server
	partitions map[[2]string]bool // normalised pairs, a < b
	conns      map[*conn]struct{}
	links      map[[2]string]*link
	// running holds, for each handler and watcher goroutine, the channel
	// closed when it ends (track, untrack). Not a sync.WaitGroup: a dial
	// may start some while Close or Wait waits (the network stays usable,
	// and a follower redials a leader that went away), and a WaitGroup
	// forbids an Add from zero during a Wait (it panics: "WaitGroup is
	// reused before previous Wait has returned").
	running map[chan struct{}]struct{}
}

// New returns an empty network.
func New(cfg Config) *Network {
	if cfg.Window <= 0 {
		cfg.Window = 64
	}
	return &Network{
		cfg:        cfg,
		servers:    map[string]Server{},
		partitions: map[[2]string]bool{},
		conns:      map[*conn]struct{}{},
		links:      map[[2]string]*link{},
		running:    map[chan struct{}]struct{}{},
	}
}

// Listen makes s the server at name, replacing any other; nil removes it.
// Open streams are left alone (they belong to the server that took them).
func (n *Network) Listen(name string, s Server) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if s == nil {
		delete(n.servers, name)
		return
	}
	n.servers[name] = s
}

// Stop is a crash of the endpoint name: nothing listens there any more and
// every connection to or from it is cut.
func (n *Network) Stop(name string) {
	n.mu.Lock()
	delete(n.servers, name)
	n.mu.Unlock()
	n.cutWhere(func(c *conn) bool { return c.client == name || c.server == name })
}

// Partition cuts every connection between a and b and refuses new ones, in
// both directions, until Heal.
func (n *Network) Partition(a, b string) {
	n.mu.Lock()
	n.partitions[pair(a, b)] = true
	n.mu.Unlock()
	n.Cut(a, b)
}

// Cut breaks every open connection between a and b (either side may have
// dialed); new dials succeed.
func (n *Network) Cut(a, b string) {
	n.cutWhere(func(c *conn) bool { return pair(c.client, c.server) == pair(a, b) })
}

// Heal removes every partition and every hook: the network is fault-free
// again. Connections cut meanwhile stay cut; clients redial.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.partitions)
	links := make([]*link, 0, len(n.links))
	for _, l := range n.links {
		links = append(links, l)
	}
	n.mu.Unlock()
	for _, l := range links {
		l.setHook(nil)
	}
}

// SetHook puts h on the directed link from -> to (nil removes it): every
// message later sent from the endpoint named from to the one named to, on
// any connection between them, meets h.
func (n *Network) SetHook(from, to string, h Hook) { n.link(from, to).setHook(h) }

// Stats returns the counts of the directed link from -> to.
func (n *Network) Stats(from, to string) LinkStats {
	l := n.link(from, to)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stats
}

// Close cuts every connection and waits until every handler of a stream
// dialed before the call has returned. The network stays usable: dials
// may go on, during Close too.
func (n *Network) Close() {
	n.cutWhere(func(*conn) bool { return true })
	n.Wait()
}

// Wait waits until every handler of a stream dialed before the call has
// returned. Streams dialed meanwhile are not waited for.
func (n *Network) Wait() {
	n.mu.Lock()
	done := make([]chan struct{}, 0, len(n.running))
	for ch := range n.running {
		done = append(done, ch)
	}
	n.mu.Unlock()
	for _, ch := range done {
		<-ch
	}
}

// track registers a goroutine about to start, for Wait; the goroutine
// calls untrack with the channel as it ends. The caller holds n.mu.
func (n *Network) track() chan struct{} {
	ch := make(chan struct{})
	n.running[ch] = struct{}{}
	return ch
}

func (n *Network) untrack(ch chan struct{}) {
	n.mu.Lock()
	delete(n.running, ch)
	n.mu.Unlock()
	close(ch)
}

func (n *Network) cutWhere(match func(*conn) bool) {
	n.mu.Lock()
	var cs []*conn
	for c := range n.conns {
		if match(c) {
			cs = append(cs, c)
		}
	}
	n.mu.Unlock()
	for _, c := range cs {
		c.cutNow(ErrCut)
	}
}

func pair(a, b string) [2]string {
	if b < a {
		a, b = b, a
	}
	return [2]string{a, b}
}

// link is one directed link's hook, random source and counts.
type link struct {
	from, to string

	hookMu sync.Mutex // held while the hook runs: one message at a time
	rand   *rand.Rand // guarded by hookMu

	mu    sync.Mutex
	hook  Hook
	seq   uint64
	stats LinkStats
}

func (n *Network) link(from, to string) *link {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := [2]string{from, to}
	l, ok := n.links[k]
	if !ok {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s\x00%s", from, to)
		l = &link{from: from, to: to, rand: rand.New(rand.NewPCG(n.cfg.Seed, h.Sum64()))}
		n.links[k] = l
	}
	return l
}

func (l *link) setHook(h Hook) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.hook = h
}

func (l *link) count(f func(*LinkStats)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(&l.stats)
}

// decide runs the hook on m. The caller holds hookMu.
func (l *link) decide(kind Kind, m proto.Message) Action {
	l.mu.Lock()
	l.seq++
	l.stats.Sent++
	seq, h := l.seq, l.hook
	l.mu.Unlock()
	if h == nil {
		return Action{}
	}
	a := h(Message{From: l.from, To: l.to, Kind: kind, Seq: seq, Msg: m}, l.rand)
	if a.Drop || a.Cut {
		l.count(func(s *LinkStats) {
			s.Dropped++
			if a.Cut {
				s.Cuts++
			}
		})
	}
	return a
}

// Dialer is one endpoint's dialer to another; it implements
// transport.Dialer.
type Dialer struct {
	n        *Network
	from, to string
}

var _ transport.Dialer = (*Dialer)(nil)

// Dialer returns the dialer that the endpoint named from uses to reach the
// one named to. from needs no server of its own.
func (n *Network) Dialer(from, to string) *Dialer { return &Dialer{n: n, from: from, to: to} }

// dial checks that d may reach its server and registers a new connection.
func (d *Dialer) dial(ctx context.Context, kind Kind) (Server, *conn, context.Context, error) {
	l, back := d.n.link(d.from, d.to), d.n.link(d.to, d.from)
	l.count(func(s *LinkStats) {
		if kind == Snapshot {
			s.Snapshots++
		} else {
			s.Replicates++
		}
	})
	n := d.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.partitions[pair(d.from, d.to)] {
		return nil, nil, nil, fmt.Errorf("%w: %s and %s", ErrPartitioned, d.from, d.to)
	}
	s := n.servers[d.to]
	if s == nil {
		return nil, nil, nil, fmt.Errorf("%w: %s", ErrUnreachable, d.to)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	// The handler is tracked from here, under n.mu with the conn, so
	// that a Close that cuts the conn also waits for its handler, though
	// serve starts it after dial returns.
	c := &conn{
		n: n, client: d.from, server: d.to, kind: kind,
		cut:     make(chan struct{}),
		served:  make(chan struct{}),
		handled: n.track(),
	}
	c.up = newWire(c, l, n.cfg.Window)
	c.down = newWire(c, back, n.cfg.Window)
	n.conns[c] = struct{}{}
	sctx, cancel := context.WithCancel(context.Background())
	// The watcher: the client's context ending cuts the connection, as a
	// cancelled gRPC call does, and a cut ends the handler's context.
	watched := n.track()
	go func() {
		defer n.untrack(watched)
		defer cancel()
		select {
		case <-ctx.Done():
			c.cutNow(fmt.Errorf("%w: %w", ErrCut, ctx.Err()))
		case <-c.cut:
		case <-c.served:
		}
	}()
	return s, c, sctx, nil
}

// serve runs a handler on its own goroutine and records its end.
func (d *Dialer) serve(c *conn, run func() error) {
	n := d.n
	go func() {
		defer n.untrack(c.handled)
		err := run()
		if n.cfg.ServeDone != nil {
			n.cfg.ServeDone(c.server, c.client, c.kind, err)
		}
		c.finish(err)
		n.mu.Lock()
		delete(n.conns, c)
		n.mu.Unlock()
	}()
}

// Replicate implements transport.Dialer.
func (d *Dialer) Replicate(ctx context.Context) (transport.FollowerStream, error) {
	s, c, sctx, err := d.dial(ctx, Replicate)
	if err != nil {
		return nil, err
	}
	d.serve(c, func() error { return s.Serve(sctx, leaderEnd{c}) })
	return followerEnd{c}, nil
}

// Snapshot implements transport.Dialer. The request is part of the call's
// setup and meets no hook; the chunks do.
func (d *Dialer) Snapshot(ctx context.Context, req *peerpb.SnapshotRequest) (transport.SnapshotReceiver, error) {
	s, c, _, err := d.dial(ctx, Snapshot)
	if err != nil {
		return nil, err
	}
	req = proto.Clone(req).(*peerpb.SnapshotRequest)
	c.up.close(io.EOF, false) // a server-streaming call sends nothing more
	d.serve(c, func() error { return s.ServeSnapshot(req, snapSender{c}) })
	return snapReceiver{c}, nil
}

// conn is one stream: two wires, a cut signal and the handler's end.
type conn struct {
	n              *Network
	client, server string
	kind           Kind
	up, down       *wire // client -> server, server -> client

	cut     chan struct{} // closed when the connection breaks
	cutOnce sync.Once
	cutErr  error // set before cut closes

	served    chan struct{} // closed when the handler returned
	serverErr error         // set before served closes

	handled chan struct{} // the handler's, for Wait (Network.track)
}

func (c *conn) cutNow(err error) {
	c.cutOnce.Do(func() {
		c.cutErr = err
		close(c.cut)
	})
}

// finish records the handler's end: the client receives what the handler
// sent, then its end; the handler's unread input is discarded.
func (c *conn) finish(err error) {
	c.serverErr = err
	close(c.served)
	c.down.close(c.endErr(), false)
	c.up.close(errors.New("inmem: handler returned"), true)
}

// endErr is what the client sees once the handler returned: like gRPC, the
// error's text survives but not its identity.
func (c *conn) endErr() error {
	if c.serverErr == nil {
		return io.EOF
	}
	return fmt.Errorf("inmem: stream ended by server: %v", c.serverErr)
}

// wire is one direction of a connection: a queue ordered by delivery time.
type wire struct {
	c      *conn
	link   *link
	window int

	mu       sync.Mutex
	q        []queued // by (at, seq)
	seq      uint64
	fifoAt   time.Time // delivery time of the last in-order message
	closed   bool      // the sender is done; after the queue, closeErr
	closeErr error
	changed  chan struct{} // closed and replaced on every change
}

type queued struct {
	at  time.Time
	seq uint64
	m   proto.Message
}

func newWire(c *conn, l *link, window int) *wire {
	return &wire{c: c, link: l, window: window, changed: make(chan struct{})}
}

// notifyLocked wakes every goroutine waiting on w. The caller holds w.mu.
func (w *wire) notifyLocked() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// close ends the sending side: Recv returns err once the queue is empty,
// or at once if discard.
func (w *wire) close(err error, discard bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed, w.closeErr = true, err
	if discard {
		w.q = nil
	}
	w.notifyLocked()
}

// send queues a clone of m under the link's hook. ended, if not nil, ends
// the wait for room (the peer is gone) with endErr.
func (w *wire) send(m proto.Message, ended <-chan struct{}, endErr func() error) error {
	if err := w.stopped(ended, endErr); err != nil {
		return err
	}
	m = proto.Clone(m)
	// Only the hook runs under hookMu; a stream has one sender at a time
	// (as with gRPC), so the wire's order is its sender's order.
	w.link.hookMu.Lock()
	a := w.link.decide(w.c.kind, m)
	w.link.hookMu.Unlock()
	if a.Cut {
		w.c.cutNow(fmt.Errorf("%w by the %s->%s hook", ErrCut, w.link.from, w.link.to))
		return w.c.cutErr
	}
	if a.Drop {
		return nil
	}
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return errors.New("inmem: send after close")
		}
		if len(w.q) < w.window {
			w.enqueueLocked(m, a)
			w.mu.Unlock()
			return nil
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-w.c.cut:
		case <-ended:
		}
		if err := w.stopped(ended, endErr); err != nil {
			return err
		}
	}
}

// stopped returns why a send must stop: the cut first (it came first, or
// the handler's end is a result of it), else the handler's end.
func (w *wire) stopped(ended <-chan struct{}, endErr func() error) error {
	select {
	case <-w.c.cut:
		return w.c.cutErr
	default:
	}
	select {
	case <-ended:
		return endErr()
	default:
		return nil
	}
}

func (w *wire) enqueueLocked(m proto.Message, a Action) {
	at := time.Now().Add(a.Delay)
	if !a.Reorder {
		if at.Before(w.fifoAt) {
			at = w.fifoAt
		}
		w.fifoAt = at
	}
	w.seq++
	q := queued{at: at, seq: w.seq, m: m}
	i, _ := slices.BinarySearchFunc(w.q, q, func(x, y queued) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return int(x.seq) - int(y.seq)
	})
	w.q = slices.Insert(w.q, i, q)
	w.notifyLocked()
}

// recv returns the next deliverable message, waiting for it.
func (w *wire) recv() (proto.Message, error) {
	for {
		select {
		case <-w.c.cut:
			return nil, w.c.cutErr
		default:
		}
		w.mu.Lock()
		var wait time.Duration
		if len(w.q) > 0 {
			wait = time.Until(w.q[0].at)
			if wait <= 0 {
				m := w.q[0].m
				w.q = w.q[1:]
				w.notifyLocked()
				w.mu.Unlock()
				w.link.count(func(s *LinkStats) { s.Delivered++ })
				return m, nil
			}
		} else if w.closed {
			err := w.closeErr
			w.mu.Unlock()
			return nil, err
		}
		ch := w.changed
		w.mu.Unlock()
		var timer *time.Timer
		var fire <-chan time.Time
		if wait > 0 {
			timer = time.NewTimer(wait)
			fire = timer.C
		}
		select {
		case <-ch:
		case <-fire:
		case <-w.c.cut:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

type followerEnd struct{ c *conn }

func (f followerEnd) Send(m *peerpb.FollowerMessage) error {
	return f.c.up.send(m, f.c.served, f.c.endErr)
}

func (f followerEnd) Recv() (*peerpb.LeaderMessage, error) {
	m, err := f.c.down.recv()
	if err != nil {
		return nil, err
	}
	return m.(*peerpb.LeaderMessage), nil
}

func (f followerEnd) CloseSend() error {
	f.c.up.close(io.EOF, false)
	return nil
}

type leaderEnd struct{ c *conn }

func (l leaderEnd) Send(m *peerpb.LeaderMessage) error { return l.c.down.send(m, nil, nil) }

func (l leaderEnd) Recv() (*peerpb.FollowerMessage, error) {
	m, err := l.c.up.recv()
	if err != nil {
		return nil, err
	}
	return m.(*peerpb.FollowerMessage), nil
}

type snapSender struct{ c *conn }

func (s snapSender) Send(m *peerpb.SnapshotChunk) error { return s.c.down.send(m, nil, nil) }

type snapReceiver struct{ c *conn }

func (s snapReceiver) Recv() (*peerpb.SnapshotChunk, error) {
	m, err := s.c.down.recv()
	if err != nil {
		return nil, err
	}
	return m.(*peerpb.SnapshotChunk), nil
}

// Package resp is tandem's one RESP connection layer, and the data node's
// front end on it.
//
// Every RESP endpoint tandem has (the data node, the orchestrator's
// Sentinel endpoint, and the proxy to come) is a Server from this package:
// NewServer makes the node's, NewEndpoint any other from a FrontEnd that
// supplies only that endpoint's own commands. The layer owns everything a
// connection does before and around a command: accepting and closing,
// the framing guard and its input limits, sessions, the connection
// commands, the per-connection context and the error table. So that:
//
//   - One command cannot answer differently on two endpoints. PING, ECHO,
//     HELLO, AUTH, SELECT, CLIENT, QUIT and RESET (conncmd.go) are answered
//     here, before any front end sees the command, with the same bytes
//     everywhere; a front end declares only what genuinely differs
//     (HELLO's mode and role, and the highest protocol its replies speak).
//     An unknown command, a wrong arity and a framing violation get the
//     same texts from the one table (errors.go) on every endpoint.
//
// # What it promises
//
//   - Wire compatibility with Redis 7 for what it serves: RESP2 by default,
//     RESP3 after HELLO 3 (maps and nulls in RESP3 form) where the front
//     end's replies speak it, and Redis's error texts, so redis-cli,
//     redis-benchmark, go-redis and redis-py work unchanged.
//   - Errors become Redis replies in one table (errors.go, errorText):
//     every error reply starts with an upper-case code word (ERR, READONLY,
//     LOADING, MASTERDOWN, NOREPLICAS...) and is Redis's own text where
//     Redis has one. An internal failure never shows its Go error to the
//     client: that is logged with an incident id the reply gives.
//   - A client that leaves frees what it waits for: every blocking call a
//     front end makes for a connection (Session.Enter/Leave) gets the
//     connection's context, which ends when the client disconnects
//     (noticed while a call blocks, see watch.go), when the connection
//     closes, and on Close; a call that returns quickly pays for this with
//     two atomic operations, no goroutine or system call.
//   - Hostile input costs one connection, never the server: a malformed
//     stream gets "-ERR Protocol error: ..." and only that connection is
//     closed; a bulk longer than MaxBulkLen, more than MaxArgs arguments or
//     a command longer than MaxCommandLen is refused from its header,
//     before any of its data is buffered (see guard.go). With
//     ReplyTimeout, a client that stops reading its replies is cut off.
//   - Commands of one connection take effect in the order sent and their
//     replies come back in that order; a pipeline is flushed once. A front
//     end that can start commands ahead (FrontEnd.Start and Flush; the
//     node's PipelineBackend) has a pipeline's writes ordered at once so
//     they share commits, and anything else in it waits for the commands
//     started before it.
//   - Close closes every connection, also one a front end detached from
//     redcon (the Sentinel endpoint's and the node's subscribers, the
//     proxy's pinned connections; Session.Detach), and returns only once
//     no command runs any more.
//
// # The node's front end
//
// node.go and admin.go are the data node's commands: the commands table
// run on a Backend, the server commands (COMMAND, CONFIG, INFO, ROLE,
// WAIT, REPLICAOF, TIME, TANDEM.DURABILITY) and the Backend's own
// (CustomBackend).
//
// A panic in a Backend is a bug that may have left shared state (a leader's
// locks) broken, so it is not recovered: the process dies and failover
// takes over, as for any crash.
package resp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
)

// Config configures a Server.
type Config struct {
	// Addr is where ListenAndServe listens, e.g. ":6379".
	Addr string
	// MaxBulkLen bounds one argument, like Redis's proto-max-bulk-len;
	// 0 means DefaultMaxBulkLen (512 MiB).
	MaxBulkLen int64
	// MaxArgs bounds the arguments of one command; 0 means DefaultMaxArgs.
	MaxArgs int64
	// MaxCommandLen bounds the bytes of one command; 0 means
	// DefaultMaxCommandLen (1 GiB).
	MaxCommandLen int64
	// ReplyTimeout bounds each write to a client: a connection whose
	// write does not complete in time (a subscriber that stopped reading)
	// is closed. 0 means no bound: TCP flow control holds the connection's
	// goroutine, and only that one, as in Redis.
	ReplyTimeout time.Duration
	// WriteTimeout is the node's: how long a write's reply waits for its
	// connection's durability floor (TANDEM.DURABILITY) when the floor
	// names no timeout; 0 means 5 s. The Backend's writes have their own.
	WriteTimeout time.Duration
	// Version is the Redis version reported by HELLO; "" means "7.0.0".
	Version string
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
}

// FrontEnd is what one endpoint adds to the connection layer: its identity
// in HELLO and its own commands. Every func is called from the
// connection's goroutine, one command at a time.
type FrontEnd struct {
	// Mode is HELLO's "mode": "standalone" (the default) or "sentinel".
	Mode string
	// Role returns HELLO's "role", "master" or "replica", at the time of
	// the HELLO; nil means "master".
	Role func() string
	// MaxProto is the highest RESP version HELLO accepts, 2 or 3 (0 means
	// 3). An endpoint whose replies are RESP2 only (redcon's pub/sub)
	// says 2: HELLO 3 then gets the same NOPROTO as HELLO 4 does
	// elsewhere, and clients fall back to RESP2.
	MaxProto int
	// Serve answers a command the layer does not (args[0] is not a
	// connection command), writing exactly one reply, or returns false if
	// the endpoint does not know the command: the layer then answers
	// Redis's unknown-command error.
	Serve func(c redcon.Conn, sess *Session, args [][]byte) bool
	// Open, if set, runs for each accepted connection before its first
	// command: the place to set Session.Local.
	Open func(sess *Session)
	// Reset, if set, runs on RESET after the layer has reset its own part
	// of the session (protocol, name), before the reply.
	Reset func(sess *Session)
	// Start and Flush, both set or both nil, let a front end begin the
	// commands of a pipeline ahead of answering them (the node submits a
	// pipeline's writes at once so they share commits). Start reports
	// whether it began args and owes its reply; Flush writes the owed
	// replies, in order. The layer calls Flush before serving any command
	// Start did not take, and at the end of the pipeline.
	Start func(sess *Session, args [][]byte) bool
	Flush func(c redcon.Conn, sess *Session)
	// Queue, if set, sees every command before the layer serves it,
	// connection commands included, and reports whether it answered it
	// itself: the node queues a transaction's commands (multi.go).
	Queue func(c redcon.Conn, sess *Session, args [][]byte) bool
	// Close, if set, runs once when the connection ends, whatever the
	// reason; it must not call back into redcon.
	Close func(sess *Session)
	// Commands names the front end's commands, each with its arity
	// (commands.Spec's convention): the ones counted in INFO
	// commandstats beside the layer's connection commands (stats.go).
	Commands map[string]int
}

// Server serves RESP clients for one FrontEnd. Its methods are safe for
// concurrent use.
type Server struct {
	cfg Config
	lim limits
	fe  FrontEnd
	log *slog.Logger

	// ctx is canceled by Close, which ends the calls (writes waiting
	// for commit, WAIT) that connections are blocked in. Each session's
	// context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	nextID atomic.Uint64
	conns  sync.WaitGroup // one per connection redcon serves, until it ends or is detached

	mu     sync.Mutex
	ln     net.Listener  // nil until Serve
	served chan struct{} // closed when Serve returns
	swept  chan struct{} // closed when the sweeper (watch.go) returns
	// sweepParked is set while the sweeper waits, with no call running,
	// for enter to signal sweepWake (capacity 1).
	sweepParked atomic.Bool
	sweepWake   chan struct{}
	closed      bool
	sessions    map[uint64]*Session
	// open is every accepted connection not yet closed, also those a
	// front end detached from redcon (which then no longer closes them).
	open map[*guardConn]struct{}

	// pubw write subscribers' messages (pubsub.go), a subscriber always
	// by the same one: one for each CPU, up to 8.
	pubw []pubWriter

	// stats are the command and error counts (stats.go), slow the slow
	// log (slowlog.go).
	stats *stats
	slow  *slowLog
}

// NewEndpoint returns a server for the front end fe; call Serve or
// ListenAndServe to start it.
func NewEndpoint(cfg Config, fe FrontEnd) *Server {
	if fe.Serve == nil {
		panic("resp: FrontEnd.Serve is nil")
	}
	if (fe.Start == nil) != (fe.Flush == nil) {
		panic("resp: FrontEnd.Start and Flush must be set together")
	}
	if fe.Mode == "" {
		fe.Mode = "standalone"
	}
	if fe.MaxProto == 0 {
		fe.MaxProto = 3
	}
	if fe.MaxProto != 2 && fe.MaxProto != 3 {
		panic("resp: FrontEnd.MaxProto must be 2 or 3")
	}
	if cfg.MaxBulkLen <= 0 {
		cfg.MaxBulkLen = DefaultMaxBulkLen
	}
	if cfg.MaxArgs <= 0 {
		cfg.MaxArgs = DefaultMaxArgs
	}
	if cfg.MaxCommandLen <= 0 {
		cfg.MaxCommandLen = DefaultMaxCommandLen
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 5 * time.Second
	}
	if cfg.Version == "" {
		cfg.Version = "7.0.0"
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	arity := maps.Clone(fe.Commands)
	if arity == nil {
		arity = map[string]int{}
	}
	for name, cc := range connCmds {
		arity[name] = cc.arity
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		stats:    newStats(arity),
		slow:     newSlowLog(),
		cfg:      cfg,
		lim:      limits{maxBulk: cfg.MaxBulkLen, maxArgs: cfg.MaxArgs, maxCommand: cfg.MaxCommandLen},
		fe:       fe,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		sessions: make(map[uint64]*Session),
		open:     make(map[*guardConn]struct{}),
		pubw:     make([]pubWriter, min(max(runtime.NumCPU(), 1), 8)),
	}
}

// ListenAndServe listens on Config.Addr and serves until Close.
func (s *Server) ListenAndServe() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("resp: listen %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ln)
}

// Serve serves connections from ln until Close, and closes ln. It returns
// nil after Close, and net.ErrClosed if Close came first.
func (s *Server) Serve(ln net.Listener) error {
	gl := &guardListener{Listener: ln, lim: s.lim, log: s.log, srv: s}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("resp: server is already serving")
	}
	s.ln = gl
	s.served = make(chan struct{})
	s.swept = make(chan struct{})
	s.sweepWake = make(chan struct{}, 1)
	s.mu.Unlock()
	defer close(s.served)
	go s.sweep()

	rs := redcon.NewServerNetwork(ln.Addr().Network(), ln.Addr().String(), s.serveCommand, s.accept, s.closeConn)
	var backoff time.Duration
	rs.AcceptError = func(err error) {
		// Out of file descriptors and the like: log and back off instead
		// of spinning, as net/http does.
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		s.log.Warn("resp: accept failed", "err", err, "retry_in", backoff)
		time.Sleep(backoff)
	}
	return rs.Serve(gl)
}

// Addr returns the address the server listens on, or nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Clients returns the number of open client connections, those detached
// from redcon (subscribers) included.
func (s *Server) Clients() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.open)
}

// Close stops accepting, closes every connection, cancels the calls in
// progress, and waits until no connection runs a command any more, so
// what the front end serves from may be shut down after it returns.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ln, served, swept := s.ln, s.served, s.swept
	open := make([]*guardConn, 0, len(s.open))
	for g := range s.open {
		open = append(open, g)
	}
	s.mu.Unlock()
	s.cancel()
	if ln == nil {
		return nil
	}
	err := ln.Close()
	// redcon closes the connections it serves as its accept loop ends,
	// but not those detached from it.
	for _, g := range open {
		g.Close()
	}
	<-served
	s.conns.Wait()
	<-swept
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// track records an accepted connection until it closes; false means the
// server is closed and the connection must not be served.
func (s *Server) track(g *guardConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.open[g] = struct{}{}
	return true
}

func (s *Server) untrack(g *guardConn) {
	s.mu.Lock()
	delete(s.open, g)
	s.mu.Unlock()
}

// accept runs in redcon's accept loop for each new connection.
func (s *Server) accept(conn redcon.Conn) bool {
	sess := &Session{
		id:      s.nextID.Add(1),
		addr:    conn.RemoteAddr(),
		created: time.Now(),
		srv:     s,
		conn:    conn,
	}
	sess.counted.sess = sess
	sess.ctx, sess.cancel = context.WithCancel(context.WithValue(s.ctx, sessionKey{}, sess))
	sess.proto.Store(2)
	if nc := conn.NetConn(); nc != nil {
		sess.laddr = nc.LocalAddr().String()
		sess.g, _ = nc.(*guardConn)
	}
	if s.fe.Open != nil {
		s.fe.Open(sess)
	}
	conn.SetContext(sess)
	s.conns.Add(1)
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	return true
}

// closeConn runs when redcon's goroutine for a connection ends: the
// connection closed, whatever the reason, or a front end detached it
// (redcon.PubSub). redcon calls it holding its own lock, so it must not
// call back into redcon.
func (s *Server) closeConn(conn redcon.Conn, err error) {
	sess, _ := conn.Context().(*Session)
	if sess == nil {
		return
	}
	if sess.detached {
		// A front end serves the connection from now on (Detach), and
		// ends the session when it closes.
		s.conns.Done()
		return
	}
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
	sess.cancel()
	if s.fe.Close != nil {
		s.fe.Close(sess)
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errClientClosed) {
		s.log.Debug("resp: connection ended", "client", sess.id, "remote", sess.addr, "err", err)
	}
	s.conns.Done()
}

// serveCommand is redcon's handler. redcon calls it from the connection's
// goroutine for each command it parsed from one read, in order, and
// flushes the replies after the last. When the front end can start
// commands ahead, serveCommand takes the rest of that pipeline at once so
// that, for the node, its writes share commits.
func (s *Server) serveCommand(conn redcon.Conn, cmd redcon.Command) {
	sess := conn.Context().(*Session)
	if sess.quit {
		return // redcon still hands over the commands after QUIT
	}
	sess.g.payOwed() // the reply of the write before, if owed (owed.go)
	// Every reply below is written through the session's counting conn
	// (stats.go), which counts the error replies.
	sess.counted.Conn = conn
	conn = &sess.counted
	// A stand-in's arguments (bigarg.go).
	cmd.Args = sess.g.takeBig(cmd.Args)
	if s.fe.Start == nil || len(conn.PeekPipeline()) == 0 || sess.reply != replyOn {
		// The one command of this read (redcon's buffer is empty), or a
		// connection whose replies CLIENT REPLY silences: not started
		// ahead. A lone write's reply may be written for the connection
		// (owed.go), never a silenced one's.
		sess.alone = sess.reply == replyOn
		s.serveOne(conn, sess, cmd.Args)
		sess.alone = false
		if h := sess.handoff; h != nil {
			// Detached: redcon handed the rest of the read to the
			// detached connection.
			sess.handoff = nil
			h(nil)
		}
		return
	}
	rest := conn.ReadPipeline()
	s.servePipelined(conn, sess, cmd.Args)
	for i, c := range rest {
		if sess.quit {
			break
		}
		if h := sess.handoff; h != nil {
			sess.handoff = nil
			for j := i; j < len(rest); j++ {
				sess.g.takeBigCmd(&rest[j])
			}
			h(rest[i:])
			return
		}
		sess.last = i == len(rest)-1
		s.servePipelined(conn, sess, sess.g.takeBig(c.Args))
		sess.last = false
	}
	s.fe.Flush(conn, sess)
	if h := sess.handoff; h != nil {
		sess.handoff = nil
		h(nil)
	}
}

// Detach takes the connection from redcon for the front end (a
// subscriber, a proxied connection pinned to a node): once the command
// being served returns, run is called on a goroutine of its own with the
// detached connection and the commands of the client's pipeline that
// redcon had already handed over (serve them first; dc.ReadCommand
// returns the rest), and serves the connection until it returns. Then
// the connection is closed and the session ends. Replies written before
// are in dc's buffer: run flushes them. Only the connection's goroutine
// may call it, from FrontEnd.Serve, once.
func (sess *Session) Detach(conn redcon.Conn, run func(dc redcon.DetachedConn, backlog []redcon.Command)) {
	if sess.detached {
		panic("resp: connection detached twice")
	}
	sess.detached = true
	var dc redcon.DetachedConn = conn.Detach()
	if sess.g != nil {
		dc = bigDetached{dc, sess.g} // its reads take stand-ins' arguments (bigarg.go)
	}
	srv := sess.srv
	// Served until it closes: Close waits for it as for a connection
	// redcon serves (closeConn counts redcon's part done).
	srv.conns.Add(1)
	sess.handoff = func(backlog []redcon.Command) {
		go func() {
			defer srv.conns.Done()
			run(dc, backlog)
			dc.Close()
			srv.mu.Lock()
			delete(srv.sessions, sess.id)
			srv.mu.Unlock()
			sess.cancel()
		}()
	}
}

// servePipelined lets the front end start a command and owe its reply,
// or, for what it does not start (a connection command among them),
// has the owed replies written first and then serves the command, so that
// replies keep their order and the command sees every write before it.
func (s *Server) servePipelined(conn redcon.Conn, sess *Session, args [][]byte) {
	if _, conncmd := lookupConnCmd(args[0]); !conncmd && sess.reply == replyOn {
		t0 := time.Now()
		if s.fe.Start(sess, args) {
			d := time.Since(t0)
			s.stats.called(s.stats.lookup(args), d)
			s.slow.observe(d, args, sess)
			return
		}
	}
	s.fe.Flush(conn, sess)
	s.serveOne(conn, sess, args)
}

// serveOne runs one command to completion and writes its reply, and
// counts it (stats.go).
func (s *Server) serveOne(conn redcon.Conn, sess *Session, args [][]byte) {
	conn = sess.silenced(conn, args) // CLIENT REPLY (reply.go)
	cs, errs, t0, blocked := s.stats.lookup(args), sess.errs, time.Now(), sess.blockedNs.Load()
	s.dispatch(conn, sess, args)
	d := time.Since(t0) - time.Duration(sess.blockedNs.Load()-blocked)
	s.stats.served(cs, d, sess.errs != errs, len(args))
	s.slow.observe(d, args, sess)
}

// dispatch serves one command: a connection command here, anything else
// by the front end.
func (s *Server) dispatch(conn redcon.Conn, sess *Session, args [][]byte) {
	if s.fe.Queue != nil && s.fe.Queue(conn, sess, args) {
		return
	}
	if cc, ok := lookupConnCmd(args[0]); ok {
		if !cc.arityOK(len(args)) {
			conn.WriteError(errArity(cc.name))
			return
		}
		cc.fn(s, conn, sess, args)
		return
	}
	if !s.fe.Serve(conn, sess, args) {
		conn.WriteError(unknownCommand(args))
	}
}

// Session is one client connection's state. The connection's goroutine
// owns it; the fields other connections read (CLIENT LIST) are guarded.
type Session struct {
	// Local is the front end's own state for the connection (set by
	// FrontEnd.Open); only the connection's goroutine touches it.
	Local any

	id      uint64
	addr    string
	laddr   string
	created time.Time
	proto   atomic.Int32 // 2 or 3
	// ctx is the context of every blocking call made for the connection.
	// cancel ends it when the client leaves (seen by the watch, see
	// watch.go), breaks the protocol, or the connection is closed; Close
	// ends it through the server's context.
	ctx    context.Context
	cancel context.CancelFunc
	// The watch of a call that blocks (watch.go): call is the call's
	// state (enter, leave), seen the sweeper's last look at it (only the
	// sweeper touches it), watchStop stops the watch; watchMu orders
	// starting a watch against leave. g is nil only for a connection not
	// accepted through the guard.
	call      atomic.Uint64
	seen      uint64
	watchMu   sync.Mutex
	watchStop func()
	g         *guardConn
	// conn is the connection's redcon side, whose buffered replies a
	// call that blocks flushes first (BlockedCall).
	conn redcon.Conn
	// quit is set by QUIT to stop serving the rest of the pipeline.
	quit bool
	// alone is set while the connection's goroutine serves the one
	// command of a read (owed.go), last while it serves the last command
	// of a pipelined read (an EXEC's reply may be owed after the replies
	// before it are flushed: multi.go).
	alone, last bool
	// sub is set once the connection is detached for pub/sub (see
	// pubsub.go), by the connection's goroutine before the subscriber's
	// goroutines start; never reset.
	sub *subscriber
	// detached: a front end took the connection from redcon (Detach);
	// handoff starts serving it once the current command returns.
	detached bool
	handoff  func(backlog []redcon.Command)
	srv      *Server

	// block is the connection's blocked call (CLIENT UNBLOCK, unblock.go).
	block blockState
	// reply is CLIENT REPLY's mode (reply.go); the connection's
	// goroutine's (or its subscriber reader's) only.
	reply int
	// counted is the conn the session's commands write to, and errs the
	// error replies written through it (stats.go); the connection's
	// goroutine's only.
	counted errCountingConn
	errs    uint64
	// blockedNs sums the time the session's calls spent blocked
	// (BlockedCall), which the time a command is counted to take leaves
	// out.
	blockedNs atomic.Int64

	mu      sync.Mutex
	name    string
	libName string
	libVer  string
}

// ID returns the client id (CLIENT ID), unique within the server.
func (s *Session) ID() uint64 { return s.id }

// Proto returns the RESP version in use, 2 or 3.
func (s *Session) Proto() int { return int(s.proto.Load()) }

// Name returns the name set by CLIENT SETNAME or HELLO SETNAME.
func (s *Session) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

// Enter marks the start of a call that may block (a write waiting for
// commit, a forwarded command) and returns the connection's context to
// make it with; Leave must follow when the call returns, before the
// connection reads again. See watch.go.
func (s *Session) Enter() context.Context { return s.enter() }

// Leave marks the end of the call Enter started.
func (s *Session) Leave() { s.leave() }

func (s *Session) proto3() bool { return s.proto.Load() == 3 }

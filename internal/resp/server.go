// Package resp is tandem's Redis protocol front end: it accepts client
// connections (on github.com/tidwall/redcon), keeps one Session per
// connection, answers connection and server commands itself (PING, HELLO,
// CLIENT, COMMAND, INFO, WAIT, REPLICAOF...), and hands data commands from
// the commands table to a Backend.
//
// # What it promises
//
//   - Wire compatibility with Redis 7 for what it serves: RESP2 by default,
//     RESP3 after HELLO 3 (maps and nulls in RESP3 form), and Redis's error
//     texts, so redis-cli, redis-benchmark and go-redis work unchanged.
//   - Errors become Redis replies in one table (errors.go, errorText):
//     every error reply starts with an upper-case code word (ERR, READONLY,
//     LOADING, MASTERDOWN, NOREPLICAS...) and is Redis's own text where
//     Redis has one. An internal failure never shows its Go error to the
//     client: that is logged with an incident id the reply gives.
//   - A client that leaves frees what it waits for: every Backend call of a
//     connection gets the connection's context, which ends when the client
//     disconnects (noticed while a call blocks, see watch.go), when the
//     connection closes, and on Close; a call that returns quickly pays
//     for this with two atomic operations, no goroutine or system call.
//   - Hostile input costs one connection, never the server: a malformed
//     stream gets "-ERR Protocol error: ..." and only that connection is
//     closed; a bulk longer than MaxBulkLen, more than MaxArgs arguments or
//     a command longer than MaxCommandLen is refused from its header,
//     before any of its data is buffered (see guard.go).
//   - Commands of one connection take effect in the order sent and their
//     replies come back in that order; a pipeline is flushed once. With a
//     PipelineBackend the writes of a pipeline are ordered at once and
//     share commits, and anything else in it waits for the writes before
//     it, so a pipeline costs about one commit, not one per write.
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
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
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
	// WriteTimeout is how long a write's reply waits for its connection's
	// durability floor (TANDEM.DURABILITY) when the floor names no
	// timeout; 0 means 5 s. The Backend's writes have their own.
	WriteTimeout time.Duration
	// Version is the Redis version reported by HELLO; "" means "7.0.0".
	Version string
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
}

// CustomBackend is an optional Backend capability for commands neither
// this package nor the commands table knows (tandem's own TANDEM.*
// commands). Custom returns ok false to let the command be unknown. A
// failure is returned as err, never as an error reply: the server words
// it from its error table (errors.go), as for any other command, so a
// Backend sentinel (ErrNotLeader, ...) or a *commands.ArityError gets its
// one reply and an internal error's text goes to the log, not the client.
type CustomBackend interface {
	Custom(ctx context.Context, args [][]byte) (reply commands.Reply, ok bool, err error)
}

// PipelineBackend is an optional Backend capability that lets the writes
// of one connection's pipeline share commits instead of waiting for one
// commit each.
//
// Submit orders a write command before it returns: it runs the command
// against the leader's view (committed data plus every write submitted
// before, from any connection) and assigns its LSN. The returned wait
// blocks until that write is committed and applied, and returns what
// Backend.Write would have returned; errors (ErrReadOnly, bad arguments)
// may come from either step but are always reported by wait. Writes
// submitted one after another are applied in that order.
//
// ctx is the connection's (see Backend): the returned wait must also
// return soon after it ends.
//
// With it, a pipeline of n writes costs about one commit instead of n, as
// with Redis; reads and server commands in the pipeline still see every
// write before them, because the server waits for the pending writes
// before running anything else.
type PipelineBackend interface {
	Submit(ctx context.Context, spec *commands.Spec, args [][]byte) (wait func() (commands.Reply, uint64, error))
}

// Server serves RESP clients. Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	lim    limits
	b      Backend
	custom CustomBackend   // nil when b has no custom commands
	pipe   PipelineBackend // nil when b cannot submit writes ahead
	log    *slog.Logger

	// ctx is canceled by Close, which ends Backend calls (writes waiting
	// for commit, WAIT) that connections are blocked in. Each session's
	// context derives from it.
	ctx    context.Context
	cancel context.CancelFunc

	nextID atomic.Uint64
	conns  sync.WaitGroup // one per accepted connection until it is closed

	mu       sync.Mutex
	ln       net.Listener  // nil until Serve
	served   chan struct{} // closed when Serve returns
	swept    chan struct{} // closed when the sweeper (watch.go) returns
	closed   bool
	sessions map[uint64]*Session
}

// NewServer returns a server for b; call Serve or ListenAndServe to start it.
func NewServer(cfg Config, b Backend) *Server {
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
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:      cfg,
		lim:      limits{maxBulk: cfg.MaxBulkLen, maxArgs: cfg.MaxArgs, maxCommand: cfg.MaxCommandLen},
		b:        b,
		log:      log,
		ctx:      ctx,
		cancel:   cancel,
		sessions: make(map[uint64]*Session),
	}
	s.custom, _ = b.(CustomBackend)
	s.pipe, _ = b.(PipelineBackend)
	return s
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
	gl := &guardListener{Listener: ln, lim: s.lim, log: s.log}
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

// Close stops accepting, closes every connection, cancels the Backend calls
// in progress, and waits until no connection runs a command any more, so
// the Backend may be shut down after it returns.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	ln, served, swept := s.ln, s.served, s.swept
	s.mu.Unlock()
	s.cancel()
	if ln == nil {
		return nil
	}
	err := ln.Close()
	<-served // redcon closes every connection as its accept loop ends
	s.conns.Wait()
	<-swept
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// accept runs in redcon's accept loop for each new connection.
func (s *Server) accept(conn redcon.Conn) bool {
	sess := &Session{
		id:      s.nextID.Add(1),
		addr:    conn.RemoteAddr(),
		created: time.Now(),
	}
	sess.ctx, sess.cancel = context.WithCancel(s.ctx)
	sess.proto.Store(2)
	if nc := conn.NetConn(); nc != nil {
		sess.laddr = nc.LocalAddr().String()
		sess.g, _ = nc.(*guardConn)
	}
	conn.SetContext(sess)
	s.conns.Add(1)
	s.mu.Lock()
	s.sessions[sess.id] = sess
	s.mu.Unlock()
	return true
}

// closeConn runs when a connection ends, whatever the reason. redcon calls
// it holding its own lock, so it must not call back into redcon.
func (s *Server) closeConn(conn redcon.Conn, err error) {
	sess, _ := conn.Context().(*Session)
	if sess == nil {
		return
	}
	s.mu.Lock()
	delete(s.sessions, sess.id)
	s.mu.Unlock()
	sess.cancel()
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, errClientClosed) {
		s.log.Debug("resp: connection ended", "client", sess.id, "remote", sess.addr, "err", err)
	}
	s.conns.Done()
}

// serveCommand is redcon's handler. redcon calls it from the connection's
// goroutine for each command it parsed from one read, in order, and
// flushes the replies after the last. When the Backend can submit writes
// ahead, serveCommand takes the rest of that pipeline at once so that its
// writes share commits.
func (s *Server) serveCommand(conn redcon.Conn, cmd redcon.Command) {
	sess := conn.Context().(*Session)
	if sess.quit {
		return // redcon still hands over the commands after QUIT
	}
	if s.pipe == nil || len(conn.PeekPipeline()) == 0 {
		s.serveOne(conn, sess, cmd.Args)
		return
	}
	rest := conn.ReadPipeline()
	s.servePipelined(conn, sess, cmd.Args)
	for _, c := range rest {
		if sess.quit {
			break
		}
		s.servePipelined(conn, sess, c.Args)
	}
	s.drain(conn, sess)
}

// servePipelined submits a write and leaves its reply pending, or, for
// anything else, writes the pending replies first and then serves the
// command, so that replies keep their order and the command sees every
// write before it.
func (s *Server) servePipelined(conn redcon.Conn, sess *Session, args [][]byte) {
	if spec, ok := commands.Lookup(args[0]); ok && spec.Flags&commands.FlagWrite != 0 && commands.Check(spec, args) == nil {
		ctx := sess.enter()
		wait := s.pipe.Submit(ctx, spec, args)
		sess.leave()
		sess.pending = append(sess.pending, pendingWrite{spec: spec, wait: wait})
		return
	}
	s.drain(conn, sess)
	s.serveOne(conn, sess, args)
}

// pendingWrite is a submitted write whose reply is not written yet.
type pendingWrite struct {
	spec *commands.Spec
	wait func() (commands.Reply, uint64, error)
}

// drain waits for the pending writes in order and writes their replies.
func (s *Server) drain(conn redcon.Conn, sess *Session) {
	for i := range sess.pending {
		p := &sess.pending[i]
		sess.enter()
		reply, lsn, err := p.wait() // made with the session's context
		sess.leave()
		s.writeResult(conn, sess, p.spec, reply, lsn, err)
		*p = pendingWrite{}
	}
	sess.pending = sess.pending[:0]
}

// serveOne runs one command to completion and writes its reply.
func (s *Server) serveOne(conn redcon.Conn, sess *Session, args [][]byte) {
	if spec, ok := commands.Lookup(args[0]); ok {
		s.serveData(conn, sess, spec, args)
		return
	}
	if sc, ok := lookupServerCmd(args[0]); ok {
		if !sc.arityOK(len(args)) {
			conn.WriteError(errArity(sc.name))
			return
		}
		sc.fn(s, conn, sess, args)
		return
	}
	if s.custom != nil {
		ctx := sess.enter()
		reply, ok, err := s.custom.Custom(ctx, args)
		sess.leave()
		if err != nil {
			conn.WriteError(s.errorText(err, sess, strings.ToLower(string(args[0]))))
			return
		}
		if ok {
			writeReply(conn, reply, sess.proto3())
			return
		}
	}
	conn.WriteError(unknownCommand(args))
}

// serveData runs a command from the commands table on the Backend.
func (s *Server) serveData(conn redcon.Conn, sess *Session, spec *commands.Spec, args [][]byte) {
	if err := commands.Check(spec, args); err != nil {
		conn.WriteError(s.errorText(err, sess, spec.Name))
		return
	}
	ctx := sess.enter()
	if spec.Flags&commands.FlagWrite != 0 {
		reply, lsn, err := s.b.Write(ctx, spec, args)
		sess.leave()
		s.writeResult(conn, sess, spec, reply, lsn, err)
		return
	}
	reply, err := s.b.Read(ctx, spec, args)
	sess.leave()
	s.writeResult(conn, sess, spec, reply, 0, err)
}

// writeResult records a write's LSN in the session, holds a committed
// write's reply until the connection's durability floor holds, and writes
// the reply.
func (s *Server) writeResult(conn redcon.Conn, sess *Session, spec *commands.Spec, reply commands.Reply, lsn uint64, err error) {
	if lsn != 0 {
		sess.lastWriteLSN = lsn
	}
	if err == nil {
		err = s.awaitFloor(sess, lsn)
	}
	if err != nil {
		conn.WriteError(s.errorText(err, sess, spec.Name))
		return
	}
	writeReply(conn, reply, sess.proto3())
}

// Session is one client connection's state. The connection's goroutine
// owns it; the fields other connections read (CLIENT LIST) are guarded.
type Session struct {
	id      uint64
	addr    string
	laddr   string
	created time.Time
	proto   atomic.Int32 // 2 or 3
	// ctx is the context of every Backend call made for the connection.
	// cancel ends it when the client leaves (seen by the watch, see
	// watch.go), breaks the protocol, or the connection is closed; Close
	// ends it through the server's context.
	ctx    context.Context
	cancel context.CancelFunc
	// The watch of a Backend call that blocks (watch.go): call is the
	// call's state (enter, leave), seen the sweeper's last look at it
	// (only the sweeper touches it), watchStop stops the watch; watchMu
	// orders starting a watch against leave. g is nil only for a
	// connection not accepted through the guard.
	call      atomic.Uint64
	seen      uint64
	watchMu   sync.Mutex
	watchStop func()
	g         *guardConn
	// lastWriteLSN is the LSN of this connection's last logged write: what
	// WAIT waits for. Only the connection's goroutine touches it.
	lastWriteLSN uint64
	// durability is the connection's floor (TANDEM.DURABILITY, see
	// durability.go). Only the connection's goroutine touches it.
	durability durabilityFloor
	// pending holds the submitted writes of the pipeline being served
	// (PipelineBackend); quit is set by QUIT to stop serving it.
	pending []pendingWrite
	quit    bool

	mu      sync.Mutex
	name    string
	libName string
	libVer  string
}

// ID returns the client id (CLIENT ID), unique within the server.
func (s *Session) ID() uint64 { return s.id }

// Proto returns the RESP version in use, 2 or 3.
func (s *Session) Proto() int { return int(s.proto.Load()) }

// LastWriteLSN returns the LSN of the session's last logged write, 0 if
// none. Only the connection's own goroutine may call it.
func (s *Session) LastWriteLSN() uint64 { return s.lastWriteLSN }

// Name returns the name set by CLIENT SETNAME or HELLO SETNAME.
func (s *Session) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

func (s *Session) proto3() bool { return s.proto.Load() == 3 }

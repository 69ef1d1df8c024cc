package resp

import (
	"context"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

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

// QueueingBackend is an optional CustomBackend capability: the custom
// commands a transaction may queue, as Redis queues SCRIPT and FUNCTION
// KILL and HELP inside MULTI. Queueable says whether args is one (ok)
// and, if so, the input error that refuses it at queuing time (arity, an
// unknown subcommand: the transaction is then discarded at EXEC, as
// Redis does), nil to queue it. A queued custom command is served at its
// place in EXEC's reply, after the transaction's data commands ran, as a
// queued connection command is; the others (TANDEM.*) stay refused as
// unknown inside MULTI.
type QueueingBackend interface {
	Queueable(args [][]byte) (ok bool, err error)
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

// BatchBackend is an optional PipelineBackend capability: SubmitBatch is
// Submit for consecutive writes of one pipeline at once, returning one
// wait for them all: wait(i) is command i's answer, called once per
// command, in order (one function for the batch, not one per command: a
// closure each was an allocation per pipelined write). The node makes
// them one log entry (one proposal, one commit wait and one wake-up for
// all), each command seeing the writes before it, as a transaction's
// would; a command's input error is its own reply and leaves the others'
// writes.
type BatchBackend interface {
	SubmitBatch(ctx context.Context, cmds []TxCommand) (wait func(i int) (commands.Reply, uint64, error))
}

// A pipeline's writes are gathered into batches of at most
// maxBatchCmds commands and about maxBatchBytes of arguments: a bigger
// pipeline is several entries, so that one entry stays far below a log
// entry's bound and its followers get it in pieces.
const (
	maxBatchCmds  = 256
	maxBatchBytes = 1 << 20
)

// node is the data node's front end: the commands table run on a
// Backend, the server commands (admin.go) and the Backend's own.
type node struct {
	srv    *Server
	b      Backend
	custom CustomBackend   // nil when b has no custom commands
	queues QueueingBackend // nil when no custom command may be queued in MULTI
	pipe   PipelineBackend // nil when b cannot submit writes ahead
	batch  BatchBackend    // nil when b cannot submit them as one
	then   ThenBackend     // nil when b cannot answer writes for the connection
	pos    PositionBackend // nil when b has no read policies
	tx     TxBackend       // nil when b has no transactions
	txThen TxThenBackend   // nil when b cannot answer an EXEC for the connection
	ps     PubSubBackend   // nil when b has no pub/sub
}

// nodeConn is a node connection's own state (Session.Local). Only the
// connection's goroutine touches it.
type nodeConn struct {
	// lastWriteLSN is the LSN of this connection's last logged write: what
	// WAIT waits for.
	lastWriteLSN uint64
	// durability is the connection's floor (TANDEM.DURABILITY, see
	// durability.go).
	durability durabilityFloor
	// pending holds the submitted writes of the pipeline being served
	// (PipelineBackend). With a BatchBackend, the writes started since
	// the last batch went out are unsent (their pending entries, at
	// unsentAt, get their waits when it goes), unsentBytes their
	// arguments' size.
	pending     []pendingWrite
	unsent      []TxCommand
	unsentAt    []int
	unsentBytes int
	// reads is the read policy, positions and user (reads.go).
	reads sessionReads
	// tx is the connection's MULTI and WATCHes (multi.go).
	tx txState
	// owedDone answers the connection's owed write (serveThen), made
	// once per connection; owedSpec is that write's command, set by the
	// connection's goroutine before it hands the write over and read by
	// the reply's writer (at most one reply is owed: owed.go).
	owedDone func(commands.Reply, uint64, error)
	owedSpec *commands.Spec
	// execDone answers the connection's owed EXEC (execThen), made once
	// per connection; execQueue and execTail are that EXEC's queue and
	// owed tail, set by the connection's goroutine only while no reply
	// is owed, as owedSpec is.
	execDone  func(TxResult, error)
	execQueue []queuedCmd
	execTail  *owedTail
}

func nodeState(sess *Session) *nodeConn { return sess.Local.(*nodeConn) }

// NewServer returns the data node's RESP server for b; call Serve or
// ListenAndServe to start it.
func NewServer(cfg Config, b Backend) *Server {
	n := &node{b: b}
	n.custom, _ = b.(CustomBackend)
	n.queues, _ = b.(QueueingBackend)
	n.pipe, _ = b.(PipelineBackend)
	n.batch, _ = b.(BatchBackend)
	n.then, _ = b.(ThenBackend)
	n.pos, _ = b.(PositionBackend)
	n.tx, _ = b.(TxBackend)
	n.txThen, _ = b.(TxThenBackend)
	n.ps, _ = b.(PubSubBackend)
	fe := FrontEnd{
		Mode:  "standalone",
		Role:  n.role,
		Serve: n.serve,
		Open:  func(sess *Session) { sess.Local = &nodeConn{} },
		Reset: func(sess *Session) {
			nc := nodeState(sess)
			nc.durability, nc.reads = durabilityFloor{}, sessionReads{}
			nc.tx.reset()
			if sess.sub != nil {
				sess.sub.unsubscribeAll()
			}
		},
		Close:    func(sess *Session) { nodeState(sess).tx.reset() },
		Commands: map[string]int{},
	}
	for _, sp := range commands.All() {
		fe.Commands[sp.Name] = sp.Arity
	}
	for name, sc := range serverCmds {
		fe.Commands[name] = sc.arity
	}
	if n.tx != nil {
		fe.Queue = n.queue
	}
	if n.pipe != nil {
		fe.Start, fe.Flush = n.start, n.drain
	}
	n.srv = NewEndpoint(cfg, fe)
	return n.srv
}

// LastWriteLSN returns the LSN of the session's last logged write on a
// node, 0 if none. Only the connection's own goroutine may call it.
func (s *Session) LastWriteLSN() uint64 {
	if nc, ok := s.Local.(*nodeConn); ok {
		return nc.lastWriteLSN
	}
	return 0
}

// role is HELLO's role: "replica" unless ROLE says master.
func (n *node) role() string {
	if r, ok := n.b.Role().(commands.Array); ok && len(r) > 0 {
		if b, ok := r[0].(commands.Bulk); ok && string(b) != "master" {
			return "replica"
		}
	}
	return "master"
}

// serve runs a data, server or custom command to completion and writes
// its reply.
func (n *node) serve(conn redcon.Conn, sess *Session, args [][]byte) bool {
	if spec, ok := commands.Resolve(args); ok {
		n.serveData(conn, sess, spec, args)
		return true
	}
	if sc, ok := lookupServerCmd(args[0]); ok {
		if !sc.arityOK(len(args)) {
			conn.WriteError(errArity(sc.name))
			return true
		}
		sc.fn(n, conn, sess, args)
		return true
	}
	if n.custom != nil {
		ctx := sess.enter()
		reply, ok, err := n.custom.Custom(ctx, args)
		sess.leave()
		if err != nil {
			conn.WriteError(n.srv.errorText(err, sess, strings.ToLower(string(args[0]))))
			return true
		}
		if ok {
			writeReply(conn, reply, sess.proto3())
			return true
		}
	}
	return false
}

// start submits a well-formed write and leaves its reply pending.
func (n *node) start(sess *Session, args [][]byte) bool {
	if nodeState(sess).tx.active {
		return false // queued by Queue, not run
	}
	spec, ok := commands.Resolve(args)
	if !ok {
		// Not a data command (a data command, every GET of a pipeline,
		// costs no second lookup): TANDEM.TOKEN and TANDEM.USER are
		// started too. The session's position and user are read and set
		// only when replies are written (writeResult records each write's
		// position for the user then), so these run in order at drain
		// time and need not wait for the writes before them to commit: a
		// proxy's run of writes followed by TANDEM.TOKEN is started as a
		// whole, and the next client's writes on its shared connection
		// with it.
		if sc, ok := lookupServerCmd(args[0]); ok && (sc.name == "tandem.token" || sc.name == "tandem.user") && sc.arityOK(len(args)) {
			nc := nodeState(sess)
			nc.pending = append(nc.pending, pendingWrite{state: sc, args: args})
			return true
		}
		return false
	}
	if spec.Flags&commands.FlagWrite == 0 || spec.Block != nil || commands.Check(spec, args) != nil {
		return false // a blocking command holds back the rest of the pipeline, as in Redis
	}
	nc := nodeState(sess)
	if n.batch != nil {
		// Gathered, and sent as one batch before anything waits for it
		// (drain) or when the batch is full.
		nc.unsentAt = append(nc.unsentAt, len(nc.pending))
		nc.pending = append(nc.pending, pendingWrite{spec: spec})
		nc.unsent = append(nc.unsent, TxCommand{Spec: spec, Args: args})
		for _, a := range args {
			nc.unsentBytes += len(a)
		}
		if len(nc.unsent) >= maxBatchCmds || nc.unsentBytes >= maxBatchBytes {
			n.sendBatch(sess)
		}
		return true
	}
	ctx := sess.enter()
	wait := n.pipe.Submit(ctx, spec, args)
	sess.leave()
	nc.pending = append(nc.pending, pendingWrite{spec: spec, wait: wait})
	return true
}

// sendBatch submits the gathered writes (BatchBackend): one alone as
// Submit does, more as one batch. Their arguments are still redcon's
// buffer's: it is sent before serveCommand returns (drain runs at the end
// of every pipeline and before any command not started).
func (n *node) sendBatch(sess *Session) {
	nc := nodeState(sess)
	if len(nc.unsent) == 0 {
		return
	}
	ctx := sess.enter()
	if len(nc.unsent) == 1 {
		nc.pending[nc.unsentAt[0]].wait = n.pipe.Submit(ctx, nc.unsent[0].Spec, nc.unsent[0].Args)
	} else {
		wait := n.batch.SubmitBatch(ctx, nc.unsent)
		for i, at := range nc.unsentAt {
			nc.pending[at].batchWait, nc.pending[at].batchAt = wait, i
		}
	}
	sess.leave()
	clear(nc.unsent)
	nc.unsent, nc.unsentAt, nc.unsentBytes = nc.unsent[:0], nc.unsentAt[:0], 0
}

// pendingWrite is a submitted write whose reply is not written yet, or a
// command on the session's read state (state, with its args) to run when
// the replies before it are written.
type pendingWrite struct {
	spec *commands.Spec
	wait func() (commands.Reply, uint64, error)
	// batchWait, when set instead of wait, is the wait of the batch the
	// write went in (BatchBackend), and batchAt its place there.
	batchWait func(int) (commands.Reply, uint64, error)
	batchAt   int
	state     *serverCmd
	args      [][]byte
}

// drain waits for the pending writes in order and writes their replies.
func (n *node) drain(conn redcon.Conn, sess *Session) {
	n.sendBatch(sess)
	nc := nodeState(sess)
	for i := range nc.pending {
		p := &nc.pending[i]
		if p.state != nil {
			p.state.fn(n, conn, sess, p.args)
			*p = pendingWrite{}
			continue
		}
		sess.enter()
		var reply commands.Reply
		var lsn uint64
		var err error
		if p.batchWait != nil {
			reply, lsn, err = p.batchWait(p.batchAt) // made with the session's context
		} else {
			reply, lsn, err = p.wait()
		}
		sess.leave()
		errs := sess.errs
		n.writeResult(conn, sess, p.spec, reply, lsn, err)
		if sess.errs != errs {
			n.srv.stats.byName(p.spec.Name).fail() // counted as a call when started
		}
		*p = pendingWrite{}
	}
	nc.pending = nc.pending[:0]
}

// serveData runs a command from the commands table on the Backend.
func (n *node) serveData(conn redcon.Conn, sess *Session, spec *commands.Spec, args [][]byte) {
	if err := commands.Check(spec, args); err != nil {
		conn.WriteError(n.srv.errorText(err, sess, spec.Name))
		return
	}
	if spec.Flags&commands.FlagWrite != 0 && n.canThen(sess, spec) {
		n.serveThen(sess, spec, args) // answered by the write path (owed.go)
		return
	}
	ctx := sess.enter()
	if spec.Flags&commands.FlagWrite != 0 {
		reply, lsn, err := n.b.Write(ctx, spec, args)
		sess.leave()
		n.writeResult(conn, sess, spec, reply, lsn, err)
		return
	}
	if n.pos == nil {
		reply, err := n.b.Read(ctx, spec, args)
		sess.leave()
		n.writeResult(conn, sess, spec, reply, 0, err)
		return
	}
	r := &nodeState(sess).reads
	reply, at, err := n.pos.ReadAt(ctx, spec, args, r.request())
	sess.leave()
	if err == nil {
		r.read = maxPos(r.read, at)
	}
	n.writeResult(conn, sess, spec, reply, 0, err)
}

// writeResult records a write's LSN in the session, holds a committed
// write's reply until the connection's durability floor holds, and writes
// the reply.
func (n *node) writeResult(conn redcon.Conn, sess *Session, spec *commands.Spec, reply commands.Reply, lsn uint64, err error) {
	if lsn != 0 {
		nc := nodeState(sess)
		nc.lastWriteLSN = lsn
		if n.pos != nil && err == nil {
			nc.reads.write = maxPos(nc.reads.write, n.pos.Acknowledged(nc.reads.user, lsn))
		}
	}
	if err == nil {
		err = n.awaitFloor(sess, lsn)
	}
	if err != nil {
		conn.WriteError(n.srv.errorText(err, sess, spec.Name))
		return
	}
	writeReply(conn, reply, sess.proto3())
}

package resp

import (
	"context"
	"errors"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// Transactions: MULTI, EXEC, DISCARD, WATCH and UNWATCH on the node, with
// Redis 7's semantics.
//
// After MULTI every command but EXEC, DISCARD, MULTI, WATCH, QUIT and
// RESET is checked (known, arity, and a write on a node that does not
// lead) and queued with +QUEUED; a command that fails the check gets its
// error and makes EXEC answer EXECABORT. EXEC hands the queued data
// commands, with the connection's watches, to the TxBackend, which runs
// them as one unit (on the leader: one log entry, or none when nothing
// was written) and answers once that entry is committed, as a single
// write is; then EXEC writes an array of each queued command's reply in
// order, a data command's from the unit (an input error is that
// command's error reply; the others still apply) and any other queued
// command (PING, ECHO, INFO, ...) served at its place after the unit.
// A watched key that changed makes EXEC answer a null array. An EXEC
// that ends what the connection read is answered, as a lone write is, by
// the goroutine that commits it (TxThenBackend, owed.go), after the
// replies before it. EXEC,
// DISCARD, UNWATCH, RESET and closing the connection release the watches.

// TxBackend is an optional Backend capability: transactions and WATCH.
type TxBackend interface {
	// Watch watches keys for the connection's next EXEC. It returns once
	// every write ordered before it is visible to the connection's reads.
	Watch(ctx context.Context, keys [][]byte) (Watch, error)
	// Exec runs tx's commands as one unit: all of their writes become
	// visible at once, on every node, or none does. It fails with
	// ErrWatchChanged (nothing ran) when a watched key changed since its
	// Watch; with ErrReadOnly when tx writes and the node does not lead.
	Exec(ctx context.Context, tx Tx) (TxResult, error)
	// WriteRefused is why a write queued now is refused at once, or nil:
	// ErrReadOnly when the node does not lead (as on a Redis replica),
	// ErrBusy while a script holds the leader's sequencer past its
	// threshold (as Redis refuses commands then).
	WriteRefused() error
}

// TxThenBackend is an optional TxBackend capability, EXEC's ThenBackend:
// ExecThen runs tx as Exec does and, instead of returning, calls done
// once with what Exec would have returned, from the goroutine that
// answers the transaction's entry or, when it is not sequenced, from the
// caller's (before ExecThen returns). done must be quick and must not
// block. The watches may be released once ExecThen returns.
type TxThenBackend interface {
	ExecThen(ctx context.Context, tx Tx, done func(TxResult, error))
}

// Watch is a connection's WATCH of some keys (TxBackend.Watch).
type Watch interface {
	// Release forgets the watch; it may be called more than once.
	Release()
}

// Tx is one EXEC for the TxBackend.
type Tx struct {
	// Cmds are the queued data commands, arity checked, in order.
	Cmds []TxCommand
	// Watches are the connection's watches: any change to their keys
	// since each was made refuses the transaction.
	Watches []Watch
	// Writes: some command has commands.FlagWrite.
	Writes bool
	// Read is the session's read request, for a transaction of reads
	// served on a follower.
	Read ReadRequest
}

// TxCommand is one queued data command.
type TxCommand struct {
	Spec *commands.Spec
	Args [][]byte
}

// TxReply is one command's outcome in a transaction: a reply, or an
// input error (commands.IsInputError) that is its error reply.
type TxReply struct {
	Reply commands.Reply
	Err   error
}

// TxResult is what EXEC ran.
type TxResult struct {
	Replies []TxReply // one per Tx.Cmds
	// LSN is the transaction's entry, 0 when it logged nothing.
	LSN uint64
	// At is the position its reads were served at.
	At Position
}

// ErrWatchChanged: TxBackend.Exec refused a transaction because a watched
// key changed; EXEC answers a null array.
var ErrWatchChanged = errors.New("resp: a watched key changed")

// txState is a connection's transaction (part of nodeConn).
type txState struct {
	active bool // between MULTI and EXEC/DISCARD
	dirty  bool // a command failed to queue: EXEC answers EXECABORT
	queue  []queuedCmd
	// watches are the connection's WATCHes, kept across MULTI until
	// EXEC, DISCARD, UNWATCH, RESET or the connection's end.
	watches []Watch
	// argBytes and argSlots hold the queued commands' copied arguments,
	// a few allocations a transaction rather than two a command. What
	// they handed out is never written again while the transaction lasts
	// (a full one is replaced, not reused); argBytes ends with the
	// transaction (its commands' ops may keep the bytes), argSlots may
	// serve the next one (slotsMem).
	argBytes []byte
	argSlots [][]byte
	// queueMem and slotsMem are the queue and argSlots of the
	// connection's last EXEC, emptied, for the next transaction's: EXEC's
	// reply is written before the connection serves another command
	// (payOwed), and nothing keeps them past it (ops, replies and
	// messages keep the argument bytes, argBytes, never these slices).
	queueMem []queuedCmd
	slotsMem [][]byte
}

// copyArgs copies args into the transaction's own storage.
func (t *txState) copyArgs(args [][]byte) [][]byte {
	size := 0
	for _, a := range args {
		size += len(a)
	}
	if cap(t.argBytes)-len(t.argBytes) < size {
		t.argBytes = make([]byte, 0, max(size, 2*cap(t.argBytes), 256))
	}
	if t.argSlots == nil && cap(t.slotsMem) >= len(args) {
		t.argSlots, t.slotsMem = t.slotsMem[:0:cap(t.slotsMem)], nil
		clear(t.argSlots[:cap(t.argSlots)]) // the last transaction's
	}
	if cap(t.argSlots)-len(t.argSlots) < len(args) {
		t.argSlots = make([][]byte, 0, max(len(args), 2*cap(t.argSlots), 16))
	}
	start := len(t.argSlots)
	for _, a := range args {
		t.argBytes = append(t.argBytes, a...)
		n := len(t.argBytes)
		t.argSlots = append(t.argSlots, t.argBytes[n-len(a):n:n])
	}
	return t.argSlots[start:len(t.argSlots):len(t.argSlots)]
}

// queuedCmd is a queued command: Spec is nil for one not in the commands
// table (a connection or server command, served at its place in EXEC's
// reply), Args are owned copies. A queue of data commands alone is the
// transaction's Tx.Cmds as it is, not copied.
type queuedCmd = TxCommand

const (
	replyExecAbort      = "EXECABORT Transaction discarded because of previous errors."
	replyExecAbortCause = "EXECABORT Transaction discarded because of: "
)

// releaseWatches releases the connection's watches.
func (t *txState) releaseWatches() {
	for _, w := range t.watches {
		w.Release()
	}
	t.watches = nil
}

// reset ends the transaction and forgets the watches (RESET, close).
func (t *txState) reset() {
	t.releaseWatches()
	*t = txState{}
}

// queue is the FrontEnd's Queue: in a transaction, it checks and queues
// every command that is not one of the transaction's own (connection
// commands included, as Redis queues PING).
func (n *node) queue(c redcon.Conn, sess *Session, args [][]byte) bool {
	tx := &nodeState(sess).tx
	if !tx.active {
		return false
	}
	// The name lower-cased on the stack: every queued command passes
	// here, and lowerName's string would be an allocation each. The
	// names below are at most 8 bytes; a longer one matches none.
	var lb [8]byte
	name := lb[:0]
	if len(args[0]) <= len(lb) {
		for _, c := range args[0] {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name = append(name, c)
		}
	}
	switch string(name) {
	case "exec", "discard", "multi", "watch", "quit", "reset":
		return false
	case "save", "shutdown":
		// Redis's no-multi commands.
		tx.dirty = true
		c.WriteError("ERR Command not allowed inside a transaction")
		return true
	}
	q := queuedCmd{}
	if spec, ok := commands.Resolve(args); ok {
		if err := commands.Check(spec, args); err != nil {
			tx.dirty = true
			c.WriteError(n.srv.errorText(err, sess, spec.Name))
			return true
		}
		if spec.Flags&commands.FlagWrite != 0 {
			if err := n.tx.WriteRefused(); err != nil {
				tx.dirty = true
				c.WriteError(n.srv.errorText(err, sess, spec.Name))
				return true
			}
		}
		q.Spec = spec
	} else if cc, ok := lookupConnCmd(args[0]); ok {
		if !cc.arityOK(len(args)) {
			tx.dirty = true
			c.WriteError(errArity(cc.name))
			return true
		}
	} else if sc, ok := lookupServerCmd(args[0]); ok {
		if !sc.arityOK(len(args)) {
			tx.dirty = true
			c.WriteError(errArity(sc.name))
			return true
		}
	} else if ok, err := n.queueable(args); ok {
		if err != nil {
			tx.dirty = true
			c.WriteError(n.srv.errorText(err, sess, strings.ToLower(string(args[0]))))
			return true
		}
	} else {
		// Unknown, or a TANDEM.* custom command, which cannot be checked
		// before it runs and has no place in a transaction.
		tx.dirty = true
		c.WriteError(unknownCommand(args))
		return true
	}
	q.Args = tx.copyArgs(args)
	if tx.queue == nil {
		if tx.queueMem != nil {
			tx.queue, tx.queueMem = tx.queueMem[:0], nil
			clear(tx.queue[:cap(tx.queue)]) // the last transaction's
		} else {
			tx.queue = make([]queuedCmd, 0, 8)
		}
	}
	tx.queue = append(tx.queue, q)
	c.WriteString("QUEUED")
	return true
}

func cmdMulti(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.tx == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	tx := &nodeState(sess).tx
	if tx.active {
		c.WriteError("ERR MULTI calls can not be nested")
		return
	}
	tx.active = true
	c.WriteString("OK")
}

func cmdDiscard(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	tx := &nodeState(sess).tx
	if n.tx == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	if !tx.active {
		c.WriteError("ERR DISCARD without MULTI")
		return
	}
	tx.reset()
	c.WriteString("OK")
}

func cmdWatch(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.tx == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	tx := &nodeState(sess).tx
	if tx.active {
		c.WriteError("ERR WATCH inside MULTI is not allowed")
		return
	}
	ctx := sess.enter()
	w, err := n.tx.Watch(ctx, args[1:])
	sess.leave()
	if err != nil {
		c.WriteError(n.srv.errorText(err, sess, "watch"))
		return
	}
	tx.watches = append(tx.watches, w)
	c.WriteString("OK")
}

func cmdUnwatch(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.tx == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	nodeState(sess).tx.releaseWatches()
	c.WriteString("OK")
}

func cmdExec(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.tx == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	nc := nodeState(sess)
	if !nc.tx.active {
		c.WriteError("ERR EXEC without MULTI")
		return
	}
	queue, dirty, watches := nc.tx.queue, nc.tx.dirty, nc.tx.watches
	if cap(nc.tx.argBytes) <= maxTxKeptBytes && cap(queue) <= maxTxKept && cap(nc.tx.argSlots) <= maxTxKept {
		// Kept for the next transaction (emptied when it takes them):
		// they hold the small arguments of this one until then.
		nc.tx = txState{queueMem: queue[:0], slotsMem: nc.tx.argSlots[:0]}
	} else {
		nc.tx = txState{}
	}
	defer func() {
		for _, w := range watches {
			w.Release()
		}
	}()
	if refused := n.tx.WriteRefused(); errors.Is(refused, ErrBusy) && queuesWrite(queue) {
		// Refused before the queue is looked at, as Redis refuses EXEC
		// while a script is busy (its cause wins over a queuing error).
		c.WriteError(n.execErrorText(refused, sess))
		return
	}
	if dirty {
		c.WriteError(replyExecAbort)
		return
	}
	tx := Tx{Watches: watches, Read: nc.reads.request()}
	data := 0
	for _, q := range queue {
		if q.Spec != nil {
			data++
			tx.Writes = tx.Writes || q.Spec.Flags&commands.FlagWrite != 0
		}
	}
	if data == len(queue) {
		tx.Cmds = queue // read, never written, by the backend and writeExec
	} else {
		tx.Cmds = make([]TxCommand, 0, data)
		for _, q := range queue {
			if q.Spec != nil {
				tx.Cmds = append(tx.Cmds, q)
			}
		}
	}
	if len(tx.Cmds) == 0 && len(tx.Watches) == 0 {
		n.writeExecArray(c, sess, queue, TxResult{}) // nothing for the backend
		return
	}
	if n.canThenExec(sess, queue, tx) {
		n.execThen(sess, queue, tx)
		return
	}
	ctx := sess.enter()
	res, err := n.tx.Exec(ctx, tx)
	sess.leave()
	n.writeExec(c, sess, queue, res, err)
}

// maxTxKept bounds the queue and argument slots a connection keeps for
// its next transaction, maxTxKeptBytes the arguments of the last one they
// may keep alive meanwhile.
const (
	maxTxKept      = 64
	maxTxKeptBytes = 64 << 10
)

// queuesWrite reports whether a transaction's queue holds a write.
func queuesWrite(queue []queuedCmd) bool {
	for _, q := range queue {
		if q.Spec != nil && q.Spec.Flags&commands.FlagWrite != 0 {
			return true
		}
	}
	return false
}

// canThenExec reports whether an EXEC may be handed over with its reply
// owed (owed.go), as a lone write is: the last command of what the
// connection read (its reply then follows the replies before it, which
// the connection's goroutine flushes first: oweAfterFlush), replies
// on, no durability floor, and every queued command a data command (a
// queued PING or INFO is served by the connection's goroutine).
func (n *node) canThenExec(sess *Session, queue []queuedCmd, tx Tx) bool {
	return n.txThen != nil && sess.g != nil && (sess.alone || sess.last) && sess.reply == replyOn &&
		nodeState(sess).durability.replicas == 0 && len(tx.Cmds) == len(queue)
}

// execThen hands an EXEC to the TxThenBackend, its reply owed: written,
// once the transaction is answered, after the replies the connection's
// goroutine has buffered before it (MULTI's OK, the QUEUEDs of a
// pipelined transaction) and before anything the connection serves next.
//
// The reply is encoded into the connection's owed-reply buffer
// (guardConn.owedBuf, free: the reply it held was written before this
// one was owed) by the connection's one execDone, not a closure and a
// buffer per transaction.
func (n *node) execThen(sess *Session, queue []queuedCmd, tx Tx) {
	nc := nodeState(sess)
	if nc.execDone == nil {
		nc.execDone = n.answerExec(sess)
	}
	nc.execQueue, nc.execTail = queue, sess.g.oweAfterFlush()
	ctx := sess.enter()
	n.txThen.ExecThen(ctx, tx, nc.execDone)
	sess.leave()
}

// answerExec returns the function that answers sess's owed EXECs
// (execThen): one per connection.
func (n *node) answerExec(sess *Session) func(TxResult, error) {
	g, nc := sess.g, nodeState(sess)
	return func(res TxResult, err error) {
		queue, t := nc.execQueue, nc.execTail
		nc.execQueue, nc.execTail = nil, nil // the queue is garbage once answered
		b := &g.owedBuf
		b.b = b.b[:0]
		n.writeExec(b, sess, queue, res, err)
		t.ready(b.b)
	}
}

// writeExec records what a transaction ran in the session and writes
// EXEC's reply: the null array when a watched key changed, an error when
// it failed as a whole, else each queued command's reply in order (a
// queued command that is not a data command is served here, at its
// place: only on the connection's goroutine).
func (n *node) writeExec(c redcon.Conn, sess *Session, queue []queuedCmd, res TxResult, err error) {
	if err == nil {
		data := 0
		for _, q := range queue {
			if q.Spec != nil {
				data++
			}
		}
		if len(res.Replies) != data {
			err = errors.New("resp: transaction backend answered a wrong number of replies")
		}
	}
	if err == nil {
		err = n.recordTx(sess, res)
	}
	switch {
	case errors.Is(err, ErrWatchChanged):
		writeNull(c, sess.proto3(), true)
		return
	case err != nil:
		c.WriteError(n.execErrorText(err, sess))
		return
	}
	n.writeExecArray(c, sess, queue, res)
}

// writeExecArray writes EXEC's array of replies: each data command's
// from res, each other command served at its place.
func (n *node) writeExecArray(c redcon.Conn, sess *Session, queue []queuedCmd, res TxResult) {
	c.WriteArray(len(queue))
	i := 0
	for _, q := range queue {
		if q.Spec == nil {
			n.srv.serveOne(c, sess, q.Args)
			continue
		}
		r := res.Replies[i]
		i++
		if r.Err != nil {
			c.WriteError(n.srv.errorText(r.Err, sess, q.Spec.Name))
			continue
		}
		writeReply(c, r.Reply, sess.proto3())
	}
}

// recordTx records a transaction in the session as a write (its LSN) or a
// read (its position), and holds its reply for the durability floor.
func (n *node) recordTx(sess *Session, res TxResult) error {
	nc := nodeState(sess)
	if res.LSN == 0 {
		nc.reads.read = maxPos(nc.reads.read, res.At)
		return nil
	}
	nc.lastWriteLSN = res.LSN
	if n.pos != nil {
		nc.reads.write = maxPos(nc.reads.write, n.pos.Acknowledged(nc.reads.user, res.LSN))
	}
	return n.awaitFloor(sess, res.LSN)
}

// execErrorText words an EXEC that failed as a whole: a refusal before
// anything ran is an EXECABORT with its cause, as Redis words it; an
// outcome that is unknown (the entry may yet commit) is the write's own
// error.
func (n *node) execErrorText(err error, sess *Session) string {
	text := n.srv.errorText(err, sess, "exec")
	switch {
	case errors.Is(err, ErrReadOnly), errors.Is(err, ErrNotLeader), errors.Is(err, ErrFenced),
		errors.Is(err, ErrOverloaded), errors.Is(err, ErrLoading), errors.Is(err, ErrReadElsewhere),
		errors.Is(err, ErrPositionLost), errors.Is(err, ErrBusy), commands.IsInputError(err):
		return replyExecAbortCause + text
	}
	return text
}

// queueable is the backend's QueueingBackend.Queueable, false without one.
func (n *node) queueable(args [][]byte) (ok bool, err error) {
	if n.queues == nil {
		return false, nil
	}
	return n.queues.Queueable(args)
}

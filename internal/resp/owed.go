package resp

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
)

// Why a write's reply is written by the goroutine that commits it
//
// A connection's goroutine that waits for its write to commit must be
// woken to answer it: on a busy machine one wake-up per write, beside the
// read that brings the next command, where Redis writes every reply from
// its one thread. With ThenBackend the connection hands its write over
// and goes back to reading; the goroutine of the write path that answers
// the write (the one that applied its group) encodes the reply and writes
// it to the socket itself, run to completion.
//
// The rules that keep replies in order and the session right:
//
//   - Only a write that is the last command of what the connection read
//     (no pipeline behind it), outside MULTI, with no durability floor,
//     is handed over; anything else waits as before. A blocking command
//     is handed over too: the backend answers it on the caller's
//     goroutine when it must wait, and hands over only a pop that needs
//     none.
//   - At most one reply is owed per connection: before the connection's
//     goroutine serves its next command, or writes any byte (redcon's
//     flush, a protocol error), it waits until the owed reply is written
//     (payOwed). So replies go out in command order, and the session state
//     the reply's writer updated (the write's LSN for WAIT, the read
//     position) is seen by the next command.
//   - The reply is written with one non-blocking write; what the socket
//     does not take at once (a client that stopped reading) is written by
//     a goroutine of its own, so a slow client never holds up the writes
//     of others.

// ThenBackend is an optional Backend capability: SubmitThen sequences a
// write like PipelineBackend.Submit and, instead of returning a wait,
// calls done once with what Backend.Write would have returned, from the
// goroutine that answers the write or, when it fails before it is
// sequenced, from the caller's. done must be quick and must not block.
type ThenBackend interface {
	SubmitThen(ctx context.Context, spec *commands.Spec, args [][]byte, done func(commands.Reply, uint64, error))
}

// payOwed waits until the connection's owed reply, if any, is written.
// Only the connection's goroutine calls it.
func (g *guardConn) payOwed() {
	if g != nil && g.owed != nil {
		<-g.owed
		g.owed = nil
	}
}

// owe marks a reply owed and returns the channel its writer signals once
// it is written (paid): the connection's one channel, made once, not one
// per write (it was one of a SET's allocations). Its buffer of one holds
// the signal until payOwed takes it, and payOwed takes every signal
// before the next reply is owed (at most one is owed at a time), so the
// buffer is empty here and the writer's send never blocks. Only the
// connection's goroutine calls it.
func (g *guardConn) owe() chan struct{} {
	if g.paid == nil {
		g.paid = make(chan struct{}, 1)
	}
	g.owed = g.paid
	return g.paid
}

// serveThen hands a write to the ThenBackend, its reply owed (see above).
func (n *node) serveThen(sess *Session, spec *commands.Spec, args [][]byte) {
	sess.g.owe()
	nc := nodeState(sess)
	if nc.owedDone == nil {
		nc.owedDone = n.answerOwed(sess)
	}
	nc.owedSpec = spec
	ctx := sess.enter()
	n.then.SubmitThen(ctx, spec, args, nc.owedDone)
	sess.leave()
}

// answerOwed returns the function that answers sess's owed writes: one
// per connection, not a closure per write (one of a SET's allocations).
// It reads the write's command from owedSpec, which the connection's
// goroutine sets only after payOwed, so never while a reply is owed.
func (n *node) answerOwed(sess *Session) func(commands.Reply, uint64, error) {
	g, nc := sess.g, nodeState(sess)
	return func(reply commands.Reply, lsn uint64, err error) {
		if lsn != 0 {
			nc.lastWriteLSN = lsn
			if n.pos != nil && err == nil {
				nc.reads.write = maxPos(nc.reads.write, n.pos.Acknowledged(nc.reads.user, lsn))
			}
		}
		// The connection's one reply buffer: free, since the reply it
		// held before was paid before this write was handed over.
		b := &g.owedBuf
		b.b, b.st, b.errs = b.b[:0], n.srv.stats, 0
		if err != nil {
			b.WriteError(n.srv.errorText(err, sess, nc.owedSpec.Name))
		} else {
			writeReply(b, reply, sess.proto3())
		}
		if b.errs != 0 {
			n.srv.stats.byName(nc.owedSpec.Name).fail() // counted as a call when handed over
		}
		g.writeOwed(b.b, g.paid)
	}
}

// canThen reports whether a write may be handed over with its reply owed.
func (n *node) canThen(sess *Session, spec *commands.Spec) bool {
	return n.then != nil && sess.alone && sess.g != nil && nodeState(sess).durability.replicas == 0
}

// writeOwed writes an owed reply and then signals paid: one non-blocking
// write, and what the socket does not take at once by a goroutine of its
// own. At most one reply is owed at a time, so the connection's owedWrite
// and its cached RawConn are this call's alone (no allocation per reply:
// a closure and a RawConn per call were four of a SET's).
func (g *guardConn) writeOwed(p []byte, paid chan struct{}) {
	if w := &g.owedW; w.ok || w.init(g.Conn) {
		w.p = p
		err := w.raw.Write(w.fn)
		n, werr := w.n, w.err
		w.p, w.err = nil, nil
		switch {
		case err == nil && werr == nil && n == len(p):
			paid <- struct{}{}
			return
		case err == nil && (werr == nil || errors.Is(werr, syscall.EAGAIN)):
			p = p[max(n, 0):]
		default:
			// The connection failed: nothing more will reach it.
			g.Close()
			paid <- struct{}{}
			return
		}
	}
	go func() {
		_, _ = g.write(p)
		paid <- struct{}{}
	}()
}

// owedWrite is a connection's one non-blocking write of an owed reply,
// made once: its RawConn and the function RawConn.Write calls, which
// reads p and leaves its results in n and err. Used by writeOwed only,
// one reply at a time.
type owedWrite struct {
	ok, tried bool
	raw       syscall.RawConn
	fn        func(fd uintptr) bool
	p         []byte
	n         int
	err       error
}

// init makes w for c; false if c has no file descriptor to write to (a
// pipe in tests), and then writeOwed writes from a goroutine.
func (w *owedWrite) init(c net.Conn) bool {
	if w.tried {
		return false
	}
	w.tried = true
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	w.raw = raw
	w.fn = func(fd uintptr) bool {
		w.n, w.err = syscall.Write(int(fd), w.p)
		return true // one attempt, never a wait for the poller
	}
	w.ok = true
	return true
}

// replyBuf is a redcon.Conn that only collects a reply's bytes, so that
// writeReply encodes a reply owed to a connection away from its
// goroutine, byte for byte as redcon's writer would.
type replyBuf struct {
	redcon.Conn // nil: only the Write methods below are used
	b           []byte
	// st, when set, counts the error replies written (stats.go), and
	// errs counts them for the reply's command.
	st   *stats
	errs int
}

func (r *replyBuf) WriteError(msg string) {
	if r.st != nil {
		r.errs++
		r.st.errorReply(msg)
	}
	r.b = redcon.AppendError(r.b, msg)
}
func (r *replyBuf) WriteString(str string)   { r.b = redcon.AppendString(r.b, str) }
func (r *replyBuf) WriteBulk(bulk []byte)    { r.b = redcon.AppendBulk(r.b, bulk) }
func (r *replyBuf) WriteBulkString(s string) { r.b = redcon.AppendBulkString(r.b, s) }
func (r *replyBuf) WriteInt(num int)         { r.b = redcon.AppendInt(r.b, int64(num)) }
func (r *replyBuf) WriteInt64(num int64)     { r.b = redcon.AppendInt(r.b, num) }
func (r *replyBuf) WriteUint64(num uint64)   { r.b = redcon.AppendUint(r.b, num) }
func (r *replyBuf) WriteArray(count int)     { r.b = redcon.AppendArray(r.b, count) }
func (r *replyBuf) WriteNull()               { r.b = redcon.AppendNull(r.b) }
func (r *replyBuf) WriteRaw(data []byte)     { r.b = append(r.b, data...) }
func (r *replyBuf) WriteAny(v any)           { r.b = redcon.AppendAny(r.b, v) }

// owedTail is a reply owed after the replies the connection's goroutine
// has buffered (redcon writes them at its flush, at the end of the read):
// whichever comes second, the flush or the reply, writes the reply, so it
// goes out after them without either goroutine waiting for the other.
//
// The flush's bytes (MULTI's OK and the QUEUEDs of a pipelined
// transaction) go out with the reply in one write, as Redis sends a
// pipelined transaction's replies: a flush that comes first keeps a copy
// of them (up to maxTailHeld bytes; more are written at once) for the
// reply's writer, and a flush that comes second writes both. That is one
// write system call per transaction instead of two; the client, having
// sent EXEC, reads nothing it could act on before EXEC's reply anyway.
//
// A connection has one owedTail (guardConn.tailMem), reused for each
// transaction with its buffers: only one reply is owed at a time, and the
// next is owed only after payOwed has seen this one written, when neither
// goroutine touches the tail or its bytes any more (each signals paid, in
// writeOwed, as its last use of them).
type owedTail struct {
	g    *guardConn
	paid chan struct{}
	mu   sync.Mutex
	done bool   // the flush came
	head []byte // the flush's bytes, held for the reply's writer
	b    []byte // the reply, once ready
	set  bool
	// headMem is head's storage and joinedMem that of the flush's bytes
	// and the reply written together, kept across transactions while
	// they are at most maxTailKept bytes.
	headMem, joinedMem []byte
}

// maxTailHeld bounds the flushed bytes an owedTail holds for its reply's
// writer: past it the copy would cost more than the write it saves.
const maxTailHeld = 16 << 10

// oweAfterFlush owes the connection a reply that goes after redcon's next
// flush (the end of this read); the caller hands the returned tail the
// reply with ready. Only the connection's goroutine calls it, serving the
// last command of a read.
func (g *guardConn) oweAfterFlush() *owedTail {
	t := &g.tailMem
	*t = owedTail{g: g, headMem: keepable(t.headMem), joinedMem: keepable(t.joinedMem)}
	t.paid = g.owe()
	g.tail = t
	return t
}

// maxTailKept bounds the buffers an idle connection's owedTail keeps.
const maxTailKept = 4 << 10

// keepable is b emptied, or nil when it is too large to keep.
func keepable(b []byte) []byte {
	if cap(b) > maxTailKept {
		return nil
	}
	return b[:0]
}

// ready hands over the owed reply: written now, after the flush's bytes
// it held, if the flush came, else by the flush.
func (t *owedTail) ready(b []byte) {
	t.mu.Lock()
	t.b, t.set = b, true
	flushed, head := t.done, t.head
	t.head = nil
	t.mu.Unlock()
	if flushed {
		if len(head) > 0 {
			b = append(head, b...) // head is headMem: the tail's own
			t.headMem = b[:0]
		}
		t.g.writeOwed(b, t.paid)
	}
}

// flushed is redcon's flush of p, the replies before the owed one: it
// writes p and the owed reply together if the reply is ready, else keeps
// a copy of p for the reply's writer (redcon reuses p); a large p is
// written at once, before the reply can be.
func (t *owedTail) flushed(p []byte) (int, error) {
	n, err := len(p), error(nil)
	if len(p) > maxTailHeld {
		// Written before done is set, so that the reply follows it.
		n, err = t.g.write(p)
		p = nil
	}
	t.mu.Lock()
	t.done = true
	b, set := t.b, t.set
	if !set {
		if len(p) > 0 {
			t.head = append(t.headMem[:0], p...)
			t.headMem = t.head[:0]
		}
		t.mu.Unlock()
		return n, err
	}
	t.mu.Unlock()
	if len(p) > 0 {
		b = append(append(t.joinedMem[:0], p...), b...)
		t.joinedMem = b[:0]
	}
	t.g.writeOwed(b, t.paid)
	return n, err
}

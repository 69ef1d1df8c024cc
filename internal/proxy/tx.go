package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// Transactions through the proxy: WATCH or MULTI pins the session to a
// connection of its own to the leader (never a shared one: a
// transaction's state lives on its connection on the node), and every
// command of the session goes there, one at a time, until the node has
// forgotten the transaction and the watches: after EXEC or DISCARD, after
// UNWATCH outside MULTI, on RESET or when the client leaves. The node
// does everything else (queuing, EXECABORT, WATCH's rules).
//
// While pinned, the session's connection commands outside MULTI, its
// TANDEM.READPOLICY/TOKEN/USER and INFO stay the proxy's; inside MULTI
// only PING and ECHO are sent on (queued by the node). If the pinned
// connection fails, the transaction and the watches are gone: EXEC
// answers UNCERTAIN (it may have run), anything else an error, and the
// session is unpinned. A leader change while pinned is the node's to
// report: the old leader refuses EXEC (EXECABORT ... READONLY) or fails
// it (a WATCH of an older leadership answers nil), and the client
// retries, finding the new leader on its next WATCH or MULTI.
//
// After a successful EXEC the proxy asks the node for the session's
// position (TANDEM.TOKEN), so read-your-writes policies cover the
// transaction's writes.

// pinned is a session's own connection to the leader.
type pinned struct {
	nc       net.Conn
	node     *node
	buf      []byte
	multi    bool // MULTI was answered +OK: commands are queued
	watching bool // a WATCH was answered +OK
}

// do sends one command and reads its reply.
func (pn *pinned) do(args [][]byte, timeout time.Duration) ([]byte, error) {
	return pn.doUntil(args, time.Now().Add(timeout))
}

// doUntil is do with a deadline; the zero time is none.
func (pn *pinned) doUntil(args [][]byte, deadline time.Time) ([]byte, error) {
	out := redcon.AppendArray(nil, len(args))
	for _, a := range args {
		out = redcon.AppendBulk(out, a)
	}
	_ = pn.nc.SetDeadline(deadline)
	if _, err := pn.nc.Write(out); err != nil {
		return nil, fmt.Errorf("write to %s: %w", pn.node.id, err)
	}
	for {
		if n, r := redcon.ReadNextRESP(pn.buf); n > 0 {
			reply := append([]byte(nil), r.Raw...)
			pn.buf = pn.buf[:copy(pn.buf, pn.buf[n:])]
			return reply, nil
		}
		if len(pn.buf) == 0 {
			// Nothing yet: read.
		} else if bad := malformed(pn.buf); bad != nil {
			return nil, fmt.Errorf("reply from %s: %w", pn.node.id, bad)
		}
		if len(pn.buf) > maxReply {
			return nil, fmt.Errorf("reply from %s longer than %d bytes", pn.node.id, maxReply)
		}
		if len(pn.buf) == cap(pn.buf) {
			pn.buf = append(pn.buf, make([]byte, max(4096, cap(pn.buf)))...)[:len(pn.buf)]
		}
		k, err := pn.nc.Read(pn.buf[len(pn.buf):cap(pn.buf)])
		pn.buf = pn.buf[:len(pn.buf)+k]
		if err != nil && k == 0 {
			return nil, fmt.Errorf("read from %s: %w", pn.node.id, err)
		}
	}
}

// unpin closes the session's pinned connection, if any. (The
// connection of its blocking commands too: block.go.)
func (s *session) unpin() {
	if s.pin != nil {
		s.pin.nc.Close()
		s.pin = nil
	}
	if s.blk != nil {
		s.blk.nc.Close()
		s.blk = nil
	}
}

// txStart serves WATCH or MULTI on a session that is not pinned: it pins
// the session to the leader and sends the command there.
func (p *Proxy) txStart(c redcon.Conn, sess *resp.Session, args [][]byte) {
	s := sess.Local.(*session)
	ctx := sess.Enter()
	leader, err := p.txLeader(ctx)
	if err == nil {
		var nc net.Conn
		nc, err = net.DialTimeout("tcp", leader.addr, p.cfg.DialTimeout)
		if err == nil {
			s.pin = &pinned{nc: nc, node: leader, buf: make([]byte, 0, 4096)}
		}
	}
	sess.Leave()
	if err != nil {
		c.WriteError(fmt.Sprintf("TRYAGAIN tandem proxy: no leader to begin %s on (%v); nothing was sent", strings.ToUpper(string(args[0])), err))
		return
	}
	p.txForward(c, sess, args)
}

// txLeader waits up to WriteWait for a healthy leader.
func (p *Proxy) txLeader(ctx context.Context) (*node, error) {
	deadline := time.Now().Add(p.cfg.WriteWait)
	for {
		leader, _, changed := p.snapshot()
		if leader != nil && leader.healthy() {
			return leader, nil
		}
		if !p.wait(ctx, changed, deadline) {
			return nil, errors.New("none within the write wait")
		}
	}
}

// txQueue is the FrontEnd's Queue: a pinned session's commands go to its
// connection (see the comment at the top).
func (p *Proxy) txQueue(c redcon.Conn, sess *resp.Session, args [][]byte) bool {
	s, _ := sess.Local.(*session)
	if s == nil || s.pin == nil {
		return false
	}
	switch name := strings.ToLower(string(args[0])); name {
	case "quit", "reset", "hello", "auth", "client", "select":
		return false // the layer's; RESET and the connection's end unpin
	case "ping", "echo":
		if !s.pin.multi {
			return false
		}
	default:
		if lookupName(local, args[0]) && !s.pin.multi {
			return false
		}
	}
	p.txForward(c, sess, args)
	return true
}

// txForward sends a pinned session's command to its connection, answers
// it and follows the transaction's state.
func (p *Proxy) txForward(c redcon.Conn, sess *resp.Session, args [][]byte) {
	s := sess.Local.(*session)
	name := strings.ToLower(string(args[0]))
	sess.Enter()
	reply, err := s.pin.do(args, p.cfg.UpstreamTimeout)
	sess.Leave()
	if err != nil {
		p.log.Warn("proxy: a pinned transaction's connection failed", "node", s.pin.node.id, "err", err)
		s.unpin()
		if name == "exec" {
			c.WriteRaw([]byte(replyUncertain))
			return
		}
		c.WriteError("ERR tandem proxy: the connection to the leader was lost; the transaction and the watches are discarded")
		return
	}
	ok := len(reply) > 0 && reply[0] != '-'
	switch name {
	case "multi":
		s.pin.multi = s.pin.multi || ok
	case "watch":
		s.pin.watching = s.pin.watching || ok
	case "unwatch":
		if !s.pin.multi {
			s.unpin()
		}
	case "exec", "discard":
		// The node forgot the transaction and the watches, whatever it
		// answered (a nested error such as "EXEC without MULTI" aside,
		// which cannot happen while pinned).
		if name == "exec" && len(reply) > 0 && reply[0] == '*' && !bytes.HasPrefix(reply, []byte("*-1")) {
			p.txToken(sess, s)
		}
		s.unpin()
	}
	if s.pin != nil && !s.pin.multi && !s.pin.watching {
		s.unpin() // MULTI or WATCH failed: nothing to hold
	}
	c.WriteRaw(reply)
}

// txToken learns the session's position after its transaction (a node
// without read policies answers an error, which changes nothing).
func (p *Proxy) txToken(sess *resp.Session, s *session) {
	sess.Enter()
	r, err := s.pin.do([][]byte{cmdToken}, p.cfg.UpstreamTimeout)
	sess.Leave()
	if err != nil {
		return
	}
	if t, ok := tokenOf(r); ok {
		s.write = maxPos(s.write, t)
	}
}

// txNotPinned answers EXEC, DISCARD and UNWATCH of a session with no
// transaction, as a node would.
func txNotPinned(c redcon.Conn, args [][]byte) bool {
	switch strings.ToLower(string(args[0])) {
	case "exec":
		c.WriteError("ERR EXEC without MULTI")
	case "discard":
		c.WriteError("ERR DISCARD without MULTI")
	case "unwatch":
		c.WriteString("OK")
	default:
		return false
	}
	return true
}

package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/resp"
)

// Blocking commands through the proxy
//
// A blocked client is state on its connection to the leader (a waiter in
// the node's queue for the key), and its reply may take the command's
// whole timeout, so a blocking pop (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH,
// BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP) never rides a shared connection: it
// is sent on a connection of the session's own to the leader (dialed on
// the session's first one and kept for the next while the leader is the
// same), one at a time, after the replies the session's pipeline owes
// and before anything after it, as a blocked Redis client holds back its
// pipeline. Inside MULTI it is the transaction's (tx.go), where the node
// runs its non-blocking form.
//
// What the client gets:
//   - the node's reply, relayed as is: the pop, the timeout's null
//     array, or UNBLOCKED when the leader stepped down while the client
//     waited (nothing was popped for it: retry, the proxy sends the
//     retry to the new leader); after a pop the session's position is
//     asked (TANDEM.TOKEN) so read-your-writes covers it;
//   - UNCERTAIN when the connection to the leader is lost while the
//     command is out: its pop may have been made and committed, and the
//     element is then gone with the reply (never given to another
//     client);
//   - TRYAGAIN when no leader is known within WriteWait (nothing sent).
//
// A client that leaves while blocked closes the session's connection, so
// the node drops its waiter at once (its own rule for a disconnect).

// blocking are the blocking commands (commands.Spec.Block).
var blocking = map[string]bool{
	"blpop": true, "brpop": true, "brpoplpush": true, "blmove": true, "blmpop": true,
	"bzpopmin": true, "bzpopmax": true, "bzmpop": true,
}

// block serves a blocking command of a session not in a transaction.
func (p *Proxy) block(c redcon.Conn, sess *resp.Session, args [][]byte) {
	spec, _ := commands.Lookup(args[0])
	if err := commands.Check(spec, args); err != nil {
		c.WriteError(fmt.Sprintf("ERR wrong number of arguments for '%s' command", spec.Name))
		return
	}
	// The node parses the timeout again and answers its errors; here it
	// only bounds the wait for the reply.
	var timeout time.Duration
	if ba, err := spec.Block(args); err == nil {
		timeout = ba.Timeout
	}
	s := sess.Local.(*session)
	ctx := sess.Enter()
	defer sess.Leave()
	leader, err := p.txLeader(ctx)
	if err != nil {
		c.WriteError(fmt.Sprintf("TRYAGAIN tandem proxy: no leader to send %s to (%v); nothing was sent", strings.ToUpper(string(args[0])), err))
		return
	}
	if s.blk != nil && s.blk.node != leader {
		s.blk.nc.Close()
		s.blk = nil
	}
	if s.blk == nil {
		nc, err := net.DialTimeout("tcp", leader.addr, p.cfg.DialTimeout)
		if err != nil {
			c.WriteError(fmt.Sprintf("TRYAGAIN tandem proxy: cannot reach the leader for %s (%v); nothing was sent", strings.ToUpper(string(args[0])), err))
			return
		}
		s.blk = &pinned{nc: nc, node: leader, buf: make([]byte, 0, 4096)}
	}
	pn := s.blk
	// The client leaving ends the node's wait: its connection closes.
	stop := context.AfterFunc(ctx, func() { pn.nc.Close() })
	defer stop()
	var deadline time.Time // none: BLPOP ... 0 waits as long as it takes
	if timeout > 0 {
		deadline = time.Now().Add(timeout + p.cfg.UpstreamTimeout)
	}
	p.stats.blocked.Add(1)
	reply, err := pn.doUntil(args, deadline)
	p.stats.blocked.Add(-1)
	if err != nil {
		pn.nc.Close()
		s.blk = nil
		if ctx.Err() == nil {
			p.log.Warn("proxy: a blocking command's connection to the leader failed", "node", pn.node.id, "err", err)
		}
		p.stats.writesUncertain.Add(1)
		c.WriteRaw([]byte(replyUncertain))
		return
	}
	if len(reply) > 0 && reply[0] != '-' && !isNullReply(reply) {
		// A pop: a write of the session's.
		if r, err := pn.do([][]byte{cmdToken}, p.cfg.UpstreamTimeout); err == nil {
			if t, ok := tokenOf(r); ok {
				s.write = maxPos(s.write, t)
			}
		}
	}
	c.WriteRaw(reply)
}

// isNullReply: a RESP2 null array or bulk string (a blocking command's
// timeout).
func isNullReply(r []byte) bool {
	return len(r) >= 3 && (r[0] == '*' || r[0] == '$') && r[1] == '-' && r[2] == '1'
}

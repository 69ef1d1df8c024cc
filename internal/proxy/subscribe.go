package proxy

import (
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

// Subscribers through the proxy
//
// A subscription is state on a node's connection and messages arrive on
// it unasked, so it cannot ride the shared connections. SUBSCRIBE,
// PSUBSCRIBE or SSUBSCRIBE (a tandem cluster is one shard) pins the client's connection to a connection of its own to
// one node (a healthy follower, the least loaded, else the leader: every
// node delivers every message, see package replication's pubsub.go) for
// the rest of the client connection's life: from then on the proxy
// relays bytes both ways and nothing else (the node answers every
// command, with its own subscribed-mode rules; a write on a follower
// answers READONLY, so a connection that subscribed should stay a
// subscriber, as go-redis's and redis-py's PubSub connections do). When
// either side closes, both are closed: a client whose node went away
// reconnects and subscribes again (go-redis does so by itself); messages
// published in between are lost for it, as on a Redis node that restarts.

// pinning is what pins a connection: the commands that subscribe.
var pinning = map[string]bool{"subscribe": true, "psubscribe": true, "ssubscribe": true}

// unsubscribing are answered by the proxy on a connection that never
// subscribed, as a node would answer them.
var unsubscribing = map[string]bool{"unsubscribe": true, "punsubscribe": true, "sunsubscribe": true}

// pickSubscriberNode: a healthy follower with the fewest requests in
// flight, else the leader if healthy; nil if neither.
func (p *Proxy) pickSubscriberNode() *node {
	leader, followers, _ := p.snapshot()
	var best *node
	for _, n := range followers {
		if n.healthy() && (best == nil || n.inflight.Load() < best.inflight.Load()) {
			best = n
		}
	}
	if best == nil && leader != nil && leader.healthy() {
		best = leader
	}
	return best
}

// pin dials a connection of the client's own to a node, sends it the
// subscribing command and relays the connection from then on.
func (p *Proxy) pin(c redcon.Conn, sess *resp.Session, args [][]byte) {
	n := p.pickSubscriberNode()
	if n == nil {
		c.WriteError("TRYAGAIN tandem proxy: no node reachable for a subscription")
		return
	}
	up, err := net.DialTimeout("tcp", n.addr, p.cfg.DialTimeout)
	if err != nil {
		c.WriteError(fmt.Sprintf("TRYAGAIN tandem proxy: cannot reach node %s for a subscription: %s", n.id, oneLine(err.Error())))
		return
	}
	first := encodeArgs(args) // args are redcon's buffer, reused after this returns
	p.stats.pinned.Add(1)
	p.log.Debug("proxy: connection pinned to a node for pub/sub", "client", sess.ID(), "node", n.id)
	sess.Detach(c, func(dc redcon.DetachedConn, backlog []redcon.Command) {
		defer p.stats.pinned.Add(^uint64(0))
		relay(dc, up, first, backlog)
	})
}

// relay copies the node's bytes to the client and the client's commands
// to the node until either side closes, then closes both.
func relay(dc redcon.DetachedConn, up net.Conn, first []byte, backlog []redcon.Command) {
	if err := dc.Flush(); err != nil { // the replies owed before the SUBSCRIBE
		up.Close()
		return
	}
	client := dc.NetConn()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(client, up)
		client.Close() // the node went away: so does the client
	}()
	defer func() { <-copied }()
	defer up.Close()
	out := first
	for _, cmd := range backlog {
		out = append(out, cmd.Raw...)
	}
	if _, err := up.Write(out); err != nil {
		return
	}
	for {
		cmd, err := dc.ReadCommand()
		if err != nil {
			return
		}
		if _, err := up.Write(cmd.Raw); err != nil {
			return
		}
	}
}

// encodeArgs encodes a command as a RESP array of bulk strings.
func encodeArgs(args [][]byte) []byte {
	var b []byte
	b = fmt.Appendf(b, "*%d\r\n", len(args))
	for _, a := range args {
		b = fmt.Appendf(b, "$%d\r\n", len(a))
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// cmdUnsubscribe answers (P)UNSUBSCRIBE on a connection that subscribed
// to nothing, as a node does: one reply per name, or one with a nil name.
func cmdUnsubscribe(c redcon.Conn, args [][]byte) {
	kind := strings.ToLower(string(args[0]))
	if len(args) == 1 {
		c.WriteArray(3)
		c.WriteBulkString(kind)
		c.WriteNull()
		c.WriteInt(0)
		return
	}
	for _, a := range args[1:] {
		c.WriteArray(3)
		c.WriteBulkString(kind)
		c.WriteBulk(a)
		c.WriteInt(0)
	}
}

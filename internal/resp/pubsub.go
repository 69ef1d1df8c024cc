package resp

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/pubsub"
)

// PubSubBackend is an optional Backend capability: pub/sub. Without it
// SUBSCRIBE, PUBLISH and the rest are unknown commands.
type PubSubBackend interface {
	// PubSub is the node's registry: SUBSCRIBE and PSUBSCRIBE register
	// the connection there, PUBSUB reads it (node-local).
	PubSub() *pubsub.Registry
	// Publish publishes a message to the cluster's subscribers and
	// returns PUBLISH's reply: the subscriptions on this node it reaches.
	Publish(ctx context.Context, channel, message []byte) (int, error)
	// PublishShard is Publish for a sharded message (SPUBLISH): a tandem
	// cluster is one shard, so every node's sharded subscribers of the
	// channel get it; the reply counts this node's.
	PublishShard(ctx context.Context, channel, message []byte) (int, error)
}

// maxQueued bounds the messages a subscriber's connection may owe its
// client (Redis's client-output-buffer-limit pubsub hard limit, 32 MiB):
// past it the connection is closed, as Redis does, so a client that stops
// reading costs bounded memory and never holds up a publisher.
const maxQueued = 32 << 20

// Why a subscriber is a connection of its own
//
// redcon writes a connection's replies from the connection's goroutine
// only, after each read; a message must reach a subscriber while it is
// idle. So the first SUBSCRIBE or PSUBSCRIBE detaches the connection from
// redcon (redcon.Detach), and from then on a subscriber serves it: a
// reader goroutine (run) reads and serves its commands, any command, and
// a flusher goroutine writes the messages the registry queued. wmu orders
// both: a command is served and its reply flushed holding it, and a
// command that changes subscriptions writes the messages queued before
// the change first, so a client sees "unsubscribe" after every message
// of the channel it left and after none published later. The registry
// only queues (Deliver never blocks: it holds the registry's lock).
//
// The connection stays detached until it closes, subscribed or not
// (redcon cannot take it back); it then runs every command the same way,
// one at a time.
type subscriber struct {
	srv  *Server
	reg  *pubsub.Registry
	sess *Session
	dc   redcon.DetachedConn

	// wmu orders everything written to dc (see above).
	wmu sync.Mutex
	// Under wmu: clean says dc's buffer is empty and every byte before
	// it reached the socket (a flush succeeded since the last write to
	// dc), so the server's pubWriter may write queued messages straight
	// to the socket; direct is that write (writeNow).
	clean  bool
	direct owedWrite

	qmu   sync.Mutex
	queue []byte // messages encoded for the client, not yet in dc
	spare []byte // the other buffer, swapped with queue
	cut   bool   // queue passed maxQueued: the connection is closed
	wake  chan struct{}
	done  chan struct{} // closed when the reader ends; the flusher stops

	// Only the connection's goroutine touches these.
	channels, patterns, shards orderedSet
	backlog                    []redcon.Command // commands redcon read ahead, served first
}

// orderedSet is a set of names kept in subscription order, so that an
// UNSUBSCRIBE without names answers in a stable order.
type orderedSet struct {
	names []string
	has   map[string]bool
}

func (o *orderedSet) add(s string) bool {
	if o.has[s] {
		return false
	}
	if o.has == nil {
		o.has = make(map[string]bool)
	}
	o.has[s] = true
	o.names = append(o.names, s)
	return true
}

func (o *orderedSet) remove(s string) bool {
	if !o.has[s] {
		return false
	}
	delete(o.has, s)
	for i, n := range o.names {
		if n == s {
			o.names = append(o.names[:i], o.names[i+1:]...)
			break
		}
	}
	return true
}

// count is the subscriptions of every kind: the connection is in
// subscribed mode while it is not 0.
func (s *subscriber) count() int { return s.classicCount() + len(s.shards.names) }

// classicCount is what (P)(UN)SUBSCRIBE's replies count: channels and
// patterns; (UN)SSUBSCRIBE's count sharded channels only (Redis 7).
func (s *subscriber) classicCount() int { return len(s.channels.names) + len(s.patterns.names) }

// kindCount is the count a reply of kind carries.
func (s *subscriber) kindCount(kind string) int {
	if kind == "ssubscribe" || kind == "sunsubscribe" {
		return len(s.shards.names)
	}
	return s.classicCount()
}

// Deliver queues m for the client, in the protocol the connection speaks
// now. Called by the registry under its lock: it only appends. It asks
// for a wake-up (true) only when the queue was empty: every drain takes
// the whole queue, and a queue that holds something has a signal due or
// pending whose drain takes m too (the flusher drains after every signal
// it takes).
func (s *subscriber) Deliver(m *pubsub.Message) bool {
	// The delivery is encoded once per protocol, by the first subscriber
	// that speaks it, and copied by the others.
	proto3 := s.sess.proto3()
	enc := &m.Encoded[0]
	if proto3 {
		enc = &m.Encoded[1]
	}
	if len(*enc) == 0 {
		*enc = appendMessage(*enc, m, proto3)
	}
	s.qmu.Lock()
	if s.cut {
		s.qmu.Unlock()
		return false
	}
	first := len(s.queue) == 0
	s.queue = append(s.queue, *enc...)
	over := len(s.queue) > maxQueued
	if over {
		s.cut = true
		s.queue = nil
	}
	s.qmu.Unlock()
	if over {
		s.srv.log.Warn("resp: subscriber over its output limit; closing it", "client", s.sess.id, "remote", s.sess.addr, "limit_bytes", maxQueued)
		if s.sess.g != nil {
			s.sess.g.Close()
		}
		return false
	}
	return first
}

// Wake has the server's pubWriter write what is queued.
func (s *subscriber) Wake() { s.srv.pubw[s.sess.id%uint64(len(s.srv.pubw))].add(s) }

// Why one writer for the subscribers of a server
//
// A message to n subscribers of a node woke n flusher goroutines, one
// per connection, each to make one write: the waking and parking and the
// runtime's idle threads spinning for them cost the node more than the
// writes (a flood of PUBLISH to 33 subscribers a node made 3–5 thread
// context switches, a futex call and 2–3 nanosleeps a message beside
// ~12 writes, where Redis, writing to its clients from its one thread,
// made under 1 context switch). A writer is a goroutine that writes to
// every subscriber of its own woken since its last pass, as Redis does
// before it sleeps: one wake-up a run of messages, not one a
// subscriber; a server has one for each CPU (up to 8; a subscriber is
// one writer's, by its client id), so the writes still spread over the
// cores and a writer's thread descheduled delays only its share. Its writes never wait: each is one non-blocking write of
// the subscriber's queue, and what a socket does not take at once, or a
// subscriber busy writing (wmu held: serving a command, or its flusher),
// goes to that subscriber's flusher, so a client that stops reading
// holds up no other. Messages published while a pass runs queue behind
// it and go in the next, so under a flood a write carries several, as
// the flushers' did.
type pubWriter struct {
	mu      sync.Mutex
	pending []*subscriber // woken since the pass began, each once
	running bool          // a pass's goroutine runs; it takes pending
}

// add has s written by the writer, starting its goroutine if none runs.
// Called by the registry under its lock: it only appends.
func (w *pubWriter) add(s *subscriber) {
	w.mu.Lock()
	w.pending = append(w.pending, s)
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.run()
	}
}

// run writes to the pending subscribers until none are left, then ends
// (an idle server keeps no writer goroutine).
func (w *pubWriter) run() {
	var batch []*subscriber
	for {
		w.mu.Lock()
		batch, w.pending = w.pending, batch[:0]
		if len(batch) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		for i, s := range batch {
			s.writeOrHandOff()
			batch[i] = nil
		}
	}
}

// writeOrHandOff writes s's queue at once if it can, else signals its
// flusher to.
func (s *subscriber) writeOrHandOff() {
	if !s.wmu.TryLock() {
		signal(s.wake)
		return
	}
	done := s.writeNow()
	s.wmu.Unlock()
	if !done {
		signal(s.wake)
	}
}

// writeNow writes the queue to the socket with one non-blocking write,
// bypassing dc's buffer, and puts back at the queue's head what the
// socket did not take; wmu is held. It reports whether it is done: false
// when the flusher must write (the rest, or all when the connection has
// no socket to write to without waiting, or owes bytes before).
func (s *subscriber) writeNow() bool {
	g := s.sess.g
	if !s.clean || g == nil || g.owed != nil || g.tail != nil {
		return false
	}
	w := &s.direct
	if !w.ok && !w.init(g.Conn) {
		return false
	}
	s.qmu.Lock()
	q := s.queue
	s.queue, s.spare = s.spare[:0], nil
	s.qmu.Unlock()
	if len(q) > 0 {
		w.p = q
		err := w.raw.Write(w.fn)
		n, werr := w.n, w.err
		w.p, w.err = nil, nil
		switch {
		case err == nil && werr == nil && n == len(q):
		case err == nil && (werr == nil || errors.Is(werr, syscall.EAGAIN)):
			// The rest goes first, before what was queued since.
			rest := append(q[:0], q[max(n, 0):]...)
			s.qmu.Lock()
			if !s.cut {
				s.queue = append(rest, s.queue...)
			}
			s.qmu.Unlock()
			return false
		default:
			// The connection failed: the reader sees it closed and ends.
			s.clean = false
			g.Close()
			return true
		}
	}
	s.qmu.Lock()
	s.spare = q[:0]
	s.qmu.Unlock()
	return true
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// drainLocked moves the queued messages into dc's buffer; wmu is held.
func (s *subscriber) drainLocked() {
	s.qmu.Lock()
	q := s.queue
	s.queue, s.spare = s.spare[:0], nil
	s.qmu.Unlock()
	if len(q) == 0 {
		s.qmu.Lock()
		s.spare = q
		s.qmu.Unlock()
		return
	}
	s.dc.WriteRaw(q)
	s.qmu.Lock()
	s.spare = q[:0]
	s.qmu.Unlock()
}

// subscriberFor returns the connection's subscriber, detaching the
// connection from redcon the first time. The caller is the connection's
// goroutine; the subscriber starts serving when serveCommand returns to
// it (start).
func (n *node) subscriberFor(conn redcon.Conn, sess *Session) *subscriber {
	if sess.sub != nil {
		return sess.sub
	}
	s := &subscriber{
		srv:  n.srv,
		reg:  n.ps.PubSub(),
		sess: sess,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	sess.sub = s
	sess.Detach(conn, s.serve)
	return s
}

// serve serves the detached connection (Session.Detach's run): backlog
// first, then what it reads, until it closes.
func (s *subscriber) serve(dc redcon.DetachedConn, backlog []redcon.Command) {
	s.dc, s.backlog = dc, backlog
	flushed := make(chan struct{})
	go s.flusher(flushed)
	signal(s.wake) // the replies redcon left in the buffer
	s.run(flushed)
}

func (s *subscriber) flusher(flushed chan struct{}) {
	defer close(flushed)
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		s.wmu.Lock()
		s.drainLocked()
		err := s.dc.Flush()
		s.clean = err == nil
		s.wmu.Unlock()
		if err != nil {
			s.dc.NetConn().Close() // the reader sees it and ends
			return
		}
	}
}

// run is the connection's goroutine from the detach on.
func (s *subscriber) run(flushed chan struct{}) {
	defer func() {
		s.unsubscribeAll()
		close(s.done)
		<-flushed
	}()
	for !s.sess.quit {
		var args [][]byte
		if len(s.backlog) > 0 {
			args, s.backlog = s.backlog[0].Args, s.backlog[1:]
		} else {
			cmd, err := s.dc.ReadCommand()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && strings.HasPrefix(err.Error(), "Protocol error") {
					s.wmu.Lock()
					s.dc.WriteError("ERR " + err.Error())
					s.dc.Flush()
					s.clean = false // the connection ends
					s.wmu.Unlock()
				}
				return
			}
			args = cmd.Args
		}
		s.wmu.Lock()
		s.serveOne(args)
		s.drainLocked()
		err := s.dc.Flush()
		s.clean = err == nil
		s.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// serveOne runs one command of the detached connection. In RESP2, while
// subscribed, only what Redis 7 allows there runs, and PING answers in
// the pub/sub form; in RESP3 everything runs, as in Redis.
func (s *subscriber) serveOne(args [][]byte) {
	if s.count() > 0 && !s.sess.proto3() {
		name := strings.ToLower(string(args[0]))
		switch name {
		case "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "ssubscribe", "sunsubscribe", "quit", "reset":
		case "ping":
			w := s.sess.silenced(s.dc, args)
			if len(args) > 2 {
				w.WriteError(errArity("ping"))
				return
			}
			w.WriteArray(2)
			w.WriteBulkString("pong")
			if len(args) == 2 {
				w.WriteBulk(args[1])
			} else {
				w.WriteBulkString("")
			}
			return
		default:
			if knownCommand(args[0]) {
				s.sess.silenced(s.dc, args).WriteError("ERR Can't execute '" + name + "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
				return
			}
		}
	}
	s.srv.serveOne(s.dc, s.sess, args)
}

// knownCommand reports whether any table of the node names the command.
func knownCommand(name []byte) bool {
	if _, ok := lookupConnCmd(name); ok {
		return true
	}
	if _, ok := lookupServerCmd(name); ok {
		return true
	}
	_, ok := commands.Lookup(name)
	return ok
}

// unsubscribeAll ends every subscription without replying (RESET).
func (s *subscriber) unsubscribeAll() {
	for _, ch := range s.channels.names {
		s.reg.Unsubscribe(s, ch)
	}
	for _, p := range s.patterns.names {
		s.reg.PUnsubscribe(s, p)
	}
	for _, ch := range s.shards.names {
		s.reg.SUnsubscribe(s, ch)
	}
	s.channels, s.patterns, s.shards = orderedSet{}, orderedSet{}, orderedSet{}
}

// The pub/sub commands (server commands of the node, admin.go's table).

func cmdSubscribe(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.ps == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	kind := strings.ToLower(string(args[0]))
	s := n.subscriberFor(c, sess)
	for _, a := range args[1:] {
		name := string(a)
		switch kind {
		case "psubscribe":
			if s.patterns.add(name) {
				s.reg.PSubscribe(s, name)
			}
		case "ssubscribe":
			if s.shards.add(name) {
				s.reg.SSubscribe(s, name)
			}
		default:
			if s.channels.add(name) {
				s.reg.Subscribe(s, name)
			}
		}
		writeSubReply(c, sess.proto3(), kind, a, s.kindCount(kind))
	}
}

func cmdUnsubscribe(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.ps == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	kind := strings.ToLower(string(args[0]))
	s := sess.sub
	if s == nil {
		// Never subscribed: Redis still answers, per name or once.
		if len(args) == 1 {
			writeSubReply(c, sess.proto3(), kind, nil, 0)
		}
		for _, a := range args[1:] {
			writeSubReply(c, sess.proto3(), kind, a, 0)
		}
		return
	}
	set, unsubscribe := &s.channels, s.reg.Unsubscribe
	switch kind {
	case "punsubscribe":
		set, unsubscribe = &s.patterns, s.reg.PUnsubscribe
	case "sunsubscribe":
		set, unsubscribe = &s.shards, s.reg.SUnsubscribe
	}
	names := args[1:]
	if len(names) == 0 {
		if len(set.names) == 0 {
			writeSubReply(c, sess.proto3(), kind, nil, s.kindCount(kind))
			return
		}
		// A new slice: args's backing array is redcon's.
		names = make([][]byte, len(set.names))
		for i, name := range set.names {
			names[i] = []byte(name)
		}
	}
	for _, a := range names {
		name := string(a)
		if set.remove(name) {
			unsubscribe(s, name)
			// What was queued before the subscription ended comes
			// before the reply that says it ended.
			s.drainLocked()
		}
		writeSubReply(c, sess.proto3(), kind, a, s.kindCount(kind))
	}
}

func cmdPublish(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.ps == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	publish, name := n.ps.Publish, "publish"
	if eqFold(args[0], "spublish") {
		publish, name = n.ps.PublishShard, "spublish"
	}
	ctx := sess.enter()
	count, err := publish(ctx, args[1], args[2])
	sess.leave()
	if sess.sub != nil {
		// A subscriber publishing to itself gets the message before the
		// reply, as from Redis.
		sess.sub.drainLocked()
	}
	if err != nil {
		c.WriteError(n.srv.errorText(err, sess, name))
		return
	}
	c.WriteInt(count)
}

func cmdPubSub(n *node, c redcon.Conn, sess *Session, args [][]byte) {
	if n.ps == nil {
		c.WriteError(unknownCommand(args))
		return
	}
	reg := n.ps.PubSub()
	sub := strings.ToLower(string(args[1]))
	switch {
	case sub == "channels" && len(args) <= 3:
		var chans []string
		if len(args) == 3 {
			chans = reg.Channels(args[2], false)
		} else {
			chans = reg.Channels(nil, true)
		}
		c.WriteArray(len(chans))
		for _, ch := range chans {
			c.WriteBulkString(ch)
		}
	case sub == "numsub":
		c.WriteArray(2 * (len(args) - 2))
		for _, ch := range args[2:] {
			c.WriteBulk(ch)
			c.WriteInt(reg.NumSub(string(ch)))
		}
	case sub == "numpat" && len(args) == 2:
		c.WriteInt(reg.NumPat())
	case sub == "shardchannels" && len(args) <= 3:
		var chans []string
		if len(args) == 3 {
			chans = reg.ShardChannels(args[2], false)
		} else {
			chans = reg.ShardChannels(nil, true)
		}
		c.WriteArray(len(chans))
		for _, ch := range chans {
			c.WriteBulkString(ch)
		}
	case sub == "shardnumsub":
		c.WriteArray(2 * (len(args) - 2))
		for _, ch := range args[2:] {
			c.WriteBulk(ch)
			c.WriteInt(reg.ShardNumSub(string(ch)))
		}
	case sub == "help" && len(args) == 2:
		writeReply(c, commands.Array{
			commands.SimpleString("PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
			commands.SimpleString("CHANNELS [<pattern>]"),
			commands.SimpleString("    Return the currently active channels matching a <pattern> (default: '*')."),
			commands.SimpleString("NUMPAT"),
			commands.SimpleString("    Return number of subscriptions to patterns."),
			commands.SimpleString("NUMSUB [<channel> ...]"),
			commands.SimpleString("    Return the number of subscribers for the specified channels, excluding"),
			commands.SimpleString("    pattern subscriptions(default: no channels)."),
			commands.SimpleString("SHARDCHANNELS [<pattern>]"),
			commands.SimpleString("    Return the currently active shard level channels matching a <pattern> (default: '*')."),
			commands.SimpleString("SHARDNUMSUB [<shardchannel> ...]"),
			commands.SimpleString("    Return the number of subscribers for the specified shard level channel(s)"),
			commands.SimpleString("HELP"),
			commands.SimpleString("    Print this help."),
		}, sess.proto3())
	case sub == "channels" || sub == "numpat" || sub == "shardchannels" || sub == "help":
		c.WriteError(errArity("pubsub|" + sub))
	default:
		c.WriteError(errUnknownSubcommand(args[1], "PUBSUB"))
	}
}

// writeSubReply writes a (p)(un)subscribe confirmation: an array in
// RESP2, a push in RESP3 (as Redis 7 sends them); a nil name is the reply
// to an UNSUBSCRIBE with nothing to unsubscribe.
func writeSubReply(c redcon.Conn, proto3 bool, kind string, name []byte, count int) {
	c = replyConn(c) // not silenced by CLIENT REPLY
	if proto3 {
		c.WriteRaw([]byte(">3\r\n"))
	} else {
		c.WriteArray(3)
	}
	c.WriteBulkString(kind)
	if name == nil {
		writeNull(c, proto3, false)
	} else {
		c.WriteBulk(name)
	}
	c.WriteInt(count)
}

// appendMessage encodes a delivery: ["message", channel, payload] or
// ["pmessage", pattern, channel, payload], an array in RESP2, a push in
// RESP3.
func appendMessage(b []byte, m *pubsub.Message, proto3 bool) []byte {
	n := 3
	if m.IsPattern {
		n = 4
	}
	if proto3 {
		b = append(b, '>')
	} else {
		b = append(b, '*')
	}
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, '\r', '\n')
	switch {
	case m.IsPattern:
		b = appendBulk(b, "pmessage")
		b = appendBulk(b, m.Pattern)
	case m.Shard:
		b = appendBulk(b, "smessage")
	default:
		b = appendBulk(b, "message")
	}
	b = appendBulk(b, m.Channel)
	return appendBulk(b, m.Payload)
}

func appendBulk[T ~string | ~[]byte](b []byte, s T) []byte {
	b = append(b, '$')
	b = strconv.AppendInt(b, int64(len(s)), 10)
	b = append(b, '\r', '\n')
	b = append(b, s...)
	return append(b, '\r', '\n')
}

// Package proxy is `tandem proxy`: a RESP front door for a tandem cluster.
// Any Redis client pointed at it works unchanged; it is a front end on
// internal/resp's connection layer (the same connection commands, limits
// and error texts as a node), and it reads replies from the nodes with
// redcon's RESP reader.
//
// # What it promises
//
//   - Writes, and every command that is not a plain read (a command the
//     commands table flags read only, SCAN excepted, whose cursor is a
//     node's), go to the leader the topology in etcd names. While there is
//     none (a failover), a write waits up to Config.WriteWait for one
//     instead of failing; a node's READONLY or MASTERDOWN (the write did
//     not run) makes it wait for the next leader too.
//   - A write whose outcome is unknown (the connection to the leader broke
//     after it was sent, or the leader did not answer within
//     UpstreamTimeout) is answered
//     "-UNCERTAIN tandem proxy: ...", never sent again by the proxy.
//   - Reads go where the session's read policy allows (TANDEM.READPOLICY
//     per connection, Config.Policy by default): leader; any (a healthy
//     follower, least loaded first, in the proxy's zone first); and ryw,
//     monotonic, bounded <ms> and linearizable, which the nodes enforce
//     with the session's positions (policy.go): the proxy keeps each
//     session's token, sends it with the read to a follower, and on the
//     node's "TRYAGAIN tandem: read elsewhere" goes to another follower
//     and at the latest the leader. Nodes that do not know read policies
//     (TANDEM.READPOLICY unknown) get such reads at the leader only, which
//     gives every one of these guarantees; INFO counts them.
//   - A node whose connection fails is out of rotation at once: no request
//     is routed to it until a connection to it works again. Requests in
//     flight on it fail (a read is tried on another node, a write answers
//     UNCERTAIN); INFO counts them.
//   - Many client connections share Config.ConnsPerNode pipelined
//     connections per node (as twemproxy does); one session's commands to
//     one node always use the same connection, so they keep their order,
//     and a client's pipeline is sent ahead and answered in order.
//   - Commands that hold connection state on the node (MULTI, WATCH,
//     SUBSCRIBE, blocking pops, WAIT, TANDEM.DURABILITY...) are refused
//     with a clear error naming the leader's address (connect there
//     directly), never run on a shared connection.
//   - Losing etcd does not stop it: it serves on the last topology it
//     knew, and INFO and the log say so.
//   - INFO's "# Proxy" section and /metrics (Prometheus) show the reads
//     served per policy and per node, reads sent elsewhere, fallbacks to
//     the leader and why, writes that waited, unknown outcomes and
//     requests failed in flight.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/resp"
)

// Config configures a Proxy.
type Config struct {
	// Policy is a new connection's read policy; zero means DefaultPolicy.
	Policy Policy
	// Zone is the proxy's zone: followers in it are preferred for reads.
	Zone string
	// WriteWait bounds how long a write waits for a leader; 0 means 5 s.
	WriteWait time.Duration
	// UpstreamTimeout bounds a request's wait for its node's reply (also
	// a write's, which may wait for its commit: keep it above the nodes'
	// --write-timeout); 0 means 10 s. A node that does not answer in time
	// has its connection closed (every request on it fails).
	UpstreamTimeout time.Duration
	// ReadTimeout bounds a read's wait on one node before it is tried on
	// another; 0 means 2 s.
	ReadTimeout time.Duration
	// DialTimeout bounds connecting to a node; 0 means 1 s.
	DialTimeout time.Duration
	// ConnsPerNode is how many shared connections each node gets; 0 means 4.
	ConnsPerNode int
	// RESP is the client-facing connection layer's configuration.
	RESP   resp.Config
	Logger *slog.Logger
}

// Member is a node the proxy may route to.
type Member struct {
	ID, Addr, Zone string
}

// View is the topology the proxy routes by.
type View struct {
	Epoch   uint64
	Leader  string // "" while there is none
	Members []Member
}

// Proxy routes client commands to a cluster's nodes.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	srv   *resp.Server
	stats *stats
	start time.Time

	mu      sync.Mutex
	view    View
	nodes   map[string]*node
	changed chan struct{} // closed and replaced on every change of view or node health
	etcdErr error         // why etcd is unreachable; nil when it is fine
	etcdAt  time.Time     // since when
	closed  bool
	done    chan struct{} // closed by Close
	rr      atomic.Uint64 // read counter, spreads ties between followers
}

// New returns a proxy; serve clients with Serve.
func New(cfg Config) *Proxy {
	if cfg.Policy.Kind == "" {
		cfg.Policy = DefaultPolicy
	}
	if cfg.WriteWait <= 0 {
		cfg.WriteWait = 5 * time.Second
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = 10 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 2 * time.Second
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = time.Second
	}
	if cfg.ConnsPerNode <= 0 {
		cfg.ConnsPerNode = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.RESP.Logger = cfg.Logger
	p := &Proxy{cfg: cfg, log: cfg.Logger, stats: newStats(), start: time.Now(),
		nodes: map[string]*node{}, changed: make(chan struct{}), done: make(chan struct{})}
	t := resp.Commands{
		"tandem.readpolicy": {Arity: -1, Run: p.cmdReadPolicy},
		"tandem.token":      {Arity: -1, Run: p.cmdToken},
		"tandem.user":       {Arity: -1, Run: p.cmdUser},
		"info":              {Arity: -1, Run: p.cmdInfo},
	}
	t.Check()
	go p.healthLoop()
	p.srv = resp.NewEndpoint(cfg.RESP, resp.FrontEnd{
		// The nodes' replies are forwarded as they come, in RESP2: HELLO 3
		// gets NOPROTO and clients stay on RESP2.
		MaxProto: 2,
		Serve: func(c redcon.Conn, sess *resp.Session, args [][]byte) bool {
			if t.Serve(c, sess, args) {
				return true
			}
			p.serve(c, sess, args)
			return true
		},
		Open:  func(sess *resp.Session) { sess.Local = &session{policy: p.cfg.Policy} },
		Reset: func(sess *resp.Session) { sess.Local = &session{policy: p.cfg.Policy} },
		Start: p.startOp,
		Flush: p.flush,
	})
	return p
}

// Serve serves clients from ln until Close.
func (p *Proxy) Serve(ln net.Listener) error { return p.srv.Serve(ln) }

// Close stops serving and closes every upstream connection.
func (p *Proxy) Close() error {
	err := p.srv.Close()
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	nodes := p.nodes
	p.nodes = map[string]*node{}
	p.mu.Unlock()
	for _, n := range nodes {
		n.close()
	}
	return err
}

// healthLoop tries the nodes marked down again, each after its backoff,
// since no request is routed to them.
func (p *Proxy) healthLoop() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		p.mu.Lock()
		for _, n := range p.nodes {
			if n.downAndDue() {
				go n.revive()
			}
		}
		p.mu.Unlock()
	}
}

// SetView installs a topology: nodes that left are closed, new ones are
// connected lazily (and asked whether they enforce read policies).
func (p *Proxy) SetView(v View) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var gone, added []*node
	keep := map[string]*node{}
	for _, m := range v.Members {
		if m.Addr == "" {
			continue
		}
		n := p.nodes[m.ID]
		if n == nil || n.addr != m.Addr {
			if n != nil {
				gone = append(gone, n)
			}
			n = newNode(p, m.ID, m.Addr, m.Zone)
			added = append(added, n)
		}
		n.zone = m.Zone
		keep[m.ID] = n
	}
	for id, n := range p.nodes {
		if keep[id] != n {
			gone = append(gone, n)
		}
	}
	if v.Leader != p.view.Leader || v.Epoch != p.view.Epoch {
		p.log.Info("proxy: topology", "epoch", v.Epoch, "leader", v.Leader, "members", len(keep))
	}
	p.view, p.nodes = v, keep
	p.kickLocked()
	p.mu.Unlock()
	for _, n := range gone {
		n.close()
	}
	for _, n := range added {
		go n.probe()
	}
}

func (p *Proxy) kick() {
	p.mu.Lock()
	p.kickLocked()
	p.mu.Unlock()
}

func (p *Proxy) kickLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// snapshot is the view and nodes at one time, and a channel closed at the
// next change.
func (p *Proxy) snapshot() (leader *node, followers []*node, epoch uint64, changed <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.nodes {
		if id == p.view.Leader {
			leader = n
		} else {
			followers = append(followers, n)
		}
	}
	return leader, followers, p.view.Epoch, p.changed
}

// The commands a shared connection cannot carry: they leave state on the
// node's connection (a transaction, subscriptions, a blocked client, a
// durability floor) that would leak to, or stall, every other session on
// it. Refused with an error naming the leader, to be used directly.
var stateful = map[string]bool{
	"multi": true, "exec": true, "discard": true, "watch": true, "unwatch": true,
	"subscribe": true, "psubscribe": true, "ssubscribe": true, "unsubscribe": true,
	"punsubscribe": true, "sunsubscribe": true, "monitor": true, "sync": true, "psync": true,
	"blpop": true, "brpop": true, "brpoplpush": true, "blmove": true, "blmpop": true,
	"bzpopmin": true, "bzpopmax": true, "bzmpop": true, "xread": true, "xreadgroup": true,
	"wait": true, "waitaof": true, "tandem.durability": true,
}

// isRead: a plain read, which may go to a follower.
func isRead(args [][]byte) bool {
	spec, ok := commands.Lookup(args[0])
	return ok && spec.Flags&commands.FlagWrite == 0 && spec.Flags&commands.FlagRead != 0 && spec.Name != "scan"
}

func (p *Proxy) serve(c redcon.Conn, sess *resp.Session, args [][]byte) {
	name := strings.ToLower(string(args[0]))
	if stateful[name] {
		leader, _, _, _ := p.snapshot()
		where := "the leader"
		if leader != nil {
			where = "the leader at " + leader.addr
		}
		c.WriteError(fmt.Sprintf("ERR tandem proxy: %s holds state on its connection, which the proxy shares between clients; send it to %s directly (tandem status shows it)", strings.ToUpper(name), where))
		return
	}
	o := p.begin(sess, args)
	ctx := sess.Enter()
	reply := p.complete(ctx, sess, o)
	sess.Leave()
	c.WriteRaw(reply)
}

// startOp starts a command of a pipeline ahead (FrontEnd.Start): every
// data command, except a read whose floor depends on a reply still owed
// (a positional policy after an earlier command of the pipeline), which
// the layer serves after the owed replies instead.
func (p *Proxy) startOp(sess *resp.Session, args [][]byte) bool {
	s := sess.Local.(*session)
	name := strings.ToLower(string(args[0]))
	if stateful[name] || name == "tandem.readpolicy" || name == "tandem.token" || name == "tandem.user" || name == "info" {
		return false
	}
	if len(s.owed) > 0 && (s.policy.positional() || s.user != "") {
		return false
	}
	s.owed = append(s.owed, p.begin(sess, args))
	return true
}

func (p *Proxy) flush(c redcon.Conn, sess *resp.Session) {
	s := sess.Local.(*session)
	if len(s.owed) == 0 {
		return
	}
	ctx := sess.Enter()
	for i, o := range s.owed {
		c.WriteRaw(p.complete(ctx, sess, o))
		s.owed[i] = nil
	}
	sess.Leave()
	s.owed = s.owed[:0]
}

// op is one client command on its way through the proxy.
type op struct {
	args    [][]byte
	read    bool
	policy  Policy
	cmds    [][][]byte // what the current attempt sent
	at, tok int
	call    *call // the current attempt; nil: none started
	tried   map[*node]bool
	began   time.Time
	fellWhy string // why a read ended at the leader, if it fell back
}

// begin starts o's first attempt where it goes, if it can go anywhere now.
func (p *Proxy) begin(sess *resp.Session, args [][]byte) *op {
	s := sess.Local.(*session)
	o := &op{args: args, read: isRead(args), policy: s.policy, began: time.Now()}
	if o.read {
		p.tryRead(sess, o)
	} else {
		if leader, _, _, _ := p.snapshot(); leader != nil && leader.healthy() {
			p.send(sess, o, leader)
		}
	}
	return o
}

// send starts an attempt of o on n.
func (p *Proxy) send(sess *resp.Session, o *op, n *node) {
	s := sess.Local.(*session)
	withPos := n.positions.Load() == 1
	if o.read {
		o.cmds, o.at, o.tok = s.readCmds(o.args, withPos)
	} else {
		o.cmds, o.at, o.tok = s.writeCmds(o.args, withPos)
	}
	o.call = newCall(n, o.cmds...)
	n.conn(sess.ID()).send(o.call)
}

// tryRead starts a read on the first node the policy allows that o has
// not tried; o.call stays nil if there is none.
func (p *Proxy) tryRead(sess *resp.Session, o *op) {
	s := sess.Local.(*session)
	leader, followers, _, _ := p.snapshot()
	order, why := p.readOrder(s, o.policy, leader, followers, sess.ID())
	o.call = nil
	for _, n := range order {
		if o.tried[n] {
			continue
		}
		if n == leader && why != "" {
			o.fellWhy = why
		}
		if o.tried == nil {
			o.tried = map[*node]bool{}
		}
		o.tried[n] = true
		p.send(sess, o, n)
		return
	}
}

// readOrder is where a read may go under pol, best first, and why it
// would reach the leader when the policy allows a follower.
func (p *Proxy) readOrder(s *session, pol Policy, leader *node, followers []*node, sid uint64) ([]*node, string) {
	var healthy []*node
	lacking := 0
	for _, n := range followers {
		switch {
		case !n.healthy():
		case pol.positional() && n.positions.Load() != 1:
			// A follower that does not enforce the policy (or has not
			// said yet) must not serve it; the leader gives it.
			lacking++
		default:
			healthy = append(healthy, n)
		}
	}
	var order []*node
	why := ""
	switch {
	case pol.Kind == "leader":
	case len(healthy) == 0 && lacking > 0:
		why = "no-positions"
	default:
		// Least loaded first, in the proxy's zone first; ties broken by
		// a counter, so that reads spread over equally loaded followers.
		sort.Slice(healthy, func(i, j int) bool { return healthy[i].id < healthy[j].id })
		if len(healthy) > 1 {
			k := int(p.rr.Add(1) % uint64(len(healthy)))
			healthy = append(healthy[k:], healthy[:k]...)
		}
		load := make(map[*node]int64, len(healthy))
		for _, n := range healthy {
			load[n] = n.inflight.Load()
		}
		sort.SliceStable(healthy, func(i, j int) bool {
			a, b := healthy[i], healthy[j]
			if za, zb := a.zone == p.cfg.Zone, b.zone == p.cfg.Zone; za != zb {
				return za
			}
			return load[a] < load[b]
		})
		if pol.Kind == "monotonic" && len(healthy) > 1 {
			// Sticky: one follower per user (or session) while it is
			// healthy; the node refuses it if it is behind the session.
			key := sid
			if s.user != "" {
				key = hash(s.user)
			}
			byID := append([]*node(nil), healthy...)
			sort.Slice(byID, func(i, j int) bool { return byID[i].id < byID[j].id })
			pick := byID[key%uint64(len(byID))]
			order = append(order, pick)
			for _, n := range healthy {
				if n != pick {
					order = append(order, n)
				}
			}
		} else {
			order = healthy
		}
		why = "no-follower"
		if len(order) > 0 {
			why = "read-elsewhere"
		}
	}
	if leader != nil {
		order = append(order, leader)
	}
	return order, why
}

func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// Errors the proxy answers itself.
const (
	replyNoLeader  = "-TRYAGAIN tandem proxy: no leader took writes within %v (a failover may be in progress); the write was not sent\r\n"
	replyNoNode    = "-TRYAGAIN tandem proxy: no node could serve the read (%s)\r\n"
	replyUncertain = "-UNCERTAIN tandem proxy: the connection to the leader was lost after the write was sent; it may or may not have taken effect\r\n"
)

// complete waits for o and answers it, sending it again where that is
// safe: a read to the next node, a write that did not run to the next
// leader.
func (p *Proxy) complete(ctx context.Context, sess *resp.Session, o *op) []byte {
	if o.read {
		return p.completeRead(ctx, sess, o)
	}
	return p.completeWrite(ctx, sess, o)
}

func (p *Proxy) completeWrite(ctx context.Context, sess *resp.Session, o *op) []byte {
	s := sess.Local.(*session)
	deadline := o.began.Add(p.cfg.WriteWait)
	waited := false
	for {
		if o.call == nil {
			leader, _, _, changed := p.snapshot()
			if leader != nil && leader.dialAllowed() {
				p.send(sess, o, leader)
				continue
			}
			if !waited {
				waited = true
				p.stats.writesWaited.Add(1)
			}
			if !p.wait(ctx, changed, deadline) {
				p.stats.writesNoLeader.Add(1)
				return fmt.Appendf(nil, replyNoLeader, p.cfg.WriteWait)
			}
			continue
		}
		err := p.await(ctx, o.call, p.cfg.UpstreamTimeout)
		switch {
		case errors.Is(err, errNotSent):
			o.call = nil
			continue
		case ctx.Err() != nil:
			return []byte("-ERR tandem proxy: client gone\r\n")
		case err != nil:
			p.stats.writesUncertain.Add(1)
			return []byte(replyUncertain)
		}
		r := o.call.replies[o.at]
		if hasPrefix(r, "-READONLY") || hasPrefix(r, "-MASTERDOWN") {
			// The node is no longer the leader, and did not run it: wait
			// for the next one.
			_, _, _, changed := p.snapshot()
			o.call = nil
			if !waited {
				waited = true
				p.stats.writesWaited.Add(1)
			}
			if !p.wait(ctx, changed, deadline) {
				return r
			}
			continue
		}
		if o.tok >= 0 {
			if t, ok := tokenOf(o.call.replies[o.tok]); ok {
				s.write = maxPos(s.write, t)
			}
		}
		return r
	}
}

func (p *Proxy) completeRead(ctx context.Context, sess *resp.Session, o *op) []byte {
	s := sess.Local.(*session)
	last := "no node known"
	for {
		if o.call == nil {
			p.stats.readFailed(last)
			return fmt.Appendf(nil, replyNoNode, last)
		}
		n := o.call.node
		err := p.await(ctx, o.call, p.cfg.ReadTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return []byte("-ERR tandem proxy: client gone\r\n")
			}
			// Reads have no effect: try the next node.
			p.stats.readsRetried.Add(1)
			last = "node " + n.id + " failed"
			p.tryRead(sess, o)
			continue
		}
		r := o.call.replies[o.at]
		for i, pre := range o.call.replies[:o.at] {
			if hasPrefix(pre, "-") {
				p.log.Warn("proxy: a node refused the session's read state", "node", n.id, "cmd", string(o.cmds[i][0]), "reply", string(trunc(pre, 200)))
				return pre
			}
		}
		if hasPrefix(r, "-TRYAGAIN tandem: read elsewhere") || hasPrefix(r, "-LOADING") || hasPrefix(r, "-MASTERDOWN") {
			p.stats.readsElsewhere.Add(1)
			last = "node " + n.id + ": " + strings.TrimSpace(string(trunc(r[1:], 120)))
			p.tryRead(sess, o)
			continue
		}
		if o.tok >= 0 {
			if t, ok := tokenOf(o.call.replies[o.tok]); ok {
				s.read = maxPos(s.read, t)
			}
		}
		p.stats.readServed(o.policy.Kind, n.id, o.fellWhy, n.zone != p.cfg.Zone)
		n.reads.Add(1)
		return r
	}
}

// await waits for c; a node that does not answer within timeout has its
// connection abandoned (and the error is errLost).
func (p *Proxy) await(ctx context.Context, c *call, timeout time.Duration) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		c.abandon()
	case <-ctx.Done():
		// The client left: the request may still run; the reader drops
		// its reply. The shared connection is fine.
		return ctx.Err()
	}
	<-c.done
	return c.err
}

// wait waits for a change of view or node health, until deadline; false
// if the deadline passed or ctx ended.
func (p *Proxy) wait(ctx context.Context, changed <-chan struct{}, deadline time.Time) bool {
	d := time.Until(deadline)
	if d <= 0 {
		return false
	}
	// Also wake at least every 50 ms: a node marked down may be dialed
	// again once its backoff has passed, which is no event.
	t := time.NewTimer(min(d, 50*time.Millisecond))
	defer t.Stop()
	select {
	case <-changed:
		return true
	case <-t.C:
		return time.Now().Before(deadline)
	case <-ctx.Done():
		return false
	}
}

func hasPrefix(b []byte, s string) bool { return len(b) >= len(s) && string(b[:len(s)]) == s }

// tokenOf reads TANDEM.TOKEN's reply, a bulk string.
func tokenOf(r []byte) (position, bool) {
	_, v := redcon.ReadNextRESP(r)
	if v.Type != redcon.Bulk {
		return position{}, false
	}
	t, err := parseToken(string(v.Data))
	return t, err == nil
}

// Package proxy is `tandem proxy`: a RESP front door for a tandem cluster.
// Any Redis client pointed at it works unchanged; it is a front end on
// internal/resp's connection layer (the same connection commands, limits
// and error texts as a node), and it reads replies from the nodes with
// redcon's RESP reader.
//
// # What it promises
//
//   - Writes, and every command that is not a plain read (a command the
//     commands table flags read only, SCAN, HSCAN, SSCAN and ZSCAN excepted, whose
//     cursor is a node's), go to the leader the topology in etcd names. While there is
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
//     connections per node for writes and as many for reads (as twemproxy
//     does); one session's commands to one node keep their order (a read
//     pipelined after its unanswered write follows it on its connection),
//     and a client's pipeline is sent ahead and answered in order. A read
//     that may wait on a follower for its position goes on a connection
//     of its own (Config.WaitConnsPerNode), so that it never holds up
//     other sessions' requests: a node answers a connection's requests in
//     order.
//   - MULTI/EXEC and WATCH work: WATCH or MULTI pins the session to a
//     connection of its own to the leader until EXEC, DISCARD or UNWATCH
//     (tx.go). SUBSCRIBE, PSUBSCRIBE and SSUBSCRIBE pin the client's connection to a
//     node connection of its own for the rest of its life (subscribe.go).
//     Blocking pops go to the leader on a connection of the session's
//     own (block.go). Other commands that hold connection state on the
//     node (WAIT, TANDEM.DURABILITY, MONITOR...) are refused with a
//     clear error naming the leader's address (connect there directly),
//     never run on a shared connection.
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
	"slices"
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
	// Policy is a new connection's read policy; the zero Policy is DefaultPolicy, ryw.
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
	// WaitConnsPerNode bounds the connections each node gets for reads
	// that may wait there (one read at a time on each, so that a waiting
	// read holds up no other request); 0 means 64. A waiting read that
	// finds them all busy uses a shared connection.
	WaitConnsPerNode int
	// LeaderShare bounds the ryw reads the leader serves instead of a
	// follower that would first have to wait for the session's floor: at
	// most about this share of the reads followers serve (a token bucket,
	// leaderCredit); past it such reads wait on a follower. 0 means
	// DefaultLeaderShare; negative: never (every such read waits on a
	// follower).
	LeaderShare float64
	// SlowRead is when a follower is too slow for bounded and
	// linearizable reads: when all of them (linearizable: all its index
	// batches) took longer than this for a while (slowWindow; batches
	// slowBatchWindow), it gets none for staleTTL and the leader serves
	// them (fallback followers-slow). A follower that lags L makes every
	// linearizable read wait at least L, the leader about a round trip:
	// the default, 25 ms, sends them to the leader once the lag passes
	// it; above the lag, they stay on the followers and wait it out.
	// 0 means DefaultSlowRead; negative: never (they always wait on the
	// followers, up to the node's --read-wait).
	SlowRead time.Duration
	// IndexBatches bounds the linearizable batches in flight per
	// follower (readindex.go); 0 means 2.
	IndexBatches int
	// RESP is the client-facing connection layer's configuration.
	RESP   resp.Config
	Logger *slog.Logger

	clock func() time.Time // the routing's clock (Proxy.now); nil: time.Now
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

	mu        sync.Mutex
	view      View
	nodes     map[string]*node
	changed   chan struct{} // closed and replaced on every change of view or node health
	etcdReads atomic.Int64  // FollowEtcd's reads of the members (tests)
	// membersEvery is FollowEtcd's period between reads of the members
	// when nothing says to read them (0: the constant membersEvery; a test
	// that counts reads over a window makes it longer than the window).
	membersEvery time.Duration
	etcdErr      error     // why etcd is unreachable; nil when it is fine
	etcdAt       time.Time // since when
	closed       bool
	done         chan struct{} // closed by Close
	rr           atomic.Uint64 // read counter, spreads ties between followers
	// leaderCredit is the token bucket of LeaderShare, in thousandths of
	// a leader read: each read a follower serves earns creditPerRead, a
	// ryw read sent to the leader instead of waiting costs creditUnit.
	leaderCredit  atomic.Int64
	creditPerRead int64
	routes        atomic.Pointer[routes]
	// now is the clock of the read routing's memory of follower
	// positions (time.Now; tests set their own).
	now func() time.Time
}

// New returns a proxy; serve clients with Serve.
func New(cfg Config) *Proxy {
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
	switch {
	case cfg.LeaderShare == 0:
		cfg.LeaderShare = DefaultLeaderShare
	case cfg.LeaderShare < 0:
		cfg.LeaderShare = 0
	}
	if cfg.WaitConnsPerNode <= 0 {
		cfg.WaitConnsPerNode = 64
	}
	if cfg.IndexBatches <= 0 {
		cfg.IndexBatches = indexInFlight
	}
	if cfg.SlowRead == 0 {
		cfg.SlowRead = DefaultSlowRead
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.RESP.Logger = cfg.Logger
	p := &Proxy{cfg: cfg, log: cfg.Logger, stats: newStats(), start: time.Now(),
		nodes: map[string]*node{}, changed: make(chan struct{}), done: make(chan struct{}), now: time.Now}
	p.routes.Store(&routes{changed: p.changed})
	p.creditPerRead = int64(cfg.LeaderShare * creditUnit)
	if cfg.clock != nil {
		p.now = cfg.clock
	}
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
		Open: func(sess *resp.Session) { sess.Local = &session{policy: p.cfg.Policy} },
		Reset: func(sess *resp.Session) {
			sess.Local.(*session).unpin()
			sess.Local = &session{policy: p.cfg.Policy}
		},
		Close: func(sess *resp.Session) {
			if s, ok := sess.Local.(*session); ok {
				s.unpin()
			}
		},
		Queue: p.txQueue,
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
// since no request is routed to them. It ticks only while a node is down:
// with every node up it sleeps until the next change of health or view
// (markDown kicks), so an idle proxy does not wake 50 times a second.
func (p *Proxy) healthLoop() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		p.mu.Lock()
		changed := p.changed
		down := false
		for _, n := range p.nodes {
			if !n.healthy() {
				down = true
			}
			if n.downAndDue() {
				go n.revive()
			}
		}
		p.mu.Unlock()
		wake := t.C
		if !down {
			wake = nil
		}
		select {
		case <-p.done:
			return
		case <-wake:
		case <-changed:
		}
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
	r := &routes{changed: p.changed}
	for id, n := range p.nodes {
		if id == p.view.Leader {
			r.leader = n
		} else {
			r.followers = append(r.followers, n)
		}
	}
	slices.SortFunc(r.followers, func(a, b *node) int { return strings.Compare(a.id, b.id) })
	p.routes.Store(r)
}

// routes is the view as requests use it, replaced (never changed) on every
// change of view or node health, so a request reads it without a lock.
type routes struct {
	leader    *node   // nil while there is none
	followers []*node // by id
	changed   chan struct{}
}

// snapshot is the view and nodes at one time, and a channel closed at the
// next change.
func (p *Proxy) snapshot() (leader *node, followers []*node, changed <-chan struct{}) {
	r := p.routes.Load()
	return r.leader, r.followers, r.changed
}

// The commands a shared connection cannot carry: they leave state on the
// node's connection (a transaction, subscriptions, a blocked client, a
// durability floor) that would leak to, or stall, every other session on
// it. Refused with an error naming the leader, to be used directly.
var stateful = map[string]bool{
	"monitor": true, "sync": true, "psync": true,
	"xread": true, "xreadgroup": true,
	"wait": true, "waitaof": true, "tandem.durability": true,
}

// transactional are the commands of a transaction: WATCH and MULTI pin
// the session to a connection of its own to the leader (tx.go).
var transactional = map[string]bool{"multi": true, "exec": true, "discard": true, "watch": true, "unwatch": true}

// lookupName finds a lower-case name in m, in any case, without
// allocating.
func lookupName(m map[string]bool, name []byte) bool {
	var buf [24]byte
	if len(name) > len(buf) {
		return false
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m[string(buf[:len(name)])]
}

// local are the proxy's own commands (the session's state, INFO).
var local = map[string]bool{"tandem.readpolicy": true, "tandem.token": true, "tandem.user": true, "info": true}

// nodeCursor are the reads whose cursor is a node's (its CursorTable):
// the next page must come from the same node, so they go to the leader.
var nodeCursor = map[string]bool{"scan": true, "hscan": true, "sscan": true, "zscan": true}

// isRead: a plain read, which may go to a follower.
func isRead(args [][]byte) bool {
	spec, ok := commands.Resolve(args)
	return ok && spec.Flags&commands.FlagWrite == 0 && spec.Flags&commands.FlagRead != 0 && !nodeCursor[spec.Name]
}

func (p *Proxy) serve(c redcon.Conn, sess *resp.Session, args [][]byte) {
	switch {
	case lookupName(transactional, args[0]):
		if !txNotPinned(c, args) {
			p.txStart(c, sess, args)
		}
		return
	case lookupName(pinning, args[0]):
		p.pin(c, sess, args) // subscribe.go
		return
	case lookupName(unsubscribing, args[0]):
		cmdUnsubscribe(c, args)
		return
	case lookupName(blocking, args[0]):
		p.block(c, sess, args) // block.go
		return
	}
	if lookupName(stateful, args[0]) {
		name := string(args[0])
		leader, _, _ := p.snapshot()
		where := "the leader"
		if leader != nil {
			where = "the leader at " + leader.addr
		}
		c.WriteError(fmt.Sprintf("ERR tandem proxy: %s holds state on its connection, which the proxy shares between clients; send it to %s directly (tandem status shows it)", strings.ToUpper(name), where))
		return
	}
	o := p.begin(sess, args, true)
	ctx := sess.Enter()
	reply := p.complete(ctx, sess, o)
	sess.Leave()
	c.WriteRaw(reply)
}

// startOp starts a command of a pipeline ahead (FrontEnd.Start): every
// data command, except one after a command whose owed reply carries a
// position (a positional policy on nodes that enforce it): the session's
// token it must carry is known only then, so the layer serves it after
// the owed replies instead.
func (p *Proxy) startOp(sess *resp.Session, args [][]byte) bool {
	s := sess.Local.(*session)
	if s.pin != nil || lookupName(transactional, args[0]) || lookupName(stateful, args[0]) || lookupName(local, args[0]) ||
		lookupName(pinning, args[0]) || lookupName(unsubscribing, args[0]) || lookupName(blocking, args[0]) {
		return false
	}
	if isRead(args) {
		for _, o := range s.owed {
			if o.tok >= 0 && (!o.read || s.policy.Kind != resp.PolicyRYW) {
				// An owed reply raises the session's position, which this
				// read must carry. (A write carries none: it goes to the
				// leader, which serves it whatever the session read; nor
				// does a ryw read carry what the session read, only its
				// writes: see session.floor.)
				return false
			}
		}
	}
	s.owed = append(s.owed, p.begin(sess, args, false))
	return true
}

func (p *Proxy) flush(c redcon.Conn, sess *resp.Session) {
	s := sess.Local.(*session)
	if len(s.owed) == 0 {
		return
	}
	// Write what the pipeline queued, a write per connection.
	p.sendBurst(sess)
	for i, u := range s.unsent {
		u.flush()
		s.unsent[i] = nil
	}
	s.unsent = s.unsent[:0]
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
	// from: the current attempt's commands begin at this index of its
	// call's (a bounded read in a group, waitgroup.go; else 0).
	from    int
	call    *call // the current attempt; nil: none started
	tried   []*node
	began   time.Time
	fellWhy string // why a read ended at the leader, if it fell back
	later   bool   // the first attempt may leave its bytes for the flush
	wait    bool   // the current attempt is a read that may wait on its node
	// toLeader: the current attempt is a read on the node that was the
	// leader when it was picked.
	toLeader bool
	// known: the current attempt went without the session's state, to
	// a node known to have applied floor (knownReadCmds); its token must
	// prove it. noKnown: one such attempt did not, send the state.
	// (The bools side by side: op stays in a 512-byte size class.)
	known, noKnown bool
	// proved: the current attempt is a known read sent bare on a read
	// connection, proven by the proofs around it (upstream.go);
	// knownForm: one in the known form (knownReadCmds).
	proved, knownForm bool
	again             int       // times a monotonic read was sent to wait again on its follower
	sentAt            time.Time // when the current attempt was sent (Proxy.now)
	floor             position
	// batch: the current attempt is a linearizable read in an index
	// batch (readindex.go), whose probe must have learned a position.
	batch *indexBatch

	// Storage for the common case, so that a request costs few
	// allocations: the first attempt's call, a lone command's list, the
	// first nodes tried.
	first call
	// cmdsBuf holds a lone command's list, or the known form's commands
	// (knownReadCmds).
	cmdsBuf  [3][][]byte
	triedBuf [3]*node
}

// begin starts o's first attempt where it goes, if it can go anywhere
// now; unless now, its bytes may wait in the connection's buffer for the
// session's flush (a pipeline's commands share writes).
func (p *Proxy) begin(sess *resp.Session, args [][]byte, now bool) *op {
	s := sess.Local.(*session)
	o := &op{args: args, read: isRead(args), policy: s.policy, began: time.Now(), later: !now}
	o.tried = o.triedBuf[:0]
	if o.read {
		p.sendBurst(sess)
		p.tryRead(sess, o)
	} else if leader, _, _ := p.snapshot(); leader != nil && leader.healthy() {
		if !now && s.joinBurst(o, leader) {
			o.later = false
			return o
		}
		p.sendBurst(sess)
		p.send(sess, o, leader)
	} else {
		p.sendBurst(sess)
	}
	o.later = false
	return o
}

// maxBurst bounds the writes of one burst (one call upstream).
const maxBurst = 128

// joinBurst adds o, a write of a pipeline going to leader, to the
// session's burst when it carries session state (a positional policy or a
// user, on a leader that enforces positions): consecutive such writes are
// sent as one run, [TANDEM.USER u] w1 ... wn TANDEM.TOKEN and what undoes
// the session state (writeCmds), instead of each with its own. A node
// that does not start TANDEM.TOKEN ahead waits for every write before it
// to be acknowledged, so per-write tokens would make each write of the
// pipeline wait for the previous one's commit; in one run the writes are
// started together and share commits. (Until the run is sent its ops'
// tok is 0, not -1: a read after them waits for their replies.)
// The run's token is the position of its last write (a session's writes
// on one connection are sequenced in order), which is what each of them
// raises the session's position to: no read of the session can come
// between them, since a read after an owed positional reply is served
// only after the owed replies. Returns false if o is not for a burst.
func (s *session) joinBurst(o *op, leader *node) bool {
	if leader.positions.Load() != 1 || (!positional(s.policy) && s.user == "") {
		return false
	}
	if b := s.burst; b != nil && (b.node != leader || len(b.ops) >= maxBurst) {
		return false
	}
	if s.burst == nil {
		s.burst = &burst{node: leader}
	}
	s.burst.ops = append(s.burst.ops, o)
	return true
}

// sendBurst queues the session's burst, if any, as one call on its
// leader's connection (written at the flush, with the rest of the
// pipeline).
func (p *Proxy) sendBurst(sess *resp.Session) {
	s := sess.Local.(*session)
	b := s.burst
	if b == nil {
		return
	}
	s.burst = nil
	args := make([][][]byte, len(b.ops))
	for i, o := range b.ops {
		args[i] = o.args
	}
	cmds, at, tok := s.writeCmds(args, true)
	c := new(call)
	c.init(b.node, cmds)
	for i, o := range b.ops {
		o.cmds, o.at, o.tok, o.call = cmds, at[i], tok, c
	}
	u := b.node.conn(sess.ID())
	u.send(c, false)
	if !slices.Contains(s.unsent, u) {
		s.unsent = append(s.unsent, u)
	}
}

// send starts an attempt of o on n.
func (p *Proxy) send(sess *resp.Session, o *op, n *node) {
	s := sess.Local.(*session)
	withPos := n.positions.Load() == 1
	o.batch, o.proved, o.knownForm, o.from = nil, false, false, 0
	switch {
	case !withPos || (!positional(s.policy) && (o.read || s.user == "")):
		// A bare command (what readCmds and writeCmds give, without
		// their allocations).
		o.cmdsBuf[0] = o.args
		o.cmds, o.at, o.tok = o.cmdsBuf[:1], 0, -1
	case o.read && !o.wait && !o.noKnown && s.user == "" && (s.policy.Kind == resp.PolicyRYW || s.policy.Kind == resp.PolicyMonotonic) && n.knownAppliedIn(s.floor()):
		if s.owesWrite(n) || plantKnownForm || !n.readConn(sess.ID()).provenIn(s.floor()) {
			// In the known form, which proves itself: on the write
			// connection, behind the session's write, the proofs of a
			// read connection do not reach it; on a read connection whose
			// last proof does not prove the floor (none yet, or the
			// floor is the session's new write), the read needs a proof
			// before it, and its token is one for the reads after it.
			o.cmds, o.at, o.tok = knownReadCmds(&o.cmdsBuf, o.args)
			o.knownForm = true
		} else {
			o.cmdsBuf[0] = o.args
			o.cmds, o.at, o.tok = o.cmdsBuf[:1], 0, -1
			o.proved = true
		}
		o.known, o.floor = true, s.floor()
		p.stats.readsFloorKnown.Add(1)
	case o.read && (o.wait || o.toLeader) && !o.noKnown && o.policy.Kind == resp.PolicyLinearizable && withPos:
		// A linearizable read goes in the node's next index batch
		// (readindex.go): a follower's, and the leader's too when it
		// serves them (followers behind or slow, none): its probe is
		// one ReadBarrier for the batch, where each read in the full
		// form was four commands more and a barrier of its own.
		o.sentAt, o.floor = p.now(), s.floor()
		n.index.enqueue(o, sess.ID())
		return
	case o.read:
		o.known = false
		o.cmds, o.at, o.tok = s.readCmds(o.args, withPos)
	default:
		var at []int
		o.cmds, at, o.tok = s.writeCmds([][][]byte{o.args}, withPos)
		o.at = at[0]
	}
	if o.read && o.wait && o.policy.Kind == resp.PolicyBounded && withPos {
		// With the bounded reads of the same bound that come with it,
		// in one call on a connection of their own (waitgroup.go).
		o.sentAt = p.now()
		if n.group.join(n, o, sess.ID()) {
			if !n.healthy() {
				p.stats.readsToDown.Add(1)
			}
			return
		}
	}
	if o.first.done == nil {
		o.call = &o.first
	} else {
		o.call = new(call)
	}
	o.call.init(n, o.cmds)
	o.call.proved, o.call.known = o.proved, o.knownForm
	if o.read {
		o.sentAt = p.now()
		if !n.healthy() {
			p.stats.readsToDown.Add(1)
		}
		if o.wait {
			// A read that may wait goes on a connection of its own, at
			// once (nothing of the pipeline can share its write).
			if u := n.borrow(); u != nil {
				p.stats.readsMayWait.Add(1)
				o.call.lease = u
				u.send(o.call, true)
				return
			}
			p.stats.readsMayWaitSh.Add(1)
		}
	}
	u := n.conn(sess.ID())
	if o.read && !s.owesWrite(n) {
		u = n.readConn(sess.ID())
	}
	u.send(o.call, !o.later)
	if o.later && !slices.Contains(s.unsent, u) {
		s.unsent = append(s.unsent, u)
	}
}

// owesWrite: a command of the session's pipeline started ahead on n's
// write connection is not answered yet, so a read after it must go on
// the same connection to see it (a node serves a connection's commands in
// order). A write already answered is applied on the node that answered
// it, which is all a read on another connection needs.
func (s *session) owesWrite(n *node) bool {
	for _, o := range s.owed {
		if o.read || o.call == nil || o.call.node != n {
			continue
		}
		select {
		case <-o.call.done:
		default:
			return true
		}
	}
	return false
}

// tryRead starts a read on the best node the policy allows that o has
// not tried; o.call stays nil if there is none.
func (p *Proxy) tryRead(sess *resp.Session, o *op) {
	s := sess.Local.(*session)
	leader, followers, _ := p.snapshot()
	o.call = nil
	n, why, wait := p.pickRead(s, o.policy, leader, followers, o.tried, sess.ID(), p.now())
	if n == nil {
		return
	}
	if n == leader {
		o.fellWhy = why
	}
	o.tried = append(o.tried, n)
	o.wait, o.toLeader = wait, n == leader
	p.send(sess, o, n)
}

// waitsForLeader: under the policy a follower may have to wait to catch
// up with the leader's commit position (linearizable) or freshness
// (bounded) before it serves, whatever the session's floor.
func waitsForLeader(pol Policy) bool {
	return pol.Kind == resp.PolicyBounded || pol.Kind == resp.PolicyLinearizable
}

// DefaultSlowRead is Config.SlowRead's default: bounded or linearizable
// reads that all take longer on a follower for a while (node.slow) wait
// there for the leader's position: the follower lags, and the leader
// would serve them sooner.
const DefaultSlowRead = 25 * time.Millisecond

// maxWaitAgain bounds how often a monotonic read waits again on its
// follower (besides the proxy's ReadTimeout): a node with a tiny
// --read-wait is not asked in a tight loop.
const maxWaitAgain = 20

// replyNotApplied begins a follower's refusal of a read whose floor it
// did not apply within its read wait (replication's verdictErr); the
// text ends with "(applied <epoch>:<lsn>)".
const replyNotApplied = "-TRYAGAIN tandem: read elsewhere: this node has not applied the position "

// appliedIn reads the applied position a replyNotApplied names.
func appliedIn(r []byte) (position, bool) {
	s := string(r)
	i := strings.LastIndex(s, "(applied ")
	if i < 0 {
		return position{}, false
	}
	rest, _, ok := strings.Cut(s[i+len("(applied "):], ")")
	if !ok {
		return position{}, false
	}
	t, err := resp.ParseToken("t1:" + rest)
	return t, err == nil
}

// pickRead is where a read goes next under pol, not to a node in tried,
// and whether it may wait there: a follower the policy allows, else the
// leader, with why a read the policy would let a follower serve reached
// it.
//
// Among followers: the proxy's zone first, then the least loaded (ties
// rotated; not the one known to serve at once: a follower that got no
// reads would never become known, and all would go to the other); under
// monotonic the
// session's sticky follower (by user or session, among the followers in
// the proxy's zone when it has any), whatever its position, so that the
// session's reads stay on one history and do not chase the leader's.
//
// A follower serves a ryw or monotonic read at once when it is known
// (from the reads served there) to have applied the session's floor;
// otherwise, and always under bounded and linearizable (which may ask the
// leader), the read may wait there, up to the node's --read-wait: it is
// sent on a connection of its own (send), never behind or ahead of other
// sessions' requests on a shared one, and a follower that refused such a
// read within staleTTL gets none (the leader serves it at once).
func (p *Proxy) pickRead(s *session, pol Policy, leader *node, followers []*node, tried []*node, sid uint64, now time.Time) (*node, string, bool) {
	why := ""
	if pol.Kind != resp.PolicyLeader && len(followers) > 0 {
		var (
			best      *node
			bestLoad  int64
			bestOther bool
			bestWait  bool
			eligible  int // healthy followers that may serve pol
			lacking   int
			behind    int  // eligible but refused a waiting read lately
			slow      int  // of those, found too slow (Config.SlowRead)
			inZone    bool // one of them, not tried yet, is in the proxy's zone
		)
		floor := s.floor()
		// waits: a read under pol may wait on n; skip: n refused such a
		// read lately.
		waits := func(n *node) (wait, skip bool) {
			switch pol.Kind {
			case resp.PolicyAny:
				return false, false
			case resp.PolicyRYW, resp.PolicyMonotonic:
				if floor == (position{}) || n.knownApplied(floor) {
					return false, false
				}
			}
			return true, n.recentlyStale(now)
		}
		// Ties go to the first found from a rotating start, so that reads
		// spread over equally loaded followers.
		k := int(p.rr.Add(1) % uint64(len(followers)))
		for i := range followers {
			n := followers[(k+i)%len(followers)]
			if !n.healthy() {
				continue
			}
			if positional(pol) && n.positions.Load() != 1 {
				// A follower that does not enforce the policy (or has not
				// said yet) must not serve it; the leader gives it.
				lacking++
				continue
			}
			eligible++
			if slices.Contains(tried, n) {
				continue
			}
			wait, skip := waits(n)
			if skip {
				behind++
				if n.recentlySlow(now) {
					slow++
				}
				continue
			}
			load, other := n.inflight.Load(), n.zone != p.cfg.Zone
			inZone = inZone || !other
			if best == nil || (!other && bestOther) || (other == bestOther && load < bestLoad) {
				best, bestLoad, bestOther, bestWait = n, load, other, wait
			}
		}
		if pol.Kind == resp.PolicyRYW && best != nil && bestWait && leader != nil && !slices.Contains(tried, leader) && p.takeLeaderRead() {
			// The session's floor (its own last write, mostly) is not
			// known to be applied where the read would go: the leader
			// serves it at once, within its share (LeaderShare), rather
			// than the read waiting out the follower's lag. Past the
			// share it waits there, as before. (Not to another follower
			// known to have the floor: one that got no such reads would
			// never become known.)
			return leader, "floor-not-applied", false
		}
		if pol.Kind == resp.PolicyMonotonic && len(tried) == 0 && eligible > 1 {
			// Sticky: one follower per user (or session) while it is
			// healthy, among those in the proxy's zone if any is, even
			// if it refused reads lately: a read served elsewhere (at the
			// latest the leader) raises the session's position to where
			// the followers are not yet, so the next read would have to
			// go elsewhere too; waiting on the sticky follower ends
			// that (see completeRead).
			key := sid
			if s.user != "" {
				key = hash(s.user)
			}
			var pool []*node
			for _, n := range followers {
				if n.healthy() && n.positions.Load() == 1 && (!inZone || n.zone == p.cfg.Zone) {
					pool = append(pool, n)
				}
			}
			if len(pool) > 0 {
				best = pool[key%uint64(len(pool))]
				bestWait, _ = waits(best)
			}
		}
		if best != nil {
			return best, "", bestWait
		}
		switch {
		case slow > 0 && slow == behind && behind+len(tried) >= eligible:
			// Deliberately: they serve these reads, later than the
			// leader would (Config.SlowRead).
			why = "followers-slow"
		case behind > 0 && behind+len(tried) >= eligible:
			why = "followers-behind"
		case eligible > 0:
			why = "read-elsewhere"
		case lacking > 0:
			why = "no-positions"
		default:
			why = "no-follower"
		}
	}
	if leader == nil || slices.Contains(tried, leader) {
		return nil, why, false
	}
	return leader, why, false
}

// creditUnit is a leader read in leaderCredit; maxCredit bounds what
// the bucket saves up (a burst of that many leader reads).
const (
	creditUnit = 1000
	maxCredit  = 50 * creditUnit
)

// DefaultLeaderShare is Config.LeaderShare's default: the leader serves
// at most about three ryw reads for a hundred that followers serve in
// place of a wait on a follower. The bound on the leader under
// ryw is 20% of its leader-only CPU per read, and a read the leader
// serves for floor-not-applied costs it 4-7 times a read under policy
// leader (those come in a dense stream and share its system calls;
// these come one at a time): at 50 ms lag, 0.1 let about 6% of ryw reads
// reach the leader (the bucket did not bind) for 0.21-0.44x, 0.03 about
// 3% for 0.07-0.18x, the rest of those sessions' reads waiting once on a
// follower for their write (about 0.2% of reads, up to the lag each).
const DefaultLeaderShare = 0.03

// earnLeaderRead credits the bucket for a read a follower served.
func (p *Proxy) earnLeaderRead() {
	if p.creditPerRead == 0 || p.leaderCredit.Load() >= maxCredit {
		return
	}
	p.leaderCredit.Add(p.creditPerRead)
}

// takeLeaderRead takes one leader read from the bucket, if it holds one.
func (p *Proxy) takeLeaderRead() bool {
	for {
		c := p.leaderCredit.Load()
		if c < creditUnit {
			return false
		}
		if p.leaderCredit.CompareAndSwap(c, c-creditUnit) {
			return true
		}
	}
}

func hash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * 1099511628211
	}
	return h
}

// plantKnownForm is a planted inefficiency for tests: every known read
// goes in the three-command known form, none proved
// (TestProvedReadsShareProofs counts the commands).
var plantKnownForm = false

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
			leader, _, changed := p.snapshot()
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
		err := s.await(ctx, o.call, p.cfg.UpstreamTimeout)
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
			_, _, changed := p.snapshot()
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
				// The node acknowledged the write as the leader, which
				// applies a write before it acknowledges it (and every
				// position its connection's token can hold is one it
				// acknowledged or served a read at): it has applied t.
				// So the session's reads that fall back to it for this
				// floor go in the known form (knownReadCmds), not with
				// the session's state.
				o.call.node.servedAt(t)
			}
		}
		return r
	}
}

func (p *Proxy) completeRead(ctx context.Context, sess *resp.Session, o *op) []byte {
	s := sess.Local.(*session)
	last := "no node known"
	deadline := o.began.Add(p.cfg.WriteWait)
	waited := false
	for {
		if o.call == nil {
			// Nowhere to go. With no leader at all (a failover), wait
			// for one as a write does; the nodes tried are not tried again.
			leader, _, changed := p.snapshot()
			if leader != nil && !slices.Contains(o.tried, leader) {
				// The view gained a leader after tryRead looked (a view
				// change between its snapshot and this one): try it. Each
				// pass adds a node to o.tried, so this ends.
				p.tryRead(sess, o)
				if o.call != nil {
					continue
				}
			}
			if leader == nil && !waited {
				waited = true
				p.stats.readsWaited.Add(1)
			}
			if leader == nil && p.wait(ctx, changed, deadline) {
				p.tryRead(sess, o)
				continue
			}
			p.stats.readFailed(last)
			return fmt.Appendf(nil, replyNoNode, last)
		}
		n := o.call.node
		err := s.await(ctx, o.call, p.cfg.ReadTimeout)
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
		if b := o.batch; b != nil && b.err != nil {
			// The batch's probe failed: no read of it is used.
			p.stats.readsRetried.Add(1)
			last = strings.TrimSpace(string(trunc([]byte(b.err.Error()), 160)))
			p.tryRead(sess, o)
			continue
		}
		if o.batch != nil {
			o.floor = maxPos(o.floor, o.batch.at)
		}
		r := o.call.replies[o.at]
		for i, pre := range o.call.replies[o.from:o.at] {
			if o.batch != nil {
				break // the probe's and other reads' replies
			}
			if hasPrefix(pre, "-") {
				p.log.Warn("proxy: a node refused the session's read state", "node", n.id, "cmd", string(o.cmds[i][0]), "reply", string(trunc(pre, 200)))
				return pre
			}
		}
		if hasPrefix(r, "-TRYAGAIN tandem: read elsewhere") || hasPrefix(r, "-LOADING") || hasPrefix(r, "-MASTERDOWN") {
			notYet := hasPrefix(r, replyNotApplied)
			if notYet {
				if at, ok := appliedIn(r); ok {
					n.servedAt(at)
				}
			}
			if o.policy.Kind == resp.PolicyBounded {
				n.boundedOK.Store(false)
			}
			if o.wait && hasPrefix(r, "-TRYAGAIN") {
				// It waited its read wait and did not get there: keep
				// waiting reads off it for a while.
				n.refusedStale(p.now())
			}
			p.stats.readsElsewhere.Add(1)
			if notYet && o.policy.Kind == resp.PolicyMonotonic && n.healthy() && time.Since(o.began) < p.cfg.ReadTimeout && o.again < maxWaitAgain {
				o.again++
				// The session's follower is on its way to the position:
				// wait there again (see pickRead).
				p.stats.readsWaitedAgain.Add(1)
				o.wait = true
				p.send(sess, o, n)
				continue
			}
			last = "node " + n.id + ": " + strings.TrimSpace(string(trunc(r[1:], 120)))
			p.tryRead(sess, o)
			continue
		}
		if c := o.call; c.proved {
			// A bare read between two proofs (upstream.go): both must
			// prove the floor, and the one after bounds the position the
			// session read at.
			if !c.provesFloor(o.floor) {
				p.stats.readsFloorUnproven.Add(1)
				o.noKnown, o.wait = true, true
				p.send(sess, o, n)
				continue
			}
			s.read = maxPos(s.read, c.after)
			n.servedAt(c.after)
		}
		if o.tok >= 0 {
			t, ok := tokenOf(o.call.replies[o.tok])
			if o.known && !floorProven(o.floor, t) { // t is zero if !ok
				// Served, but not provably at the floor (the node's
				// history changed under what the proxy knew): send it
				// with the session's state, for the node to enforce.
				if o.policy.Kind == resp.PolicyLinearizable {
					p.stats.indexUnproven.Add(1)
				} else {
					p.stats.readsFloorUnproven.Add(1)
				}
				o.noKnown, o.wait = true, true
				p.send(sess, o, n)
				continue
			}
			if ok {
				s.read = maxPos(s.read, t)
				n.servedAt(t)
			}
		}
		if o.policy.Kind == resp.PolicyBounded {
			lim := n.slowLimit()
			n.boundedOK.Store(lim < 0 || p.now().Sub(o.sentAt) < lim)
		}
		leader, _, _ := p.snapshot()
		if waitsForLeader(o.policy) && n != leader && !(o.known && o.policy.Kind == resp.PolicyLinearizable) && n.slow(p.now().Sub(o.sentAt), p.now()) {
			// The follower's reads wait for the leader's position: it
			// lags, and the leader serves them at once.
			n.foundSlow(p.now())
		}
		p.stats.readServed(policyName(o.policy), n.id, o.fellWhy, n.zone != p.cfg.Zone)
		n.reads.Add(1)
		if n != leader {
			p.earnLeaderRead()
		}
		return r
	}
}

// await waits for c; a node that does not answer within timeout has its
// connection abandoned (and the error is errLost).
func (s *session) await(ctx context.Context, c *call, timeout time.Duration) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	// The session's own timer, reused (a stopped timer's channel holds
	// no stale tick since Go 1.23).
	if s.timer == nil {
		s.timer = time.NewTimer(timeout)
	} else {
		s.timer.Reset(timeout)
	}
	t := s.timer
	defer t.Stop()
	select {
	case <-c.done:
		return c.err
	case <-t.C:
		c.abandon()
	case <-ctx.Done():
		// The client left: the request may still run; the reader drops
		// its reply. A shared connection is fine; a connection of the
		// request's own is closed (it holds nothing else, and a node
		// that never answered would keep it from the next waiting read).
		if c.lease != nil && c.reads.Load() <= 1 {
			c.abandon()
		}
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
	t, err := resp.ParseToken(string(v.Data))
	return t, err == nil
}

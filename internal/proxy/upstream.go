package proxy

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/redcon"
)

// An upstream connection is one TCP connection to a node that many client
// sessions share, as twemproxy's server connections are: requests are
// written in the order they are queued and the node answers them in that
// order, so the replies are matched to the queue's head. The node speaks
// RESP2 to it (no HELLO is ever sent), so its replies can be forwarded
// byte for byte to any client of the proxy, which speaks RESP2 too.
//
// Two locks, so that a node that stops reading cannot wedge the reader:
// wmu orders writers (and with them the queue, since a request is queued
// and written under it), qmu guards the queue alone, which the reader pops.

// errNotSent: the request never reached a socket (no connection to the
// node could be made, or the connection had already failed): it did not
// run, and may be sent elsewhere or again.
var errNotSent = errors.New("not sent")

// errLost: the connection failed after the request was written: it may or
// may not have run on the node.
var errLost = errors.New("connection to the node lost after the request was sent")

// call is one request on an upstream connection: one or more commands
// written together, whose replies come back together.
type call struct {
	cmds    [][][]byte // each a command's arguments
	replies [][]byte   // raw RESP replies, one per command, once done
	err     error      // errNotSent or errLost (wrapped), once done
	done    chan struct{}
	node    *node
	// up and nc are the connection it was written on (abandon closes it).
	up *upConn
	nc net.Conn
	// lease is the node's waiting-read connection the call holds alone
	// (node.borrow), given back when it is done; nil on a shared one.
	lease *upConn
	// reads counts the reads of a group of bounded reads (waitgroup.go)
	// carried: a client that leaves closes the connection of a call of
	// its own, not one that carries others' reads (their timeouts
	// close it if the node never answers).
	reads atomic.Int32
	// then, if set, runs once the call is done, before its waiters hear
	// of it (an index batch's settling, readindex.go).
	then func(*call)

	// proved: a read sent bare on a read connection, to be proven by the
	// connection's proofs around it (see proof); before and after are
	// their positions, set before it is done (zero: none, or it failed).
	proved        bool
	before, after position
	// proof: the call is a proof, TANDEM.APPLIED, which writeOut appends
	// to a write holding proved reads. known: the call is a read in the
	// known form (knownReadCmds), whose token proves as well.
	proof, known bool

	// few holds the replies of a call of up to three commands (most
	// calls: a lone command, a read in the known form).
	few [3][]byte
}

// Proofs on a read connection. A ryw or monotonic read of a floor the
// node is known to have applied goes bare on a read connection, and every
// write of the connection that holds such reads ends with one TANDEM.APPLIED
// (the node's applied position, which leaves the session as it was): the
// proof after each of them. The proof before a read is the last one whose
// reply came before the read's on the same connection (so it was sent,
// and served, before the read). A read is served at its floor if both are
// in the floor's epoch and at or past it (floorProven): the node had the
// floor applied before the read, and an applied position goes back only
// by a failover's truncation, after which it is never again in that epoch
// past the truncation point (the argument of readindex.go), so it did
// not go back in between. Where a read in the known form costs the node
// three commands (knownReadCmds), a proven one costs one and a share of
// a proof: reads per write of a busy connection are many.

// provesFloor: c, a proved read, was served at or past floor: both its
// proofs prove it. The one after must be there in any case, as it bounds
// the position the session read at.
func (c *call) provesFloor(floor position) bool {
	return c.after != (position{}) && floorProven(floor, c.after) &&
		(plantProofAfterOnly || floorProven(floor, c.before))
}

// plantProofAfterOnly is a planted bug for tests: a proved read is taken
// on the proof after it alone, which a node that caught up with the
// floor only after serving the read gives too
// (TestProvedReadNeedsProofBefore must catch it).
var plantProofAfterOnly = false

// cmdProof is the proof's command, encoded.
var cmdProof = redcon.AppendBulk(redcon.AppendArray(nil, 1), cmdApplied)

func newCall(n *node, cmds ...[][]byte) *call {
	c := new(call)
	c.init(n, cmds)
	return c
}

// init makes c a new call of cmds to n; c must be unused.
func (c *call) init(n *node, cmds [][][]byte) {
	c.cmds, c.node, c.done = cmds, n, make(chan struct{})
}

func (c *call) finish(err error) {
	c.err = err
	c.node.inflight.Add(-1)
	if c.lease != nil {
		// Its reply is in (or the connection failed, which empties its
		// queue): the connection is free for the next waiting read.
		c.node.giveBack(c.lease)
	}
	if c.then != nil {
		c.then(c)
	}
	close(c.done)
}

// upConn is one of a node's shared connections; it dials lazily and again
// after a failure.
type upConn struct {
	n *node

	wmu sync.Mutex // held while queueing and while out is filled or swapped
	nc  net.Conn   // nil until dialed, and after a failure
	// out holds the queued requests' bytes not written yet. One sender at
	// a time writes (flushing names the connection it writes to), without
	// wmu; what others queue meanwhile is written in its next write, so
	// concurrent requests share system calls (as twemproxy batches them).
	out, spare []byte
	flushing   net.Conn

	qmu     sync.Mutex
	pending []*call // queued (bytes in out or written), reply not read yet, in order
	broken  net.Conn

	// solo: one call at a time (a waiting-read connection): nothing else
	// can join its write, so the sender does not yield for others first.
	solo bool
	// unproven: proved calls queued in out since the last proof; the
	// next write ends with a proof for them (under wmu).
	unproven int
	// pmu guards proofAt, the position of the last proof (or known
	// read's token) answered on the connection in use, zero after a dial:
	// a read whose floor it proves may go proved (provenIn).
	pmu     sync.Mutex
	proofAt position
}

// provenIn: the last proof answered on the connection proves floor, so
// a read of floor sent on it now has its proof before. (If the
// connection changes meanwhile, the reader of the new one finds no proof
// before the read, and the read is sent again.)
func (u *upConn) provenIn(floor position) bool {
	u.pmu.Lock()
	defer u.pmu.Unlock()
	return u.proofAt != (position{}) && floorProven(floor, u.proofAt)
}

func (u *upConn) setProofAt(pos position) {
	u.pmu.Lock()
	u.proofAt = pos
	u.pmu.Unlock()
}

// send queues c and, if now, writes its commands (with whatever else is
// queued); otherwise a later send or flush writes them. It never blocks on
// the node's replies; c.done is closed when they have all arrived or the
// connection fails.
func (u *upConn) send(c *call, now bool) {
	u.n.inflight.Add(1)
	u.wmu.Lock()
	var nc net.Conn
	for attempt := 0; ; attempt++ {
		if u.nc == nil {
			if err := u.dial(); err != nil {
				u.wmu.Unlock()
				c.finish(fmt.Errorf("%w: %w", errNotSent, err))
				return
			}
		}
		nc = u.nc
		u.qmu.Lock()
		if u.broken != nc {
			u.pending = append(u.pending, c)
			u.qmu.Unlock()
			break
		}
		// The reader saw this connection fail: dial a new one, once.
		u.qmu.Unlock()
		u.nc, u.out, u.unproven = nil, u.out[:0], 0
		if attempt > 0 {
			u.wmu.Unlock()
			c.finish(fmt.Errorf("%w: connection to %s failed", errNotSent, u.n.id))
			return
		}
	}
	c.up, c.nc = u, nc
	for _, args := range c.cmds {
		u.out = redcon.AppendArray(u.out, len(args))
		for _, a := range args {
			u.out = redcon.AppendBulk(u.out, a)
		}
	}
	if c.proved {
		u.unproven++
	}
	if !now || u.flushing == nc {
		u.wmu.Unlock() // the writer takes it with its next write
		return
	}
	if u.solo {
		u.writeOut(nc)
		u.wmu.Unlock()
		return
	}
	// Become the writer, but first let the goroutines that are ready to
	// run (other clients whose requests arrived with this one) queue
	// theirs: one write then carries them all, as twemproxy's event loop
	// writes once per round. Idle, nothing else is ready and Gosched
	// returns at once.
	u.flushing = nc
	u.wmu.Unlock()
	runtime.Gosched()
	u.wmu.Lock()
	u.writeOut(nc)
	u.wmu.Unlock()
}

// flush writes what send queued without writing, unless a writer is at it.
func (u *upConn) flush() {
	u.wmu.Lock()
	if nc := u.nc; nc != nil && u.flushing != nc && len(u.out) > 0 {
		u.writeOut(nc)
	}
	u.wmu.Unlock()
}

// writeOut writes out until it is empty, as the connection's one writer;
// called and returns with wmu held, which it releases while writing.
func (u *upConn) writeOut(nc net.Conn) {
	u.flushing = nc
	for len(u.out) > 0 && u.nc == nc {
		if u.unproven > 0 {
			u.queueProof(nc)
		}
		buf := u.out
		u.out = u.spare[:0]
		u.wmu.Unlock()
		_ = nc.SetWriteDeadline(time.Now().Add(u.n.p.cfg.UpstreamTimeout))
		_, err := nc.Write(buf)
		u.wmu.Lock()
		if cap(buf) <= 1<<20 {
			u.spare = buf[:0]
		}
		if err != nil {
			// Every request queued on nc fails as lost (part of it may
			// have been written), also those still in out.
			u.fail(nc, fmt.Errorf("write to %s: %w", u.n.id, err))
			if u.nc == nc {
				u.nc, u.out, u.unproven = nil, u.out[:0], 0
			}
			break
		}
	}
	if u.flushing == nc {
		u.flushing = nil
	}
}

// queueProof ends out with a proof of the proved reads in it, under wmu.
func (u *upConn) queueProof(nc net.Conn) {
	u.unproven = 0
	c := &call{cmds: proofCmds, node: u.n, done: make(chan struct{}), proof: true, up: u, nc: nc}
	u.qmu.Lock()
	if u.broken == nc {
		// Failed: the reads in out have failed with it.
		u.qmu.Unlock()
		return
	}
	u.n.inflight.Add(1)
	u.pending = append(u.pending, c)
	u.qmu.Unlock()
	u.out = append(u.out, cmdProof...)
	u.n.p.stats.readProofs.Add(1)
}

// dial connects, under wmu, and starts the reader.
func (u *upConn) dial() error {
	if !u.n.dialAllowed() {
		return fmt.Errorf("node %s is down", u.n.id)
	}
	nc, err := net.DialTimeout("tcp", u.n.addr, u.n.p.cfg.DialTimeout)
	if err != nil {
		u.n.markDown(fmt.Errorf("dial %s: %w", u.n.addr, err))
		return err
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	u.nc = nc
	u.setProofAt(position{})
	go u.read(nc)
	return nil
}

// read matches replies to the queue until nc fails. Replies are parsed
// with redcon's RESP reader; a reply split across reads is parsed again
// once the rest has arrived.
func (u *upConn) read(nc net.Conn) {
	buf := make([]byte, 0, 64<<10)
	var (
		cur   *call // the call whose replies are being collected
		want  int
		arena []byte // cur's replies' bytes (a call of several commands)
		// proven is the position of the last proof answered on nc; held
		// the proved reads answered since, waiting for the next proof.
		proven position
		held   []*call
	)
	stop := func(err error) {
		u.fail(nc, err)
		if cur != nil {
			u.n.p.stats.inflightFailed.Add(1)
			cur.finish(fmt.Errorf("%w: %w", errLost, err))
		}
		for _, c := range held {
			c.finish(fmt.Errorf("%w: %w", errLost, err))
		}
	}
	for {
		if len(buf) == cap(buf) {
			if len(buf) > maxReply {
				stop(fmt.Errorf("reply from %s longer than %d bytes", u.n.id, maxReply))
				return
			}
			nb := make([]byte, len(buf), 2*cap(buf))
			copy(nb, buf)
			buf = nb
		}
		// No read deadline: an idle shared connection is normal. A node
		// that stops answering is caught by the waiting request's timeout,
		// which closes the connection (see node.abandon).
		k, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		off := 0
		for off < len(buf) {
			n, r := redcon.ReadNextRESP(buf[off:])
			if n == 0 {
				if bad := malformed(buf[off:]); bad != nil {
					stop(fmt.Errorf("reply from %s: %w", u.n.id, bad))
					return
				}
				break
			}
			if cur == nil {
				u.qmu.Lock()
				if len(u.pending) == 0 {
					u.qmu.Unlock()
					stop(fmt.Errorf("%s sent a reply nobody asked for: %q", u.n.id, trunc(r.Raw, 64)))
					return
				}
				cur = u.pending[0]
				u.pending[0] = nil
				u.pending = u.pending[1:]
				u.qmu.Unlock()
				want = len(cur.cmds)
				if want <= len(cur.few) {
					cur.replies = cur.few[:0]
				} else {
					cur.replies = make([][]byte, 0, want)
				}
				arena = nil
			}
			if want == 1 {
				cur.replies = append(cur.replies, append([]byte(nil), r.Raw...))
			} else {
				// A call's replies are copied into one buffer, each
				// capped at its end (nothing appends to a reply), so the
				// small ones of a positional read (OK, a token) cost no
				// allocation of their own; a reply that does not fit
				// starts a new buffer and the earlier ones keep theirs.
				if cap(arena)-len(arena) < len(r.Raw) {
					arena = make([]byte, 0, max(len(r.Raw), replyArena))
				}
				at := len(arena)
				arena = append(arena, r.Raw...)
				cur.replies = append(cur.replies, arena[at:len(arena):len(arena)])
			}
			off += n
			if len(cur.replies) == want {
				switch {
				case cur.proved:
					cur.before = proven
					held = append(held, cur)
				case cur.proof:
					proven = position{}
					if t, ok := tokenOf(cur.replies[0]); ok {
						proven = t
					}
					u.setProofAt(proven)
					for i, c := range held {
						c.after = proven
						c.finish(nil)
						held[i] = nil
					}
					held = held[:0]
					cur.finish(nil)
				case cur.known:
					if t, ok := tokenOf(cur.replies[knownTok]); ok {
						proven = t
						u.setProofAt(t)
					}
					cur.finish(nil)
				default:
					cur.finish(nil)
				}
				u.n.answered()
				cur = nil
			}
		}
		buf = buf[:copy(buf, buf[off:])]
		if cap(buf) > 1<<20 && len(buf) < 64<<10 {
			buf = append(make([]byte, 0, 64<<10), buf...)
		}
		if err != nil {
			stop(fmt.Errorf("read from %s: %w", u.n.id, err))
			return
		}
	}
}

// maxReply bounds one buffered reply: the node's own bulk limit (512 MiB)
// and some room for its framing.
const maxReply = 512<<20 + 1<<20

// malformed says whether b, which holds no complete reply, can never
// become one: redcon's reader answers "not yet" for both.
func malformed(b []byte) error {
	switch b[0] {
	case '+', '-', ':', '$', '*':
	default:
		return fmt.Errorf("not RESP2: %q", trunc(b, 32))
	}
	for i := 1; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		if b[0] == '$' || b[0] == '*' {
			if _, err := strconv.Atoi(string(b[1 : i-1])); err != nil || b[i-1] != '\r' {
				return fmt.Errorf("bad length line %q", trunc(b[:i], 32))
			}
		}
		return nil
	}
	return nil
}

// fail closes nc, if it is still the connection in use, and fails every
// request queued on it: those were written, so their outcome is unknown.
func (u *upConn) fail(nc net.Conn, err error) {
	nc.Close()
	u.qmu.Lock()
	if u.broken == nc {
		u.qmu.Unlock()
		return
	}
	u.broken = nc
	pend := u.pending
	u.pending = nil
	u.qmu.Unlock()
	select {
	case <-u.n.p.done:
		// Close: the requests fail, nothing is down.
		for _, c := range pend {
			c.finish(fmt.Errorf("%w: %w", errLost, err))
		}
		return
	default:
	}
	// Down before any client hears of the failure: a client answered
	// here sends its next command at once, and that must not go to this
	// node on another of its connections (the leader's next write would
	// be lost in flight too, and answered UNCERTAIN again).
	u.n.markDown(err)
	if len(pend) > 0 {
		u.n.p.stats.inflightFailed.Add(uint64(len(pend)))
		u.n.p.log.Warn("proxy: upstream connection failed with requests in flight", "node", u.n.id, "in_flight", len(pend), "err", err)
	}
	for _, c := range pend {
		c.finish(fmt.Errorf("%w: %w", errLost, err))
	}
}

// abandon gives up on c's connection (the node did not answer in time):
// every request queued on it fails as lost, since replies can no longer
// be matched once one is skipped.
func (c *call) abandon() {
	if c.up != nil {
		c.up.fail(c.nc, fmt.Errorf("no reply from %s within the timeout", c.node.id))
	}
}

// closeConn closes the connection in use (Close, a node leaving the view).
func (u *upConn) closeConn() {
	u.wmu.Lock()
	nc := u.nc
	u.nc = nil
	u.wmu.Unlock()
	if nc != nil {
		u.fail(nc, errors.New("closed by the proxy"))
	}
}

// replyArena is the size of the buffer the replies of a call of several
// commands are copied into: a read in the known form (OK, a value, a
// token) fits in one with a value of up to about 90 bytes.
const replyArena = 128

// node is one member the proxy routes to.
type node struct {
	p    *Proxy
	id   string
	addr string
	zone string
	// conns carry writes and whatever must stay in order with them;
	// rconns only reads, so that a read does not wait behind other
	// sessions' writes (a node runs a command of a pipeline only once
	// the writes before it have committed).
	conns, rconns []*upConn

	// The connections for reads that may wait on the node (waiting-read
	// connections, borrow):
	// each carries one read at a time, so a read waiting there for the
	// node to apply its floor holds up no other request, as it would on
	// a shared connection (a node answers a connection's requests in
	// order). Made on demand, up to Config.WaitConnsPerNode, and kept.
	wmu      sync.Mutex
	free     []*upConn // not in use
	waitAll  []*upConn // every one made, for close
	waitGone bool      // closed: no more are made

	// index batches the node's linearizable reads (readindex.go).
	index *readIndex
	// group forms its groups of bounded reads (waitgroup.go);
	// boundedOK: the last bounded read answered there was served within
	// the slow-read limit (not refused, not slow), so that one in a group
	// is not likely to wait: groups form only then.
	group     waitGroup
	boundedOK atomic.Bool

	inflight atomic.Int64 // requests sent and not answered: the load
	reads    atomic.Uint64

	mu        sync.Mutex
	down      bool
	downSince time.Time
	downErr   error
	retryAt   time.Time // no dial before this while down
	backoff   time.Duration
	// positions: whether the node serves read policies (TANDEM.READPOLICY
	// is known): 0 not asked yet, 1 yes, 2 no.
	positions atomic.Int32
	pinging   atomic.Bool // revive runs
	isDown    atomic.Bool // down, for readers without mu

	// What the node is known to have applied: the highest position a
	// read was served at there (the token after it); and when it last
	// refused a read that waited there (stale). Routing, and the first
	// half of a known floor's proof (knownReadCmds): the node itself
	// checks every other read.
	pmu     sync.Mutex
	applied position
	staleAt time.Time
	// slowAt is staleAt when found slow (foundSlow), not refusing.
	slowAt time.Time
	// slowRead is Config.SlowRead (0: DefaultSlowRead; negative: never).
	slowRead time.Duration
	// slowSince: every bounded and linearizable read served there since
	// then was slow (zero: the last one was not).
	slowSince time.Time
	// batchSlowSince: the same for its linearizable index batches
	// (readindex.go), over a longer window (slowBatchWindow).
	batchSlowSince time.Time
}

// servedAt records that a read was served at pos on the node.
func (n *node) servedAt(pos position) {
	n.pmu.Lock()
	if less(n.applied, pos) {
		n.applied = pos
	}
	n.pmu.Unlock()
}

// knownApplied: the node is known, from a read served there, to have
// applied floor, so a read needing floor is served there at once. (A
// node's applied position only grows while it is up; a node that fails
// is forgotten (markDown), and one whose history a failover replaced
// refuses at once, without waiting.)
func (n *node) knownApplied(floor position) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	return !less(n.applied, floor)
}

// knownAppliedIn: knownApplied, and the highest position known applied
// is in floor's epoch (the epoch of the entry at it), so that the read's
// own token can prove it (floorProven) without a lineage check.
func (n *node) knownAppliedIn(floor position) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	return floor == (position{}) || (n.applied.Epoch == floor.Epoch && n.applied.LSN >= floor.LSN)
}

// forget drops what the node is known to have applied (it failed: it may
// come back restarted, from an older position).
func (n *node) forget() {
	n.boundedOK.Store(false)
	n.pmu.Lock()
	n.applied = position{}
	n.pmu.Unlock()
}

// refusedStale records a read that waited on the node and was refused
// (it had not applied the floor, or was too stale, within the node's read
// wait), or a bounded or linearizable read it was slow to serve.
func (n *node) refusedStale(now time.Time) {
	n.pmu.Lock()
	n.staleAt = now
	n.pmu.Unlock()
}

// foundSlow records that the node's bounded or linearizable reads (or
// index batches) were all slower than Config.SlowRead for a while: no
// waiting read goes there for staleTTL, as after a refusal, and the
// leader's serving them is counted as fallback followers-slow.
func (n *node) foundSlow(now time.Time) {
	n.pmu.Lock()
	n.staleAt, n.slowAt = now, now
	n.pmu.Unlock()
}

// recentlySlow: recentlyStale, for being slow (foundSlow) and not since
// refused.
func (n *node) recentlySlow(now time.Time) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	return !n.slowAt.IsZero() && n.slowAt.Equal(n.staleAt) && now.Sub(n.slowAt) < staleTTL
}

// slowLimit is Config.SlowRead; 0 (a node made in a test): the default.
func (n *node) slowLimit() time.Duration {
	if n.slowRead == 0 {
		return DefaultSlowRead
	}
	return n.slowRead
}

// slow takes the latency of a bounded or linearizable read served by the
// node at now and says whether such reads are slow there: none served
// there took at most Config.SlowRead for slowWindow. A lagging follower makes
// every one of them wait about its lag; a busy machine makes some slow,
// in bursts, not all of them for long. Found slow, it starts over.
func (n *node) slow(d time.Duration, now time.Time) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	return slowFor(&n.slowSince, d, n.slowLimit(), slowWindow, now)
}

// slowBatch is slow for the node's linearizable index batches: none took
// at most Config.SlowRead for slowBatchWindow.
func (n *node) slowBatch(d time.Duration, now time.Time) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	return slowFor(&n.batchSlowSince, d, n.slowLimit(), slowBatchWindow, now)
}

// slowFor takes a latency d at now: false, and starts over, if it was at
// most limit (never slow if limit is negative); true, and starts over, if
// all since *since, for window, were longer.
func slowFor(since *time.Time, d, limit, window time.Duration, now time.Time) bool {
	switch {
	case limit < 0 || d <= limit:
		*since = time.Time{}
	case since.IsZero():
		*since = now
	case now.Sub(*since) >= window:
		*since = time.Time{}
		return true
	}
	return false
}

// slowBatchWindow is how long a node's index batches must all be slow for
// it to be found slow. Longer than a read's: batches go back to back, so
// one stall of the machine makes every batch of 100 ms slow (on a loaded
// 2-core machine at lag 0 that sent half the linearizable reads to the
// leader), while a follower that lags makes every batch slow for good.
const slowBatchWindow = 300 * time.Millisecond

// slowWindow is how long a node's bounded and linearizable reads must all
// be slow for it to be found slow.
const slowWindow = 100 * time.Millisecond

// recentlyStale: the node refused a read that waited there, or was slow
// to serve a bounded or linearizable one, within the last staleTTL: no
// read that would wait there is sent to it until then (reads it is known
// to serve at once still are), and then reads find out whether it caught
// up.
func (n *node) recentlyStale(now time.Time) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	return !n.staleAt.IsZero() && now.Sub(n.staleAt) < staleTTL
}

// staleTTL is how long a refusal steers waiting reads away from a node.
// Past that a read is sent to find out again.
const staleTTL = time.Second

func newNode(p *Proxy, id, addr, zone string) *node {
	n := &node{p: p, id: id, addr: addr, zone: zone, slowRead: p.cfg.SlowRead}
	n.conns = make([]*upConn, p.cfg.ConnsPerNode)
	n.rconns = make([]*upConn, p.cfg.ConnsPerNode)
	for i := range n.conns {
		n.conns[i] = &upConn{n: n}
		n.rconns[i] = &upConn{n: n}
	}
	n.index = newReadIndex(n)
	return n
}

// conn is the connection session sid uses on this node: always the same
// one, so that one session's requests to one node keep their order.
func (n *node) conn(sid uint64) *upConn { return n.conns[sid%uint64(len(n.conns))] }

// readConn is the read-only shared connection session sid uses on this
// node.
func (n *node) readConn(sid uint64) *upConn { return n.rconns[sid%uint64(len(n.rconns))] }

// healthy: the node is not marked down. A down node gets no reads and no
// writes until a connection to it succeeds again.
func (n *node) healthy() bool { return !n.isDown.Load() }

// dialAllowed: not down, or down long enough to try again.
func (n *node) dialAllowed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.down || !time.Now().Before(n.retryAt)
}

// markDown takes the node out of rotation at once; a later successful
// reply (answered) brings it back.
func (n *node) markDown(err error) {
	n.mu.Lock()
	if !n.down {
		n.down, n.downSince, n.downErr = true, time.Now(), err
		n.isDown.Store(true)
		n.forget()
		n.backoff = 0
		n.p.stats.markedDown.Add(1)
		n.p.log.Warn("proxy: node marked down", "node", n.id, "addr", n.addr, "err", err)
	}
	n.backoff = min(max(2*n.backoff, 20*time.Millisecond), time.Second)
	n.retryAt = time.Now().Add(n.backoff)
	n.mu.Unlock()
	n.p.kick()
}

// answered brings a down node back once it answers.
func (n *node) answered() {
	if !n.isDown.Load() {
		return
	}
	n.mu.Lock()
	was := n.down
	n.down = false
	n.isDown.Store(false)
	n.mu.Unlock()
	if was {
		n.p.log.Info("proxy: node answers again", "node", n.id)
		n.p.kick()
		if n.positions.Load() == 0 {
			go n.probe()
		}
	}
}

// probe asks a node whether it serves read policies, once per node and
// proxy, and brings a node marked down back when it answers.
func (n *node) probe() {
	c := newCall(n, [][]byte{[]byte("TANDEM.READPOLICY")})
	n.rconns[0].send(c, true)
	select {
	case <-c.done:
	case <-time.After(n.p.cfg.UpstreamTimeout):
		return
	}
	if c.err != nil {
		return
	}
	if len(c.replies[0]) > 0 && c.replies[0][0] == '-' {
		n.positions.Store(2)
	} else {
		n.positions.Store(1)
	}
}

// revive tries a node marked down once its backoff has passed: a PING
// that is answered brings it back (answered), a failure backs off further.
func (n *node) revive() {
	if !n.pinging.CompareAndSwap(false, true) {
		return
	}
	defer n.pinging.Store(false)
	c := newCall(n, [][]byte{[]byte("PING")})
	n.rconns[0].send(c, true)
	select {
	case <-c.done:
	case <-time.After(n.p.cfg.ReadTimeout):
		c.abandon()
	}
}

// downAndDue: marked down, and its backoff has passed.
func (n *node) downAndDue() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down && !time.Now().Before(n.retryAt)
}

func (n *node) close() {
	for _, u := range n.conns {
		u.closeConn()
	}
	for _, u := range n.rconns {
		u.closeConn()
	}
	for _, u := range n.index.ups {
		u.closeConn()
	}
	n.wmu.Lock()
	n.waitGone = true
	all := n.waitAll
	n.wmu.Unlock()
	for _, u := range all {
		u.closeConn()
	}
}

// borrow takes a waiting-read connection for one call, making one if
// fewer than WaitConnsPerNode exist; nil when all are in use (the caller
// uses a shared connection: the read may then hold up others, as before
// there were waiting-read connections).
func (n *node) borrow() *upConn {
	n.wmu.Lock()
	defer n.wmu.Unlock()
	if k := len(n.free); k > 0 {
		u := n.free[k-1]
		n.free[k-1] = nil
		n.free = n.free[:k-1]
		return u
	}
	if n.waitGone || len(n.waitAll) >= n.p.cfg.WaitConnsPerNode {
		return nil
	}
	u := &upConn{n: n, solo: true}
	n.waitAll = append(n.waitAll, u)
	return u
}

// giveBack returns a borrowed connection once its call is done.
func (n *node) giveBack(u *upConn) {
	n.wmu.Lock()
	n.free = append(n.free, u)
	n.wmu.Unlock()
}

func trunc(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

package proxy

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Linearizable follower reads, batched at the proxy.
//
// A linearizable read must reflect every write acknowledged before it
// began. A follower learns that from the leader (its ReadIndex: the
// leader's commit position, answered under its lease) and waits until it
// has applied it. Sent one by one, each read would hold a connection of
// its own and carry five commands (the policy, the read, the token, the
// reset), and the leader would answer about one ReadIndex per read.
//
// Instead the proxy asks each follower once for all the linearizable
// reads waiting for it (readIndex.run): an index query is a linearizable
// probe read (DBSIZE, O(1)) on a connection of its own, whose token is
// the position the follower served it at, P: at or past the leader's
// commit position learned by a ReadIndex that started after the query was
// sent. Every read waiting when the query was sent then goes on the
// follower's shared read connections, pipelined with other sessions'
// requests, in the known-floor form (knownReadCmds: TANDEM.TOKEN RESET,
// the read, TANDEM.TOKEN) with floor P, and its own token must prove it
// (floorProven: in P's epoch and at or past it), or it is sent again in
// the full form for the node to enforce.
//
// Why it is linearizable: a read joins the queue before the query that
// serves it is sent (a query in flight when the read arrived is never
// used: its ReadIndex may have started before the read, and so miss a
// write acknowledged just before the read began); that query's ReadIndex
// started later still, so P is at or past every write acknowledged before
// the read began, and the read's token proves it was served at or past
// P. So under concurrency the leader answers one ReadIndex per follower
// per query round trip, however many reads there are, and each read costs
// the follower three commands on a shared, pipelined connection.

// readIndex is one follower's queue of linearizable reads waiting for an
// index query, and the query loop.
type readIndex struct {
	n *node
	// up carries the queries, one at a time (a probe may wait on the
	// node: it holds up nothing else there).
	up *upConn

	mu      sync.Mutex
	running bool
	queue   []*linRead
	// last is the position the last query learned. Only the planted bug
	// (reuseIndex) uses it: a read must never take a position learned
	// before it began.
	last position
}

// linRead is a read waiting for an index query: its call is made (the
// known-floor form) and sent once the query answers.
type linRead struct {
	o    *op
	sid  uint64
	base position // the session's own floor, also to be proven
}

// reuseIndex is the planted bug the linearizability test must catch: a
// read that finds a query in flight takes the position the previous one
// learned, before the read began, instead of waiting for the next query.
var reuseIndex = false

// probeCmds is an index query: a linearizable read of the node's key
// count (the cheapest read), and the token it was served at. The
// connection carries nothing else, and the reset first makes the token
// this probe's alone.
var probeCmds = [][][]byte{
	{cmdReadPol, []byte("linearizable")},
	{cmdToken, argReset},
	{[]byte("DBSIZE")},
	{cmdToken},
}

// errIndex: the follower could not learn and apply the leader's commit
// position (it refused, failed or did not answer); the read did not run.
var errIndex = errors.New("linearizable read index")

// enqueue queues o, a linearizable read of session sid, for the next
// index query of the node, starting the query loop if it is idle. o.call
// is made now and finished by the loop (sent, or failed with errIndex).
func (x *readIndex) enqueue(o *op, sid uint64, base position) {
	p := x.n.p
	x.n.inflight.Add(1) // waiting here is load on the node; finish takes it back
	o.cmds, o.at, o.tok = knownReadCmds(o.args)
	o.call.cmds = o.cmds
	o.known = true
	x.mu.Lock()
	if reuseIndex && x.running && x.last != (position{}) {
		last := x.last
		x.mu.Unlock()
		o.floor = maxPos(base, last)
		x.sendAll([]*linRead{{o: o, sid: sid, base: base}}, last)
		return
	}
	x.queue = append(x.queue, &linRead{o: o, sid: sid, base: base})
	if !x.running {
		x.running = true
		go x.run()
	}
	x.mu.Unlock()
	p.stats.readsIndexed.Add(1)
}

// run sends index queries while reads wait for one: each query serves
// the reads queued before it was sent.
func (x *readIndex) run() {
	for {
		x.mu.Lock()
		batch := x.queue
		x.queue = nil
		if len(batch) == 0 {
			x.running = false
			x.mu.Unlock()
			return
		}
		x.mu.Unlock()
		at, err := x.query()
		if err != nil {
			for _, r := range batch {
				r.o.call.finish(err)
			}
			continue
		}
		x.mu.Lock()
		x.last = at
		x.mu.Unlock()
		x.sendAll(batch, at)
	}
}

// query asks the node for a position at or past the leader's commit
// position, learned after the call.
func (x *readIndex) query() (position, error) {
	n := x.n
	n.p.stats.indexQueries.Add(1)
	c := newCall(n, probeCmds...)
	x.up.send(c, true)
	t := time.NewTimer(n.p.cfg.ReadTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.abandon()
		<-c.done
	case <-n.p.done:
		c.abandon()
		<-c.done
	}
	if c.err != nil {
		return position{}, fmt.Errorf("%w on %s: %w", errIndex, n.id, c.err)
	}
	for i, r := range c.replies {
		if hasPrefix(r, "-") {
			if hasPrefix(r, "-TRYAGAIN") {
				// It could not apply the leader's position within its
				// read wait: keep waiting reads off it for a while.
				n.refusedStale(n.p.now())
			}
			return position{}, fmt.Errorf("%w on %s: %s: %s", errIndex, n.id, probeCmds[i][0], trunc(r, 120))
		}
	}
	at, ok := tokenOf(c.replies[len(c.replies)-1])
	if !ok {
		return position{}, fmt.Errorf("%w on %s: no token: %q", errIndex, n.id, trunc(c.replies[len(c.replies)-1], 64))
	}
	n.servedAt(at)
	return at, nil
}

// sendAll sends the reads of a batch, whose query learned at, each on its
// session's shared read connection, one write per connection.
func (x *readIndex) sendAll(batch []*linRead, at position) {
	var conns []*upConn
	for _, r := range batch {
		r.o.floor = maxPos(r.base, at)
		u := x.n.readConn(r.sid)
		x.n.inflight.Add(-1) // send counts it again
		u.send(r.o.call, false)
		if !slices.Contains(conns, u) {
			conns = append(conns, u)
		}
	}
	for _, u := range conns {
		u.flush()
	}
}

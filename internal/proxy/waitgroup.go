package proxy

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Bounded reads in groups. A bounded read on a follower may wait there
// (the follower too stale: it asks its leader for a round trip, up to its
// --read-wait), so it cannot go on a shared connection, where it would
// hold up every request behind it; each went on a waiting-read connection
// of its own (node.borrow), one system call to write it and one to read
// its reply on the proxy and on the node, per read: at lag 0 under
// `tandem bench reads` the followers made 2.20 reads and 1.19 writes per
// bounded read against 0.79 and 0.45 per read under any.
//
// Instead the bounded reads of the same bound that come together share a
// call on one waiting-read connection: each in its own full form (the
// policy, the session's user and floor, the read, TANDEM.TOKEN, RESET:
// readCmds), back to back. The node checks each read's bound itself, as
// before; RESET ends each one's session state before the next one's
// begins. A read can only wait behind reads of the same bound on the same
// follower, which wait for the same freshness (the first one served
// proves it for those behind, up to their own check), and a read in a
// group waits for what it would have waited for alone; but a node serves
// a connection's reads one after another, so reads in a group that all
// find the follower too stale wait its read wait each in turn, where on
// connections of their own they waited at once: groups form only while
// the follower's last bounded read was served at once (node.boundedOK:
// not refused, within the slow-read limit), and hold at most maxGroup
// reads, which bounds that case (a follower that fell behind within a
// group) to maxGroup read waits. Reads of another bound, and
// ryw or monotonic reads that may wait (each for its own floor), still
// go one to a connection.

// waitGroup forms a node's next group of bounded reads.
type waitGroup struct {
	mu sync.Mutex
	// next is the group forming, not sent yet; nil: none. pol is its
	// reads' policy.
	next *call
	pol  Policy
}

// holdGroups, set by tests only, holds each group forming until it is
// closed, where a group otherwise waits for one Gosched.
var holdGroups atomic.Pointer[chan struct{}]

// maxGroup bounds the reads of a group (see above). Under tandem bench
// reads at lag 0 (50 sessions) the followers' read+write system calls
// per bounded read went from 2.10-2.24+1.14-1.22 to 1.00-1.06+0.58-0.60
// with it, to 0.55-0.58+0.35-0.38 with groups unbounded and no
// boundedOK: a follower falling behind within a group costs its last
// read up to maxGroup read waits, which 8 keeps under a second.
const maxGroup = 8

// plantGroupAnyFollower is a planted bug for tests: groups form on a
// follower whatever its last bounded read found
// (TestBoundedGroupsOnlyWhereServed must catch it).
var plantGroupAnyFollower = false

// plantNoWaitGroups is a planted inefficiency for tests: each bounded
// read goes on a connection of its own (TestBoundedReadsShareCalls must
// catch it).
var plantNoWaitGroups = false

// join adds o, a bounded read that may wait, whose commands are o.cmds, to
// n's forming group and sets o.call, o.from, o.at and o.tok; or starts a
// group and sends it once the reads that arrived with o joined (sid is
// o's session, whose read connection takes the group if every
// waiting-read connection is busy). False: the caller sends o alone (the
// follower's last bounded read was not served at once, or a group of
// another bound, or a full one, is forming).
func (g *waitGroup) join(n *node, o *op, sid uint64) bool {
	if plantNoWaitGroups || (!n.boundedOK.Load() && !plantGroupAnyFollower) {
		return false
	}
	g.mu.Lock()
	if c := g.next; c != nil {
		if g.pol != o.policy || c.reads.Load() >= maxGroup {
			g.mu.Unlock()
			return false
		}
		g.add(c, o)
		g.mu.Unlock()
		return true
	}
	c := new(call)
	c.init(n, nil)
	g.next, g.pol = c, o.policy
	g.add(c, o)
	g.mu.Unlock()
	// Let the goroutines ready to run (other sessions' reads that came
	// with this one) join first, as a shared connection's sender does.
	if hold := holdGroups.Load(); hold != nil {
		<-*hold
	} else {
		runtime.Gosched()
	}
	g.mu.Lock()
	g.next = nil
	g.mu.Unlock()
	n.p.stats.readGroups.Add(1)
	k := uint64(c.reads.Load())
	if u := n.borrow(); u != nil {
		n.p.stats.readsMayWait.Add(k)
		c.lease = u
		u.send(c, true)
		return true
	}
	// All busy: a shared connection (the first read's session's), as a
	// lone waiting read goes.
	n.p.stats.readsMayWaitSh.Add(k)
	n.readConn(sid).send(c, true)
	return true
}

// add appends o's commands to c, the forming group, under g.mu.
func (g *waitGroup) add(c *call, o *op) {
	o.from = len(c.cmds)
	o.at += o.from
	o.tok += o.from
	c.cmds = append(c.cmds, o.cmds...)
	o.call = c
	c.reads.Add(1)
}

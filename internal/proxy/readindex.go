package proxy

import (
	"errors"
	"fmt"
	"runtime"
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
// Instead the proxy sends each follower's linearizable reads in batches,
// at most indexInFlight batches in flight per follower; reads that come
// while that many are out wait for the next one, and all of them go in
// it. A batch is one call (one write, replies read in order) on a
// connection that carries only batches:
//
//	TANDEM.READPOLICY any            the reads need no wait of their
//	                                 own, each bare
//	TANDEM.APPLIED LINEARIZABLE      the probe: a position P at or past
//	                                 the leader's commit position of a
//	                                 ReadIndex begun after the batch
//	                                 left, applied on the node
//	read
//	...
//	TANDEM.APPLIED                   the proof: the node's applied
//	                                 position after the last read
//
// (TANDEM.APPLIED answers the position a read under the policy it names
// would be served at, the node's cheapest read, and leaves the session
// as it was: one command each where the session commands took four and
// three, 8 commands per batch of about six reads.)
//
// The node serves a connection's commands in order, so each read runs
// after the probe and before the proof. The proof's token must prove P
// (floorProven: in P's epoch and at or past it) for each read of the
// batch, or the read is sent again in the full form for the node to
// enforce; and if the probe failed no read of the batch is used (each is
// tried elsewhere, as after a refusal). A node's applied position goes
// back only by a failover's truncation, and one below P leaves it never
// again in P's epoch past P (the entries past the truncation point are
// of a later epoch, by log matching): so a proof in P's epoch at or past
// P shows that every read between the probe and the proof ran on data at
// or past P. One proof per batch, not a token before and after each read
// (knownReadCmds): a read costs the node one command, as under any.
//
// Why it is linearizable: a read joins a batch not yet sent, so the
// batch's probe, and with it the ReadIndex behind it, begins after the
// read did; P is at or past every write acknowledged before the read
// began, and the read was served at or past P. (A position learned by an
// earlier batch is never used: its ReadIndex may have begun before the
// read and miss a write acknowledged just before the read began; the
// planted bug reuseIndex does that, and TestLinearizableFollowerReads
// catches it.) The follower learns P by a round trip on its replication
// stream begun after the probe arrived (replication's
// Follower.WaitRoundTrip; one question covers every probe that began
// before it left), or from a leader that does not answer those by a
// batched ReadIndex RPC (node/reads.go), and the proxy pays one write and
// one reply read per batch instead of per read.

// indexInFlight is Config.IndexBatches' default, the batches in flight
// per follower: with two, a read waits for at most one batch to come back
// before its own leaves, and usually less.
const indexInFlight = 2

// readIndex is one follower's batches of linearizable reads.
type readIndex struct {
	n *node
	// ups carry the batches, one each at a time (a batch waits on the
	// node: it holds up nothing else there).
	ups []*upConn

	mu   sync.Mutex
	free []*upConn
	next *indexBatch // the batch reads join, not sent yet; nil: none
	// lingering: a read that found a slot free yields before sending
	// next (enqueue); reads that join meanwhile do not send it.
	lingering bool
	// last is the position the last batch learned. Only the planted bug
	// (reuseIndex) uses it: a read must never take a position learned
	// before it began.
	last position
}

func newReadIndex(n *node) *readIndex {
	x := &readIndex{n: n}
	for range n.p.cfg.IndexBatches {
		u := &upConn{n: n, solo: true}
		x.ups = append(x.ups, u)
		x.free = append(x.free, u)
	}
	return x
}

// indexBatch is a batch of reads: their one call, made when the first
// read joins (each read waits on it from then on), and what its probe
// learned, set before the call's waiters hear of it (call.then).
type indexBatch struct {
	c   *call
	ops []*op
	at  position // the probe's token: P
	err error    // the probe failed: no read of the batch is used
}

// reuseIndex is the planted bug the linearizability test must catch: a
// read that finds the batches all in flight takes the position the last
// one learned, before the read began, instead of waiting for the next.
var reuseIndex = false

// probeCmds begin a batch (see above).
var probeCmds = [][][]byte{
	{cmdReadPol, []byte("any")},
	{cmdApplied, []byte("LINEARIZABLE")},
}

// proofCmds end a batch (see above); the last one's reply is the token.
var proofCmds = [][][]byte{
	{cmdApplied},
}

// probeTok is the probe's token among a batch's replies.
const probeTok = 1

// errIndex: the follower could not learn and apply the leader's commit
// position (it refused, failed or did not answer); the read was not used.
var errIndex = errors.New("linearizable read index")

// enqueue adds o, a linearizable read whose session's own floor is
// o.floor, to the node's next batch, sending that now if fewer than
// indexInFlight are out. o.call and o.batch are set on return.
func (x *readIndex) enqueue(o *op, sid uint64) {
	x.n.p.stats.readsIndexed.Add(1)
	x.mu.Lock()
	if reuseIndex && len(x.free) == 0 && x.last != (position{}) {
		last := x.last
		x.mu.Unlock()
		x.sendReused(o, sid, last)
		return
	}
	b := x.next
	if b == nil {
		b = &indexBatch{c: new(call)}
		b.c.init(x.n, nil)
		x.next = b
	}
	b.ops = append(b.ops, o)
	o.known, o.batch, o.call = true, b, b.c
	if len(x.free) == 0 || x.lingering {
		x.mu.Unlock()
		return
	}
	// A slot is free and the batch could leave now; but first the
	// goroutines that are ready to run (clients whose reads arrived with
	// this one, often the readers of the batch that just came back) join
	// it, as upConn.send lets them share a write: one probe then serves
	// them all, where leaving at once made a batch of one and another of
	// the rest. Meanwhile no other read sends (lingering), and settle
	// may send the batch on a slot it frees.
	x.lingering = true
	x.mu.Unlock()
	runtime.Gosched()
	x.mu.Lock()
	x.lingering = false
	next := x.next
	if next == nil || len(x.free) == 0 {
		// settle sent it; and what formed since goes when a batch
		// comes back.
		x.mu.Unlock()
		return
	}
	u := x.free[len(x.free)-1]
	x.free = x.free[:len(x.free)-1]
	x.next = nil
	x.mu.Unlock()
	x.send(u, next)
}

// send writes batch b on u, one of the node's batch connections.
func (x *readIndex) send(u *upConn, b *indexBatch) {
	if traceNextBatch != nil {
		traceNextBatch(b, "sent")
	}
	cmds := make([][][]byte, 0, len(probeCmds)+len(b.ops)+len(proofCmds))
	cmds = append(cmds, probeCmds...)
	proof := len(probeCmds) + len(b.ops) + len(proofCmds) - 1
	for _, o := range b.ops {
		o.at, o.tok = len(cmds), proof
		cmds = append(cmds, o.args)
	}
	cmds = append(cmds, proofCmds...)
	b.c.cmds = cmds
	sent := x.n.p.now()
	var queued time.Duration
	for _, o := range b.ops {
		queued += sent.Sub(o.sentAt) // enqueue's caller set it as the read joined
	}
	x.n.p.stats.indexQueuedNs.Add(int64(queued))
	x.n.p.stats.indexSent.Add(uint64(len(b.ops)))
	b.c.then = func(c *call) { x.settle(u, b, sent) }
	x.n.p.stats.indexQueries.Add(1)
	u.send(b.c, true)
}

// settle reads what batch b's probe learned (before its reads hear of
// it), and sends the batch that formed meanwhile on u, or frees u.
func (x *readIndex) settle(u *upConn, b *indexBatch, sent time.Time) {
	n, c := x.n, b.c
	n.p.stats.indexBatchNs.Add(int64(n.p.now().Sub(sent)))
	n.p.stats.indexAnswered.Add(1)
	b.err = c.err
	if b.err == nil {
		for i, r := range c.replies[:len(probeCmds)] {
			if hasPrefix(r, "-") {
				if hasPrefix(r, "-TRYAGAIN") {
					// It could not apply the leader's position within
					// its read wait: keep waiting reads off it a while.
					n.refusedStale(n.p.now())
				}
				b.err = fmt.Errorf("%s: %s", probeCmds[i][0], trunc(r, 120))
				break
			}
		}
	}
	if b.err == nil {
		var ok bool
		if b.at, ok = tokenOf(c.replies[probeTok]); !ok {
			b.err = fmt.Errorf("no token: %q", trunc(c.replies[probeTok], 64))
		}
	}
	if b.err != nil {
		n.p.stats.indexRefused.Add(1)
		b.err = fmt.Errorf("%w on %s: %w", errIndex, n.id, b.err)
	} else {
		n.servedAt(b.at)
		if now := n.p.now(); n.slowBatch(now.Sub(sent), now) {
			// Its batches all wait for the leader's position: it lags,
			// and the leader serves linearizable reads sooner. (The
			// batch, not each read: a read's wait also counts the batch
			// in flight when it came, which is no sign of lag.)
			n.p.stats.indexSlow.Add(1)
			n.foundSlow(now)
		}
	}
	x.mu.Lock()
	if b.err == nil {
		x.last = b.at
	}
	next := x.next
	x.next = nil
	if next == nil {
		x.free = append(x.free, u)
	}
	x.mu.Unlock()
	if next == nil {
		return
	}
	select {
	case <-n.p.done:
		// Closed: the reads waiting fail (tried elsewhere, and there
		// find the proxy closed too).
		n.inflight.Add(1) // finish takes it back
		next.c.finish(fmt.Errorf("%w: proxy closed", errNotSent))
		return
	default:
	}
	if traceNextBatch != nil {
		traceNextBatch(next, "settled")
	}
	if plantSendOnNewGoroutine || b.c.err != nil {
		// A failed call may be finishing under u's write lock (a
		// failed write fails what is queued), which send takes.
		go x.send(u, next)
		return
	}
	// Answered: this is u's reader, holding no lock, and the batch was
	// u's only call, so nothing is left to read on u while it writes
	// (bounded by the write deadline). Sent here, the reads queued for
	// this slot leave at once; on a goroutine of its own they waited for
	// it to be scheduled, on a loaded machine a share of a millisecond.
	x.send(u, next)
}

// plantSendOnNewGoroutine puts back, for tests, the hop the next batch
// took before: sent on a goroutine of its own, not by the reader that
// settled the batch before it (TestNextBatchLeavesFromTheReader).
var plantSendOnNewGoroutine = false

// traceNextBatch, set by tests only, hears of a batch as it is sent, and
// as a batch that came back is about to send it ("settled").
var traceNextBatch func(b *indexBatch, event string)

// sendReused is the planted bug's path: o goes at once in the known-floor
// form with the position the last batch learned.
func (x *readIndex) sendReused(o *op, sid uint64, last position) {
	o.floor = maxPos(o.floor, last)
	o.known, o.batch = true, nil
	o.cmds, o.at, o.tok = knownReadCmds(&o.cmdsBuf, o.args)
	o.call = new(call)
	o.call.init(x.n, o.cmds)
	x.n.readConn(sid).send(o.call, true)
}

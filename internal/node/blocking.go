package node

import (
	"bytes"
	"container/list"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/replication"
	"github.com/tandemdb/tandem/internal/resp"
)

// Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP).
//
// Only the leader serves them. A blocked client holds no lock and nothing
// in the leader's sequencer: it is a waiter in this node's registry, in a
// FIFO queue per key it waits on. Its pop is an ordinary write: the
// command's non-blocking form (Spec.Exec) sent through submit, so it is
// sequenced, logged, committed and applied like any write, and its reply
// is sent only once its own entry is committed. A client becomes a waiter
// only when a pop of its finds nothing, registered by that pop's exec
// under the sequencing lock, so no push is sequenced between the pop and
// the registration (blockThen); a pop that takes an element at once, as
// nearly every one does under a backlog, never enters the registry.
//
// A push serves the blocked clients in its own entry, as Redis serves them
// inside the push (serve): when a write's ops push to a key whose oldest
// waiters are idle (their last pop found nothing and no pop of theirs is
// under way or due), the write's exec, under the sequencing lock, runs
// their pops after it in one commands.Batch, in queue order, while the
// list has elements: one entry for the push and its pops, and each
// served client is answered with its element once that entry commits
// (fanOut shares the commit), never before, so an element is
// acknowledged to exactly one consumer and only once its pop is
// committed. A served client that times out, is unblocked or loses its
// leader at that moment still answers its element (leave). A list the
// entry made and its served pops emptied again (a job pushed to an idle
// consumer) has none of its rows written, only its metadata row written
// and deleted (foldNewDrops). A pipeline's batch and a transaction serve
// the same way, after all of their commands (startServing, startTx).
// Waiters that are not idle are served by turns:
//
// A key's waiters are served one at a time, in order, by a turn passed
// along the queue at sequencing speed:
//
//   - The leader calls blockRegistry.sequenced for every entry it
//     sequences (LeaderConfig.Sequenced), under its sequencing lock, after
//     the entry is in the overlay. For each key the entry put sub-key rows
//     under (a push), it gives the turn to the oldest waiter of the key
//     that does not hold one (signal).
//   - A waiter with the turn runs its pop. Being sequenced after the push,
//     the pop reads it (from the overlay if it is not applied yet); since
//     entries commit in LSN order, its reply, sent once its own entry
//     commits, never acknowledges an element whose push could still be
//     lost.
//   - When the pop is sequenced and took something (or failed, e.g.
//     WRONGTYPE on BLMOVE's destination), the waiter passes the turn to
//     the next waiter of each of its keys right there, under the
//     sequencing lock (before any later write is sequenced), so the next
//     pop is sequenced after it: FIFO in log order, and n elements pushed
//     at once feed n waiters without waiting n commits.
//   - A pop that finds nothing (a non-blocking LPOP took the element)
//     ends the turn; the waiter waits again, first in line. A waiter that
//     leaves (timeout, disconnect) holding an unused turn passes it on.
//
// Consequences, all Redis's too: a transaction or script is one entry, so
// its pushes wake anyone only once it is whole, and a LPUSH then DEL in one
// transaction gives a turn whose pop finds nothing (the client stays
// blocked). A blocked client whose key became another type stays blocked
// (commands.Ctx.Blocked).
//
// Where it differs from Redis: Redis hands the pushed elements to the
// blocked clients inside the push itself; here that holds for idle
// waiters (whatever pushes: a command, a pipeline, a transaction, a
// script), and otherwise a non-blocking pop
// sent between the push and the blocked client's pop may take the element
// first (the blocked client then waits again, first in line). A client
// blocked on several keys pops from the first of its keys that has data
// when its pop runs, not necessarily the key that woke it. Two pushes to
// one key in a row may give turns to the first two waiters at once, whose
// pops may then be sequenced in either order.
//
// Leadership: a waiter watches the leader it registered under; when that
// leadership ends it is answered "UNBLOCKED ..." (Redis's text when a
// blocked client's instance becomes a replica) and must reconnect to the
// new leader. A pop that was sequenced when the leadership ended is
// answered as any such write (ErrLeadershipLost: outcome unknown), so an
// element is never acknowledged to two consumers; it may be acknowledged
// to none if that answer is lost, as with any write.
type blockRegistry struct {
	mu   sync.Mutex
	keys map[string]*keyWaiters
	// blocked counts the clients blocked now (INFO blocked_clients): those
	// whose first pop found nothing, until they are answered.
	blocked atomic.Int64
	// changed (under mu) is closed when blocked changes, for tests that
	// wait for a client to block; nil until one asks (blockedChanged), so
	// that blocking and unblocking make no channel otherwise.
	changed chan struct{}
	// How the blocking commands' pops ran (INFO # Clients): run by a push
	// in its entry (servedInPush), or by the client itself, taking
	// something (ownPops) or finding nothing (emptyPops); wokenPops counts
	// the client's own pops after a wake-up (a turn), of either kind.
	servedInPush, ownPops, emptyPops, wokenPops atomic.Int64
	// wakeUps counts a blocked client's goroutine woken from its own
	// channels: a turn, or the outcome of the entry a push served it in
	// (each a trip through the scheduler, which a handed-over pop never
	// makes; BenchmarkApps).
	wakeUps atomic.Int64
	// dropTurn is a planted bug for tests: a turn is never handed on (one
	// waiter woken per push, the classic lost wake-up), so elements pushed
	// together are left while clients wait for them.
	dropTurn bool
	// batchServesNoOne is a planted bug for tests: a pipeline's batch of
	// writes, or a transaction, serves no blocked client in its entry
	// (they wait for turns, one more entry each).
	batchServesNoOne bool
}

// keyWaiters is one key's queue and turn.
type keyWaiters struct {
	q *list.List // of *waiter, oldest first
	// holder has the key's turn: it was signaled and its pop has not been
	// sequenced since. dirty says a push came while it held the turn, so
	// a pop that found nothing hands the turn on instead of dropping it.
	holder *waiter
	dirty  bool
}

// blockedClients returns how many clients are blocked.
func (r *blockRegistry) blockedClients() int64 { return r.blocked.Load() }

// addBlocked changes the count of blocked clients by d.
func (r *blockRegistry) addBlocked(d int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.blocked.Add(d)
	if r.changed != nil {
		close(r.changed)
		r.changed = nil
	}
}

// blockedChanged returns the count of blocked clients and a channel closed
// at its next change.
func (r *blockRegistry) blockedChanged() (int64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.blocked.Load(), r.changed
}

// waiter is one blocked client.
type waiter struct {
	keys  []string
	elems []*list.Element // in keys' queues, parallel to keys
	// key1 and elem1 hold keys and elems while there is one key.
	key1  [1]string
	elem1 [1]*list.Element
	// spec and args are its command, which serve runs as its pop.
	spec *commands.Spec
	args [][]byte
	// wake holds a signal: w got a turn since its pop last began, or the
	// entry of a push that served it has its outcome (servedPop.answer).
	// done (under mu) says its pop took something or failed, or it is
	// leaving: it takes no more turns and is not served.
	wake chan struct{}
	done bool
	// idle (under mu): w's last pop found nothing and w holds no turn
	// since, so no pop of its own is under way: a push may serve it.
	idle bool
	// served (under mu) is the pop a push ran for w in its own entry.
	served *servedPop
}

// servedPop is a blocked client's pop run by a push in the push's entry:
// its reply, sent once that entry commits (done).
type servedPop struct {
	w     *waiter
	reply commands.Reply
	done  chan popResult // one result: the entry's outcome
}

// popResult is what a served client answers.
type popResult struct {
	reply commands.Reply
	lsn   uint64
	err   error
	// again: the entry was not logged (nothing was popped); the client
	// waits again.
	again bool
}

func newBlockRegistry() *blockRegistry {
	return &blockRegistry{keys: map[string]*keyWaiters{}}
}

// add registers a waiter for the command spec args on keys (a key given
// twice counts once), at the end of each key's queue.
func (r *blockRegistry) add(spec *commands.Spec, args [][]byte, keys [][]byte) *waiter {
	return r.addWaiter(spec, args, keys, false)
}

// addWaiter is add; idle marks the waiter idle at once (its pop just
// found nothing, under the sequencing lock: blockThen's first pop).
func (r *blockRegistry) addWaiter(spec *commands.Spec, args [][]byte, keys [][]byte, idle bool) *waiter {
	w := &waiter{spec: spec, args: args, wake: make(chan struct{}, 1), idle: idle}
	// One key (a job queue's BLPOP) fits in the waiter's own arrays.
	w.keys, w.elems = w.key1[:0], w.elem1[:0]
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, k := range keys {
		if slices.Contains(w.keys, string(k)) {
			continue
		}
		ks := string(k)
		kw := r.keys[ks]
		if kw == nil {
			kw = &keyWaiters{q: list.New()}
			r.keys[ks] = kw
		}
		w.keys = append(w.keys, ks)
		w.elems = append(w.elems, kw.q.PushBack(w))
	}
	return w
}

// attempt marks the start of w's pop: a signal from now on is for a push
// the pop may not see, and makes w try again. If a push served w, attempt
// returns that pop instead, and w must not pop.
func (r *blockRegistry) attempt(w *waiter) *servedPop {
	select {
	case <-w.wake:
	default:
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w.idle = false
	return w.served
}

// leave ends w's wait (timeout, CLIENT UNBLOCK, disconnect, end of the
// leadership): no push serves it from now on. If one served it already,
// leave returns that pop, whose element is w's: w must answer it.
func (r *blockRegistry) leave(w *waiter) *servedPop {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.done, w.idle = true, false
	return w.served
}

// serve runs, in the entry of a write whose result is res (under the
// leader's sequencing lock, on the write's view v), the pops of the
// clients blocked on the keys res pushes to, as Redis serves them inside
// the push: one entry for the push and the pops, and each client is
// answered once that entry commits. For each key, in queue order, it
// serves idle waiters until a pop finds nothing (the list is empty) or
// the oldest waiter left is not idle (its own pop is under way or due:
// the turns serve it, first, as FIFO requires). The entry's outcome goes
// to the served waiters through their servedPop (fanOut), or, if the
// entry is not logged after all, unserve. Served waiters are done: no
// turn goes to them.
func (r *blockRegistry) serve(v commands.View, cctx commands.Ctx, res commands.Result) (commands.Result, []*servedPop, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 || r.dropTurn {
		return res, nil, nil // dropTurn: the planted bug lives in the turns
	}
	// A copy made only here, when a pop may run: cctx itself, whose
	// address a pop would take, would be moved to the heap on entry, an
	// allocation for every write the leader sequences.
	var pctx *commands.Ctx
	var batch *commands.Batch
	var served []*servedPop
	// The keys served so far: the ops' own bytes, a few in an array on
	// the stack (a string of each was an allocation per push).
	var visitedArr [4][]byte
	visited := visitedArr[:0]
	for i := range res.Ops {
		op := &res.Ops[i]
		if op.Kind != logrec.OpSubPut || len(op.Sub) == 0 {
			continue // not a push (keyspace.ListHeadSub moves on pops too)
		}
		kw := r.keys[string(op.Key)]
		if kw == nil || kw.holder != nil || slices.ContainsFunc(visited, func(k []byte) bool { return bytes.Equal(k, op.Key) }) {
			continue
		}
		visited = append(visited, op.Key)
		for e := kw.q.Front(); e != nil; e = e.Next() {
			w := e.Value.(*waiter)
			if w.done {
				continue
			}
			if !w.idle {
				break
			}
			if batch == nil {
				batch = commands.NewBatch(v)
				batch.Append(res.Ops)
				pctx = new(commands.Ctx)
				*pctx = cctx
				pctx.Blocked = true
			}
			reply, err := batch.Run(pctx, w.spec, w.args)
			if err != nil && !commands.IsInputError(err) {
				return res, served, err
			}
			if err != nil || isNullReply(reply) {
				break // changed nothing; the turns handle the rest
			}
			s := &servedPop{w: w, reply: reply, done: make(chan popResult, 1)}
			w.done, w.idle, w.served = true, false, s
			r.servedInPush.Add(1)
			served = append(served, s)
			// w is not woken now but once its entry's outcome is
			// there (s.answer): woken now, it would only wait for
			// that, a second wake-up for each served job.
		}
	}
	if len(served) == 0 {
		return res, nil, nil
	}
	res.Ops = foldNewDrops(batch.Ops(), v.NewVersion())
	res.Publish = append(res.Publish, batch.Publish()...)
	return res, served, nil
}

// foldNewDrops rewrites, in place, the ops of an entry at version nv (the
// LSN it gets: every collection the entry makes has it) so that the
// sub-key rows of a collection the entry makes and then drops are never
// written: they are left out, and the drop becomes a deletion of the
// key's metadata row, which leaves the key absent as the drop did. Its
// metadata writes stay, so the entry still changes the key (a WATCH of it
// fails, as the push fails it in Redis). A job pushed to an empty list
// and popped at once by the client blocked on it (serve) is such a
// collection: an element row, the head row, the metadata row and a range
// deletion of the version's rows (which Pebble fragments) on every node
// become two point writes of the metadata row. Rows of nv exist only in
// this entry, so leaving them out changes nothing a later read sees. The
// ops of a collection made again after its drop (same key, same version)
// stay.
func foldNewDrops(ops []logrec.Op, nv uint64) []logrec.Op {
	for i := range ops {
		if ops[i].Kind != logrec.OpDrop || ops[i].Version != nv {
			continue
		}
		key := ops[i].Key
		ops[i] = logrec.Op{Kind: logrec.OpDelete, Key: key}
		// Mark the version's earlier sub-key rows of the key.
		for j := range i {
			op := &ops[j]
			if (op.Kind == logrec.OpSubPut || op.Kind == logrec.OpSubDel) && op.Version == nv && string(op.Key) == string(key) {
				op.Kind = opFolded
			}
		}
	}
	return slices.DeleteFunc(ops, func(op logrec.Op) bool { return op.Kind == opFolded })
}

// opFolded marks, inside foldNewDrops only, an op it leaves out: no op
// kind has it.
const opFolded logrec.OpKind = 255

// unserve takes back pops serve ran in an entry that was not logged:
// nothing was popped, and each client waits again.
func (r *blockRegistry) unserve(served []*servedPop) {
	for _, s := range served {
		s.answer(popResult{again: true})
	}
}

// answer gives s's client the outcome of the entry its pop is in, and
// wakes it: the one wake-up of a served client (serve does not wake it).
func (s *servedPop) answer(res popResult) {
	s.done <- res // buffered, and answered once: never blocks
	select {
	case s.w.wake <- struct{}{}:
	default:
	}
}

// again makes w, whose served pop was not logged, wait again.
func (r *blockRegistry) again(w *waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.done, w.served = false, nil
}

// ran is called, under the leader's sequencing lock, with what w's pop
// produced; every push sequenced before it is in what it read. It ends
// the turns w holds: one that took something or failed ends w's wait and
// hands each turn to the next waiter, so that their pops are sequenced
// after w's; one that found nothing keeps w waiting and hands on only a
// turn a later push made dirty.
func (r *blockRegistry) ran(w *waiter, res commands.Result, err error) {
	took := err != nil || !isNullReply(res.Reply)
	if took {
		r.ownPops.Add(1)
	} else {
		r.emptyPops.Add(1)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if took {
		w.done = true
	} else {
		w.idle = true
	}
	for _, k := range w.keys {
		kw := r.keys[k]
		if kw.holder != w {
			continue
		}
		kw.holder = nil
		if (took || kw.dirty) && !r.dropTurn {
			kw.dirty = false
			r.turnLocked(kw)
		}
	}
}

// remove takes w out of every queue; a turn it holds passes on.
func (r *blockRegistry) remove(w *waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.done = true
	for i, k := range w.keys {
		kw := r.keys[k]
		kw.q.Remove(w.elems[i])
		if kw.holder == w {
			kw.holder = nil
			kw.dirty = false
			if !r.dropTurn {
				r.turnLocked(kw)
			}
		}
		if kw.q.Len() == 0 {
			delete(r.keys, k)
		}
	}
}

// sequenced gives a turn on each key ops pushed to (put an element's
// sub-key row under: any row but a list's head row, which pops write too),
// or marks a held turn dirty. A put that is not a push (LSET) gives a turn
// whose pop finds what is there; that costs a write, not correctness.
func (r *blockRegistry) sequenced(ops []logrec.Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return
	}
	for i := range ops {
		if ops[i].Kind != logrec.OpSubPut || len(ops[i].Sub) == 0 {
			continue // a list's head row (keyspace.ListHeadSub) moves on pops too
		}
		kw := r.keys[string(ops[i].Key)]
		if kw == nil {
			continue
		}
		if deletedLast(ops[i+1:], ops[i].Key) {
			// The entry took it all (its served pops emptied the list):
			// a turn would pop nothing.
			continue
		}
		if kw.holder != nil {
			kw.dirty = true
			continue
		}
		r.turnLocked(kw)
	}
}

// deletedLast reports whether the last op of key in ops deletes it (a
// FLUSHALL after the key's last op is not counted: the answer only spares
// a turn, so "no" is always safe). It scans from the end, allocating
// nothing: a map of the entry's deleted keys cost two allocations on
// every entry that pushed to a key someone waits on.
func deletedLast(ops []logrec.Op, key []byte) bool {
	for i := len(ops) - 1; i >= 0; i-- {
		switch op := &ops[i]; {
		case op.Kind == logrec.OpFlushAll:
			return false
		case string(op.Key) == string(key):
			return op.Kind == logrec.OpDelete || op.Kind == logrec.OpDrop
		}
	}
	return false
}

// turnLocked gives kw's turn, which no one holds, to its oldest waiter
// that is not done.
func (r *blockRegistry) turnLocked(kw *keyWaiters) {
	for e := kw.q.Front(); e != nil; e = e.Next() {
		w := e.Value.(*waiter)
		if w.done {
			continue
		}
		kw.holder, w.idle = w, false
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return
	}
}

// waiting returns how many waiters wait on key.
func (r *blockRegistry) waiting(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kw := r.keys[key]; kw != nil {
		return kw.q.Len()
	}
	return 0
}

// unblockedReply answers a blocked client whose leader stepped down, as
// Redis answers one whose primary became a replica.
const unblockedReply = commands.ErrorReply("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)")

// isNullReply reports whether r is a pop that found nothing.
func isNullReply(r commands.Reply) bool {
	switch r := r.(type) {
	case nil:
		return true
	case commands.Array:
		return r == nil
	case commands.Bulk:
		return r == nil
	}
	return false
}

// block serves a blocking command: its pop now if it can, else once a
// push signals it, until the timeout, the client leaving or the end of
// this leadership.
func (b backend) block(ctx context.Context, spec *commands.Spec, args [][]byte) (commands.Reply, uint64, error) {
	reply, lsn, err, _ := b.blockThen(ctx, spec, args, nil)
	return reply, lsn, err
}

// blockThen is block; with then, a first pop that takes something (the
// list had elements: no wait) is handed over as a lone write is
// (resp.ThenBackend): then is called with its outcome by the goroutine
// that answers its entry, and blockThen returns at once with owed true.
// Otherwise (owed false) blockThen returns the answer, as block does.
//
// Why: under a backlog nearly every BLPOP finds an element at once. If
// its connection's goroutine waited for the commit, each consumer would
// need a wake-up per job where each producer (whose LPUSH is handed
// over) needs none; on a busy machine the consumers then fall behind,
// the backlog grows, and LPUSH/BLPOP being a stack, its oldest jobs wait
// until it drains (the apps bench's p99 of 150 ms).
func (b backend) blockThen(ctx context.Context, spec *commands.Spec, args [][]byte, then func(commands.Reply, uint64, error)) (_ commands.Reply, _ uint64, _ error, owed bool) {
	ba, err := spec.Block(args)
	if err != nil {
		return nil, 0, err, false
	}
	r, ok := b.n.current().(*leading)
	if !ok {
		reply, lsn, err := b.submit(ctx, spec, args)() // the role's own answer
		return reply, lsn, err, false
	}
	reg := b.n.blocked
	// w is registered only once a pop of this call finds nothing: under
	// a backlog nearly every first pop takes a job, and registering and
	// removing a waiter for it cost a dozen allocations and four registry
	// locks for nothing. ran registers it under the sequencing lock, in
	// the exec of the pop that found nothing, so every push sequenced
	// after that pop finds w in line (idle: a push may serve it): no push
	// falls between the pop and the registration.
	var w *waiter
	// What the first wait set up, undone once at the end: a defer inside
	// the loop below would be a heap allocation each (three a blocked
	// call).
	var (
		timer     *time.Timer
		unblockOK func()
		counted   bool
	)
	defer func() {
		if counted {
			reg.addBlocked(-1)
		}
		if unblockOK != nil {
			unblockOK()
		}
		if timer != nil {
			timer.Stop()
		}
		if w != nil {
			reg.remove(w)
		}
	}()
	var took bool // the last pop took something (or failed)
	// firstEmpty is the first pop's wait when it found nothing, not
	// waited on unless the call answers nil without popping.
	var firstEmpty commitWait
	ran := func(res commands.Result, err error) {
		took = err != nil || !isNullReply(res.Reply)
		switch {
		case w != nil:
			reg.ran(w, res, err)
		case took:
			reg.ownPops.Add(1)
		default:
			reg.emptyPops.Add(1)
			w = reg.addWaiter(spec, args, ba.Keys, true)
		}
	}
	var timeout <-chan time.Time // once blocked: most pops of a busy queue never block
	var unblocked <-chan bool    // CLIENT UNBLOCK, once blocked
	// answer is the reply to a pop a push served; again says it was not
	// logged, and w waits on.
	answer := func(s *servedPop) popResult {
		var res popResult
		select {
		case res = <-s.done: // woken by it, or it came as w left
		default:
			reg.wakeUps.Add(1)
			select {
			case res = <-s.done:
			case <-ctx.Done():
				// The client left: its element is acknowledged to no
				// one, as when any reply is lost.
				return popResult{err: ctx.Err()}
			}
		}
		if res.again {
			reg.again(w)
		}
		res.reply = b.lostReply(res.reply)
		return res
	}
	for again := false; ; again = true {
		if again { // w is registered: the pop before found nothing
			if s := reg.attempt(w); s != nil {
				if res := answer(s); !res.again {
					return res.reply, res.lsn, res.err, false
				}
			}
			reg.wokenPops.Add(1)
		}
		pending, err := b.start(ctx, spec, args, again, ran)
		if err != nil {
			return nil, 0, err, false
		}
		if then != nil && !again && took {
			// Its first pop, not a woken one (lostReply's fault is for
			// those): answered by the goroutine that commits it, as
			// SubmitThen hands over a write (ThenMap: no closure around
			// then, an allocation a job).
			if p, ok := pending.(*replication.Pending); ok {
				p.ThenMap(ctx, then, waitError)
			} else {
				pending.Then(ctx, func(reply commands.Reply, lsn uint64, err error) { then(waitResult(reply, lsn, err)) })
			}
			return nil, 0, nil, true
		}
		if again || took {
			reply, lsn, err := waitResult(pending.Wait(ctx))
			if err != nil || !isNullReply(reply) {
				if again && err == nil {
					reply = b.lostReply(reply)
				}
				return reply, lsn, err, false
			}
		} else {
			// The first pop found nothing and ran registered w. Its nil
			// is no answer (the client blocks), so its wait for what it
			// read to be committed is left to a nil answered later
			// (firstEmpty): under a queue whose consumers block, that
			// wait parked and woke this goroutine once a job.
			firstEmpty = pending
		}
		if !again {
			if ba.Timeout > 0 {
				timer = time.NewTimer(ba.Timeout)
				timeout = timer.C
			}
			// Unblockable before counted: a client that INFO shows as
			// blocked must already take CLIENT UNBLOCK, or an UNBLOCK sent
			// on seeing the count finds no call, answers 0, and a pop
			// without a timeout waits for ever (Redis's "client unblock
			// tests" hung once in CI on that window).
			unblocked, unblockOK = resp.BlockedCall(ctx)
			reg.addBlocked(1)
			counted = true
		}
		var left commands.Reply // the answer if w leaves unserved
		select {
		case <-w.wake:
			reg.wakeUps.Add(1)
			continue
		case <-timeout:
			left = commands.TimeoutReply
		case withError := <-unblocked:
			// CLIENT UNBLOCK: between pops, so nothing of this client's
			// is under way (a turn it held passes on with remove).
			left = commands.TimeoutReply
			if withError {
				left = commands.ErrorReply(resp.UnblockedByClient)
			}
		case <-ctx.Done():
		case <-r.l.Done():
			left = unblockedReply
		}
		if s := reg.leave(w); s != nil {
			// A push served w as it was leaving: the element is w's.
			if res := answer(s); !res.again {
				return res.reply, res.lsn, res.err, false
			}
		}
		if left == nil {
			return nil, 0, ctx.Err(), false
		}
		if firstEmpty != nil && left != unblockedReply {
			// A timeout's nil (or CLIENT UNBLOCK's answer) says the
			// first pop found nothing: only once what it read is
			// committed, as any read's reply.
			if _, _, err := waitResult(firstEmpty.Wait(ctx)); err != nil {
				return nil, 0, err, false
			}
		}
		return left, 0, nil, false
	}
}

// lostReply is the reply to a blocked client whose pop, woken, took
// reply: reply itself, but for the BlockedPopLostReply fault, under which
// it is the timeout's nil (the element is lost).
func (b backend) lostReply(reply commands.Reply) commands.Reply {
	if b.n.cfg.Buggify.BlockedPopLostReply && !isNullReply(reply) {
		return commands.TimeoutReply
	}
	return reply
}

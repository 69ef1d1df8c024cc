package node

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/logrec"
)

// Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP).
//
// Only the leader serves them. A blocked client holds no lock and nothing
// in the leader's sequencer: it is a waiter in this node's registry, in a
// FIFO queue per key it waits on. Its pop is an ordinary write: the
// command's non-blocking form (Spec.Exec) sent through Submit, so it is
// sequenced, logged, committed and applied like any write, and its reply
// is sent only once its own entry is committed.
//
// The leader calls blockRegistry.sequenced for every entry it sequences
// (LeaderConfig.Sequenced), under its sequencing lock, after the entry is
// in the overlay. For each key the entry pushed to (sub-key puts: list
// elements), it signals as many waiters of that key as elements were
// pushed, first come first, skipping those already signaled. A signaled
// waiter runs its pop again; since the pop is sequenced after the push that
// signaled it, it reads the push (from the overlay if it is not applied
// yet), and because entries commit in LSN order its reply, sent after its
// own entry commits, never acknowledges data that could be lost while the
// push is not. A waiter whose pop finds nothing (another client got there
// first) keeps its place and waits again.
//
// Consequences, all Redis's too: a transaction or script is one entry, so
// its pushes wake anyone only once it is whole, and a LPUSH then DEL in one
// transaction wakes a waiter whose pop finds nothing (it stays blocked).
//
// Where it differs from Redis: Redis hands the pushed elements to the
// blocked clients in FIFO order inside the push itself; here the signaled
// waiters (FIFO) each send their pop, so two waiters signaled by one
// variadic push may get its elements in either order, and a client that
// sends a non-blocking LPOP meanwhile may take an element a blocked client
// was signaled for (that client then waits again, first in line). A
// client blocked on several keys pops from the first of its keys that has
// data when its pop runs, not necessarily the key that woke it.
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
	keys map[string]*list.List // of *waiter, oldest first
}

// waiter is one blocked client.
type waiter struct {
	keys  []string
	elems []*list.Element // in keys' queues, parallel to keys
	// wake holds a signal; signaled (under mu) says wake holds one or
	// will, consumed that the running attempt began after a signal.
	wake     chan struct{}
	signaled bool
	consumed bool
}

func newBlockRegistry() *blockRegistry {
	return &blockRegistry{keys: map[string]*list.List{}}
}

// add registers a waiter on keys (a key given twice counts once), at the
// end of each key's queue.
func (r *blockRegistry) add(keys [][]byte) *waiter {
	w := &waiter{wake: make(chan struct{}, 1)}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	for _, k := range keys {
		ks := string(k)
		if seen[ks] {
			continue
		}
		seen[ks] = true
		q := r.keys[ks]
		if q == nil {
			q = list.New()
			r.keys[ks] = q
		}
		w.keys = append(w.keys, ks)
		w.elems = append(w.elems, q.PushBack(w))
	}
	return w
}

// attempt marks the start of w's pop: a signal that arrives from now on
// is for data the pop may not see, so it will make w try again.
func (r *blockRegistry) attempt(w *waiter) {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-w.wake:
	default:
	}
	w.consumed = w.signaled
	w.signaled = false
}

// remove takes w out of every queue. If w holds a signal it did not use
// for a pop of the key that sent it, the signal passes to the next waiter
// of each of w's keys, so that no pushed element is left without a waiter
// signaled for it. served says w's last attempt popped; a waiter on one
// key served after a signal used it as meant.
func (r *blockRegistry) remove(w *waiter, served bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, k := range w.keys {
		q := r.keys[k]
		q.Remove(w.elems[i])
		if q.Len() == 0 {
			delete(r.keys, k)
		}
	}
	pass := w.signaled || (w.consumed && !(served && len(w.keys) == 1))
	if !pass {
		return
	}
	for _, k := range w.keys {
		if q := r.keys[k]; q != nil {
			r.signalLocked(q, 1)
		}
	}
}

// sequenced signals the waiters of the keys ops pushed to: for each key,
// as many waiters (not already signaled, oldest first) as the ops put
// sub-key rows under it.
func (r *blockRegistry) sequenced(ops []logrec.Op) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.keys) == 0 {
		return
	}
	var counts map[string]int
	for i := range ops {
		if ops[i].Kind != logrec.OpSubPut {
			continue
		}
		k := string(ops[i].Key)
		if r.keys[k] == nil {
			continue
		}
		if counts == nil {
			counts = map[string]int{}
		}
		counts[k]++
	}
	for k, n := range counts {
		r.signalLocked(r.keys[k], n)
	}
}

// signalLocked signals up to n waiters of q not signaled yet, oldest
// first.
func (r *blockRegistry) signalLocked(q *list.List, n int) {
	for e := q.Front(); e != nil && n > 0; e = e.Next() {
		w := e.Value.(*waiter)
		if w.signaled {
			continue
		}
		w.signaled = true
		select {
		case w.wake <- struct{}{}:
		default:
		}
		n--
	}
}

// waiting returns how many waiters wait on key.
func (r *blockRegistry) waiting(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.keys[key]; q != nil {
		return q.Len()
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
	ba, err := spec.Block(args)
	if err != nil {
		return nil, 0, err
	}
	r, ok := b.n.current().(*leading)
	if !ok {
		return b.submit(ctx, spec, args)() // the role's own answer
	}
	reg := b.n.blocked
	w := reg.add(ba.Keys)
	served := false
	defer func() { reg.remove(w, served) }()
	var timeout <-chan time.Time
	if ba.Timeout > 0 {
		t := time.NewTimer(ba.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	for {
		reg.attempt(w)
		reply, lsn, err := b.submit(ctx, spec, args)()
		if err != nil || !isNullReply(reply) {
			served = err == nil
			return reply, lsn, err
		}
		select {
		case <-w.wake:
		case <-timeout:
			return commands.TimeoutReply, 0, nil
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-r.l.Done():
			return unblockedReply, 0, nil
		}
	}
}

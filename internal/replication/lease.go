package replication

import (
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Lease gates a leader's acknowledgements and reads under a control plane:
// the leader answers a writer or a reader only while its lease is valid.
// The control plane extends it each time it confirms that this node still
// leads its epoch, to the moment the confirmation was asked plus the fence
// delay; a new leader's lease starts only a fence delay after it learnt of
// its promotion. Together (see package node's agent) these bound the time
// during which an old leader cut off from the control plane may still
// answer: never after a new leader starts answering.
//
// Validity is checked when an answer is about to be given, on the
// monotonic clock, so a process that was paused (SIGSTOP, a long GC) and
// resumes after its lease ran out answers nothing until it is confirmed
// again. A nil *Lease is always valid (no control plane: a static
// topology).
//
// Confirmation on demand. Whoever confirms the lease (the node's agent)
// need not keep it valid while nothing is served: an idle leader lets it
// lapse, and the first answer after that waits for one confirmation. The
// lease tells the confirmer when it is wanted: every answer marks it used
// (TakeUse), and an answer that finds it lapsed, or the first use after the
// confirmer took the mark, signals Demand. Safety does not depend on any of
// this: validity is only ever extended by a confirmation asked before the
// new end minus the fence delay, so a lease that was not confirmed since
// the last change of epoch answers nothing, however long it sat idle.
type Lease struct {
	// from and until are monotonic nanoseconds since base: valid when
	// from <= now < until.
	from, until atomic.Int64

	used   atomic.Bool   // an answer wanted the lease since the last TakeUse
	demand chan struct{} // capacity 1: the lease is wanted (see Demand)

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the lease is extended
}

// leaseWaits counts the answers (reads, writes' acknowledgements) of this
// process that found their lease not valid and waited, leaseWaitNanos the
// time they waited: on a busy leader, a confirmation that comes late
// (etcd or the confirmer starved of CPU) holds every answer in flight
// until the next one, the tail of a read's latency (LeaseWaits).
var leaseWaits, leaseWaitNanos atomic.Int64

// LeaseWaits returns how many answers of this process waited for their
// lease to be valid, and how long they waited in all.
func LeaseWaits() (n int64, waited time.Duration) {
	return leaseWaits.Load(), time.Duration(leaseWaitNanos.Load())
}

// base is the origin of the lease's monotonic clock.
var base = time.Now()

func mono(t time.Time) int64 { return int64(t.Sub(base)) }

// NewLease returns a lease that is not valid before notBefore and not yet
// valid at all: Extend makes it so.
func NewLease(notBefore time.Time) *Lease {
	l := &Lease{changed: make(chan struct{}), demand: make(chan struct{}, 1)}
	l.from.Store(mono(notBefore))
	l.until.Store(math.MinInt64) // never extended: nothing is before it
	return l
}

// Demand receives a value when an answer wants the lease: the first use
// after TakeUse, or an answer that waits because the lease is not valid.
func (l *Lease) Demand() <-chan struct{} { return l.demand }

// TakeUse reports whether an answer wanted the lease since the last call,
// and clears the mark: a confirmer that renews while the lease is used
// and stops when it is not keeps a busy leader's lease valid without a
// wait, and an idle one's unconfirmed.
func (l *Lease) TakeUse() bool { return l.used.Swap(false) }

// use marks the lease wanted (cheaply: one load when it already is) and
// signals Demand on the first use after TakeUse.
func (l *Lease) use() {
	if !l.used.Load() && l.used.CompareAndSwap(false, true) {
		l.want()
	}
}

func (l *Lease) want() {
	select {
	case l.demand <- struct{}{}:
	default:
	}
}

// Serving reports whether the lease holds now, as Valid does, and marks
// it wanted: for answers, not for observers.
func (l *Lease) Serving() bool {
	if l == nil {
		return true
	}
	l.use()
	return l.Valid()
}

// Answerable reports whether the leader would answer now without a change
// of epoch: its lease has begun and was valid within the last slack (an
// idle leader's lapses between confirmations; see Lease). A leader cut
// off from etcd and from its followers stops being answerable slack after
// its lease ran out.
func (l *Lease) Answerable(slack time.Duration) bool {
	if l == nil {
		return true
	}
	now := mono(time.Now())
	return l.from.Load() <= now && now < l.until.Load()+int64(slack)
}

// Extend makes the lease valid until until (never shortening it).
func (l *Lease) Extend(until time.Time) {
	u := mono(until)
	for {
		cur := l.until.Load()
		if u <= cur {
			return
		}
		if l.until.CompareAndSwap(cur, u) {
			break
		}
	}
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// Revoke ends the lease for good: it is never valid again.
func (l *Lease) Revoke() {
	l.from.Store(1<<63 - 1)
	l.mu.Lock()
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

// Revoked reports whether Revoke was called.
func (l *Lease) Revoked() bool { return l != nil && l.from.Load() == 1<<63-1 }

// Valid reports whether the lease holds now.
func (l *Lease) Valid() bool {
	if l == nil {
		return true
	}
	now := mono(time.Now())
	return l.from.Load() <= now && now < l.until.Load()
}

// await blocks until the lease is valid, stop is closed (ErrNotLeader),
// the lease is revoked (ErrNotLeader), ctx ends or timeout passes
// (ErrWriteTimeout).
func (l *Lease) await(ctx context.Context, stop <-chan struct{}, timeout time.Duration) error {
	if l.Serving() {
		return nil
	}
	l.want() // lapsed (idle, or not confirmed in time): confirm it now
	leaseWaits.Add(1)
	defer func(t0 time.Time) { leaseWaitNanos.Add(int64(time.Since(t0))) }(time.Now())
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		changed := l.changed
		l.mu.Unlock()
		if l.Valid() {
			return nil
		}
		if l.Revoked() {
			return ErrNotLeader
		}
		// A lease that starts later becomes valid without an Extend.
		var wake <-chan time.Time
		if from := l.from.Load(); from > mono(time.Now()) && from < l.until.Load() {
			t := time.NewTimer(time.Duration(from - mono(time.Now())))
			defer t.Stop()
			wake = t.C
		}
		select {
		case <-changed:
		case <-wake:
		case <-stop:
			return ErrNotLeader
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return ErrWriteTimeout
		}
	}
}

// Await blocks until the lease is valid, as an answer does: it signals
// Demand when the lease is not, and returns ErrNotLeader once it is
// revoked, ErrWriteTimeout after timeout, or ctx's error.
func (l *Lease) Await(ctx context.Context, timeout time.Duration) error {
	return l.await(ctx, nil, timeout)
}

package replication

import (
	"context"
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
type Lease struct {
	// from and until are monotonic nanoseconds since base: valid when
	// from <= now < until.
	from, until atomic.Int64

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when the lease is extended
}

// base is the origin of the lease's monotonic clock.
var base = time.Now()

func mono(t time.Time) int64 { return int64(t.Sub(base)) }

// NewLease returns a lease that is not valid before notBefore and not yet
// valid at all: Extend makes it so.
func NewLease(notBefore time.Time) *Lease {
	l := &Lease{changed: make(chan struct{})}
	l.from.Store(mono(notBefore))
	return l
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
	if l.Valid() {
		return nil
	}
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

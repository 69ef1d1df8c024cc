package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tandemdb/tandem/internal/replication"
)

// fakeEtcd is what a leaseRenewer asks: whether the leadership still
// holds, answered after rtt.
type fakeEtcd struct {
	rtt time.Duration

	mu      sync.Mutex
	deposed bool // the epoch moved on: confirmations say no
	down    bool // confirmations fail
	asked   []time.Time
}

func (e *fakeEtcd) confirm(ctx context.Context, _ int) (bool, error) {
	e.mu.Lock()
	e.asked = append(e.asked, time.Now())
	deposed, down := e.deposed, e.down
	e.mu.Unlock()
	select {
	case <-time.After(e.rtt):
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if down {
		return false, errors.New("etcd unreachable")
	}
	return !deposed, nil
}

func (e *fakeEtcd) set(deposed, down bool) {
	e.mu.Lock()
	e.deposed, e.down = deposed, down
	e.mu.Unlock()
}

func (e *fakeEtcd) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.asked)
}

// renewerForTest runs a leaseRenewer (fence 100 ms) over one leadership
// whose lease is returned, until the test's bubble ends.
func renewerForTest(t *testing.T, e *fakeEtcd) (*replication.Lease, *leaseRenewer[int]) {
	t.Helper()
	fence := 100 * time.Millisecond
	lease := replication.NewLease(time.Now().Add(fence))
	wake := make(chan struct{}, 1)
	rn := &leaseRenewer[int]{
		fence: fence, keepalive: leaseKeepalive(fence), wake: wake, count: new(atomic.Int64),
		current:  func() (int, *replication.Lease) { return 1, lease },
		confirm:  e.confirm,
		failsafe: func(int) {}, // no followers echo
		extended: func(bool) {},
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go rn.run(ctx)
	return lease, rn
}

// TestIdleLeaseConfirmsOnlyKeepalives: a leader that answers nothing
// confirms its lease once when it starts and then once per keepalive, not
// every fence/5, and reports itself answerable all along.
func TestIdleLeaseConfirmsOnlyKeepalives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &fakeEtcd{rtt: time.Millisecond}
		lease, _ := renewerForTest(t, e)
		time.Sleep(150 * time.Millisecond) // the lease begins after a fence
		if !lease.Answerable(leaseKeepalive(100*time.Millisecond) + 100*time.Millisecond) {
			t.Fatal("a new leadership is not answerable after its fence delay")
		}
		before := e.count()
		for range 100 { // 10 s idle
			time.Sleep(100 * time.Millisecond)
			if !lease.Answerable(leaseKeepalive(100*time.Millisecond) + 100*time.Millisecond) {
				t.Fatalf("an idle leader that can confirm reports itself not answerable")
			}
		}
		// 10 s / 500 ms keepalive = 20; today's cadence would be 500.
		if n := e.count() - before; n > 21 {
			t.Fatalf("%d confirmations in 10 s idle, want at most 21 (one per keepalive)", n)
		}
		if before > 2 {
			t.Fatalf("%d confirmations before the lease began, want 1 or 2", before)
		}
	})
}

// TestLeaseAfterIdleConfirmsBeforeAnswering: after an idle spell the
// lease has lapsed; the first answer waits for one confirmation asked
// after it, so an epoch that moved on while the leader idled is seen and
// the answer refused (a lease not confirmed before serving after idle
// would answer here as a deposed leader).
func TestLeaseAfterIdleConfirmsBeforeAnswering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &fakeEtcd{rtt: 3 * time.Millisecond}
		lease, _ := renewerForTest(t, e)
		time.Sleep(2*time.Second + 250*time.Millisecond) // between keepalives
		if lease.Valid() {
			t.Fatal("an idle leader's lease is still valid: it is being confirmed while idle")
		}

		// Still the leader: the answer waits one round trip, no more.
		start := time.Now()
		if err := lease.Await(context.Background(), time.Second); err != nil {
			t.Fatalf("answer after idle: %v", err)
		}
		e.mu.Lock()
		last := e.asked[len(e.asked)-1]
		e.mu.Unlock()
		if last.Before(start) {
			t.Fatal("the answer after idle was not preceded by a confirmation asked after it")
		}
		if waited := time.Since(start); waited != e.rtt {
			t.Fatalf("the answer after idle waited %v, want one confirmation (%v)", waited, e.rtt)
		}

		// Deposed while idle: the next answer after idle is refused.
		// (Keepalives run every 500 ms from the start and hold the lease
		// 100 ms each: sleep to between them.)
		time.Sleep(time.Second)
		e.set(true, false)
		if lease.Valid() {
			t.Fatal("the lease is valid after an idle spell")
		}
		if err := lease.Await(context.Background(), time.Second); !errors.Is(err, replication.ErrNotLeader) {
			t.Fatalf("answer after idle by a deposed leader: %v, want ErrNotLeader", err)
		}
	})
}

// TestBusyLeaseNeverLapses: while answers keep using the lease, it is
// confirmed every fence/5 and never makes an answer wait.
func TestBusyLeaseNeverLapses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &fakeEtcd{rtt: 2 * time.Millisecond}
		lease, _ := renewerForTest(t, e)
		if err := lease.Await(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		before := e.count()
		for i := range 2000 { // 2 s of answers, one every ms
			if !lease.Serving() {
				t.Fatalf("the lease lapsed under load after %d ms", i)
			}
			time.Sleep(time.Millisecond)
		}
		// fence/5 = 20 ms: about 100 in 2 s, not one per answer.
		if n := e.count() - before; n < 90 || n > 110 {
			t.Fatalf("%d confirmations in 2 s under load, want about 100", n)
		}
	})
}

// TestLeaseCutOffStopsAnswering: a leader cut off from etcd, with no
// follower echo to hold its lease, stops answering and, a keepalive and a
// fence later, stops reporting itself answerable.
func TestLeaseCutOffStopsAnswering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &fakeEtcd{rtt: time.Millisecond}
		lease, _ := renewerForTest(t, e)
		slack := leaseKeepalive(100*time.Millisecond) + 100*time.Millisecond
		time.Sleep(time.Second + 250*time.Millisecond) // between keepalives
		e.set(false, true)
		if err := lease.Await(context.Background(), 300*time.Millisecond); !errors.Is(err, replication.ErrWriteTimeout) {
			t.Fatalf("answer while cut off: %v, want ErrWriteTimeout", err)
		}
		time.Sleep(slack)
		if lease.Answerable(slack) {
			t.Fatal("a leader cut off from etcd for longer than the slack reports itself answerable")
		}
		e.set(false, false)
		if err := lease.Await(context.Background(), time.Second); err != nil {
			t.Fatalf("answer once etcd is back: %v", err)
		}
	})
}

// TestNewLeadershipConfirmedAtOnce: a leadership that begins while the
// last one's confirmation is still out is confirmed as soon as that
// answers, not at the next keepalive: the orchestrator waits for a new
// leader to say it answers.
func TestNewLeadershipConfirmedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fence := 100 * time.Millisecond
		e := &fakeEtcd{rtt: 30 * time.Millisecond}
		var mu sync.Mutex
		cur := replication.NewLease(time.Now().Add(fence))
		wake := make(chan struct{}, 1)
		rn := &leaseRenewer[int]{
			fence: fence, keepalive: leaseKeepalive(fence), wake: wake, count: new(atomic.Int64),
			current: func() (int, *replication.Lease) {
				mu.Lock()
				defer mu.Unlock()
				return 1, cur
			},
			confirm:  e.confirm,
			failsafe: func(int) {},
			extended: func(bool) {},
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go rn.run(ctx)
		time.Sleep(10 * time.Millisecond) // the first confirmation is out
		next := replication.NewLease(time.Now().Add(fence))
		mu.Lock()
		cur = next
		mu.Unlock()
		wake <- struct{}{}
		time.Sleep(fence + 55*time.Millisecond) // past its start and two round trips
		if !next.Answerable(leaseKeepalive(fence) + fence) {
			t.Fatal("a new leadership is not answerable once its lease began: not confirmed")
		}
	})
}

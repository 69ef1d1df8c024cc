package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// Tests of the Leader driver: what the core decides is tested in
// leader_core_test.go; these check that the driver carries it out with
// real storage and streams.

// TestLeaderCloseStopsStreams: Close returns only after the follower
// streams' handlers returned, so nothing can touch storage after it (the
// database is closed right after).
func TestLeaderCloseStopsStreams(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	writes(t, l, "k", 20)
	waitConverged(t, l, f)
	// The hook holds Serve in its next Send (a heartbeat, within
	// Heartbeat) for 100 ms after Close began and reports whether Close
	// returned meanwhile. It must not have: Close waits for Serve, which
	// waits for the hook.
	held, closed, early := make(chan struct{}), make(chan struct{}), make(chan bool, 1)
	var once sync.Once
	l.dialer.SetHook(leaderName, "f", func(inmem.Message, *rand.Rand) inmem.Action {
		once.Do(func() {
			close(held)
			<-l.ctx.Done()
			select {
			case <-closed:
				early <- true
			case <-time.After(100 * time.Millisecond):
				early <- false
			}
		})
		return inmem.Action{}
	})
	<-held
	l.Close()
	close(closed)
	if <-early {
		t.Fatal("Close returned while a follower stream was still served")
	}
	select {
	case err := <-l.dialer.serveErrs:
		if !errors.Is(err, ErrNotLeader) {
			t.Errorf("Serve returned %v, want ErrNotLeader", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Serve's result was never recorded")
	}
	if err := l.Serve(context.Background(), nil); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Serve after Close: %v, want ErrNotLeader", err)
	}
	if err := l.ServeSnapshot(&peerpb.SnapshotRequest{NodeId: "x"}, nil); !errors.Is(err, ErrNotLeader) {
		t.Errorf("ServeSnapshot after Close: %v, want ErrNotLeader", err)
	}
}

// TestWriteTimeout: under quorum with no follower a write answers
// ErrWriteTimeout after the write timeout; it stays in the log and
// commits once a follower has it.
func TestWriteTimeout(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, func(c *LeaderConfig) { c.WriteTimeout = 50 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, _, err := l.Propose(ctx, putExec("k", "v")); !errors.Is(err, ErrWriteTimeout) {
		t.Fatalf("Propose without a quorum: %v, want ErrWriteTimeout", err)
	}
	if st := l.Status(); st.Durable != 1 || st.Applied != 0 || st.InFlight != 1 {
		t.Fatalf("after the timeout: %+v, want the entry durable, not applied, in flight", st)
	}
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConverged(t, l, f)
	if v, ok := get(t, l.db, "k"); !ok || v != "v" {
		t.Errorf("k = %q, %v after a follower came: the timed-out write should commit", v, ok)
	}
}

// TestInFlightBound: past MaxInFlight a write waits for room, then fails
// with ErrOverloaded without being sequenced; a client that gives up
// stops waiting at once; room comes back when writes commit.
func TestInFlightBound(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, func(c *LeaderConfig) {
		c.MaxInFlight = 3
		c.WriteTimeout = 100 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var pending []*Pending
	for i := range 3 {
		p, err := l.Start(ctx, putExec(fmt.Sprint("k", i), "v"))
		if err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		pending = append(pending, p)
	}
	if _, err := l.Start(ctx, putExec("over", "v")); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Start past the bound: %v, want ErrOverloaded", err)
	}
	gone, giveUp := context.WithCancel(ctx)
	giveUp()
	if _, err := l.Start(gone, putExec("over", "v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start past the bound by a client that left: %v, want context.Canceled", err)
	}
	if st := l.Status(); st.InFlight != 3 {
		t.Fatalf("%d writes in flight, want 3: refused writes must not be sequenced", st.InFlight)
	}
	// Once a follower makes them durable they commit, and there is room.
	admitted := make(chan error, 1)
	go func() {
		// WriteTimeout is short; wait for room patiently by retrying.
		for {
			p, err := l.Start(ctx, putExec("later", "v"))
			if errors.Is(err, ErrOverloaded) {
				continue
			}
			if err == nil {
				_, _, err = p.Wait(ctx)
				if errors.Is(err, ErrWriteTimeout) {
					err = nil // sequenced: it commits with the follower below
				}
			}
			admitted <- err
			return
		}
	}()
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	if err := <-admitted; err != nil {
		t.Fatalf("write after room came back: %v", err)
	}
	waitConverged(t, l, f)
	for _, p := range pending {
		if _, _, err := p.Wait(ctx); err != nil && !errors.Is(err, ErrWriteTimeout) {
			t.Errorf("pending write: %v", err)
		}
	}
	if v, ok := get(t, l.db, "later"); !ok || v != "v" {
		t.Errorf("later = %q, %v", v, ok)
	}
}

// TestEpochPersistFailureIsFatal: a leader that hears of a higher epoch and
// cannot persist it stops the process (Fatal) rather than go on not
// knowing the epoch exists.
func TestEpochPersistFailureIsFatal(t *testing.T) {
	var fatal atomic.Value
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.Fatal = func(err error) { fatal.Store(err) }
	})
	l.persistEpoch = func(uint64) error { return errors.New("disk full") }
	st := &scriptLeaderStream{done: make(chan struct{}), in: []*peerpb.FollowerMessage{{Epoch: 7, Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{NodeId: "f"}}}}}
	defer close(st.done)
	if err := l.Serve(context.Background(), st); !errors.Is(err, ErrStaleEpoch) {
		t.Errorf("Serve: %v, want ErrStaleEpoch", err)
	}
	if err, _ := fatal.Load().(error); err == nil {
		t.Fatal("Fatal was not called")
	}
	select {
	case <-l.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the leader did not step down")
	}
}

// TestRemoveFollower: a removed follower's stream is closed and it stops
// counting; it may connect again.
func TestRemoveFollower(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	if !l.RemoveFollower("f") {
		t.Fatal("RemoveFollower of a connected follower: not known")
	}
	if l.RemoveFollower("nobody") {
		t.Error("RemoveFollower of an unknown follower: known")
	}
	waitFor(t, "the follower to reconnect on a new stream", func() (bool, string) {
		n := l.dialer.replicates.Load()
		c := 0
		for _, f := range l.Status().Followers {
			if f.Connected {
				c++
			}
		}
		return n >= 2 && c == 1, fmt.Sprintf("%d streams opened, %d connected", n, c)
	})
}

// scriptLeaderStream is a follower that sends its script and then blocks
// until done is closed.
type scriptLeaderStream struct {
	in   []*peerpb.FollowerMessage
	out  []*peerpb.LeaderMessage
	done chan struct{}
}

func (s *scriptLeaderStream) Send(m *peerpb.LeaderMessage) error {
	s.out = append(s.out, m)
	return nil
}

func (s *scriptLeaderStream) Recv() (*peerpb.FollowerMessage, error) {
	if len(s.in) == 0 {
		<-s.done
		return nil, errors.New("script: stream closed")
	}
	m := s.in[0]
	s.in = s.in[1:]
	return m, nil
}

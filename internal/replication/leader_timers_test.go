package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/peerpb"
)

// The driver's timers — write timeouts, waits for room, heartbeats, the
// follower timeout, and the timer that hands out a held group commit —
// under testing/synctest: the leader, its Pebble, its followers and the
// inmem network all run in the bubble, time is fake and jumps when every
// goroutine is blocked, so each test checks not only that a timer fires
// but when, with no sleep and no real time spent. The leader ticks at its
// earliest deadline, but at most once per DefaultTickInterval, so a
// deadline is met at most a tick interval after it.

// within fails t unless got is in [want, want+DefaultTickInterval].
func within(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if got < want || got > want+DefaultTickInterval {
		t.Errorf("%s after %v, want %v (to the next tick)", what, got, want)
	}
}

// TestWriteTimeout: under quorum with no follower a write answers
// ErrWriteTimeout once the write timeout has passed; it stays in the log
// and commits once a follower has it.
func TestWriteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, func(c *LeaderConfig) { c.WriteTimeout = 50 * time.Millisecond })
		// A bound (of fake time) for a leader that would never time out.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		began := time.Now()
		if _, _, err := l.Propose(ctx, putExec("k", "v")); !errors.Is(err, ErrWriteTimeout) {
			t.Fatalf("Propose without a quorum: %v, want ErrWriteTimeout", err)
		}
		within(t, "write timed out", time.Since(began), 50*time.Millisecond)
		if st := l.Status(); st.Durable != 1 || st.Applied != 0 || st.InFlight != 1 {
			t.Fatalf("after the timeout: %+v, want the entry durable, not applied, in flight", st)
		}
		f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
		waitConverged(t, l, f)
		if v, ok := get(t, l.db, "k"); !ok || v != "v" {
			t.Errorf("k = %q, %v after a follower came: the timed-out write should commit", v, ok)
		}
	})
}

// TestInFlightBound: past MaxInFlight a write waits for room, then fails
// with ErrOverloaded, WriteTimeout after it first found none, without
// being sequenced; a client that gives up stops waiting at once; room
// comes back when writes commit.
func TestInFlightBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, func(c *LeaderConfig) {
			c.MaxInFlight = 3
			c.WriteTimeout = 100 * time.Millisecond
		})
		ctx := context.Background()
		var pending []*Pending
		for i := range 3 {
			p, err := l.Start(ctx, putExec(fmt.Sprint("k", i), "v"))
			if err != nil {
				t.Fatalf("Start %d: %v", i, err)
			}
			pending = append(pending, p)
		}
		bounded, cancel := context.WithTimeout(ctx, time.Second) // for a leader that would never refuse
		defer cancel()
		began := time.Now()
		if _, err := l.Start(bounded, putExec("over", "v")); !errors.Is(err, ErrOverloaded) {
			t.Fatalf("Start past the bound: %v, want ErrOverloaded", err)
		}
		within(t, "refused", time.Since(began), 100*time.Millisecond)
		gone, giveUp := context.WithCancel(ctx)
		giveUp()
		began = time.Now()
		if _, err := l.Start(gone, putExec("over", "v")); !errors.Is(err, context.Canceled) {
			t.Fatalf("Start past the bound by a client that left: %v, want context.Canceled", err)
		}
		if d := time.Since(began); d != 0 {
			t.Errorf("a client that left waited %v for room", d)
		}
		if st := l.Status(); st.InFlight != 3 {
			t.Fatalf("%d writes in flight, want 3: refused writes must not be sequenced", st.InFlight)
		}
		// Once a follower makes them durable they commit, and there is
		// room: a writer waiting for it is let in.
		admitted := make(chan error, 1)
		go func() {
			p, err := l.Start(ctx, putExec("later", "v"))
			if err == nil {
				_, _, err = p.Wait(ctx)
			}
			admitted <- err
		}()
		synctest.Wait() // the writer waits for room
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
	})
}

// rawFollower opens a replication stream to l from id as a follower
// with an empty log would, and reads the leader's Start.
func rawFollower(t *testing.T, l *testLeader, id string) FollowerStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := l.dialer.from(id).Replicate(ctx)
	if err != nil {
		t.Fatalf("%s: dial: %v", id, err)
	}
	hello := &peerpb.FollowerMessage{Epoch: l.Epoch(), Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{NodeId: id, Durable: &peerpb.Position{}}}}
	if err := s.Send(hello); err != nil {
		t.Fatalf("%s: hello: %v", id, err)
	}
	if m, err := s.Recv(); err != nil || m.GetStart().GetFromLsn() != 1 {
		t.Fatalf("%s: answer to hello: %v, %v; want Start from 1", id, m, err)
	}
	return s
}

// TestHeartbeats: an idle stream carries an empty append every Heartbeat;
// a write is sent at once, not at the next heartbeat (its entry while the
// leader syncs it; then, with no next write to carry it, its commit LSN
// in an empty append once it is durable, unless the sender woke only after
// that and sends both at once), and the heartbeats go on a Heartbeat after
// it.
func TestHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const beat = 50 * time.Millisecond
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.Heartbeat = beat })
		s := rawFollower(t, l, "f")
		// recv takes the next message: an append of entries entries,
		// after that long; it returns its commit LSN.
		recv := func(what string, entries int, after time.Duration) uint64 {
			t.Helper()
			began := time.Now()
			m, err := s.Recv()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if a := m.GetAppend(); a == nil || len(a.Entries) != entries {
				t.Fatalf("%s: %v, want an append of %d entries", what, m, entries)
			}
			if d := time.Since(began); d != after {
				t.Errorf("%s after %v, want %v", what, d, after)
			}
			return m.GetAppend().GetCommitLsn()
		}
		for i := range 3 {
			recv(fmt.Sprint("heartbeat ", i), 0, beat)
		}
		synctest.Wait()
		propose(t, l, putExec("k", "v")) // no time passes: nothing waits
		if recv("the write", 1, 0) == 0 {
			if c := recv("the write's commit", 0, 0); c != 1 {
				t.Errorf("the write's commit: commit LSN %d, want 1", c)
			}
		}
		if c := recv("the heartbeat after the write", 0, beat); c != 1 {
			t.Errorf("the heartbeat after the write: commit LSN %d, want 1", c)
		}
	})
}

// TestIdleLeaderTicksPerHeartbeat: an idle leader's clock wakes only when
// something is due: with a follower, once per heartbeat (not once per
// TickInterval, as a fixed ticker did); with none, once per retention
// run.
func TestIdleLeaderTicksPerHeartbeat(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const beat = 50 * time.Millisecond
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.Heartbeat = beat })
		synctest.Wait()
		before := l.ticks.Load()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := l.ticks.Load() - before; n > 1 {
			t.Errorf("an idle leader with no follower ticked %d times in 1s, want at most 1 (retention)", n)
		}
		s := rawFollower(t, l, "f")
		go func() {
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
			}
		}()
		synctest.Wait()
		before = l.ticks.Load()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := l.ticks.Load() - before; n < 19 || n > 22 {
			t.Errorf("an idle leader with one follower ticked %d times in 1s, want about 20 (one per %v heartbeat, one retention)", n, beat)
		}
	})
}

// TestBeatLendsProbesWakeups: while something wakes an idle leader every
// heartbeat interval anyway (an orchestrator's probe calls Beat), its
// streams' heartbeats ride on those wake-ups and its ticker does not wake
// for them; when the probes stop, the ticker sends them again, the first
// at most a quarter interval late.
func TestBeatLendsProbesWakeups(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const beat = 100 * time.Millisecond
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.Heartbeat = beat })
		s := rawFollower(t, l, "f")
		var mu sync.Mutex
		var got []time.Time // when each heartbeat arrived
		go func() {
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
				mu.Lock()
				got = append(got, time.Now())
				mu.Unlock()
			}
		}()
		arrived := func() []time.Time {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(got)
		}
		synctest.Wait()
		time.Sleep(30 * time.Millisecond) // the probes' phase is not the ticker's
		stop := make(chan struct{})
		probed := make(chan struct{})
		go func() {
			defer close(probed)
			t := time.NewTicker(beat)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					l.Beat()
				case <-stop:
					return
				}
			}
		}()
		time.Sleep(3 * beat) // the first probe's beat takes over
		synctest.Wait()
		ticks, n := l.ticks.Load(), len(arrived())
		time.Sleep(time.Second)
		synctest.Wait()
		if k := l.ticks.Load() - ticks; k > 1 {
			t.Errorf("probed every heartbeat interval, the idle leader's ticker woke %d times in 1s, want at most 1 (retention)", k)
		}
		if k := len(arrived()) - n; k < 9 || k > 11 {
			t.Errorf("probed every heartbeat interval: %d heartbeats in 1s, want about 10", k)
		}
		close(stop)
		<-probed
		last := arrived()[len(arrived())-1]
		time.Sleep(time.Second)
		synctest.Wait()
		after := arrived()
		later := after[slices.Index(after, last)+1:]
		if len(later) == 0 || later[0].Sub(last) > beat*5/4+DefaultTickInterval {
			t.Errorf("the probes stopped: heartbeats after the last lent one at %v, want the first within 1.25 intervals", later)
		}
		if k := len(later); k < 9 {
			t.Errorf("the probes stopped: %d heartbeats in the next 1s, want about 10 from the ticker", k)
		}
	})
}

// TestIdleHeartbeatUntilEchoesWanted: with an IdleHeartbeat, an idle
// stream gets a heartbeat every IdleHeartbeat; while the leader wants
// echoes (the failsafe lease) every Heartbeat, from the heartbeat then due,
// and every IdleHeartbeat again once the echoes are no longer wanted.
func TestIdleHeartbeatUntilEchoesWanted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const beat, idle = 50 * time.Millisecond, 100 * time.Millisecond
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.Heartbeat, c.IdleHeartbeat = beat, idle })
		s := rawFollower(t, l, "f")
		var got atomic.Int64 // heartbeats received
		go func() {
			for {
				if _, err := s.Recv(); err != nil {
					return
				}
				got.Add(1)
			}
		}()
		synctest.Wait()
		count := func(d time.Duration) int64 {
			before := got.Load()
			time.Sleep(d)
			synctest.Wait()
			return got.Load() - before
		}
		if n := count(time.Second); n < 9 || n > 11 {
			t.Errorf("idle, no echoes wanted: %d heartbeats in 1s, want about %d", n, time.Second/idle)
		}
		l.WantEchoes(time.Second)
		if n := count(time.Second); n < 18 || n > 21 {
			t.Errorf("echoes wanted: %d heartbeats in 1s, want about %d", n, time.Second/beat)
		}
		count(idle) // the echoes' second ends within a heartbeat
		if n := count(time.Second); n < 9 || n > 11 {
			t.Errorf("after the echoes: %d heartbeats in 1s, want about %d", n, time.Second/idle)
		}
	})
}

// TestIdleFollowerReportsRarely: a follower of an idle leader answers
// the heartbeats it gets (one per Heartbeat) with a progress report only
// every progressEvery; once the leader wants echoes (WantEchoes: etcd
// does not confirm its lease) every heartbeat is stamped and echoed, and
// its echoes reach the failsafe lease once per heartbeat.
func TestIdleFollowerReportsRarely(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const beat = 50 * time.Millisecond
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.Heartbeat = beat })
		newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
		waitConnected(t, l, 1)
		time.Sleep(time.Second)
		synctest.Wait()
		reports := func() uint64 { return l.Handoffs().Progress }
		before := reports()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := reports() - before; n < 4 || n > 6 {
			t.Errorf("an idle follower reported %d times in 1s, want about %d", n, time.Second/progressEvery)
		}
		l.WantEchoes(2 * time.Second)
		time.Sleep(beat) // the next heartbeat is stamped
		synctest.Wait()
		before = reports()
		time.Sleep(time.Second)
		synctest.Wait()
		if n := reports() - before; n < 19 || n > 21 {
			t.Errorf("with echoes wanted, the follower reported %d times in 1s, want one per %v heartbeat", n, beat)
		}
		// (ConfirmedByFollowers is not read here: in the bubble the lease
		// clock, set up outside it, reads negative, and no stamp counts.)
	})
}

// TestIdleFollowersReportTogether: the idle reports of followers that
// joined at different moments answer the same heartbeats (the first of
// each progressEvery window of the leader's clock; probes send every
// stream's heartbeat at once), so an idle leader hears them at
// progressEvery's rate, not at each follower's own phase.
func TestIdleFollowersReportTogether(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const beat = 100 * time.Millisecond
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.Heartbeat = beat })
		newFollowerNode(t, "f1", vfs.NewMem(), l.dialer)
		waitConnected(t, l, 1)
		time.Sleep(beat + 30*time.Millisecond) // the second joins out of step
		newFollowerNode(t, "f2", vfs.NewMem(), l.dialer)
		waitConnected(t, l, 2)
		// An orchestrator's probes, which send both streams' heartbeats
		// together (Beat).
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			probes := time.NewTicker(beat)
			defer probes.Stop()
			for {
				select {
				case <-probes.C:
					l.Beat()
				case <-stop:
					return
				}
			}
		}()
		time.Sleep(time.Second)
		synctest.Wait()
		instants := map[time.Time]int{} // when the leader heard each report
		for range 200 {
			time.Sleep(10 * time.Millisecond)
			synctest.Wait()
			for _, f := range l.Status().Followers {
				instants[f.LastSeen]++
			}
		}
		// 2 s: 10 windows. Each instant is seen once per follower per
		// 10 ms step until the next report.
		if n := len(instants); n < 9 || n > 12 {
			t.Errorf("two idle followers: reports heard at %d distinct instants in 2s, want about 10 (both answer the same heartbeats)", n)
		}
	})
}

// TestFollowerTimeout: a follower whose stream is open but that reports
// nothing for FollowerTimeout has its stream closed and is forgotten; one
// that answers the heartbeats stays.
func TestFollowerTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.FollowerTimeout = time.Second })
		silent := rawFollower(t, l, "silent")
		talking := rawFollower(t, l, "talking")
		go func() {
			// Answer every message with progress, as a follower does.
			for {
				if _, err := talking.Recv(); err != nil {
					return
				}
				progress := &peerpb.FollowerMessage{Epoch: 1, Body: &peerpb.FollowerMessage_Progress{Progress: &peerpb.Progress{}}}
				if err := talking.Send(progress); err != nil {
					return
				}
			}
		}()
		began := time.Now()
		var err error
		for n := 0; err == nil; n++ {
			if n > 1000 { // 20 s of heartbeats
				t.Fatalf("the silent follower's stream still open after %v", time.Since(began))
			}
			_, err = silent.Recv() // heartbeats, until the leader closes it
		}
		within(t, "the silent follower's stream closed", time.Since(began), time.Second)
		if !strings.Contains(err.Error(), "removed") {
			t.Errorf("the silent follower's stream ended with %v, want the leader closing it", err)
		}
		synctest.Wait()
		st := l.Status()
		if len(st.Followers) != 1 || st.Followers[0].NodeID != "talking" || !st.Followers[0].Connected {
			t.Errorf("followers after the timeout: %+v, want only talking, connected", st.Followers)
		}
	})
}

// slowLog makes every sync of the leader's log take d (of the bubble's
// fake time), as a disk would: an append then has a cost, which adaptive
// group commit measures.
type slowLog struct{ d time.Duration }

func (s slowLog) String() string { return "slow log" }

func (s slowLog) MaybeError(op errorfs.Op) error {
	switch op.Kind {
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		if strings.HasPrefix(op.Path, dbDir+"/log/") {
			time.Sleep(s.d)
		}
	}
	return nil
}

// TestHeldAppendGoesOutAtAppendAt: adaptive group commit holds an Append
// while a writer is expected back, and the driver's timer hands it out at
// the core's AppendAt when that writer does not come: a write held that
// way is acknowledged exactly the hold (half an append's cost, capped by
// MaxCommitDelay) later than with holding off, and not at the write
// timeout, as it would be if the timer never fired (no other input hands
// a held Append out).
func TestHeldAppendGoesOutAtAppendAt(t *testing.T) {
	const (
		fsync = 2 * time.Millisecond
		hold  = time.Millisecond // MaxCommitDelay, under half an append
	)
	latency := func(t *testing.T, delay time.Duration) (d time.Duration) {
		synctest.Test(t, func(t *testing.T) {
			mem := vfs.NewMem()
			db := openDB(t, errorfs.Wrap(mem, slowLog{fsync}))
			l := startLeader(t, mem, db, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.MaxCommitDelay = delay })
			ctx := context.Background()
			// a0 goes out alone (no cost known yet); a1 and a2 wait for
			// it. Once it is durable its writer is expected back: with
			// holding on, a1 and a2 are held for it, and it never comes.
			began := time.Now()
			var as []*Pending
			for i := range 3 {
				p, err := l.Start(ctx, putExec(fmt.Sprint("a", i), "v"))
				if err != nil {
					t.Fatal(err)
				}
				as = append(as, p)
			}
			for _, p := range as {
				if _, _, err := p.Wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			d = time.Since(began)
		})
		return d
	}
	var held, direct time.Duration
	t.Run("held", func(t *testing.T) { held = latency(t, hold) })
	t.Run("never held", func(t *testing.T) { direct = latency(t, -1) })
	t.Logf("a2 acknowledged after %v held, %v never held", held, direct)
	if held-direct != hold {
		t.Errorf("a2 acknowledged after %v when held, %v when never held: want exactly the hold, %v, between them", held, direct, hold)
	}
}

package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// TestSilentStreamReconnects: the leader->follower direction of the
// follower's stream goes silent for good while its connection stays open
// (every message the leader sends on it is lost, as in a one-way black
// hole or a middlebox that dropped the flow; a new stream passes), and
// the leader goes on writing. The follower hears nothing for
// LeaderTimeout, closes the stream, connects again within the timeout
// (plus its retry pause and a heartbeat: the silence counts from the
// last message it heard) and catches up. Without the timeout
// (plantNoLeaderTimeout) it waits on the dead stream until the leader's
// FollowerTimeout (a minute), far past the test's bound. Under
// testing/synctest: the times are exact, and no real time passes.
func TestSilentStreamReconnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 200 * time.Millisecond
		heartbeat := 20 * time.Millisecond // startLeader's
		l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
		var redials atomic.Int32
		f := &testFollower{id: "f", fs: vfs.NewMem(), tweak: func(c *FollowerConfig) {
			c.LeaderTimeout = timeout
			c.Dial = redialer{c.Dial, &redials}
		}}
		f.start(t, l.dialer)
		t.Cleanup(func() { f.stop(t) })
		waitConnected(t, l, 1)
		propose(t, l, putExec("before", "1"))
		waitConverged(t, l, f)

		silences := LeaderSilences()
		var silenced atomic.Bool
		var restarted atomic.Int64 // when the first stream after the silence began (Unix ns)
		l.dialer.SetHook(leaderName, "f", func(m inmem.Message, _ *rand.Rand) inmem.Action {
			if silenced.Load() && m.Msg.(*peerpb.LeaderMessage).GetStart() != nil {
				silenced.Store(false) // a new stream: it passes
				restarted.Store(time.Now().UnixNano())
			}
			return inmem.Action{Drop: silenced.Load()}
		})
		silenced.Store(true)
		began := time.Now()
		for i := range 20 {
			propose(t, l, putExec(fmt.Sprint("k", i), fmt.Sprint("v", i)))
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(timeout) // 400 ms since the silence began
		synctest.Wait()
		r := restarted.Load()
		if r == 0 {
			t.Fatalf("no new stream %v after the stream went silent (leader timeout %v)", time.Since(began), timeout)
		}
		if took := time.Unix(0, r).Sub(began); took < timeout-heartbeat || took > timeout+heartbeat+10*time.Millisecond {
			t.Errorf("new stream %v after the silence began, want the leader timeout %v (less a heartbeat %v, plus the retry)", took, timeout, heartbeat)
		}
		if n := LeaderSilences() - silences; n != 1 {
			t.Errorf("LeaderSilences counted %d silent streams, want 1", n)
		}
		if n := redials.Load(); n != 1 {
			t.Errorf("the follower asked its dialer for %d new connections, want 1", n)
		}
		if st := f.f.Status(); !st.Connected {
			t.Errorf("follower status after reconnecting: %+v, want connected", st)
		}
		waitConverged(t, l, f)
	})
}

// redialer is a Dialer that counts the follower's Redial calls.
type redialer struct {
	Dialer
	n *atomic.Int32
}

func (r redialer) Redial() error {
	r.n.Add(1)
	return nil
}

// TestSilenceWatchCountsOnlyWaits: the watch counts only the time a
// receive waits, not the time between receives (the follower persisting
// what came, or its reader blocked handing a message over): a follower
// busy for five timeouts between two prompt receives keeps its stream,
// and a receive that waits ends it exactly a timeout after it began.
func TestSilenceWatchCountsOnlyWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const timeout = 100 * time.Millisecond
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		w := &silenceWatch{}
		go w.run(ctx, timeout, cancel)
		prompt := func() (int, error) { time.Sleep(timeout / 2); return 0, nil }
		for range 3 {
			if _, err := watchRecv(w, prompt); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * timeout) // busy: not waiting on the stream
		}
		if ctx.Err() != nil {
			t.Fatalf("the watch ended a stream whose receives each waited %v (timeout %v): %v", timeout/2, timeout, context.Cause(ctx))
		}
		began := time.Now()
		_, err := watchRecv(w, func() (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		})
		if err == nil || !errors.Is(context.Cause(ctx), ErrLeaderSilent) {
			t.Fatalf("a receive that waited: %v, cause %v; want the stream ended as ErrLeaderSilent", err, context.Cause(ctx))
		}
		if d := time.Since(began); d != timeout {
			t.Errorf("ended after %v, want the timeout %v", d, timeout)
		}
		if s := time.Duration(w.silent.Load()); s != timeout {
			t.Errorf("silent %v, want %v", s, timeout)
		}
	})
}

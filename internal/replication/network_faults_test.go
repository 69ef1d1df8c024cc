package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// dropProgress drops each of the follower's Progress reports with
// probability p (never its Hello). Each report is cumulative and the next
// Append (a heartbeat at least) brings another, so nothing breaks. It draws
// for every message, so the link's draws do not depend on which are
// reports.
func dropProgress(p float64) inmem.Hook {
	return func(m inmem.Message, r *rand.Rand) inmem.Action {
		drop := r.Float64() < p
		return inmem.Action{Drop: drop && m.Msg.(*peerpb.FollowerMessage).GetProgress() != nil}
	}
}

// TestFollowerConvergesThroughFaults: under quorum 1 the only follower's
// links delay and reorder messages both ways, lose some of its reports,
// and now and then lose an Append together with its connection. A
// reordered Append is out of order to the follower, and a cut loses what
// was in flight: either way it reconnects and catches up from its durable
// LSN. Writes go on throughout; once the network heals the two nodes
// converge, and every write that was acknowledged is on both.
func TestFollowerConvergesThroughFaults(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, func(c *LeaderConfig) {
		c.MaxBatchBytes = 256 // many small appends: more messages meet the faults
	})
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	l.dialer.SetHook(leaderName, "f", inmem.Chain(
		inmem.Delay(0, time.Millisecond),
		inmem.Reorder(0.03, 3*time.Millisecond),
		inmem.CutRandom(0.02),
	))
	l.dialer.SetHook("f", leaderName, inmem.Chain(
		inmem.Delay(0, time.Millisecond),
		inmem.Reorder(0.1, 3*time.Millisecond),
		dropProgress(0.2),
	))

	const n = 400
	var mu sync.Mutex
	var acked []int
	unknown := 0
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, _, err := l.Propose(ctx, putExec(fmt.Sprint("k", i), fmt.Sprint("v", i)))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				acked = append(acked, i)
			case errors.Is(err, ErrWriteTimeout):
				unknown++ // outcome unknown: it may commit later or never
			default:
				t.Errorf("Propose k%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	toF, fromF := l.dialer.Stats(leaderName, "f"), l.dialer.Stats("f", leaderName)
	if toF.Cuts == 0 || fromF.Dropped == 0 || l.dialer.replicates.Load() < 2 {
		t.Errorf("the faults did not happen: leader->f %+v, f->leader %+v, %d streams", toF, fromF, l.dialer.replicates.Load())
	}
	t.Logf("%d acknowledged, %d timed out; leader->f %+v; f->leader %+v; %d streams",
		len(acked), unknown, toF, fromF, l.dialer.replicates.Load())

	l.dialer.Heal()
	waitConverged(t, l, f)
	for _, i := range acked {
		k, want := fmt.Sprint("k", i), fmt.Sprint("v", i)
		if v, ok := get(t, l.db, k); !ok || v != want {
			t.Errorf("leader: acknowledged %s = %q, %v", k, v, ok)
		}
		if v, ok := get(t, f.db, k); !ok || v != want {
			t.Errorf("follower: acknowledged %s = %q, %v", k, v, ok)
		}
	}
	if len(acked) == 0 {
		t.Error("no write was acknowledged")
	}
}

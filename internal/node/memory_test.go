package node

import (
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestPlanMemoryWithinBudget: what Pebble allocates outside the Go heap
// plus the Go limit is the budget, and every cache gets a share.
func TestPlanMemoryWithinBudget(t *testing.T) {
	for _, budget := range []int64{0, 64 << 20, 256 << 20, 1 << 30, 16 << 30} {
		p := PlanMemory(budget)
		b := budget
		if b == 0 {
			b = DefaultMaxMemory
		}
		st := p.Storage
		if st.CacheBytes <= 0 || st.RowCacheBytes <= 0 || st.MemTableBytes < 4<<20 || st.MemTables < 2 {
			t.Fatalf("budget %d: %+v", budget, st)
		}
		if got := st.MemoryBytes() + p.GoLimit; got != b {
			t.Errorf("budget %d: Pebble %d + Go %d = %d", b, st.MemoryBytes(), p.GoLimit, got)
		}
		if p.GoLimit < st.RowCacheBytes*2 {
			t.Errorf("budget %d: Go limit %d leaves no room beside the row cache %d", b, p.GoLimit, st.RowCacheBytes)
		}
	}
}

// TestGoLimitFollowsPebble: the Go limit is the budget less what Pebble
// holds now and one memtable of room, so the two stay within the budget;
// it is never below the plan's static limit (Pebble at its whole share),
// and under a write-only load (Pebble's block cache empty, two memtables)
// it leaves the collector GOGC's headroom over the heap such a load keeps
// live (72–90 MB with 50 bulk-load streams, 192 MiB budget), which the
// static limit did not.
func TestGoLimitFollowsPebble(t *testing.T) {
	for _, budget := range []int64{0, 64 << 20, 256 << 20, 1 << 30} {
		b := budget
		if b == 0 {
			b = DefaultMaxMemory
		}
		p := PlanMemory(budget)
		share, mt := p.Storage.MemoryBytes(), p.Storage.MemTableBytes
		for _, off := range []int64{0, mt, 2 * mt, share / 2, share, share + mt, 2 * share} {
			got := GoLimitNow(budget, off)
			if got < p.GoLimit {
				t.Errorf("budget %d, Pebble %d: limit %d below the static %d", b, off, got, p.GoLimit)
			}
			if got > p.GoLimit && got+off+mt > b {
				t.Errorf("budget %d, Pebble %d: limit %d + Pebble + a memtable %d = %d over the budget", b, off, got, mt, got+off+mt)
			}
			if off+mt <= share && got+off+mt != b {
				t.Errorf("budget %d, Pebble %d: limit %d leaves %d of the budget unused", b, off, got, b-got-off-mt)
			}
		}
	}
	p := PlanMemory(0)
	writeOnly := GoLimitNow(0, 2*p.Storage.MemTableBytes)
	const live = 90 << 20
	if writeOnly < 2*live*9/10 { // the runtime's own overhead aside
		t.Errorf("write-only load: limit %d MiB gives a live heap of %d MiB no GOGC headroom", writeOnly>>20, live>>20)
	}
	if p.GoLimit >= 2*live*9/10 {
		t.Fatalf("the static limit %d MiB already has the headroom: the test proves nothing", p.GoLimit>>20)
	}
}

// TestGovernMemoryLimit: the governor sets the limit at once, follows
// Pebble at every look (memoryEvery while busy, memoryIdleEvery while on
// one P), ignores changes under memoryStep, and leaves the static limit
// when stopped.
func TestGovernMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer procsOne.Store(procsOne.Load())
	synctest.Test(t, func(t *testing.T) {
		const budget = 192 << 20
		var off atomic.Int64
		off.Store(12 << 20)
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			GovernMemoryLimit(stop, budget, off.Load, false, slog.New(slog.DiscardHandler))
		}()
		want := func(step string, limit int64) {
			t.Helper()
			synctest.Wait()
			if got := debug.SetMemoryLimit(-1); got != limit {
				t.Fatalf("%s: limit %d MiB, want %d MiB", step, got>>20, limit>>20)
			}
		}
		want("first look", GoLimitNow(budget, 12<<20))
		time.Sleep(memoryEvery / 2) // the test acts between the looks
		off.Store(40 << 20)         // reads filled the block cache
		want("before the next look", GoLimitNow(budget, 12<<20))
		time.Sleep(memoryEvery)
		want("next look", GoLimitNow(budget, 40<<20))
		off.Store(40<<20 + memoryStep/2)
		time.Sleep(memoryEvery)
		want("a change under the step", GoLimitNow(budget, 40<<20))
		procsOne.Store(true) // idle: the look after next is memoryIdleEvery later
		time.Sleep(memoryEvery)
		off.Store(0)
		time.Sleep(memoryIdleEvery - memoryEvery)
		want("idle, before its look", GoLimitNow(budget, 40<<20))
		time.Sleep(memoryEvery)
		want("idle look", GoLimitNow(budget, 0))
		close(stop)
		<-done
		want("stopped", PlanMemory(budget).GoLimit)
	})
}

// TestGCPercentFor: while busy, the heap goal lies three quarters of the
// way from the live heap to the limit, within [100, 800]; while idle, or
// when the live heap nears the limit, Go's default 100. Figures from a
// node under redis-benchmark SET with the default budget (limit 174 MB).
func TestGCPercentFor(t *testing.T) {
	const mb = 1 << 20
	limit := int64(174 * mb)
	for _, c := range []struct {
		name        string
		limit, live int64
		busy        bool
		want        int
	}{
		{"follower, busy: the cap", limit, 6 * mb, true, gcPercentMax},
		{"leader, busy", limit, 44 * mb, true, 221},
		{"bulk load's live heap, busy", limit, 90 * mb, true, 100},
		{"follower, idle", limit, 6 * mb, false, 100},
		{"leader, idle", limit, 44 * mb, false, 100},
		{"no collection yet", limit, 0, true, 100},
		{"live over the limit", 64 * mb, 70 * mb, true, 100},
	} {
		got := gcPercentFor(c.limit, c.live, c.busy)
		if got != c.want {
			t.Errorf("%s: limit %d MiB, live %d MiB: percent %d, want %d", c.name, c.limit/mb, c.live/mb, got, c.want)
		}
		// The goal stays within the limit.
		if goal := c.live + c.live*int64(got)/100; got > gcPercentIdle && goal > c.limit {
			t.Errorf("%s: goal %d MiB over the limit %d MiB", c.name, goal/mb, c.limit/mb)
		}
	}
}

// TestGCPolicyFollowsAllocation: the governor's looks raise the percent
// while the heap allocates busyRate or more between two looks and put it
// back to 100 at the first look that finds it allocating less.
func TestGCPolicyFollowsAllocation(t *testing.T) {
	const mb = 1 << 20
	const limit, live = 174 * mb, 6 * mb
	var g gcPolicy
	at, alloc := time.Unix(1000, 0), uint64(500*mb)
	step := func(name string, d time.Duration, bytes uint64, want int) {
		t.Helper()
		at, alloc = at.Add(d), alloc+bytes
		if got := g.look(at, alloc, limit, live); got != want {
			t.Fatalf("%s: percent %d, want %d", name, got, want)
		}
	}
	busy := uint64(busyRate*memoryEvery.Seconds()) + 1
	step("first look: no rate yet", 0, 0, 100)
	step("busy", memoryEvery, busy, gcPercentMax)
	step("still busy", memoryEvery, 2*busy, gcPercentMax)
	step("quiet", memoryEvery, busy/2, 100)
	step("idle cadence, quiet", memoryIdleEvery, busy, 100)
	step("idle cadence, busy", memoryIdleEvery, busy*uint64(memoryIdleEvery/memoryEvery), gcPercentMax)
}

package storage

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// fakeCompactions is a pebble.DBForCompaction: allowed compactions at a
// time, and how many wait for a grant.
type fakeCompactions struct {
	mu               sync.Mutex
	allowed, waiting int
	scheduled        int
	asked            int // GetAllowedWithoutPermission calls
}

func (f *fakeCompactions) GetAllowedWithoutPermission() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked++
	return f.allowed
}

func (f *fakeCompactions) GetWaitingCompaction() (bool, pebble.WaitingCompaction) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting > 0, pebble.WaitingCompaction{}
}

func (f *fakeCompactions) Schedule(pebble.CompactionGrantHandle) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waiting--
	f.scheduled++
	return true
}

func (f *fakeCompactions) get(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// TestCompactionSchedulerSleepsWhenIdle: the scheduler grants up to the
// allowance; a compaction it refused is granted by its timer once the
// allowance grows unseen (as Pebble's scheduler does), and while nothing
// waits it does not wake at all (Pebble's sampled every 100 ms).
func TestCompactionSchedulerSleepsWhenIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		db := &fakeCompactions{allowed: 1}
		s := newCompactionScheduler()
		s.Register(1, db)
		defer s.Unregister()
		asked := func() (n int) { db.get(func() { n = db.asked }); return n }

		before := asked()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := asked() - before; n != 0 {
			t.Errorf("idle for 10 s, the scheduler sampled the allowance %d times, want 0", n)
		}

		ok, h := s.TrySchedule()
		if !ok {
			t.Fatal("the first compaction was refused with 1 allowed")
		}
		if ok, _ := s.TrySchedule(); ok {
			t.Fatal("a second compaction was granted with 1 allowed")
		}
		synctest.Wait() // the granter's round for the refusal is done
		// The refused one waits; the allowance grows without a call the
		// scheduler sees: its timer grants it within a period.
		db.get(func() { db.allowed, db.waiting = 2, 1 })
		time.Sleep(grantEvery)
		synctest.Wait()
		db.get(func() {
			if db.scheduled != 1 || db.waiting != 0 {
				t.Errorf("after a grant period: %d scheduled, %d waiting; want 1, 0", db.scheduled, db.waiting)
			}
		})
		// Both compactions end: the round Done runs finds nothing waiting
		// and the timer stops (while running compactions fill the
		// allowance it keeps sampling, as Pebble's does: a refused one may
		// still wait).
		h.Done() // a grant's handle is the scheduler
		h.Done()
		synctest.Wait()
		before = asked()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := asked() - before; n > 1 {
			t.Errorf("nothing waiting, the scheduler sampled the allowance %d times in 10 s, want at most 1 (the timer armed before)", n)
		}
		// A compaction ending grants a waiting one at once.
		db.get(func() { db.allowed = 1 })
		if ok, _ := s.TrySchedule(); !ok {
			t.Fatal("refused with nothing running")
		}
		db.get(func() { db.waiting = 1 })
		if ok, _ := s.TrySchedule(); ok {
			t.Fatal("granted past the allowance")
		}
		h.Done()
		synctest.Wait()
		db.get(func() {
			if db.scheduled != 2 {
				t.Errorf("after Done: %d scheduled, want 2", db.scheduled)
			}
		})
	})
}

package storage

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// compactionScheduler is Pebble's default compaction scheduler
// (pebble.ConcurrencyLimitScheduler: as many compactions as
// GetAllowedWithoutPermission allows) with one change: its periodic
// granter runs only while a compaction waits for a grant.
//
// Why: Pebble's granter samples the allowed concurrency every 100 ms for
// as long as the DB is open, because a compaction refused by TrySchedule
// waits for the scheduler to grant it (the DB does not ask again), and the
// allowance can grow without a call the scheduler sees. On an idle node
// that is ten wake-ups a second for nothing (bench/idle.sh). A compaction
// can only be waiting after TrySchedule refused it, so the timer is armed
// then and stops once a grant round finds the DB waiting for nothing;
// Done and UpdateGetAllowedWithoutPermission grant at once as Pebble's do.
type compactionScheduler struct {
	db pebble.DBForCompaction

	mu      sync.Mutex
	running int
	// waiting: TrySchedule refused a compaction, and no grant round has
	// since found the DB without one waiting.
	waiting bool
	// refusals counts TrySchedule's refusals: a grant round that found
	// nothing waiting clears waiting only if none came since it began.
	refusals     uint64
	unregistered bool
	// granting serialises grant rounds (Done, the granter) and lets
	// Unregister wait for the one under way; granted wakes its waiters.
	granting    bool
	granted     *sync.Cond
	lastAllowed int

	poke chan struct{} // capacity 1: grant now
	stop chan struct{} // Unregister stops the granter
	done chan struct{} // closed when the granter has stopped
}

// grantEvery is how often the granter samples the allowance while a
// compaction waits (Pebble's own period).
const grantEvery = 100 * time.Millisecond

var _ pebble.CompactionScheduler = (*compactionScheduler)(nil)

func newCompactionScheduler() *compactionScheduler {
	s := &compactionScheduler{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.granted = sync.NewCond(&s.mu)
	return s
}

// Register implements pebble.CompactionScheduler.
func (s *compactionScheduler) Register(_ int, db pebble.DBForCompaction) {
	s.db = db
	go s.granter()
}

// Unregister implements pebble.CompactionScheduler: no grant is made
// after it returns.
func (s *compactionScheduler) Unregister() {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unregistered = true
	for s.granting {
		s.granted.Wait()
	}
}

// TrySchedule implements pebble.CompactionScheduler.
func (s *compactionScheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unregistered {
		return false, nil
	}
	s.lastAllowed = s.db.GetAllowedWithoutPermission()
	if s.lastAllowed > s.running {
		s.running++
		return true, s
	}
	s.refusals++
	if !s.waiting {
		s.waiting = true
		s.wake() // the granter arms its timer
	}
	return false, nil
}

// UpdateGetAllowedWithoutPermission implements pebble.CompactionScheduler.
func (s *compactionScheduler) UpdateGetAllowedWithoutPermission() {
	s.mu.Lock()
	allowed := s.db.GetAllowedWithoutPermission()
	grow := allowed > s.lastAllowed
	s.lastAllowed = allowed
	s.mu.Unlock()
	if grow {
		s.wake()
	}
}

func (s *compactionScheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Started, MeasureCPU and CumulativeStats implement
// pebble.CompactionGrantHandle; the scheduler measures nothing.
func (s *compactionScheduler) Started()                                          {}
func (s *compactionScheduler) MeasureCPU(pebble.CompactionGoroutineKind)         {}
func (s *compactionScheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

// Done implements pebble.CompactionGrantHandle: a compaction ended, and
// its slot may go to a waiting one at once.
func (s *compactionScheduler) Done() {
	s.mu.Lock()
	s.running--
	s.grantLockedAndUnlock()
}

// grantLockedAndUnlock grants waiting compactions up to the allowance.
// The caller holds mu; it is unlocked on return.
func (s *compactionScheduler) grantLockedAndUnlock() {
	defer s.mu.Unlock()
	for s.granting && !s.unregistered {
		s.granted.Wait()
	}
	if s.unregistered {
		return
	}
	s.lastAllowed = s.db.GetAllowedWithoutPermission()
	toGrant := s.lastAllowed - s.running
	if toGrant <= 0 {
		return // a waiting compaction stays waiting
	}
	s.granting = true
	refusals := s.refusals
	s.mu.Unlock()
	// GetWaitingCompaction only when a grant can be made, so that no
	// picked compaction is wasted (as Pebble's scheduler does).
	stillWaiting := true
	for toGrant > 0 {
		if waiting, _ := s.db.GetWaitingCompaction(); !waiting {
			stillWaiting = false
			break
		}
		if !s.db.Schedule(s) {
			break
		}
		s.mu.Lock()
		s.running++
		s.mu.Unlock()
		toGrant--
	}
	s.mu.Lock()
	if !stillWaiting && s.refusals == refusals {
		s.waiting = false
	}
	s.granting = false
	s.granted.Broadcast()
}

// granter grants when poked, and every grantEvery while a compaction
// waits; it sleeps otherwise.
func (s *compactionScheduler) granter() {
	defer close(s.done)
	t := time.NewTimer(grantEvery)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.poke:
		case <-s.stop:
			return
		}
		s.mu.Lock()
		s.grantLockedAndUnlock()
		s.mu.Lock()
		waiting := s.waiting
		s.mu.Unlock()
		if waiting {
			t.Reset(grantEvery)
		} else {
			t.Stop()
		}
	}
}

package storage

import (
	"context"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
)

// A collection's DEL (and FLUSHALL) is one range delete: O(1) to apply,
// but the rows under it keep their disk space until a compaction drops
// them, and with no other writes none comes. So after Apply commits a
// range delete, a background reclaimer asks Pebble how much disk the span
// holds and, past a threshold, compacts it: the space comes back within
// about the compaction's time, not whenever other writes happen to push
// compactions there. Small drops (most DELs) cost one estimate and
// nothing else. The queue is bounded; a span that finds it full is left
// to Pebble's own compactions (only disk is at stake, never data).

// DefaultReclaimBytes is the disk a dropped span must hold before the
// reclaimer compacts it.
const DefaultReclaimBytes = 4 << 20

const reclaimQueue = 256

type span struct{ lo, hi []byte }

type reclaimer struct {
	pdb       *pebble.DB
	log       *slog.Logger
	threshold uint64
	q         chan span
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu        sync.Mutex
	compacted int // spans compacted (tests)
}

func newReclaimer(pdb *pebble.DB, log *slog.Logger, threshold int64) *reclaimer {
	ctx, cancel := context.WithCancel(context.Background())
	r := &reclaimer{pdb: pdb, log: log, threshold: uint64(threshold), q: make(chan span, reclaimQueue), ctx: ctx, cancel: cancel}
	r.wg.Add(1)
	go r.run()
	return r
}

// add queues spans deleted by a committed batch; it never blocks. A nil
// reclaimer (Open's recovery, before it starts) takes nothing.
func (r *reclaimer) add(spans []span) {
	if r == nil {
		return
	}
	for _, s := range spans {
		select {
		case r.q <- s:
		default:
			return
		}
	}
}

func (r *reclaimer) run() {
	defer r.wg.Done()
	for {
		select {
		case <-r.ctx.Done():
			return
		case s := <-r.q:
			used, err := r.pdb.EstimateDiskUsage(s.lo, s.hi)
			if err != nil || used < r.threshold {
				continue
			}
			if err := r.pdb.Compact(r.ctx, s.lo, s.hi, true); err != nil {
				if r.ctx.Err() == nil {
					r.log.Warn("storage: compact a dropped span", "bytes", used, "err", err)
				}
				continue
			}
			r.mu.Lock()
			r.compacted++
			r.mu.Unlock()
		}
	}
}

// close stops the reclaimer, cancelling a compaction under way, before
// Pebble closes.
func (r *reclaimer) close() {
	if r == nil {
		return
	}
	r.cancel()
	r.wg.Wait()
}

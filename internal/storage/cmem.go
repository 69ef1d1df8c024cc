package storage

import (
	"sync"
	"sync/atomic"
	"time"
)

// Pebble's memory outside the Go heap
//
// Built with cgo, Pebble allocates its block cache, its memtables and the
// buffers a compaction reads blocks into with C's calloc and free
// (Pebble's internal/manual). glibc's malloc keeps what is freed: a freed
// chunk amid live ones stays in its arena, and only the top of an arena
// is ever given back. Under a bulk load this held 50-80 MB of RSS beyond
// the ~12 MB Pebble had in use (1M keys, one 6 MiB memtable live and one
// kept for reuse, an empty block cache): compaction buffers and old
// memtables, freed into up to eight arenas per core. The budget
// (--max-memory) charges Pebble what it allocates, so the allocator must
// return what Pebble frees, as Go's scavenger does for the Go heap:
//
//   - memtables and other allocations of 128 KiB or more are mapped on
//     their own and unmapped when freed: glibc's default raises that
//     threshold to the size of the largest chunk freed (up to 32 MiB),
//     which put every memtable after the first in an arena; a threshold
//     set explicitly stays where it is set;
//   - two arenas instead of eight per core: fewer places for freed
//     memory to sit in (Pebble's C allocations are few and not
//     contended);
//   - after a flush or a compaction ends, when Pebble has just freed a
//     memtable or a compaction's buffers, and after reads through its
//     block cache, malloc_trim gives the free pages inside every arena
//     back (at most once per trimInterval, off Pebble's goroutines and
//     the readers').
//
// Without cgo, or on a C library other than glibc, Pebble's manual memory
// is the Go heap's or the allocator's own, and all of this is a no-op.

// trimInterval bounds how often the allocator is trimmed.
const trimInterval = time.Second

var tuneMallocOnce sync.Once

// mallocTrim is cMallocTrim; tests watch the calls.
var mallocTrim = cMallocTrim

// tuneMalloc sets the allocator's options, once per process.
func tuneMalloc() { tuneMallocOnce.Do(func() { cTuneMalloc(2, 128<<10) }) }

// trimmer trims the C allocator after Pebble frees memory: after a flush
// or compaction, and after reads through the block cache (a row read
// that missed the row cache, a range read, a digest, a seed's snapshot,
// a sweep), whose blocks come and go (a TANDEM.DIGEST of 1M keys on a
// follower left 43 MB free in the arenas: RSS 224 MB, 182 MB after a
// trim). A busy node is trimmed about once per trimInterval, an idle one
// not at all (no timer runs without a kick).
type trimmer struct {
	kicks chan struct{}
	// dirty: a kick came since the last trim began; the trim after the
	// current pause is due.
	dirty atomic.Bool
	stop  chan struct{}
	done  chan struct{}
	// trims counts malloc_trim calls, nanos their total CPU time,
	// released those that released something.
	trims, nanos, released atomic.Int64
	// settled, when set (DB.OnSettled), is called after the last trim of
	// a burst: a trimInterval passed after it with no kick.
	settled atomic.Pointer[func()]
}

func newTrimmer() *trimmer {
	t := &trimmer{kicks: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go t.run()
	return t
}

// kick asks for a trim soon. It never blocks, and costs an atomic load
// while a trim is due already (every read that misses the row cache
// kicks).
func (t *trimmer) kick() {
	if t.dirty.Load() {
		return
	}
	t.dirty.Store(true)
	select {
	case t.kicks <- struct{}{}:
	default:
	}
}

func (t *trimmer) run() {
	defer close(t.done)
	for {
		select {
		case <-t.stop:
			return
		case <-t.kicks:
		}
		// Trim while kicks keep coming, at most once per trimInterval,
		// and once more after the last: what the last reads freed goes
		// too. Then the burst has settled.
		// (A kick's token can outlive its trim: a kick during a pause
		// leaves one for a round that finds nothing due, and settles
		// nothing.)
		trimmed := false
		for t.dirty.Swap(false) {
			trimmed = true
			released, cpu := mallocTrim()
			if released {
				t.released.Add(1)
			}
			t.nanos.Add(int64(cpu))
			t.trims.Add(1)
			pause := time.NewTimer(trimInterval)
			select {
			case <-t.stop:
				pause.Stop()
				return
			case <-pause.C:
			}
		}
		if f := t.settled.Load(); f != nil && trimmed {
			(*f)()
		}
	}
}

// OnSettled has f called, on the trimmer's goroutine, each time a burst
// of Pebble's memory churn (flushes, compactions, reads through its block
// cache) has settled: the allocator was trimmed after the last of them
// and trimInterval passed with no other. An idle node never calls it. The
// node returns its Go heap's free memory there (node.ReleaseAfterBurst):
// a burst's garbage otherwise stays in the RSS until the heap grows into
// it again.
func (d *DB) OnSettled(f func()) { d.trim.settled.Store(&f) }

func (t *trimmer) close() {
	close(t.stop)
	<-t.done
}

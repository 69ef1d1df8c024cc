package node

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/tandemdb/tandem/internal/storage"
)

// DefaultMaxMemory is the memory budget of a node (`--max-memory`): what
// its caches may hold and how far its Go heap may grow before the garbage
// collector works harder to stay under it.
const DefaultMaxMemory = 192 << 20

// MemoryPlan is how a node's memory budget is spent. The data lives in
// Pebble, on disk; memory holds caches of it, the writes on their way,
// and the Go heap's garbage between collections. Every cache is bounded
// by its share, so the process stays near the budget whatever the data
// size: a bulk load of a million keys costs the caches no more than ten.
type MemoryPlan struct {
	// Storage carries Pebble's block cache and memtables and the row
	// cache (package rowcache, charged its real heap cost).
	Storage storage.Options
	// GoLimit is the Go runtime's soft memory limit (GOMEMLIMIT): the
	// budget less what Pebble allocates outside the Go heap (its block
	// cache and memtables). Over it the collector runs more often and
	// returns freed memory to the OS at once, so a burst (a 64 MB value
	// copied on its way through) does not stay in the RSS.
	GoLimit int64
}

// PlanMemory splits budget bytes (0: DefaultMaxMemory): an eighth to
// Pebble's block cache, an eighth to the row cache, an eighth to
// Pebble's memtables (four, each at least 4 MiB: writes stall when all
// are full), and the rest to the Go heap: the row cache, connection and
// replication buffers, the leader's tail of recent entries, and the
// collector's headroom. Caches smaller than a few MiB would be useless,
// so a budget under 64 MiB gets the shares of 64 MiB.
func PlanMemory(budget int64) MemoryPlan {
	if budget <= 0 {
		budget = DefaultMaxMemory
	}
	shares := max(budget, 64<<20)
	const memTables = 4
	st := storage.Options{
		CacheBytes:    shares / 8,
		RowCacheBytes: shares / 8,
		MemTableBytes: max(shares/8/memTables, 4<<20),
		MemTables:     memTables,
	}
	return MemoryPlan{Storage: st, GoLimit: max(budget-st.MemoryBytes(), budget/2)}
}

// Returning the Go heap after a burst.
//
// A burst of writes (a bulk load, a pipeline of SETs) leaves the Go heap
// grown to its goal, about twice the live bytes (GOGC 100), and most of
// that is garbage and free pages once the burst ends. Go's scavenger
// gives back only what lies above the goal, so a node that goes quiet
// after a load kept ~35 MB (follower) to ~60 MB (leader) more RSS than it
// used, the size of its live heap again, until the next burst reused it.
// When the storage reports a burst settled (storage.DB.OnSettled: its
// allocator trimmed after the last flush, compaction or read, and a
// second without another), the node returns that memory at once: one
// collection and a scavenge (debug.FreeOSMemory), a few milliseconds of
// CPU for a heap of ~40-60 MB live. Only when the heap holds at least
// releaseMinBytes more than is live, and at most once per releaseEvery,
// so a node with a burst every second does not collect every second; a
// burst that settles sooner than that after a release is released
// releaseEvery after it (one timer, armed only then: a load is often
// followed at once by the reads that check it).
// The peak RSS during a burst is unchanged; the budget (--max-memory) and
// GOMEMLIMIT still bound it.
const (
	releaseMinBytes = 16 << 20
	releaseEvery    = 10 * time.Second
)

// heapRelease decides and counts the releases; its fields are the
// runtime's figures and the release itself, so tests drive it.
type heapRelease struct {
	mu   sync.Mutex
	last time.Time
	now  func() time.Time
	// slack is what the heap holds beyond its live bytes: free pages not
	// yet returned, and dead objects not yet collected.
	slack   func() uint64
	release func()
	// after runs f after d (time.AfterFunc; tests run it at once).
	after func(d time.Duration, f func())
	count int
	// armed: a release waits for releaseEvery to pass.
	armed bool
}

func newHeapRelease() *heapRelease {
	return &heapRelease{now: time.Now, slack: heapSlack, release: debug.FreeOSMemory,
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// settled is storage's OnSettled: release if enough is held and the last
// release is old enough.
func (h *heapRelease) settled() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if !h.last.IsZero() && now.Sub(h.last) < releaseEvery {
		if !h.armed {
			h.armed = true
			h.after(releaseEvery-now.Sub(h.last), func() {
				h.mu.Lock()
				h.armed = false
				h.mu.Unlock()
				h.settled()
			})
		}
		return
	}
	if h.slack() < releaseMinBytes {
		return
	}
	h.last = now
	h.count++
	h.release()
}

// heapSlack is the Go heap's free pages not returned to the OS plus its
// objects beyond the live bytes of the last collection.
func heapSlack() uint64 {
	s := []metrics.Sample{
		{Name: "/memory/classes/heap/free:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/heap/live:bytes"},
	}
	metrics.Read(s)
	for _, x := range s {
		if x.Value.Kind() != metrics.KindUint64 {
			return 0
		}
	}
	free, objects, live := s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64()
	if objects > live {
		free += objects - live
	}
	return free
}

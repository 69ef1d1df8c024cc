package node

import (
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

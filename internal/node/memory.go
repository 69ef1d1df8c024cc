package node

import (
	"log/slog"
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
	// GoLimit is the Go runtime's soft memory limit (GOMEMLIMIT) when
	// Pebble holds its whole share: the budget less Pebble's block cache
	// and memtables, all full. Over it the collector runs more often and
	// returns freed memory to the OS at once, so a burst (a 64 MB value
	// copied on its way through) does not stay in the RSS. The limit a
	// running node has follows what Pebble holds (GoLimitNow,
	// GovernMemoryLimit) and is never below this.
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

// The Go limit follows Pebble. PlanMemory's GoLimit assumes Pebble holds
// its whole share, every block cached and every memtable allocated. Under
// a write-only load it holds a fraction of it (50 bulk-load streams on a
// leader with the default 192 MiB budget: block cache 8 KB of 24 MiB,
// memtables 12 of 24 MiB), while the Go heap holds the most it ever does:
// the row cache, the leader's tail of recent entries, the connections'
// read buffers, 72–90 MB live. The static limit capped the heap goal at
// about 125 MB, 1.4–1.6 times the live heap where GOGC=100 asks for 2:
// the collector ran every 0.2–0.7 s and marked for 100–1200 ms of wall
// clock each time at load 20 (GODEBUG=gctrace=1), most of the time, and
// its stop-the-world phases took up to 118 ms waiting for threads the
// OS had descheduled. Each of those is a silence the failure detector
// sees (bench/failover.sh's bulk-load phase).
//
// So a running node's limit is the budget less what Pebble holds now,
// less one memtable of room for Pebble to grow before the next look
// (GoLimitNow), and never below the plan's static limit. Go and Pebble
// together stay within the budget as before; the memory Pebble does not
// use is the collector's headroom instead of nobody's. Pebble grows
// between two looks by at most what a write or read load adds in
// memoryEvery (a memtable, blocks read into the cache), which the limit
// follows at the next look: the budget is soft by that much for that
// long, as GOMEMLIMIT is soft anyway.

const (
	memoryEvery     = 500 * time.Millisecond // between looks while the process is busy
	memoryIdleEvery = 5 * time.Second        // while it runs on one P (procs.go)
	memoryStep      = 1 << 20                // smaller changes are not made
)

// GoLimitNow is the Go memory limit for budget (0: DefaultMaxMemory) when
// Pebble holds offHeap bytes outside the Go heap: the budget less that and
// less one memtable, never below PlanMemory(budget).GoLimit.
func GoLimitNow(budget, offHeap int64) int64 {
	if budget <= 0 {
		budget = DefaultMaxMemory
	}
	p := PlanMemory(budget)
	return max(budget-max(offHeap, 0)-p.Storage.MemTableBytes, p.GoLimit)
}

// The GC percent follows the spare memory. Go's default, GOGC 100, puts
// the heap goal at twice the live heap whatever the memory limit, so a
// node whose live heap is small collects often for nothing: under
// redis-benchmark SET (c=50, P=1 or 16) a follower's live heap is 4–8 MB
// and its goal 9–17 MB under a limit of 174 MB, and it collected 24–38
// times per 100k–300k SETs, the leader (live 35–46 MB) 7–20 times; the
// collector (mark workers, assists, sweep) was 3–8% of the leader's CPU
// profile and 4–10% of a follower's, about 1.5 µs per SET on the leader
// and 1 µs on each follower by the runtime's own count (/cpu/classes/gc).
// A collection's cost grows with the live heap, and the number of them
// with the allocation over the headroom (goal less live), so the
// collector's CPU falls as the headroom grows; and while a mark phase
// runs (on a loaded machine, a good part of the time) every pointer
// write pays the write barrier and allocations pay assists, which the
// runtime's GC class does not count: at -P 16 the leader's CPU per SET
// fell 14–16 → 11–13 µs and a follower's 6.4–7.3 → 5.0–5.3 with this
// policy, more than the collector's counted 1–2 µs.
//
// So while the process allocates fast (busyRate or more since the last
// look), the governor sets the percent that puts the heap goal
// gcSpareShare of the way from the live heap to the Go memory limit
// (gcPercentFor), between 100 and gcPercentMax; while it does not, 100,
// so an idle node's heap does not grow towards the limit between its rare
// collections (its RSS would), and the scavenger returns what lies above
// the lower goal. The percent only spends headroom the limit already
// gives the Go heap: a live heap that nears the limit (a bulk load's,
// 72–90 MB on a leader) gets 100 again, and the limit bounds the heap
// as before whatever the percent. A burst such as a 64 MB value arrives
// on an idle node, at 100: the next look sees its live bytes.
const (
	gcPercentIdle = 100 // Go's default
	gcPercentMax  = 800 // a goal 9 times the live heap: collections become rare, a larger heap gains nothing
	gcSpareShare  = 3   // quarters of the way from the live heap to the limit
)

// gcPercentFor is the GC percent for a Go memory limit of limit bytes and
// a live heap of live bytes (the last collection's), busy or not: while
// busy, the percent whose goal is gcSpareShare quarters of the way from
// live to limit, within [gcPercentIdle, gcPercentMax]; else gcPercentIdle.
func gcPercentFor(limit, live int64, busy bool) int {
	if !busy || live <= 0 || limit <= live {
		return gcPercentIdle
	}
	p := (limit - live) * gcSpareShare / 4 * 100 / live
	return int(min(max(p, gcPercentIdle), gcPercentMax))
}

// gcPolicy is the governor's GC percent without the runtime: look takes
// the time, the heap's allocated bytes so far, the limit and the live
// heap, and returns the percent to run at.
type gcPolicy struct {
	at        time.Time // the last look (zero: none yet)
	allocated uint64    // the allocated bytes then
}

func (g *gcPolicy) look(now time.Time, allocated uint64, limit, live int64) int {
	busy := false
	if !g.at.IsZero() {
		if secs := now.Sub(g.at).Seconds(); secs > 0 {
			busy = float64(allocated-g.allocated) >= busyRate*secs
		}
	}
	g.at, g.allocated = now, allocated
	return gcPercentFor(limit, live, busy)
}

// GovernMemoryLimit keeps the process's Go memory limit at
// GoLimitNow(budget, offHeap()) until stop is closed, looking every
// memoryEvery (every memoryIdleEvery while AdaptProcs runs the process on
// one P: an idle node's Pebble does not grow), and then leaves the
// plan's static limit. With governGC it also sets the GC percent at each
// look (gcPolicy), and leaves 100. Call it only for a process that owns
// its memory limit (not when the environment sets GOMEMLIMIT, nor from
// tests that share a process), and with governGC only if it owns its GC
// percent too (not when the environment sets GOGC).
func GovernMemoryLimit(stop <-chan struct{}, budget int64, offHeap func() int64, governGC bool, log *slog.Logger) {
	static := PlanMemory(budget).GoLimit
	defer debug.SetMemoryLimit(static)
	cur := debug.SetMemoryLimit(-1)
	var gc gcPolicy
	percent := gcPercentIdle
	if governGC {
		debug.SetGCPercent(gcPercentIdle)
		defer debug.SetGCPercent(gcPercentIdle)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if want := GoLimitNow(budget, offHeap()); want-cur >= memoryStep || cur-want >= memoryStep {
			debug.SetMemoryLimit(want)
			log.Debug("memory limit", "go_limit", want, "was", cur)
			cur = want
		}
		if governGC {
			if p := gc.look(time.Now(), heapAllocated(), cur, heapLive()); p != percent {
				debug.SetGCPercent(p)
				log.Debug("gc percent", "percent", p, "was", percent)
				percent = p
			}
		}
		if procsOne.Load() {
			t.Reset(memoryIdleEvery)
		} else {
			t.Reset(memoryEvery)
		}
	}
}

// Returning the Go heap after a burst.
//
// A burst of writes (a bulk load, a pipeline of SETs) leaves the Go heap
// grown to its goal, about twice the live bytes (GOGC 100; more under
// the busy GC percent above), and most of that is garbage and free
// pages once the burst ends. Go's scavenger gives back only what lies
// above the goal, so a node that goes quiet
// after a load kept ~35 MB (follower) to ~60 MB (leader) more RSS than it
// used, the size of its live heap again, until the next burst reused it.
// When the storage reports a burst settled (storage.DB.OnSettled: its
// allocator trimmed after the last flush, compaction or read, and a
// second without another), the node returns that memory: one collection
// and a scavenge (debug.FreeOSMemory), a few milliseconds of CPU for a
// heap of ~40-60 MB live. Only when the heap holds at least
// releaseMinBytes more than is live, and at most once per releaseEvery,
// so a node with a burst every second does not collect every second; a
// burst that settles sooner than that after a release is released
// releaseEvery after it (one timer, armed only then: a load is often
// followed at once by the reads that check it).
//
// And only once the node is quiet, not merely its storage: GETs the row
// cache answers touch no Pebble memory, so under a read load right after
// a write burst the storage settles while the node allocates as fast as
// ever. A release then is a forced collection (its stop-the-world phases
// and sweep on a busy process) and a scavenge whose pages the heap faults
// back in at once: bench/run.sh's GET phase, which follows its SET phase,
// had a forced collection every releaseEvery, each with a 6 ms
// stop-the-world phase and a window of 100-300 ms replies. So the release
// looks at the heap's allocation over quietLook first and, while the node
// allocates at busyRate or more (it would have the released bytes back
// within releaseEvery), looks again a quietLook later instead.
//
// The peak RSS during a burst is unchanged; the budget (--max-memory) and
// GOMEMLIMIT still bound it.
const (
	releaseMinBytes = 16 << 20
	releaseEvery    = 10 * time.Second
	quietLook       = time.Second
	// busyRate is releaseMinBytes per releaseEvery (1.6 MiB/s): an idle
	// node allocates a few hundred KiB a second (heartbeats, lease
	// confirmations), one serving 10k GETs a second several MiB.
	busyRate = float64(releaseMinBytes) / float64(releaseEvery/time.Second)
)

// heapRelease decides and counts the releases; its fields are the
// runtime's figures and the release itself, so tests drive it.
type heapRelease struct {
	mu   sync.Mutex
	last time.Time
	now  func() time.Time
	// slack is what the heap holds beyond its live bytes: free pages not
	// yet returned, and dead objects not yet collected.
	slack func() uint64
	// allocated is the bytes the heap has allocated so far.
	allocated func() uint64
	release   func()
	// after runs f after d (time.AfterFunc; tests run it when they will).
	after func(d time.Duration, f func())
	count int
	// deferred counts the looks that found the node busy.
	deferred int
	// armed: a look is due (one timer); lookFrom and allocFrom are when
	// it was armed and the allocated bytes then.
	armed     bool
	lookFrom  time.Time
	allocFrom uint64
}

func newHeapRelease() *heapRelease {
	return &heapRelease{now: time.Now, slack: heapSlack, allocated: heapAllocated, release: debug.FreeOSMemory,
		after: func(d time.Duration, f func()) { time.AfterFunc(d, f) }}
}

// settled is storage's OnSettled: arm a look, quietLook from now or at
// the end of releaseEvery after the last release, whichever is later.
func (h *heapRelease) settled() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.armed {
		return
	}
	now := h.now()
	d := quietLook
	if !h.last.IsZero() {
		d = max(d, releaseEvery-now.Sub(h.last))
	}
	h.armLocked(now, d)
}

func (h *heapRelease) armLocked(now time.Time, d time.Duration) {
	h.armed, h.lookFrom, h.allocFrom = true, now, h.allocated()
	h.after(d, h.look)
}

// look releases if the node was quiet since the look was armed and the
// heap holds enough to give back; a busy node is looked at again later.
func (h *heapRelease) look() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.armed = false
	now := h.now()
	if secs := now.Sub(h.lookFrom).Seconds(); float64(h.allocated()-h.allocFrom) >= busyRate*secs {
		h.deferred++
		h.armLocked(now, quietLook)
		return
	}
	if h.slack() < releaseMinBytes {
		return
	}
	h.last = now
	h.count++
	h.release()
}

// heapAllocated is the bytes the Go heap has allocated since the
// process started.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// heapLive is the Go heap's live bytes as the last collection marked
// them.
func heapLive() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
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

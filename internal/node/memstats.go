package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"runtime/metrics"
	"strconv"

	"github.com/tandemdb/tandem/internal/storage"
)

// MemoryReport accounts for the process's memory by part: what the OS
// holds for it (RSS), what the Go runtime holds and why, and what the
// storage's caches hold inside and outside the Go heap. /debug/memory
// serves it; the bulk-load benchmark prints it after the load.
type MemoryReport struct {
	// RSSBytes is the resident set (VmRSS); AnonBytes its anonymous part
	// (RssAnon: the heaps, Go's and C's), FileBytes the mapped files
	// (RssFile: the binary's text and data).
	RSSBytes, AnonBytes, FileBytes int64
	// Go is the Go runtime's view (runtime/metrics).
	Go GoMemory
	// OutsideGoBytes is the anonymous RSS the Go runtime does not hold:
	// C allocations, Pebble's block cache and memtables above all.
	OutsideGoBytes int64
	// Storage is the storage's caches by part.
	Storage storage.MemoryStats
	// Plan is the budget's split (--max-memory).
	Plan MemoryPlan
}

// GoMemory is the Go runtime's memory by class (runtime/metrics names).
type GoMemory struct {
	// MappedBytes is all the runtime has mapped (/memory/classes/total),
	// ReleasedBytes the part returned to the OS (heap/released): Go's
	// share of the RSS is about MappedBytes - ReleasedBytes.
	MappedBytes, ReleasedBytes int64
	// LiveBytes is the heap marked live by the last GC (/gc/heap/live);
	// ObjectsBytes the heap's objects now, garbage not yet swept
	// included (heap/objects); FreeBytes heap pages free and not yet
	// returned (heap/free); UnusedBytes the gaps in spans in use
	// (heap/unused); StackBytes goroutine stacks (heap/stacks);
	// OtherBytes the runtime's metadata and the rest.
	LiveBytes, ObjectsBytes, FreeBytes, UnusedBytes, StackBytes, OtherBytes int64
	// GoalBytes is the heap goal, LimitBytes the soft memory limit
	// (GOMEMLIMIT), GOGC the GC percent; GCs counts collections since
	// start.
	GoalBytes, LimitBytes, GOGC, GCs int64
}

var goMemoryNames = []string{
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/gc/heap/live:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/stacks:bytes",
	"/gc/heap/goal:bytes",
	"/gc/gomemlimit:bytes",
	"/gc/gogc:percent",
	"/gc/cycles/total:gc-cycles",
}

func readGoMemory() GoMemory {
	samples := make([]metrics.Sample, len(goMemoryNames))
	for i, name := range goMemoryNames {
		samples[i].Name = name
	}
	metrics.Read(samples)
	v := func(i int) int64 {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return int64(samples[i].Value.Uint64())
	}
	g := GoMemory{
		MappedBytes: v(0), ReleasedBytes: v(1), LiveBytes: v(2), ObjectsBytes: v(3),
		FreeBytes: v(4), UnusedBytes: v(5), StackBytes: v(6),
		GoalBytes: v(7), LimitBytes: v(8), GOGC: v(9), GCs: v(10),
	}
	g.OtherBytes = g.MappedBytes - g.ReleasedBytes - g.ObjectsBytes - g.FreeBytes - g.UnusedBytes - g.StackBytes
	return g
}

// readProcStatus reads VmRSS, RssAnon and RssFile from /proc/self/status
// (0 where the OS has none).
func readProcStatus() (rss, anon, file int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		f := bytes.Fields(val)
		if len(f) == 0 {
			continue
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			continue
		}
		switch string(name) {
		case "VmRSS":
			rss = kb << 10
		case "RssAnon":
			anon = kb << 10
		case "RssFile":
			file = kb << 10
		}
	}
	return rss, anon, file
}

// MemoryReport accounts for the node's memory now.
func (n *Node) MemoryReport() MemoryReport {
	r := MemoryReport{Go: readGoMemory(), Storage: n.db.MemoryStats(), Plan: PlanMemory(n.cfg.MaxMemory)}
	r.RSSBytes, r.AnonBytes, r.FileBytes = readProcStatus()
	r.OutsideGoBytes = r.AnonBytes - (r.Go.MappedBytes - r.Go.ReleasedBytes)
	return r
}

func (n *Node) serveMemory(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(n.MemoryReport())
}

// OffHeapBytes is what the node's Pebble holds outside the Go heap now
// (storage.DB.OffHeapBytes), for GovernMemoryLimit.
func (n *Node) OffHeapBytes() int64 { return n.db.OffHeapBytes() }

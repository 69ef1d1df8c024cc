package node

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"testing"
)

// TestMemoryReport: /debug/memory accounts for the process by part, and
// the parts add up: Go's share and what lies outside it make the anonymous
// RSS, the storage's caches are reported with their budget.
func TestMemoryReport(t *testing.T) {
	n := testNode(t, "n1", func(c *Config) { c.MaxMemory = 96 << 20 })
	_, _, httpAddr := n.Addrs()
	runtime.GC() // the live heap is known after a collection
	res, err := http.Get("http://" + httpAddr + "/debug/memory")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var r MemoryReport
	if err := json.NewDecoder(res.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Plan != PlanMemory(96<<20) {
		t.Errorf("plan %+v, want the 96 MiB budget's %+v", r.Plan, PlanMemory(96<<20))
	}
	g := r.Go
	if g.LiveBytes <= 0 || g.ObjectsBytes <= 0 || g.StackBytes <= 0 || g.GoalBytes <= 0 || g.MappedBytes < g.ObjectsBytes+g.ReleasedBytes {
		t.Errorf("Go memory %+v", g)
	}
	if r.Storage.KeyFilterBytes <= 0 || r.Storage.Pebble == "" {
		t.Errorf("storage %+v", r.Storage)
	}
	if runtime.GOOS == "linux" {
		if r.RSSBytes <= 0 || r.AnonBytes <= 0 || r.AnonBytes+r.FileBytes > r.RSSBytes+r.RSSBytes/10 {
			t.Errorf("RSS %d, anon %d, file %d", r.RSSBytes, r.AnonBytes, r.FileBytes)
		}
		if r.OutsideGoBytes != r.AnonBytes-(g.MappedBytes-g.ReleasedBytes) {
			t.Errorf("outside Go %d, want anon %d less Go's %d", r.OutsideGoBytes, r.AnonBytes, g.MappedBytes-g.ReleasedBytes)
		}
	}
}

// TestMetricsRuntimeCPU: /metrics exports the runtime's CPU by class and
// its GC and scheduler figures, which measure the collector's share of a
// node's CPU (memory.go's GC percent) and its collections.
func TestMetricsRuntimeCPU(t *testing.T) {
	n := testNode(t, "n1", nil)
	_, _, httpAddr := n.Addrs()
	runtime.GC() // at least one collection, so the GC's CPU is counted
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"go_cpu_classes_gc_total_cpu_seconds_total",
		"go_cpu_classes_gc_mark_assist_cpu_seconds_total",
		"go_cpu_classes_scavenge_total_cpu_seconds_total",
		"go_cpu_classes_total_cpu_seconds_total",
		"go_gc_gogc_percent",
		"go_gc_heap_live_bytes",
		"go_gc_cycles_total_gc_cycles_total",
		"go_sched_latencies_seconds_bucket",
	} {
		if !regexp.MustCompile(`(?m)^` + name + `(\{[^}]*\})? [0-9.e+-]+$`).Match(body) {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

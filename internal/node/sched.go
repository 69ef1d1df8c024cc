package node

import (
	"encoding/json"
	"net/http"
	"runtime/metrics"
	"slices"
)

// SchedLatencies is the Go scheduler's latency histogram since the process
// started (runtime/metrics /sched/latencies:seconds: how long goroutines
// waited runnable before they ran), at full resolution: /metrics has it
// too (go_sched_latencies_seconds) but in a handful of buckets, too coarse
// to tell 2 ms from 10 ms. A bench takes it before and after a load and
// subtracts (bench/README.md).
type SchedLatencies struct {
	// Buckets are the boundaries in seconds (len(Counts)+1 of them; the
	// first and last may be infinite); Counts[i] counts waits in
	// [Buckets[i], Buckets[i+1]).
	Buckets []float64 `json:"buckets"`
	Counts  []uint64  `json:"counts"`
}

func readSchedLatencies() SchedLatencies {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindFloat64Histogram {
		return SchedLatencies{}
	}
	h := s[0].Value.Float64Histogram()
	return SchedLatencies{Buckets: h.Buckets, Counts: h.Counts}
}

func serveSched(w http.ResponseWriter, _ *http.Request) {
	h := readSchedLatencies()
	// JSON has no infinities: the open ends become ±1e308.
	for i, b := range h.Buckets {
		h.Buckets[i] = max(min(b, 1e308), -1e308)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(h)
}

// sub returns the waits counted in h since before (the same buckets).
func (h SchedLatencies) sub(before SchedLatencies) SchedLatencies {
	d := SchedLatencies{Buckets: h.Buckets, Counts: slices.Clone(h.Counts)}
	for i := range min(len(d.Counts), len(before.Counts)) {
		d.Counts[i] -= before.Counts[i]
	}
	return d
}

// quantile returns the upper bound of the bucket that holds the q-th
// quantile of the waits, in seconds (0 when none was counted).
func (h SchedLatencies) quantile(q float64) float64 {
	var total uint64
	for _, c := range h.Counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	var acc uint64
	for i, c := range h.Counts {
		acc += c
		if float64(acc) >= q*float64(total) {
			return h.Buckets[i+1]
		}
	}
	return h.Buckets[len(h.Buckets)-1]
}

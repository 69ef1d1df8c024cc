package failbench

import (
	"math"
	"strings"
	"testing"
)

const metricsBefore = `# HELP tandem_orchestrator_leader_silence_seconds x
# TYPE tandem_orchestrator_leader_silence_seconds histogram
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="0.1"} 10
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="0.2"} 10
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="0.3"} 10
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="+Inf"} 10
tandem_orchestrator_leader_silence_seconds_sum{seen_by="any"} 0.5
tandem_orchestrator_leader_silence_seconds_count{seen_by="any"} 10
go_gc_duration_seconds{quantile="0"} 1e-05
`

const metricsAfter = `tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="0.1"} 100
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="0.2"} 108
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="0.3"} 110
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="+Inf"} 110
tandem_orchestrator_leader_lease_lapse_seconds_bucket{le="0.1"} 0
tandem_orchestrator_leader_lease_lapse_seconds_bucket{le="+Inf"} 0
`

// TestHistogramsOverAPhase: what a phase observed is the difference of two
// scrapes, summarized by its count, quantile bounds, largest bound and the
// observations over each bound.
func TestHistogramsOverAPhase(t *testing.T) {
	before, err := ParseHistograms(strings.NewReader(metricsBefore), "tandem_orchestrator_")
	if err != nil {
		t.Fatal(err)
	}
	after, err := ParseHistograms(strings.NewReader(metricsAfter), "tandem_orchestrator_")
	if err != nil {
		t.Fatal(err)
	}
	d := after.Sub(before)
	if got := d.Names(); len(got) != 2 || got[1] != `tandem_orchestrator_leader_silence_seconds{seen_by="any"}` {
		t.Fatalf("series %q", got)
	}
	line := d.Line(`tandem_orchestrator_leader_silence_seconds{seen_by="any"}`)
	want := `tandem_orchestrator_leader_silence_seconds{seen_by="any"}: 100 observed, p50 <= 100ms, p99 <= 300ms, max <= 300ms; >100ms 10, >200ms 2`
	if line != want {
		t.Fatalf("line\n%s\nwant\n%s", line, want)
	}
	if line := d.Line("tandem_orchestrator_leader_lease_lapse_seconds"); !strings.Contains(line, ": 0 observed") {
		t.Fatalf("empty series: %s", line)
	}
}

// TestHistogramsAcrossOrchestrators: a phase's observations are the
// difference of the sums over every orchestrator, also when the active one
// changed in between (each observes only while active).
func TestHistogramsAcrossOrchestrators(t *testing.T) {
	parse := func(s string) Histograms {
		h, err := ParseHistograms(strings.NewReader(s), "tandem_orchestrator_")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	empty := `tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="0.1"} 0
tandem_orchestrator_leader_silence_seconds_bucket{seen_by="any",le="+Inf"} 0
`
	o1Before, o2Before := parse(metricsBefore), parse(empty)      // o1 active
	o1After, o2After := parse(metricsBefore), parse(metricsAfter) // then o2
	d := o1After.Add(o2After).Sub(o1Before.Add(o2Before))
	if got := d[`tandem_orchestrator_leader_silence_seconds{seen_by="any"}`][math.Inf(1)]; got != 110 {
		t.Fatalf("%v observed over the phase, want o2's 110", got)
	}
	if got := o2After.Sub(o1Before)[`tandem_orchestrator_leader_silence_seconds{seen_by="any"}`][math.Inf(1)]; got != 100 {
		t.Fatalf("the active one's alone: %v", got) // what the old reading did: o2's 110 less o1's 10
	}
}

// TestLastRate reads redis-benchmark's last progress rate.
func TestLastRate(t *testing.T) {
	out := []byte("SET: rps=1000.0 (overall: 900.5) avg_msec=1.0 (overall: 2.5)\rSET: rps=2000.0 (overall: 1500.2) avg_msec=1.0 (overall: 37.5)\r")
	if r := lastRate(out); r != 1500.2 {
		t.Fatalf("rate %v", r)
	}
	if r := lastRate(nil); r != 0 {
		t.Fatalf("no output: rate %v", r)
	}
}

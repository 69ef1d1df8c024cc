package appsbench

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{0.5, 1.1, 1.0}, 1.0}} {
		in := slices.Clone(c.in)
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("median reordered its input: %v", c.in)
		}
	}
}

func TestRoundOrderSwapsEachRound(t *testing.T) {
	targets := []string{"tandem", "redis"}
	first := map[string]int{}
	for round := range 4 {
		o := roundOrder(targets, round)
		if len(o) != 2 || o[0] == o[1] {
			t.Fatalf("round %d: order %v", round, o)
		}
		first[o[0]]++
	}
	if first["tandem"] != 2 || first["redis"] != 2 {
		t.Errorf("over 4 rounds each target should run first twice: %v", first)
	}
	if !slices.Equal(targets, []string{"tandem", "redis"}) {
		t.Errorf("roundOrder changed its input: %v", targets)
	}
}

// res is one window of one second: ops operations at cpu µs each, split
// 3:1:1 between the leader and the followers.
func res(target, wl string, round int, ops int64, cpu float64) Result {
	total := time.Duration(cpu * float64(ops) * float64(time.Microsecond))
	return Result{Target: target, Workload: wl, Round: round, Ops: ops, Seconds: 1,
		Lat:      []time.Duration{time.Duration(round+1) * time.Millisecond},
		CPU:      total,
		CPUs:     []time.Duration{total * 3 / 5, total / 5, total / 5},
		Syscalls: []int64{3 * ops, ops, ops}}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestSummarizeUsesRoundMedians holds the verdicts to the medians of the
// rounds' ratios, each round's tandem paired with the same round's redis:
// the mean of the ratios, the pooled ratio, the first or last round alone,
// or a pairing across rounds each give another verdict here.
func TestSummarizeUsesRoundMedians(t *testing.T) {
	var rs []Result
	add := func(wl string, tOps, rOps []int64, tCPU, rCPU []float64) {
		for round := range tOps {
			rs = append(rs, res("tandem", wl, round, tOps[round], tCPU[round]))
			if round < len(rOps) {
				rs = append(rs, res("redis", wl, round, rOps[round], rCPU[round]))
			}
		}
	}
	// SET: ratios 1.0, 1.1, 0.5 (median 1.0, mean 0.87); CPU t/r 1.5, 2.0, 1.0 (median 1.5).
	add("set", []int64{100, 220, 50}, []int64{100, 200, 100}, []float64{60, 80, 40}, []float64{40, 40, 40})
	// multi: 1.05, 0.1, 1.02 (median 1.02: MET; mean 0.72, last round against SET's 0.5...).
	add("multi", []int64{105, 10, 102}, []int64{100, 100, 100}, []float64{10, 10, 10}, []float64{5, 5, 5})
	// evalsha: 0.95, 1.5, 0.9 (median 0.95: MISSED; mean 1.12, last 0.9 ≥ 0.5).
	// CPU t/r 1.4, 3.0, 1.0 (median 1.4: MET; mean 1.8).
	add("evalsha", []int64{190, 150, 90}, []int64{200, 100, 100}, []float64{70, 120, 50}, []float64{50, 40, 50})
	// queue: redis has no third round; the rounds both ran count.
	add("queue", []int64{100, 100, 5}, []int64{50, 100}, []float64{10, 10, 10}, []float64{10, 10})
	s := summarize(rs, []string{"set", "multi", "evalsha", "queue", "pubsub"})

	if !near(s.SetRatio, 1.0) || !near(s.SetCPURatio, 1.5) {
		t.Errorf("SET medians %v / %v, want 1.0 / 1.5", s.SetRatio, s.SetCPURatio)
	}
	if len(s.Rows) != 4 {
		t.Fatalf("%d rows, want 4 (pubsub ran on neither)", len(s.Rows))
	}
	want := []struct {
		wl                  string
		ratio, cpu          float64
		verdict, cpuVerdict string
		rounds              int
	}{
		{"set", 1.0, 1.5, "", "", 3},
		{"multi", 1.02, 2.0, "MET", "MISSED", 3},
		{"evalsha", 0.95, 1.4, "MISSED", "MET", 3},
		{"queue", 1.5, 1.0, "MET", "MET", 2},
	}
	for i, w := range want {
		rw := s.Rows[i]
		if rw.Workload != w.wl || !near(rw.Ratio, w.ratio) || !near(rw.CPURatio, w.cpu) ||
			rw.Verdict != w.verdict || rw.CPUVerdict != w.cpuVerdict || len(rw.Rounds) != w.rounds {
			t.Errorf("row %d: %s ratio %v cpu %v %q %q, %d rounds; want %+v", i, rw.Workload, rw.Ratio, rw.CPURatio, rw.Verdict, rw.CPUVerdict, len(rw.Rounds), w)
		}
	}
	// Each target's own columns pool its rounds: ops over seconds, CPU over ops.
	set := s.Rows[0]
	if set.T.rate() != 370.0/3 || set.R.rate() != 400.0/3 {
		t.Errorf("pooled SET rates %v / %v, want %v / %v", set.T.rate(), set.R.rate(), 370.0/3, 400.0/3)
	}
	if got, want := set.T.cpuPerOp(), (100*60.0+220*80+50*40)/370; math.Abs(got-want) > 0.01 {
		t.Errorf("pooled tandem SET CPU %v µs/op, want %v", got, want)
	}
	if got := set.T.cpuSplit(); got != "42 / 14 14" {
		t.Errorf("pooled split %q", got)
	}
	if got := len(set.T.Lat); got != 3 {
		t.Errorf("pooled %d latencies, want 3", got)
	}
}

func TestReportPrintsEveryRound(t *testing.T) {
	rs := []Result{
		res("tandem", "set", 0, 100, 60), res("redis", "set", 0, 100, 40),
		res("redis", "set", 1, 100, 40), res("tandem", "set", 1, 110, 60),
		res("tandem", "evalsha", 0, 90, 80), res("redis", "evalsha", 0, 100, 40),
		res("redis", "evalsha", 1, 100, 40), res("tandem", "evalsha", 1, 120, 80),
	}
	var b strings.Builder
	report(&b, Options{Rounds: 2, Workloads: []string{"set", "evalsha"}}, rs)
	out := b.String()
	for _, want := range []string{
		"SET                r1 1.00 / 1.5   r2 1.10 / 1.5",
		"EVALSHA CAS        r1 0.90 / 2.0   r2 1.20 / 2.0",
		"median CPU per op t/r at most SET's (1.5)",
		"ratio at least SET's (1.05)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestReportWithOneTarget(t *testing.T) {
	var b strings.Builder
	report(&b, Options{Rounds: 1, Workloads: []string{"set"}}, []Result{res("tandem", "set", 0, 100, 60)})
	if out := b.String(); !strings.Contains(out, "no ratios") || strings.Contains(out, "vs SET") {
		t.Errorf("one target's report:\n%s", out)
	}
}

package commitbench

import (
	"strings"
	"testing"
	"time"
)

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
	}
	return out
}

func TestPercentileAndThroughput(t *testing.T) {
	r := Result{Latencies: ms(5, 1, 4, 2, 3, 10, 9, 8, 7, 6), Elapsed: 2 * time.Second}
	for _, c := range []struct {
		p    float64
		want int
	}{{50, 5}, {99, 10}, {10, 1}, {0, 1}, {100, 10}} {
		if got := r.Percentile(c.p); got != time.Duration(c.want)*time.Millisecond {
			t.Errorf("p%v = %v, want %dms", c.p, got, c.want)
		}
	}
	if got := r.Throughput(); got != 5 {
		t.Errorf("throughput %v, want 5/s", got)
	}
	if (&Result{}).Percentile(99) != 0 || (&Result{}).Throughput() != 0 {
		t.Error("an empty result is not all zeros")
	}
}

func TestReportRatios(t *testing.T) {
	l := Load{Clients: 2, ValueSize: 100, Keyspace: 10, Warmup: time.Second, Duration: 2 * time.Second}
	m := []Measurement{
		{Name: "tandem-semisync", Result: Result{Latencies: ms(1, 1, 1, 2), Elapsed: time.Second},
			CPU: []RoleCPU{{Role: "leader", Processes: 1, CPU: 40 * time.Microsecond}, {Role: "follower", Processes: 2, CPU: 20 * time.Microsecond}}, CPUWindow: time.Second},
		{Name: "redis-wait", Result: Result{Latencies: ms(1, 4), Elapsed: time.Second}},
	}
	var b strings.Builder
	Report(&b, l, m)
	out := b.String()
	for _, want := range []string{
		"leader 10.0, 2 followers 5.0", // 40 µs over 4 writes
		"tandem-semisync  2.00× / p99 0.50×",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

package readbench

import (
	"math"
	"os"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestSchedule: every window of a policy other than any has one of
// any's just before and just after it; each round runs each of them once,
// starting one later than the round before.
func TestSchedule(t *testing.T) {
	got := schedule(1, []int{0, 2, 3}, 3)
	want := []int{1, 0, 1, 2, 1, 3, 1, 2, 1, 3, 1, 0, 1, 3, 1, 0, 1, 2, 1}
	if !slices.Equal(got, want) {
		t.Fatalf("schedule = %v, want %v", got, want)
	}
}

// TestPairedRatio and TestMedian: a window's ratio is against the mean of
// the any windows around it, and the figure is the median over the
// rounds with its range.
func TestPairedRatio(t *testing.T) {
	// Load rising steadily: any 100 then 60; the policy between at 72
	// runs at 0.9 of any's 80 at its time, not 0.72 or 1.2.
	if v, ok := pairedRatio(72, 100, 60); !ok || !near(v, 0.9) {
		t.Fatalf("pairedRatio(72, 100, 60) = %v %v, want 0.9", v, ok)
	}
	if _, ok := pairedRatio(72, 0, 0); ok {
		t.Fatal("pairedRatio with any at 0: ok")
	}
	med, q1, q3, lo, hi, ok := spread([]float64{0.8, 0.3, 0.7, 0.6, 0.8})
	if !ok || !near(med, 0.7) || !near(q1, 0.6) || !near(q3, 0.8) || !near(lo, 0.3) || !near(hi, 0.8) {
		t.Fatalf("spread = %v %v %v %v %v %v, want 0.7 0.6 0.8 0.3 0.8", med, q1, q3, lo, hi, ok)
	}
	// Nine values: the quartiles are the 3rd and 7th.
	if _, q1, q3, ok := median([]float64{9, 1, 8, 2, 7, 3, 6, 4, 5}); !ok || q1 != 3 || q3 != 7 {
		t.Fatalf("quartiles of 1..9 = %v %v, want 3 7", q1, q3)
	}
	if med, _, _, _ := median([]float64{0.8, 0.6, 0.7, 0.9}); !near(med, 0.75) {
		t.Fatalf("median of 4 = %v, want 0.75", med)
	}
	if _, _, _, ok := median(nil); ok {
		t.Fatal("median of nothing: ok")
	}
}

// TestMedianCI: the interval of the median is the sign test's: of 30
// values the 9th lowest and the 9th highest; too few values give none;
// the verdict is MET or MISSED only when the whole interval is on one
// side of the target.
func TestMedianCI(t *testing.T) {
	var s []float64
	for i := 30; i >= 1; i-- {
		s = append(s, float64(i))
	}
	if lo, hi, ok := medianCI(s); !ok || lo != 9 || hi != 22 {
		t.Fatalf("medianCI(1..30) = %v %v %v, want 9 22", lo, hi, ok)
	}
	if _, _, ok := medianCI(s[:5]); ok {
		t.Fatal("medianCI of 5 values: ok")
	}
	for _, c := range []struct {
		lo, hi float64
		want   string
	}{
		{0.92, 1.05, "MET"},    // costs -5% to 8%
		{0.80, 0.89, "MISSED"}, // 11% to 20%
		{0.85, 0.95, "NOT RESOLVED (the interval spans the target)"},
	} {
		if got := costVerdict(c.lo, c.hi, 0.10); got != c.want {
			t.Errorf("costVerdict(%v, %v, 0.10) = %q, want %q", c.lo, c.hi, got, c.want)
		}
	}
	for _, c := range []struct {
		lo, hi float64
		want   string
	}{
		{0.01, 0.12, "MET"},
		{0.21, 0.40, "MISSED"},
		{0.05, 0.25, "NOT RESOLVED (the interval spans the target)"},
	} {
		if got := ceilingVerdict(c.lo, c.hi, 0.20); got != c.want {
			t.Errorf("ceilingVerdict(%v, %v, 0.20) = %q, want %q", c.lo, c.hi, got, c.want)
		}
	}
}

// TestReadCPU: the CPU per read is the window's CPU over its reads,
// writes' included, and never given as 0 or negative.
func TestReadCPU(t *testing.T) {
	if v, ok := readCPU(1.3, 20000); !ok || !near(v, 65) {
		t.Fatalf("readCPU(1.3, 20000) = %v %v, want 65", v, ok)
	}
	for _, c := range []struct {
		cpu   float64
		reads int64
	}{{1.3, 0}, {0, 20000}, {-0.1, 20000}} {
		if v, ok := readCPU(c.cpu, c.reads); ok {
			t.Errorf("readCPU(%v, %v) = %v ok, want not ok", c.cpu, c.reads, v)
		}
	}
}

// TestSummarize: a lag's windows summed by policy; each policy window's
// ratios against the any windows around it; any's noise, each inner any
// window against the any windows two away; the leader's CPU per read
// less the writes' at what the any windows around spent per write.
func TestSummarize(t *testing.T) {
	policies := []string{"any", "ryw"}
	win := func(pol int, secs float64, reads, writes int64, cluster, leader float64, fromLeader uint64) *window {
		w := &window{pol: pol, counted: true, secs: secs,
			cpu:     cpuSample{leader: leader, followers: cluster - leader - 0.1, proxy: 0.1, client: 0.5},
			routing: map[string]uint64{"reads_node_n1": fromLeader, "reads_node_n2": uint64(reads) - fromLeader}}
		w.reads.Store(reads)
		w.writes.Store(writes)
		return w
	}
	wins := []*window{
		win(0, 1, 10000, 5000, 0.80, 0.25, 0),  // any: 80 µs a read
		win(1, 1, 9000, 5000, 0.90, 0.30, 900), // against 10,000 and 8,000: 1.0; 100 µs against 80 and 100: 1.11
		win(0, 1, 8000, 5000, 0.80, 0.25, 0),   // 100 µs
		win(1, 1, 7200, 4000, 0.72, 0.40, 720), // against 8,000 and 10,000: 0.8; 100 µs against 100 and 50: 1.33
		win(0, 1, 10000, 5000, 0.50, 0.20, 0),  // 50 µs
		win(1, 1, 0, 5000, 0.40, 0.20, 0),      // every session stuck: ratio 0, no CPU per read
		win(0, 1, 10000, 5000, 0.50, 0.20, 0),
	}
	out := summarize(policies, 0, "n1", wins)
	if len(out) != 2 || out[0].policy != "any" || out[1].policy != "ryw" {
		t.Fatalf("summarize: %+v", out)
	}
	// any's noise: the inner any windows against the any windows two
	// away: 8,000 against 10,000 and 10,000, 10,000 against 8,000 and
	// 10,000 (not against the ryw windows beside them).
	if n := out[0].noise; len(n) != 2 || !near(n[0], 0.8) || !near(n[1], 10000.0/9000) {
		t.Errorf("any's noise %v, want [0.8 1.11]", n)
	}
	ryw := out[1]
	if len(ryw.ratios) != 3 || !near(ryw.ratios[0], 1.0) || !near(ryw.ratios[1], 0.8) || ryw.ratios[2] != 0 {
		t.Errorf("ryw ratios %v, want [1 0.8 0]", ryw.ratios)
	}
	if ryw.dropped != 1 {
		t.Errorf("ryw: %d windows without a CPU per read, want 1", ryw.dropped)
	}
	if len(ryw.cluster) != 2 || !near(ryw.cluster[0], 100) || !near(ryw.cluster[1], 100) {
		t.Errorf("ryw cluster us/rd %v, want [100 100]", ryw.cluster)
	}
	if len(ryw.cpuRatios) != 2 || !near(ryw.cpuRatios[0], 100/90.0) || !near(ryw.cpuRatios[1], 100/75.0) {
		t.Errorf("ryw cpu/any %v, want [1.11 1.33]", ryw.cpuRatios)
	}
	// The leader's writes at 0.25 s per 5,000 in the any windows around
	// the first (followers served all their reads): 0.05 s left for
	// 9,000 reads; around the second (0.25 + 0.20) / 10,000 a write,
	// 0.18 s for 4,000: 0.22 s left for 7,200 reads.
	if len(ryw.leader) != 2 || !near(ryw.leader[0], 0.05/9000*1e6) || !near(ryw.leader[1], 0.22/7200*1e6) {
		t.Errorf("ryw leader us/rd %v", ryw.leader)
	}
	if ryw.reads != 16200 || ryw.writes != 14000 || !near(ryw.follower, 0.9) {
		t.Errorf("ryw reads %d writes %d follower %v, want 16200 14000 0.9", ryw.reads, ryw.writes, ryw.follower)
	}
	anyR := out[0]
	if len(anyR.cluster) != 4 || !near(anyR.cluster[0], 80) || anyR.leader[0] != 0 || len(anyR.ratios) != 0 {
		t.Errorf("any: cluster %v leader %v ratios %v", anyR.cluster, anyR.leader, anyR.ratios)
	}
	if !near(anyR.client[0], 50) {
		t.Errorf("any: client us/rd %v, want 50 first", anyR.client)
	}
	// With any's reads partly on the leader, the leader's figure for the
	// window between is not taken: the writes' cost is not known.
	wins[0].routing["reads_node_n1"] = 5000
	if got := summarize(policies, 0, "n1", wins)[1].leader; len(got) != 1 {
		t.Errorf("leader us/rd with any on the leader: %v, want one window", got)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestProcCPUIsPrecise: a process's CPU is read to better than the 10 ms
// ticks of /proc/PID/stat (3 ms of CPU, as getrusage counts it, show as
// about 3 ms, where ticks show 0 or 10), and it sums every thread's.
func TestProcCPUIsPrecise(t *testing.T) {
	pid := os.Getpid()
	if _, ok := schedCPU(pid); !ok {
		t.Skip("no /proc/PID/task/*/schedstat on this kernel: procCPU reads /proc/PID/stat")
	}
	self := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// spin burns d of this process's CPU on a thread of its own.
	spin := func(d time.Duration) {
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for start := self(); self()-start < d; {
			}
			close(done)
		}()
		<-done
	}
	var got []time.Duration
	for range 5 {
		before := procCPU(pid)
		spin(3 * time.Millisecond)
		got = append(got, procCPU(pid)-before)
	}
	slices.Sort(got)
	if med := got[2]; med < 2500*time.Microsecond || med > 8*time.Millisecond {
		t.Fatalf("3 ms of CPU on another thread read as %v (sorted over 5 spins: %v)", med, got)
	}
}

// TestProcIO: procIO counts this process's read and write system calls,
// each as such: k reads of a file and 3k writes to it add at least that
// many of each.
func TestProcIO(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "io")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := procIO(os.Getpid())
	const k = 20
	for range k {
		for range 3 {
			if _, err := f.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.ReadAt(make([]byte, 1), 0); err != nil {
			t.Fatal(err)
		}
	}
	after := procIO(os.Getpid())
	// Other goroutines of the test binary may make system calls too, so
	// at least that many of each.
	if r, w := after[0]-before[0], after[1]-before[1]; r < k || w < 3*k {
		t.Errorf("after %d reads and %d writes procIO counted %v reads and %v writes", k, 3*k, r, w)
	}
}

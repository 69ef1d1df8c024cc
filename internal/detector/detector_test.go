package detector

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// arrivals turns inter-arrival times into arrival times from t0.
func arrivals(intervals []time.Duration) []time.Time {
	at := []time.Time{t0}
	for _, d := range intervals {
		at = append(at, at[len(at)-1].Add(d))
	}
	return at
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

// feed gives d the arrivals, checking at each one (just before it) whether
// d already suspected the node, and returns how many times it did.
func feed(d Detector, at []time.Time) (falseSuspicions int) {
	for i, a := range at {
		if i > 0 && d.Suspect(a.Add(-time.Nanosecond)) {
			falseSuspicions++
		}
		d.Heartbeat(a)
	}
	return falseSuspicions
}

// suspicionTime is how long after the last heartbeat d first suspects the
// node, to the millisecond.
func suspicionTime(t *testing.T, d Detector) time.Duration {
	t.Helper()
	last := d.LastHeartbeat()
	for ms := 1; ms <= 60_000; ms++ {
		if d.Suspect(last.Add(time.Duration(ms) * time.Millisecond)) {
			return time.Duration(ms) * time.Millisecond
		}
	}
	t.Fatal("never suspected within 60 s")
	return 0
}

// TestPhiOnRecordedPatterns: suspicion times on recorded arrival patterns.
// With 100 ms heartbeats, threshold 8 and a 50 ms floor on σ, a steady node
// is suspected about 0.1 + 5.3 × 0.05 ≈ 0.36 s after its last heartbeat
// (φ = 8 is about 5.3 σ into the tail, with the logistic approximation);
// a jittery one (σ ≈ 84 ms) and one that has paused before (σ ≈ 176 ms)
// get more patience, learned from their history. Neither steady nor
// jittery is suspected while it keeps to its pattern; the first pauses
// come before the history knows them, and are.
func TestPhiOnRecordedPatterns(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	jitter := make([]time.Duration, 300)
	for i := range jitter {
		jitter[i] = time.Duration(20+rng.IntN(281)) * time.Millisecond // 20..300 ms
	}
	paused := repeat(100*time.Millisecond, 300)
	for i := 20; i < len(paused); i += 25 {
		paused[i] = time.Second // a stop-the-world pause now and then
	}
	tests := []struct {
		name          string
		intervals     []time.Duration
		min, max      time.Duration
		allowFalseAny bool
	}{
		{"steady 100ms", repeat(100*time.Millisecond, 300), 330 * time.Millisecond, 400 * time.Millisecond, false},
		{"jittery 20-300ms", jitter, 500 * time.Millisecond, 800 * time.Millisecond, false},
		{"steady with 1s pauses", paused, time.Second, 1500 * time.Millisecond, true},
	}
	got := map[string]time.Duration{}
	for _, tt := range tests {
		d := NewPhi(PhiConfig{})
		falses := feed(d, arrivals(tt.intervals))
		if falses > 0 && !tt.allowFalseAny {
			t.Errorf("%s: suspected %d times while heartbeats kept to the pattern", tt.name, falses)
		}
		s := suspicionTime(t, d)
		got[tt.name] = s
		t.Logf("%s: suspected %v after the last heartbeat (%v; %d false suspicions on the way)", tt.name, s, d, falses)
		if s < tt.min || s > tt.max {
			t.Errorf("%s: suspected after %v, want %v..%v", tt.name, s, tt.min, tt.max)
		}
	}
	if !(got["steady 100ms"] < got["jittery 20-300ms"] && got["jittery 20-300ms"] < got["steady with 1s pauses"]) {
		t.Errorf("suspicion times %v: want steady < jittery < paused", got)
	}
}

// TestPhiPausedHistoryLearnsPauses: once the window holds pauses, a pause
// of the same length is not suspected; before, it is.
func TestPhiPausedHistoryLearnsPauses(t *testing.T) {
	d := NewPhi(PhiConfig{})
	feed(d, arrivals(repeat(100*time.Millisecond, 100)))
	if !d.Suspect(d.LastHeartbeat().Add(time.Second)) {
		t.Error("a 1 s silence after a steady history is not suspected")
	}
	paused := repeat(100*time.Millisecond, 200)
	for i := 0; i < len(paused); i += 10 {
		paused[i] = time.Second
	}
	d = NewPhi(PhiConfig{})
	feed(d, arrivals(paused))
	if d.Suspect(d.LastHeartbeat().Add(time.Second)) {
		t.Errorf("a 1 s silence is suspected although one heartbeat in ten came after 1 s (%v)", d)
	}
}

// TestPhiWindowForgets: the window keeps only the last Window intervals, so
// a node that was slow and is now steady is judged by its recent past.
func TestPhiWindowForgets(t *testing.T) {
	d := NewPhi(PhiConfig{Window: 100})
	feed(d, arrivals(append(repeat(500*time.Millisecond, 100), repeat(100*time.Millisecond, 100)...)))
	steady := NewPhi(PhiConfig{Window: 100})
	feed(steady, arrivals(repeat(100*time.Millisecond, 100)))
	if a, b := suspicionTime(t, d), suspicionTime(t, steady); a != b {
		t.Errorf("after the slow past left the window: suspected after %v, a steady node after %v", a, b)
	}
}

// TestPhiValues: φ is 0 before any heartbeat, grows with silence, and
// matches the normal tail: at the mean it is −log10(0.5) ≈ 0.3, and at
// mean + 2σ it is −log10(0.0228) ≈ 1.64.
func TestPhiValues(t *testing.T) {
	d := NewPhi(PhiConfig{MinStdDev: time.Millisecond})
	if got := d.Phi(t0); got != 0 {
		t.Errorf("phi before any heartbeat = %v", got)
	}
	// Intervals alternating 80 and 120 ms: mean 100 ms, σ 20 ms.
	var iv []time.Duration
	for i := 0; i < 200; i++ {
		iv = append(iv, 80*time.Millisecond, 120*time.Millisecond)
	}
	at := arrivals(iv)
	feed(d, at)
	last := at[len(at)-1]
	for _, tc := range []struct {
		after time.Duration
		want  float64
	}{
		{100 * time.Millisecond, 0.301},
		{140 * time.Millisecond, 1.64},
		{180 * time.Millisecond, 4.5},
	} {
		if got := d.Phi(last.Add(tc.after)); math.Abs(got-tc.want) > 0.05*tc.want+0.02 {
			t.Errorf("phi %v after the last heartbeat = %.3f, want about %.3f", tc.after, got, tc.want)
		}
	}
	prev := 0.0
	for ms := 0; ms < 1000; ms += 10 {
		p := d.Phi(last.Add(time.Duration(ms) * time.Millisecond))
		if p < prev || math.IsNaN(p) {
			t.Fatalf("phi not monotonic or NaN at %d ms: %v after %v", ms, p, prev)
		}
		prev = p
	}
}

// TestGrace: neither detector suspects a node before its grace period
// ends, however long it has been silent; after it they do.
func TestGrace(t *testing.T) {
	for name, d := range map[string]Detector{"phi": NewPhi(PhiConfig{}), "timeout": NewTimeout(500 * time.Millisecond)} {
		feed(d, arrivals(repeat(100*time.Millisecond, 50)))
		last := d.LastHeartbeat()
		d.Grace(last.Add(5 * time.Second))
		if d.Suspect(last.Add(4 * time.Second)) {
			t.Errorf("%s: suspected during its grace period", name)
		}
		if !d.Suspect(last.Add(5 * time.Second)) {
			t.Errorf("%s: not suspected after its grace period, 5 s silent", name)
		}
	}
}

// TestTimeout: suspected exactly from the timeout on; never before the
// first heartbeat.
func TestTimeout(t *testing.T) {
	d := NewTimeout(300 * time.Millisecond)
	if d.Suspect(t0.Add(time.Hour)) {
		t.Error("suspected before any heartbeat")
	}
	d.Heartbeat(t0)
	d.Heartbeat(t0.Add(-time.Second)) // late delivery of an older one
	if d.Suspect(t0.Add(299 * time.Millisecond)) {
		t.Error("suspected before the timeout")
	}
	if !d.Suspect(t0.Add(300 * time.Millisecond)) {
		t.Error("not suspected at the timeout")
	}
	if got := suspicionTime(t, d); got != 300*time.Millisecond {
		t.Errorf("suspicion time %v, want 300ms", got)
	}
}

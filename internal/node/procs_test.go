package node

import (
	"testing"
	"time"
)

// TestProcsPolicy: a server drops to one P only after procsIdleChecks
// idle checks in a row (a busy check in between starts the count again),
// checks often while on one P, and goes back to all of them at the first
// busy check; load between the two thresholds changes nothing.
func TestProcsPolicy(t *testing.T) {
	p := procsPolicy{max: 4}
	type want struct {
		procs int
		next  time.Duration
	}
	steps := []struct {
		cpu  float64
		want want
	}{
		{0.01, want{4, procsSlowEvery}},
		{0.01, want{4, procsSlowEvery}},
		{0.01, want{4, procsSlowEvery}},
		{0.50, want{4, procsSlowEvery}}, // busy: the count starts again
		{0.01, want{4, procsSlowEvery}},
		{0.01, want{4, procsSlowEvery}},
		{0.01, want{4, procsSlowEvery}},
		{0.01, want{1, procsFastEvery}}, // the fourth idle check in a row
		{0.10, want{1, procsFastEvery}}, // between the thresholds: stays
		{0.01, want{1, procsFastEvery}},
		{0.20, want{4, procsSlowEvery}}, // busy: all Ps at once
		{0.10, want{4, procsSlowEvery}}, // between: not idle
		{0.01, want{4, procsSlowEvery}},
	}
	for i, s := range steps {
		procs, next := p.step(s.cpu)
		if (want{procs, next}) != s.want {
			t.Fatalf("step %d (cpu %.2f): %d Ps, next check in %v; want %d, %v", i, s.cpu, procs, next, s.want.procs, s.want.next)
		}
	}
}

package node

import (
	"testing"
	"time"
)

// TestProcsPolicy: a server drops to one P only after procsIdleChecks
// idle checks in a row (a busy check in between starts the count again),
// checks often while on one P unless the last check found it quiet, and
// goes back to all of them at the first busy check; load between the two
// thresholds changes nothing.
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
		{0.03, want{1, procsFastEvery}},  // the fourth idle check in a row
		{0.10, want{1, procsFastEvery}},  // between the thresholds: stays
		{0.01, want{1, procsQuietEvery}}, // quiet: the next check later
		{0.03, want{1, procsFastEvery}},  // idle but not quiet: often
		{0.20, want{4, procsSlowEvery}},  // busy: all Ps at once
		{0.10, want{4, procsSlowEvery}},  // between: not idle
		{0.01, want{4, procsSlowEvery}},
	}
	for i, s := range steps {
		procs, next := p.step(s.cpu)
		if (want{procs, next}) != s.want {
			t.Fatalf("step %d (cpu %.2f): %d Ps, next check in %v; want %d, %v", i, s.cpu, procs, next, s.want.procs, s.want.next)
		}
	}
}

// TestPokeProcs: a poke asks for a check only on one P and only once the
// last check is procsFastEvery old, and never blocks.
func TestPokeProcs(t *testing.T) {
	drain := func() bool {
		select {
		case <-procsPokes:
			return true
		default:
			return false
		}
	}
	defer procsOne.Store(false)
	drain()
	now := time.Now().UnixNano()
	for _, tc := range []struct {
		name    string
		one     bool
		checked int64
		want    bool
	}{
		{"all Ps", false, now - int64(time.Second), false},
		{"one P, checked just now", true, now, false},
		{"one P, last check due", true, now - int64(procsFastEvery), true},
	} {
		procsOne.Store(tc.one)
		procsChecked.Store(tc.checked)
		PokeProcs()
		PokeProcs() // a second poke neither blocks nor queues another
		if got := drain(); got != tc.want {
			t.Errorf("%s: poked %v, want %v", tc.name, got, tc.want)
		}
		if drain() {
			t.Errorf("%s: two pokes queued", tc.name)
		}
	}
}

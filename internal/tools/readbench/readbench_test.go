package readbench

import (
	"math"
	"testing"
)

// TestRoundRatio: the ratio against any is taken round by round, so a
// round where the whole machine slowed moves both policies alike.
func TestRoundRatio(t *testing.T) {
	round := func(rates ...float64) *result { return &result{rounds: rates} }
	anyR := round(100, 50, 100, 100, 100)
	// Totals would give 0.71 (320/450): the slow round (50) weighs less.
	// Per round: 0.8, 0.8, 0.6, 0.7, 0.3.
	med, lo, hi, ok := roundRatio(round(80, 40, 60, 70, 30), anyR)
	if !ok || !near(med, 0.7) || !near(lo, 0.3) || !near(hi, 0.8) {
		t.Fatalf("roundRatio = %v %v %v %v, want 0.7 0.3 0.8 true", med, lo, hi, ok)
	}
	if med, _, _, ok := roundRatio(round(80, 40, 60, 70), round(100, 50, 100, 100)); !ok || !near(med, 0.75) {
		t.Fatalf("even rounds: median %v %v, want 0.75", med, ok)
	}
	for _, c := range []struct {
		name    string
		r, anyR *result
	}{
		{"no any", round(1), nil},
		{"rounds differ", round(1, 2), round(1)},
		{"any read nothing in a round", round(1, 2), round(1, 0)},
	} {
		if _, _, _, ok := roundRatio(c.r, c.anyR); ok {
			t.Errorf("%s: roundRatio ok, want not", c.name)
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

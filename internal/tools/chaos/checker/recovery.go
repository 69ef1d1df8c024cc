package checker

import (
	"fmt"
	"slices"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Recovery is how long writes took to succeed again after one fault was
// healed.
type Recovery struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	// Time is from the start of healing to the acknowledgement of the first
	// write (SET or INCR) invoked at or after it. Valid only if Recovered.
	Time      time.Duration `json:"time"`
	Recovered bool          `json:"recovered"`
}

// Recoveries measures, for every healed fault, the time until writes
// succeed again. A fault after whose healing writes were attempted but none
// succeeded is NotRecovered (and listed with Recovered false); one after
// which no write was attempted at all (the run ended) is neither measured
// nor a violation.
func Recoveries(h history.History) ([]Recovery, []Violation) {
	var rs []Recovery
	var vs []Violation
	for _, f := range h.Faults {
		if f.Heal == 0 {
			continue
		}
		r := Recovery{Kind: f.Kind, Name: f.Name}
		attempted := false
		first := int64(-1)
		for _, o := range h.Ops {
			if (o.Kind != history.Write && o.Kind != history.Incr) || o.Call < f.Heal {
				continue
			}
			attempted = true
			if o.Outcome == history.OK && (first < 0 || o.Return < first) {
				first = o.Return
			}
		}
		switch {
		case first >= 0:
			r.Time, r.Recovered = time.Duration(first-f.Heal), true
		case attempted:
			vs = append(vs, Violation{Kind: NotRecovered, At: f.Heal, Detail: fmt.Sprintf("no write succeeded after %s was healed at %v", f.Name, time.Duration(f.Heal))})
		default:
			continue
		}
		rs = append(rs, r)
	}
	return rs, vs
}

// Median is the median recovery time of the recovered faults of one kind,
// and how many there were.
func Median(rs []Recovery, kind string) (time.Duration, int) {
	var ts []time.Duration
	for _, r := range rs {
		if r.Kind == kind && r.Recovered {
			ts = append(ts, r.Time)
		}
	}
	if len(ts) == 0 {
		return 0, 0
	}
	slices.Sort(ts)
	if len(ts)%2 == 1 {
		return ts[len(ts)/2], len(ts)
	}
	return (ts[len(ts)/2-1] + ts[len(ts)/2]) / 2, len(ts)
}

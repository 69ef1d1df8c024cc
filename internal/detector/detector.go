// Package detector decides when a node that sends heartbeats should be
// suspected dead. It is pure: time is a parameter of every call, so the
// orchestrator drives it with its clock and tests with recorded arrivals.
//
// Two detectors share one interface:
//
//   - Phi is the phi accrual failure detector of Hayashibara et al. ("The φ
//     Accrual Failure Detector", 2004), as Cassandra and Akka use it. It
//     keeps the inter-arrival times of the last Window heartbeats, models
//     them as a normal distribution (mean μ, standard deviation σ, σ never
//     below MinStdDev) and reports φ(t) = −log10(P(the next heartbeat comes
//     later than t)). A node is suspected once φ reaches Threshold: with
//     Threshold 8 the detector is wrong about one time in 10^8 if arrivals
//     really are that distribution. Jittery links thus get more patience
//     than steady ones, by themselves.
//   - Timeout suspects a node once no heartbeat has come for a fixed time.
//
// Both honour a grace period (Grace): a node that was just promoted, or has
// just been seen for the first time, is not suspected before it ends, so a
// fresh leader busy taking over is not failed over again (Redis Sentinel
// does that; see issue 8).
//
// A Detector is not safe for concurrent use.
package detector

import (
	"fmt"
	"math"
	"time"
)

// Detector judges one monitored node.
type Detector interface {
	// Heartbeat records a heartbeat that arrived at now.
	Heartbeat(now time.Time)
	// Phi is the suspicion level at now: for Phi, φ; for Timeout, 0 before
	// the timeout and +Inf after it.
	Phi(now time.Time) float64
	// Suspect reports whether the node should be taken as dead at now.
	Suspect(now time.Time) bool
	// Grace makes Suspect false until the given time.
	Grace(until time.Time)
	// LastHeartbeat is when the last heartbeat arrived (zero if none).
	LastHeartbeat() time.Time
}

// PhiConfig configures a phi accrual detector.
type PhiConfig struct {
	// Threshold is the φ at which the node is suspected (default 8).
	Threshold float64
	// Window is how many inter-arrival times are kept (default 200).
	Window int
	// MinStdDev is the floor of σ, so that a perfectly steady history does
	// not make any small delay look fatal (default 50 ms).
	MinStdDev time.Duration
	// FirstInterval seeds the history before the second heartbeat: the
	// expected heartbeat interval (default 100 ms).
	FirstInterval time.Duration
}

func (c *PhiConfig) setDefaults() {
	if c.Threshold <= 0 {
		c.Threshold = 8
	}
	if c.Window <= 0 {
		c.Window = 200
	}
	if c.MinStdDev <= 0 {
		c.MinStdDev = 50 * time.Millisecond
	}
	if c.FirstInterval <= 0 {
		c.FirstInterval = 100 * time.Millisecond
	}
}

// Phi is a phi accrual failure detector. See the package comment.
type Phi struct {
	cfg   PhiConfig
	last  time.Time
	grace time.Time
	// intervals is a ring of the last Window inter-arrival times in
	// seconds; sum and sumSq keep the mean and variance in O(1).
	intervals  []float64
	next       int
	sum, sumSq float64
}

// NewPhi returns a phi accrual detector.
func NewPhi(cfg PhiConfig) *Phi {
	cfg.setDefaults()
	return &Phi{cfg: cfg}
}

// Heartbeat implements Detector.
func (p *Phi) Heartbeat(now time.Time) {
	if p.last.IsZero() {
		// One interval of the expected size, and one a standard
		// deviation on either side of it, as Akka seeds its history.
		mean := p.cfg.FirstInterval.Seconds()
		sd := mean / 4
		p.add(mean - sd)
		p.add(mean + sd)
		p.last = now
		return
	}
	if d := now.Sub(p.last); d > 0 {
		p.add(d.Seconds())
		p.last = now
	}
}

func (p *Phi) add(x float64) {
	if len(p.intervals) < p.cfg.Window {
		p.intervals = append(p.intervals, x)
	} else {
		old := p.intervals[p.next]
		p.sum -= old
		p.sumSq -= old * old
		p.intervals[p.next] = x
		p.next = (p.next + 1) % p.cfg.Window
	}
	p.sum += x
	p.sumSq += x * x
}

// stats returns the mean and standard deviation (floored) in seconds.
func (p *Phi) stats() (mean, sd float64) {
	n := float64(len(p.intervals))
	mean = p.sum / n
	variance := max(p.sumSq/n-mean*mean, 0)
	return mean, max(math.Sqrt(variance), p.cfg.MinStdDev.Seconds())
}

// Phi implements Detector. It is 0 before the first heartbeat.
func (p *Phi) Phi(now time.Time) float64 {
	if p.last.IsZero() {
		return 0
	}
	mean, sd := p.stats()
	return phi(now.Sub(p.last).Seconds(), mean, sd)
}

// phi is −log10 of the probability that a normal(mean, sd) interval is
// longer than elapsed, with the logistic approximation of the normal
// tail that Akka uses (error below 1e-4 over the range that matters, and
// no overflow far in the tail).
func phi(elapsed, mean, sd float64) float64 {
	y := (elapsed - mean) / sd
	e := math.Exp(-y * (1.5976 + 0.070566*y*y))
	if elapsed > mean {
		return -math.Log10(e / (1 + e))
	}
	return -math.Log10(1 - 1/(1+e))
}

// Suspect implements Detector.
func (p *Phi) Suspect(now time.Time) bool {
	return !now.Before(p.grace) && p.Phi(now) >= p.cfg.Threshold
}

// Grace implements Detector.
func (p *Phi) Grace(until time.Time) { p.grace = until }

// LastHeartbeat implements Detector.
func (p *Phi) LastHeartbeat() time.Time { return p.last }

func (p *Phi) String() string {
	if len(p.intervals) == 0 {
		return "phi(no heartbeats)"
	}
	mean, sd := p.stats()
	return fmt.Sprintf("phi(mean %v, sd %v, n %d)", time.Duration(mean*1e9), time.Duration(sd*1e9), len(p.intervals))
}

// Timeout suspects a node after a fixed time without a heartbeat.
type Timeout struct {
	after time.Duration
	last  time.Time
	grace time.Time
}

// NewTimeout returns a detector that suspects a node after d without a
// heartbeat (counted from the first heartbeat: before it, nothing is
// suspected).
func NewTimeout(d time.Duration) *Timeout { return &Timeout{after: d} }

// Heartbeat implements Detector.
func (t *Timeout) Heartbeat(now time.Time) {
	if now.After(t.last) {
		t.last = now
	}
}

// Phi implements Detector.
func (t *Timeout) Phi(now time.Time) float64 {
	if t.last.IsZero() || now.Sub(t.last) < t.after {
		return 0
	}
	return math.Inf(1)
}

// Suspect implements Detector.
func (t *Timeout) Suspect(now time.Time) bool {
	return !now.Before(t.grace) && t.Phi(now) > 0
}

// Grace implements Detector.
func (t *Timeout) Grace(until time.Time) { t.grace = until }

// LastHeartbeat implements Detector.
func (t *Timeout) LastHeartbeat() time.Time { return t.last }

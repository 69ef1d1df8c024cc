package failbench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Trial is the outcome of one kill.
type Trial struct {
	Target string
	N      int // 1-based
	Killed Node
	// Fault is what was done to it: "killed" or "paused".
	Fault string
	// KilledAt is when the SIGKILL (or SIGSTOP) was sent.
	KilledAt time.Time
	// LastOld is the last acknowledgement of a write invoked before the
	// kill, FirstNew the first of a write invoked after it; Unavailable is
	// FirstNew − LastOld, valid when HaveGap.
	LastOld, FirstNew time.Time
	Unavailable       time.Duration
	HaveGap           bool
	// WorkerGap is the median and max over workers of each worker's own
	// gap (WorkerGaps): how long a typical client, not the first, waited.
	WorkerGap Stat
	// Failover is the target's own account, nil if it gives none.
	Failover *Failover
	// Acked counts the acknowledged writes, Lost those missing when read
	// back; LostSample names a few of them.
	Acked, Lost int
	LostSample  []string
	Errors      map[ErrKind]int
	// ErrorSamples holds the first message of each error kind.
	ErrorSamples map[ErrKind]string
	// FalseFailovers counts the leader changes during the load before the
	// fault (nothing had failed).
	FalseFailovers int
	// Err is why the trial did not complete (the target's later trials are
	// not run); its figures are then partial.
	Err error
}

// Unavailability finds, in the acknowledgements of one trial, the last one
// of a write invoked before killed and the first one of a write invoked at
// or after it. ok is false if either is missing.
//
// The split is by invoke time, not acknowledgement time: a write the old
// leader acknowledged just before it died may be read by the client after
// the kill, and counts as the old leader's; a write invoked after the kill
// can only have been acknowledged by the new leader.
func Unavailability(acks []Ack, killed time.Time) (lastOld, firstNew time.Time, ok bool) {
	var haveOld, haveNew bool
	for _, a := range acks {
		if a.Invoked.Before(killed) {
			if !haveOld || a.Acked.After(lastOld) {
				lastOld, haveOld = a.Acked, true
			}
		} else if !haveNew || a.Acked.Before(firstNew) {
			firstNew, haveNew = a.Acked, true
		}
	}
	return lastOld, firstNew, haveOld && haveNew
}

// WorkerGaps is Unavailability per worker: for each worker with an
// acknowledgement on both sides of the kill, its first after minus its last
// before, in worker order.
func WorkerGaps(acks []Ack, killed time.Time) []time.Duration {
	byWorker := map[int][]Ack{}
	for _, a := range acks {
		byWorker[a.Worker] = append(byWorker[a.Worker], a)
	}
	ids := slices.Sorted(maps.Keys(byWorker))
	var gaps []time.Duration
	for _, id := range ids {
		if last, first, ok := Unavailability(byWorker[id], killed); ok {
			gaps = append(gaps, first.Sub(last))
		}
	}
	return gaps
}

// Median is the median of ds (the mean of the middle two for an even
// count), 0 for none.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Stat is the median and max of one time over a target's trials.
type Stat struct {
	N           int // trials that had the figure
	Median, Max time.Duration
}

func stat(ds []time.Duration) Stat {
	if len(ds) == 0 {
		return Stat{}
	}
	return Stat{N: len(ds), Median: Median(ds), Max: slices.Max(ds)}
}

// Summary is one target's figures over its trials.
type Summary struct {
	Target string
	// Trials counts the trials run, Failed those that did not complete.
	Trials, Failed                  int
	Unavailable, Detected, Promoted Stat
	// WorkerGap is the median over trials of each trial's median worker
	// gap, and the largest worker gap of any trial.
	WorkerGap Stat
	// Lost is the acknowledged writes lost per trial, LostTotal their sum,
	// Acked the acknowledged writes of all trials.
	Lost             []int
	LostTotal, Acked int
	// Promotions counts the promotions the target reported in all trials.
	Promotions int
	// FalseFailovers counts the leader changes before the faults, in all
	// trials; Saturation is the saturation phases run, whose failovers
	// are false too.
	FalseFailovers int
	Saturation     []Saturation
	Errors         map[ErrKind]int
}

// AllFalseFailovers is the false failovers of the trials and the
// saturation phases.
func (s Summary) AllFalseFailovers() int {
	n := s.FalseFailovers
	for _, sat := range s.Saturation {
		n += sat.Changes
	}
	return n
}

// Summarize computes a target's summary from its trials.
func Summarize(target string, trials []Trial) Summary {
	s := Summary{Target: target, Errors: map[ErrKind]int{}}
	var un, det, pro, wmed []time.Duration
	var wmax time.Duration
	for _, t := range trials {
		s.Trials++
		if t.Err != nil {
			s.Failed++
		}
		if t.HaveGap {
			un = append(un, t.Unavailable)
		}
		if t.WorkerGap.N > 0 {
			wmed = append(wmed, t.WorkerGap.Median)
			wmax = max(wmax, t.WorkerGap.Max)
		}
		if f := t.Failover; f != nil {
			if f.Detected > 0 {
				det = append(det, f.Detected)
			}
			if f.Promoted > 0 {
				pro = append(pro, f.Promoted)
			}
			s.Promotions += f.Promotions
		}
		s.FalseFailovers += t.FalseFailovers
		s.Lost = append(s.Lost, t.Lost)
		s.LostTotal += t.Lost
		s.Acked += t.Acked
		for k, n := range t.Errors {
			s.Errors[k] += n
		}
	}
	s.Unavailable, s.Detected, s.Promoted = stat(un), stat(det), stat(pro)
	if len(wmed) > 0 {
		s.WorkerGap = Stat{N: len(wmed), Median: Median(wmed), Max: wmax}
	}
	return s
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func errorsLine(errs map[ErrKind]int) string {
	var parts []string
	for _, k := range errKinds {
		if n := errs[k]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// PrintTrial prints one trial's line (and a second one for a failed trial or
// lost writes).
func PrintTrial(w io.Writer, t Trial) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s trial %2d: %s %s;", t.Target, t.N, t.Fault, t.Killed)
	if t.Failover != nil {
		f := t.Failover
		fmt.Fprintf(&b, " detection %s, promotion %s", optSecs(f.Detected), optSecs(f.Promoted))
		if f.Promotions != 1 {
			fmt.Fprintf(&b, " (%d promotions)", f.Promotions)
		}
		b.WriteString(";")
	}
	if t.HaveGap {
		fmt.Fprintf(&b, " unavailable %s;", secs(t.Unavailable))
	} else {
		b.WriteString(" unavailable n/a;")
	}
	if t.WorkerGap.N > 0 {
		fmt.Fprintf(&b, " per-worker gap median %s, max %s;", secs(t.WorkerGap.Median), secs(t.WorkerGap.Max))
	}
	fmt.Fprintf(&b, " acked %d, lost %d; errors: %s", t.Acked, t.Lost, errorsLine(t.Errors))
	if t.FalseFailovers > 0 {
		fmt.Fprintf(&b, "; %d FALSE FAILOVERS before the fault", t.FalseFailovers)
	}
	if t.Failover != nil && t.Failover.Detail != "" {
		fmt.Fprintf(&b, "; %s", t.Failover.Detail)
	}
	fmt.Fprintln(w, b.String())
	if len(t.LostSample) > 0 {
		fmt.Fprintf(w, "    lost keys (first %d): %s\n", len(t.LostSample), strings.Join(t.LostSample, " "))
	}
	if t.Err != nil {
		fmt.Fprintf(w, "    trial failed: %v\n", t.Err)
	}
}

func optSecs(d time.Duration) string {
	if d <= 0 {
		return "n/a"
	}
	return secs(d)
}

func statCells(s Stat) (string, string) {
	if s.N == 0 {
		return "n/a", "n/a"
	}
	return secs(s.Median), secs(s.Max)
}

// PrintSummary prints the summary table of every target and, when there are
// two or more, each later target's ratios to the first.
func PrintSummary(w io.Writer, sums []Summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\ttrials\tunavail median\tunavail max\tworker gap median\tworker gap max\tdetect median\tdetect max\tpromote median\tpromote max\tacked\tlost total\t")
	for _, s := range sums {
		um, ux := statCells(s.Unavailable)
		dm, dx := statCells(s.Detected)
		pm, px := statCells(s.Promoted)
		wm, wx := statCells(s.WorkerGap)
		trials := fmt.Sprint(s.Trials)
		if s.Failed > 0 {
			trials = fmt.Sprintf("%d (%d failed)", s.Trials, s.Failed)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t\n", s.Target, trials, um, ux, wm, wx, dm, dx, pm, px, s.Acked, s.LostTotal)
	}
	tw.Flush()
	for _, s := range sums {
		lost := make([]string, len(s.Lost))
		for i, n := range s.Lost {
			lost[i] = fmt.Sprint(n)
		}
		fmt.Fprintf(w, "%s: acknowledged writes lost per trial: %s (total %d of %d acknowledged); promotions %d; errors: %s\n",
			s.Target, strings.Join(lost, ", "), s.LostTotal, s.Acked, s.Promotions, errorsLine(s.Errors))
		sat := "no saturation phase"
		if len(s.Saturation) > 0 {
			var phases []string
			for _, p := range s.Saturation {
				phases = append(phases, fmt.Sprintf("%d in the %s %s phase", p.Changes, p.For, p.Load))
			}
			sat = strings.Join(phases, ", ")
		}
		fmt.Fprintf(w, "%s: false failovers %d (%d in the trials' load before the fault, %s)\n", s.Target, s.AllFalseFailovers(), s.FalseFailovers, sat)
	}
	if len(sums) < 2 {
		return
	}
	base := sums[0]
	for _, s := range sums[1:] {
		fmt.Fprintf(w, "ratio %s/%s: unavailability median %s, max %s; per-worker gap median %s; detection median %s; promotion median %s; lost writes %s\n",
			s.Target, base.Target,
			ratio(s.Unavailable.Median, base.Unavailable.Median, s.Unavailable.N > 0 && base.Unavailable.N > 0),
			ratio(s.Unavailable.Max, base.Unavailable.Max, s.Unavailable.N > 0 && base.Unavailable.N > 0),
			ratio(s.WorkerGap.Median, base.WorkerGap.Median, s.WorkerGap.N > 0 && base.WorkerGap.N > 0),
			ratio(s.Detected.Median, base.Detected.Median, s.Detected.N > 0 && base.Detected.N > 0),
			ratio(s.Promoted.Median, base.Promoted.Median, s.Promoted.N > 0 && base.Promoted.N > 0),
			ratioInt(s.LostTotal, base.LostTotal))
	}
}

// Ratio formats a/b as "0.42x", or "n/a" when either is missing or b is 0.
func ratio(a, b time.Duration, ok bool) string {
	if !ok || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func ratioInt(a, b int) string {
	if b == 0 {
		return fmt.Sprintf("%d vs %d", a, b)
	}
	return fmt.Sprintf("%.2fx (%d vs %d)", float64(a)/float64(b), a, b)
}

package failbench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The saturation phases (Options.Saturate, Options.SaturateBulk): before
// its trials, each target's leader is loaded as hard as the machine allows,
// first with redis-benchmark -c 50 -P 16 SET, then with bulk-load streams
// (bulkLoad: redis-cli --pipe's load, every stream writing SETs as fast as
// the server reads them, its replies read beside), and the failovers the
// target makes meanwhile are counted. Every one is false: nothing failed.
// A leader saturated by clients answers the failure detector late, and a
// detector tuned for quick detection must still not take that for a
// failure. The bulk load is the harsher of the two: redis-benchmark waits
// for each pipeline's 16 replies before it sends the next, a bulk stream
// never waits, so the leader holds far more writes in flight (its heap
// near the memory budget, the collector busiest).

// LeaderChangeCounter is implemented by a target that can count the
// leader changes it made (failovers, and a quorum failover's fence step)
// since a time. Targets without it are checked by comparing the leader
// before and after.
type LeaderChangeCounter interface {
	LeaderChanges(ctx context.Context, since time.Time) (int, error)
}

// DetectionMetricser is implemented by a target whose failure detector
// exports histograms of what it measured (tandem's orchestrator: probe
// round trips, the leader's silences, its lease lapses), read before and
// after the saturation phase.
type DetectionMetricser interface {
	DetectionMetrics(ctx context.Context) (Histograms, error)
}

// Saturation is the outcome of one target's saturation phase.
type Saturation struct {
	Target string
	// Load says what loaded the leader (loadBenchmark, loadBulk).
	Load   string
	Leader Node
	For    time.Duration
	// Rate is the phase's SET rate: redis-benchmark's overall rate, or
	// the bulk streams' replies per second (0 if none was measured).
	Rate float64
	// Errors counts the error replies of a bulk load (the leader refusing
	// writes: overloaded, out of memory).
	Errors int
	// Changes counts the leader changes during the phase (all false).
	Changes int
	// Detection is the target's detector histograms over the phase (nil
	// if it exports none).
	Detection Histograms
	Err       error
}

// benchmarkArgs is the load: the redis-benchmark -c 50 -P 16 SET
// over keys random keys.
func benchmarkArgs(addr string, keys int) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("failbench: leader address %q: %w", addr, err)
	}
	return []string{"-h", host, "-p", port, "-c", "50", "-P", "16", "-t", "set", "-n", "2000000000", "-r", strconv.Itoa(keys), "-d", "100", "-q"}, nil
}

// overallRate is the last "rps=R (overall: N)" rate in redis-benchmark's progress
// output (it prints one every 250 ms; a run that is stopped prints no
// summary).
var overallRate = regexp.MustCompile(`rps=[0-9.]+ \(overall: ([0-9.]+)\)`)

func lastRate(out []byte) float64 {
	m := overallRate.FindAllSubmatch(out, -1)
	if len(m) == 0 {
		return 0
	}
	r, _ := strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	return r
}

// The saturation phases' loads, as PrintSaturation names them.
const (
	loadBenchmark = "redis-benchmark -c 50 -P 16 SET"
	loadBulk      = "bulk-load streams"
)

// saturate runs the saturation phase on t: load (loadBenchmark or
// loadBulk) for d.
func saturate(ctx context.Context, o Options, t Target, load string, d time.Duration) Saturation {
	s := Saturation{Target: t.Name(), Load: load, For: d}
	if load == loadBulk {
		s.Load = fmt.Sprintf("%d %s", o.BulkStreams, loadBulk)
	}
	hctx, cancel := context.WithTimeout(ctx, o.HealthTimeout)
	defer cancel()
	if err := t.WaitHealthy(hctx); err != nil {
		s.Err = fmt.Errorf("saturation: %w", err)
		return s
	}
	leader, err := t.Leader(hctx)
	if err != nil {
		s.Err = fmt.Errorf("saturation: %w", err)
		return s
	}
	s.Leader = leader
	dm, _ := t.(DetectionMetricser)
	var before Histograms
	if dm != nil {
		if before, err = dm.DetectionMetrics(hctx); err != nil {
			o.Log.Warn("saturation: detection metrics before", "err", err)
			dm = nil
		}
	}
	start := time.Now()
	if load == loadBulk {
		var st bulkStats
		st, s.Err = bulkLoad(ctx, leader.Addr, o.BulkStreams, o.SaturateKeys, d)
		s.Errors = st.errors
		if secs := st.elapsed.Seconds(); secs > 0 {
			s.Rate = float64(st.replies) / secs
		}
	} else {
		s.Rate, s.Err = runBenchmark(ctx, leader.Addr, o.SaturateKeys, d)
	}
	cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
	defer ccancel()
	s.Changes, err = leaderChanges(cctx, t, start, leader)
	if err != nil && s.Err == nil {
		s.Err = fmt.Errorf("saturation: counting failovers: %w", err)
	}
	if dm != nil {
		if after, err := dm.DetectionMetrics(cctx); err != nil {
			o.Log.Warn("saturation: detection metrics after", "err", err)
		} else {
			s.Detection = after.Sub(before)
		}
	}
	return s
}

// runBenchmark runs redis-benchmark -c 50 -P 16 SET on addr over keys
// keys for d and returns its overall rate.
func runBenchmark(ctx context.Context, addr string, keys int, d time.Duration) (float64, error) {
	args, err := benchmarkArgs(addr, keys)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	cmd := exec.Command("redis-benchmark", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("saturation: redis-benchmark (bench/failover.sh installs it with redis-tools): %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	select {
	case werr := <-done:
		exited = true
		err = fmt.Errorf("saturation: redis-benchmark ended after %s: %v: %s", time.Since(start).Round(time.Millisecond), werr, tail(out.Bytes()))
	case <-time.After(d):
	case <-ctx.Done():
		err = ctx.Err()
	}
	if !exited {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // its process group
		<-done
	}
	return lastRate(out.Bytes()), err
}

// tail is the last line of a command's output, for an error.
func tail(out []byte) string {
	lines := strings.FieldsFunc(string(out), func(r rune) bool { return r == '\n' || r == '\r' })
	if len(lines) == 0 {
		return "(no output)"
	}
	return lines[len(lines)-1]
}

// leaderChanges counts t's leader changes since since; before is the
// leader then. Without a LeaderChangeCounter it compares the leader now
// with before (at most one change is seen that way).
func leaderChanges(ctx context.Context, t Target, since time.Time, before Node) (int, error) {
	if c, ok := t.(LeaderChangeCounter); ok {
		return c.LeaderChanges(ctx, since)
	}
	now, err := t.Leader(ctx)
	if err != nil {
		return 0, err
	}
	if now.ID != before.ID {
		return 1, nil
	}
	return 0, nil
}

// PrintSaturation prints a saturation phase's line, and the detector's
// histograms when the target has them.
func PrintSaturation(w io.Writer, s Saturation) {
	rate := "n/a"
	if s.Rate > 0 {
		rate = fmt.Sprintf("%.0f SET/s", s.Rate)
	}
	if s.Errors > 0 {
		rate += fmt.Sprintf(", %d error replies", s.Errors)
	}
	fmt.Fprintf(w, "%s saturation: %s on leader %s for %s (%s): %d false failovers\n",
		s.Target, s.Load, s.Leader, s.For, rate, s.Changes)
	for _, name := range s.Detection.Names() {
		fmt.Fprintf(w, "    %s\n", s.Detection.Line(name))
	}
	if s.Err != nil {
		fmt.Fprintf(w, "    saturation failed: %v\n", s.Err)
	}
}

// Histograms are Prometheus histograms by series (metric name without
// _bucket and its labels other than le), each as cumulative counts per
// upper bound.
type Histograms map[string]Histogram

// Histogram is one series: cumulative counts by upper bound (+Inf
// included).
type Histogram map[float64]float64

// ParseHistograms reads the _bucket series of the metrics whose names
// start with prefix from Prometheus text exposition.
func ParseHistograms(r io.Reader, prefix string) (Histograms, error) {
	h := Histograms{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		open, close := strings.IndexByte(line, '{'), strings.LastIndexByte(line, '}')
		if open < 0 || close < open || !strings.HasSuffix(line[:open], "_bucket") {
			continue
		}
		name := strings.TrimSuffix(line[:open], "_bucket")
		var rest []string
		le := math.NaN()
		for _, l := range strings.Split(line[open+1:close], ",") {
			if v, ok := strings.CutPrefix(l, `le="`); ok {
				v = strings.TrimSuffix(v, `"`)
				if v == "+Inf" {
					le = math.Inf(1)
				} else if f, err := strconv.ParseFloat(v, 64); err == nil {
					le = f
				}
				continue
			}
			if l != "" {
				rest = append(rest, l)
			}
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(line[close+1:]), 64)
		if err != nil || math.IsNaN(le) {
			return nil, fmt.Errorf("failbench: metrics line %q", line)
		}
		series := name
		if len(rest) > 0 {
			series += "{" + strings.Join(rest, ",") + "}"
		}
		if h[series] == nil {
			h[series] = Histogram{}
		}
		h[series][le] = n
	}
	return h, sc.Err()
}

// Sub is h − before, series by series: what was observed in between.
func (h Histograms) Sub(before Histograms) Histograms {
	out := Histograms{}
	for s, b := range h {
		d := Histogram{}
		for le, n := range b {
			d[le] = n - before[s][le]
		}
		out[s] = d
	}
	return out
}

// Add is h + o, series by series and bound by bound: the observations of
// both.
func (h Histograms) Add(o Histograms) Histograms {
	out := Histograms{}
	for _, src := range []Histograms{h, o} {
		for s, b := range src {
			if out[s] == nil {
				out[s] = Histogram{}
			}
			for le, n := range b {
				out[s][le] += n
			}
		}
	}
	return out
}

// Names are the series in order.
func (h Histograms) Names() []string {
	names := make([]string, 0, len(h))
	for s := range h {
		names = append(names, s)
	}
	sort.Strings(names)
	return names
}

// Line summarizes one series: its count, the bound its largest
// observation is under, and how many were over a few bounds.
func (h Histograms) Line(series string) string {
	b := h[series]
	les := make([]float64, 0, len(b))
	for le := range b {
		les = append(les, le)
	}
	slices.Sort(les)
	if len(les) == 0 {
		return series + ": none"
	}
	total := b[les[len(les)-1]]
	maxUnder := les[len(les)-1]
	for _, le := range les {
		if b[le] >= total {
			maxUnder = le
			break
		}
	}
	var over []string
	for _, le := range les {
		if le >= 0.1 && le <= 2 && b[le] < total {
			over = append(over, fmt.Sprintf(">%gms %d", le*1000, int(total-b[le])))
		}
	}
	p := func(q float64) string {
		for _, le := range les {
			if b[le] >= q*total {
				if math.IsInf(le, 1) {
					return "+Inf"
				}
				return fmt.Sprintf("%gms", le*1000)
			}
		}
		return "n/a"
	}
	overs := "none over 100ms"
	if len(over) > 0 {
		overs = strings.Join(over, ", ")
	}
	return fmt.Sprintf("%s: %d observed, p50 <= %s, p99 <= %s, max <= %gms; %s", series, int(total), p(0.5), p(0.99), maxUnder*1000, overs)
}

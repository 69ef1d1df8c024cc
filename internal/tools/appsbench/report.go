package appsbench

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tandemdb/tandem/internal/tools/pubsubbench"
)

// roundOrder is the order the targets run in round (from 0): as given in
// even rounds, reversed in odd ones, so that over the rounds each target
// runs as often first as second (a target that follows another meets its
// page cache and disk write-back).
func roundOrder(targets []string, round int) []string {
	out := slices.Clone(targets)
	if round%2 == 1 {
		slices.Reverse(out)
	}
	return out
}

// pooled is a target's rounds of one workload as one result: operations,
// seconds, latencies, CPU and system calls summed, so its rate and CPU per
// op weigh every round by its operations.
func pooled(rs []Result) Result {
	var p Result
	for _, r := range rs {
		p.Target, p.Workload = r.Target, r.Workload
		p.Ops += r.Ops
		p.Seconds += r.Seconds
		p.Lat = append(p.Lat, r.Lat...)
		p.Errors += r.Errors
		p.CPU += r.CPU
		if len(p.CPUs) < len(r.CPUs) {
			p.CPUs = append(p.CPUs, make([]time.Duration, len(r.CPUs)-len(p.CPUs))...)
		}
		for i, c := range r.CPUs {
			p.CPUs[i] += c
		}
		if len(p.Syscalls) < len(r.Syscalls) {
			p.Syscalls = append(p.Syscalls, make([]int64, len(r.Syscalls)-len(p.Syscalls))...)
		}
		for i, n := range r.Syscalls {
			p.Syscalls[i] += n
		}
		p.FollowP99, p.PacedP99 = max(p.FollowP99, r.FollowP99), max(p.PacedP99, r.PacedP99)
		p.Lost += r.Lost
		p.Dup += r.Dup
	}
	return p
}

// median is the middle of xs (the mean of the middle two for an even
// count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// ratioPair is one round's tandem/redis ratios of a workload: throughput
// (higher is better for tandem) and CPU per op (lower is better).
type ratioPair struct {
	Round     int
	Rate, CPU float64 // 0 when redis's side is 0
}

// row is one workload's line of the report.
type row struct {
	Workload string
	T, R     Result      // each target's rounds pooled
	Rounds   []ratioPair // the rounds both targets ran, in round order
	// Ratio and CPURatio are the medians of Rounds' ratios.
	Ratio, CPURatio float64
	// Verdict and CPUVerdict hold the medians against SET's: "MET",
	// "MISSED", or "" for SET itself or without SET.
	Verdict, CPUVerdict string
}

// summary is the report's figures, from the results alone.
type summary struct {
	Rows []row
	// SetRatio and SetCPURatio are SET's medians, the yardstick (0 without SET).
	SetRatio, SetCPURatio float64
}

// summarize pairs tandem's and redis's result of each workload round by
// round, takes the medians of the rounds' ratios and compares each
// workload's with SET's. It is the report's arithmetic, kept free of I/O.
func summarize(rs []Result, workloads []string) summary {
	type key struct {
		target, workload string
		round            int
	}
	by := map[key]Result{}
	rounds := 0
	for _, r := range rs {
		by[key{r.Target, r.Workload, r.Round}] = r
		rounds = max(rounds, r.Round+1)
	}
	var s summary
	for _, wl := range workloads {
		rw := row{Workload: wl}
		var ts, rds []Result
		var rates, cpus []float64
		for round := range rounds {
			t, okT := by[key{"tandem", wl, round}]
			r, okR := by[key{"redis", wl, round}]
			if okT {
				ts = append(ts, t)
			}
			if okR {
				rds = append(rds, r)
			}
			if !okT || !okR {
				continue
			}
			p := ratioPair{Round: round}
			if r.rate() > 0 {
				p.Rate = t.rate() / r.rate()
			}
			if r.cpuPerOp() > 0 {
				p.CPU = t.cpuPerOp() / r.cpuPerOp()
			}
			rw.Rounds = append(rw.Rounds, p)
			rates, cpus = append(rates, p.Rate), append(cpus, p.CPU)
		}
		if len(rw.Rounds) == 0 {
			continue
		}
		rw.T, rw.R = pooled(ts), pooled(rds)
		rw.Ratio, rw.CPURatio = median(rates), median(cpus)
		if wl == "set" {
			s.SetRatio, s.SetCPURatio = rw.Ratio, rw.CPURatio
		}
		s.Rows = append(s.Rows, rw)
	}
	for i := range s.Rows {
		rw := &s.Rows[i]
		if rw.Workload == "set" {
			continue
		}
		if s.SetRatio > 0 {
			rw.Verdict = "MISSED"
			if rw.Ratio >= s.SetRatio {
				rw.Verdict = "MET"
			}
		}
		if s.SetCPURatio > 0 {
			rw.CPUVerdict = "MISSED"
			if rw.CPURatio <= s.SetCPURatio {
				rw.CPUVerdict = "MET"
			}
		}
	}
	return s
}

func (r Result) rate() float64 {
	if r.Seconds == 0 {
		return 0
	}
	return float64(r.Ops) / r.Seconds
}

func (r Result) cpuPerOp() float64 {
	if r.Ops == 0 {
		return 0
	}
	return float64(r.CPU.Microseconds()) / float64(r.Ops)
}

// cpuSplit is the CPU per op of each process: "leader / follower
// follower" in µs.
func (r Result) cpuSplit() string {
	if r.Ops == 0 || len(r.CPUs) == 0 {
		return "-"
	}
	parts := make([]string, len(r.CPUs))
	for i, c := range r.CPUs {
		parts[i] = strconv.FormatFloat(float64(c.Microseconds())/float64(r.Ops), 'f', 0, 64)
	}
	return parts[0] + " / " + strings.Join(parts[1:], " ")
}

// syscallSplit is the read and write system calls per op of each
// process, as cpuSplit.
func (r Result) syscallSplit() string {
	if r.Ops == 0 || len(r.Syscalls) == 0 {
		return "-"
	}
	parts := make([]string, len(r.Syscalls))
	for i, n := range r.Syscalls {
		parts[i] = strconv.FormatFloat(float64(n)/float64(r.Ops), 'f', 1, 64)
	}
	return parts[0] + " / " + strings.Join(parts[1:], " ")
}

func line(r Result) string {
	s := fmt.Sprintf("%9.0f ops/s  p50 %v  p99 %v  server CPU %.0f us/op (leader / followers %s)  read+write syscalls/op %s  errors %d",
		r.rate(), pubsubbench.Pct(r.Lat, .5).Round(time.Microsecond), pubsubbench.Pct(r.Lat, .99).Round(time.Microsecond), r.cpuPerOp(), r.cpuSplit(), r.syscallSplit(), r.Errors)
	switch r.Workload {
	case "queue":
		s += fmt.Sprintf("  lost %d  popped twice %d  backlog mean %.1f max %d", r.Lost, r.Dup, r.BacklogMean, r.BacklogMax)
		if r.PopsHow != "" {
			s += "  blocked pops " + r.PopsHow
		}
	case "pubsub":
		s += fmt.Sprintf("  followers p99 %v  paced p99 %v", r.FollowP99.Round(time.Microsecond), r.PacedP99.Round(time.Microsecond))
	}
	return s
}

var labels = map[string]string{
	"set":     "SET",
	"multi":   "MULTI 5xSET/EXEC",
	"evalsha": "EVALSHA CAS",
	"queue":   "LPUSH/BLPOP jobs",
	"pubsub":  "PUBLISH x subs",
}

// report prints the summary of rs: per workload each target's rounds
// pooled, the medians of the rounds' ratios with their verdicts, then
// every round's ratios.
func report(w io.Writer, o Options, rs []Result) {
	s := summarize(rs, o.Workloads)
	if len(s.Rows) == 0 {
		fmt.Fprintf(w, "\nno workload ran on both tandem and redis: no ratios (the lines above are each round's figures)\n")
		return
	}
	fmt.Fprintf(w, "\napplications: %d clients (set, multi, evalsha), queue %d producers / %d consumers, pubsub %d subscribers over 3 servers and %d publishers; %d rounds (targets started afresh, their order swapped each round) of %v per workload after %v warmup\n",
		o.Clients, o.Producers, o.Consumers, o.Subscribers, o.Publishers, max(o.Rounds, 1), o.Duration, o.Warmup)
	fmt.Fprintf(w, "per target, its rounds pooled: ops/s, latency per call (queue: push to pop; pubsub: publish to receipt, all subscribers), CPU: the 3 server processes' user+system per op, split by process (leader / followers, primary / replicas)\n")
	fmt.Fprintf(w, "ratio and t/r: the median over the rounds of each round's tandem/redis throughput ratio and CPU per op ratio; vs SET compares those medians with SET's\n")
	fmt.Fprintf(w, "%-18s %12s %12s %6s | %9s %9s | %9s %9s %6s | %-14s %-14s | %7s %10s\n", "workload", "tandem ops/s", "redis ops/s", "ratio",
		"t p99", "r p99", "t us/op", "r us/op", "t/r", "t lead/follow", "r prim/repl", "vs SET", "CPU vs SET")
	for _, rw := range s.Rows {
		t, r := rw.T, rw.R
		fmt.Fprintf(w, "%-18s %12.0f %12.0f %6.2f | %9v %9v | %9.0f %9.0f %6.1f | %-14s %-14s | %7s %10s\n", labels[rw.Workload], t.rate(), r.rate(), rw.Ratio,
			pubsubbench.Pct(t.Lat, .99).Round(time.Microsecond), pubsubbench.Pct(r.Lat, .99).Round(time.Microsecond),
			t.cpuPerOp(), r.cpuPerOp(), rw.CPURatio, t.cpuSplit(), r.cpuSplit(), rw.Verdict, rw.CPUVerdict)
	}
	fmt.Fprintf(w, "each round's ratio / CPU t/r:\n")
	for _, rw := range s.Rows {
		parts := make([]string, len(rw.Rounds))
		for i, p := range rw.Rounds {
			parts[i] = fmt.Sprintf("r%d %.2f / %.1f", p.Round+1, p.Rate, p.CPU)
		}
		fmt.Fprintf(w, "  %-18s %s\n", labels[rw.Workload], strings.Join(parts, "   "))
	}
	for _, rw := range s.Rows {
		if rw.Workload == "pubsub" {
			fmt.Fprintf(w, "pubsub followers/replicas p99 (flood, the worst round): tandem %v, redis %v; paced 1000 msg/s p99: tandem %v, redis %v\n",
				rw.T.FollowP99.Round(time.Microsecond), rw.R.FollowP99.Round(time.Microsecond),
				rw.T.PacedP99.Round(time.Microsecond), rw.R.PacedP99.Round(time.Microsecond))
		}
	}
	if s.SetRatio > 0 {
		fmt.Fprintf(w, "target: each workload's median tandem/redis ratio at least SET's (%.2f); the steadier measure, its median CPU per op t/r at most SET's (%.1f)\n", s.SetRatio, s.SetCPURatio)
	}
}

package commitbench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Throughput is acknowledged writes per second over the measured window.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(len(r.Latencies)) / r.Elapsed.Seconds()
}

// Percentile is the p-th percentile latency (nearest rank), 0 with no
// writes. It sorts Latencies in place.
func (r *Result) Percentile(p float64) time.Duration {
	n := len(r.Latencies)
	if n == 0 {
		return 0
	}
	if !slices.IsSorted(r.Latencies) {
		slices.Sort(r.Latencies)
	}
	i := int(p/100*float64(n)+0.5) - 1
	return r.Latencies[min(max(i, 0), n-1)]
}

// cpuPerWrite is a role's CPU time per acknowledged write, in µs.
func (m *Measurement) cpuPerWrite(c RoleCPU) float64 {
	writes := m.Throughput() * m.CPUWindow.Seconds()
	if writes <= 0 {
		return 0
	}
	return float64(c.CPU.Microseconds()) / writes
}

// Report prints the table of measurements and, for every tandem target,
// its ratios to every peer: throughput (higher is better for tandem) and
// p99 (lower is better).
func Report(w io.Writer, l Load, ms []Measurement) {
	fmt.Fprintf(w, "commit benchmark: %d clients, one write at a time each, %d-byte values, %d keys, %v measured per target after %v of warmup, fsync on everywhere\n\n",
		l.Clients, l.ValueSize, l.Keyspace, l.Duration, l.Warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TARGET\tWRITES/S\tP50\tP99\tP99.9\tERRORS\tSERVER CPU µs/write")
	for i := range ms {
		m := &ms[i]
		var cpu []string
		for _, c := range m.CPU {
			cpu = append(cpu, fmt.Sprintf("%s %.1f", roleLabel(c), m.cpuPerWrite(c)))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%v\t%v\t%v\t%d\t%s\n", m.Name, m.Throughput(),
			round(m.Percentile(50)), round(m.Percentile(99)), round(m.Percentile(99.9)), m.Errors, strings.Join(cpu, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, m := range ms {
		fmt.Fprintf(w, "  %s: %s\n", m.Name, m.Describe)
		for _, n := range m.Notes {
			fmt.Fprintf(w, "    %s\n", n)
		}
	}
	var tandem, peers []*Measurement
	for i := range ms {
		if strings.HasPrefix(ms[i].Name, "tandem") {
			tandem = append(tandem, &ms[i])
		} else {
			peers = append(peers, &ms[i])
		}
	}
	if len(tandem) == 0 || len(peers) == 0 {
		return
	}
	fmt.Fprintln(w, "\ntandem / peer: throughput ratio (higher is better), p99 ratio (lower is better)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{""}
	for _, p := range peers {
		head = append(head, p.Name)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, t := range tandem {
		row := []string{t.Name}
		for _, p := range peers {
			row = append(row, fmt.Sprintf("%s / p99 %s", ratio(t.Throughput(), p.Throughput()),
				ratio(float64(t.Percentile(99)), float64(p.Percentile(99)))))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
}

func roleLabel(c RoleCPU) string {
	if c.Processes > 1 {
		return fmt.Sprintf("%d %ss", c.Processes, c.Role)
	}
	return c.Role
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

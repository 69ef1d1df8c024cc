package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"text/tabwriter"
)

// Report is what `tandem status` prints. The JSON field names are a stable
// contract (DESIGN.md §10).
type Report struct {
	Epoch  uint64       `json:"epoch"`
	Leader string       `json:"leader"`
	Proxy  string       `json:"proxy"`
	Nodes  []NodeReport `json:"nodes"`
}

// NodeReport is one node's line in a Report.
type NodeReport struct {
	ID         string  `json:"id"`
	Role       string  `json:"role"`
	Addr       string  `json:"addr"`
	PID        int     `json:"pid"`
	State      string  `json:"state"` // leading, seeding, catching-up, streaming, down
	DurableLSN uint64  `json:"durable_lsn"`
	AppliedLSN uint64  `json:"applied_lsn"`
	LagLSN     uint64  `json:"lag_lsn"`
	LagSeconds float64 `json:"lag_seconds"`
	Sync       bool    `json:"sync"`
	SeedPct    float64 `json:"seed_percent,omitempty"`
}

// ReadFile reads the cluster file in dir.
func ReadFile(dir string) (File, error) {
	var f File
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	if err != nil {
		return f, fmt.Errorf("cluster: no cluster in %s (is `tandem up` running there?): %w", dir, err)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("cluster: %s: %w", FileName, err)
	}
	return f, nil
}

// Collect asks every node of the cluster file for its status; a node that
// does not answer is reported down.
func Collect(ctx context.Context, f File) Report {
	r := Report{Proxy: f.Proxy, Nodes: make([]NodeReport, len(f.Nodes))}
	var wg sync.WaitGroup
	for i, n := range f.Nodes {
		wg.Go(func() {
			nr := NodeReport{ID: n.Name, Addr: n.RESPAddr, PID: n.PID, State: "down"}
			if s, err := FetchStatus(ctx, n.HTTPAddr); err == nil {
				nr.Role, nr.State, nr.PID = s.Role, s.State, s.PID
				nr.DurableLSN, nr.AppliedLSN, nr.LagLSN, nr.LagSeconds = s.DurableLSN, s.AppliedLSN, s.LagLSN, s.LagSeconds
				nr.SeedPct = s.SeedPct
				if s.Role == "leader" {
					r.Leader = n.Name
					r.Epoch = max(r.Epoch, s.Epoch)
				}
			}
			r.Nodes[i] = nr
		})
	}
	wg.Wait()
	// A follower's lag is measured against the leader's last LSN.
	for i := range r.Nodes {
		if r.Nodes[i].Role == "leader" {
			for j := range r.Nodes {
				if r.Nodes[j].Role == "follower" && r.Nodes[i].DurableLSN > r.Nodes[j].AppliedLSN {
					r.Nodes[j].LagLSN = max(r.Nodes[j].LagLSN, r.Nodes[i].DurableLSN-r.Nodes[j].AppliedLSN)
				}
			}
		}
	}
	return r
}

// PrintTable writes r as a readable table.
func (r Report) PrintTable(w io.Writer) {
	leader := r.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "epoch %d, leader %s", r.Epoch, leader)
	if r.Proxy != "" {
		fmt.Fprintf(w, ", proxy %s", r.Proxy)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tADDR\tPID\tSTATE\tDURABLE\tAPPLIED\tLAG LSN\tLAG S\tSYNC")
	for _, n := range r.Nodes {
		role, state := n.Role, n.State
		if role == "" {
			role = "-"
		}
		if state == "seeding" && n.SeedPct > 0 {
			state = fmt.Sprintf("seeding %.0f%%", n.SeedPct)
		}
		pid := "-"
		if n.PID != 0 {
			pid = fmt.Sprint(n.PID)
		}
		sync := "async"
		if n.Sync {
			sync = "sync"
		}
		if n.Role == "leader" {
			sync = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.3f\t%s\n", n.ID, role, n.Addr, pid, state, n.DurableLSN, n.AppliedLSN, n.LagLSN, n.LagSeconds, sync)
	}
	tw.Flush()
}

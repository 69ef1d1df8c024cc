package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"text/tabwriter"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/dataformat"
	"github.com/tandemdb/tandem/internal/orchestrator/orchapi"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

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

// Collect asks every node of the cluster file for its status and builds the
// cluster document (`tandem status --json`); a node that does not answer is
// reported down.
func Collect(ctx context.Context, f File) statusdoc.Cluster {
	r := statusdoc.Cluster{Proxy: f.Proxy, Nodes: make([]statusdoc.ClusterNode, len(f.Nodes))}
	var wg sync.WaitGroup
	for i, n := range f.Nodes {
		wg.Go(func() {
			nr := statusdoc.ClusterNode{ID: n.Name, Addr: n.RESPAddr, PID: n.PID, State: statusdoc.StateDown}
			s, err := FetchStatus(ctx, n.HTTPAddr)
			if err != nil && n.DataDir != "" {
				// A node whose data dir this build refuses (a newer
				// format, say) exits at every start: say why.
				if ferr := dataformat.Check(nil, n.DataDir); ferr != nil {
					nr.Reason = ferr.Error()
				}
			}
			if err == nil {
				nr.Role, nr.State, nr.Reason, nr.PID = s.Role, s.State, s.Reason, s.PID
				nr.DurableLSN, nr.AppliedLSN, nr.LagLSN, nr.LagSeconds = s.DurableLSN, s.AppliedLSN, s.LagLSN, s.LagSeconds
				nr.SeedPercent, nr.RollbackFiles = s.SeedPercent, s.RollbackFiles
				nr.LogBytes, nr.DiskBytes = s.LogBytes, s.DiskBytes
				if s.Degraded {
					nr.Reason = "SYNC FALLBACK: acknowledging in async mode"
				}
				if s.Role == statusdoc.RoleLeader {
					r.Leader = n.Name
					r.Epoch = max(r.Epoch, s.Epoch)
				}
			}
			r.Nodes[i] = nr
		})
	}
	if f.ProxyHTTP != "" {
		wg.Go(func() {
			if ps, err := FetchProxyStatus(ctx, f.ProxyHTTP); err == nil {
				r.ProxyStatus = &ps
			}
		})
	}
	wg.Wait()
	if len(f.Etcd) > 0 {
		collectControl(ctx, f, &r)
	}
	// A follower's lag is measured against the leader's last LSN.
	for i := range r.Nodes {
		if r.Nodes[i].Role == statusdoc.RoleLeader {
			for j := range r.Nodes {
				if r.Nodes[j].Role == statusdoc.RoleFollower && r.Nodes[i].DurableLSN > r.Nodes[j].AppliedLSN {
					r.Nodes[j].LagLSN = max(r.Nodes[j].LagLSN, r.Nodes[i].DurableLSN-r.Nodes[j].AppliedLSN)
				}
			}
		}
	}
	return r
}

// PrintTable writes the cluster document r as a readable table.
func PrintTable(w io.Writer, r statusdoc.Cluster) {
	leader := r.Leader
	if leader == "" {
		leader = "(none)"
	}
	fmt.Fprintf(w, "epoch %d, leader %s", r.Epoch, leader)
	if r.Proxy != "" {
		fmt.Fprintf(w, ", proxy %s", r.Proxy)
		if ps := r.ProxyStatus; ps != nil {
			zone := ""
			if ps.Zone != "" {
				zone = "zone " + ps.Zone + ", "
			}
			fmt.Fprintf(w, " (%spolicy %s, %d reads, %d cross-zone)", zone, ps.Policy, ps.Reads, ps.ReadsCrossZone)
		}
	}
	if r.EtcdOK != nil {
		o := r.Orchestrator
		if o == "" {
			o = "(none answers)"
		}
		fmt.Fprintf(w, ", orchestrator %s, etcd ok %v", o, *r.EtcdOK)
	}
	if r.FailoverPolicy != "" {
		fmt.Fprintf(w, ", failover %s", r.FailoverPolicy)
	}
	fmt.Fprintln(w)
	if r.TopologyError != "" {
		fmt.Fprintf(w, "TOPOLOGY DOES NOT DECODE (no failover until repaired with tandem mode set): %s\n", r.TopologyError)
	}
	if r.FailoverPolicyError != "" {
		fmt.Fprintf(w, "FAILOVER POLICY UNREADABLE (no automatic failover): %s; set it: tandem failover-policy set automatic|manual\n", r.FailoverPolicyError)
	}
	if d := r.LeaderDown; d != nil {
		fmt.Fprintf(w, "LEADER %s DOWN since %s (%s)", d.Leader, d.Since, d.Reason)
		if d.WaitingForOperator {
			fmt.Fprint(w, ", waiting for an operator: tandem promote NODE, or bring it back")
		} else {
			fmt.Fprint(w, ", failing over")
		}
		fmt.Fprintln(w)
	}
	if lf := r.LastFailover; lf != nil {
		fmt.Fprintf(w, "last change: %s %s, %s -> %s, epoch %d -> %d (%s)", lf.Kind, lf.At, orNone(lf.From), orNone(lf.To), lf.OldEpoch, lf.NewEpoch, lf.Reason)
		if lf.DetectionMs > 0 {
			fmt.Fprintf(w, ", detection %.0f ms", lf.DetectionMs)
		}
		if lf.PromotionMs > 0 {
			fmt.Fprintf(w, ", promotion %.0f ms", lf.PromotionMs)
		}
		if lf.PauseMs > 0 {
			fmt.Fprintf(w, ", pause %.0f ms", lf.PauseMs)
		}
		if lf.LostWrites > 0 {
			fmt.Fprintf(w, ", %d entries lost", lf.LostWrites)
		}
		fmt.Fprintln(w)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	// A ZONE column only when some node has a zone.
	zones := slices.ContainsFunc(r.Nodes, func(n statusdoc.ClusterNode) bool { return n.Zone != "" })
	addr := func(n statusdoc.ClusterNode) string {
		if zones {
			return n.Addr + "\t" + orNone(n.Zone)
		}
		return n.Addr
	}
	head := "ADDR"
	if zones {
		head = "ADDR\tZONE"
	}
	fmt.Fprintln(tw, "ID\tROLE\t"+head+"\tPID\tSTATE\tDURABLE\tAPPLIED\tLAG LSN\tLAG S\tSYNC\tPHI\tHEARD\tLOG MB\tDISK MB")
	for _, n := range r.Nodes {
		role, state := n.Role, n.State
		if role == "" {
			role = "-"
		}
		if state == "seeding" && n.SeedPercent > 0 {
			state = fmt.Sprintf("seeding %.0f%%", n.SeedPercent)
		}
		if n.Reason != "" {
			state = fmt.Sprintf("%s (%s)", state, n.Reason)
		}
		if n.RollbackFiles > 0 {
			state = fmt.Sprintf("%s, %d rollback files", state, n.RollbackFiles)
		}
		pid := "-"
		if n.PID != 0 {
			pid = fmt.Sprint(n.PID)
		}
		sync := "async"
		if n.Sync {
			sync = "sync"
		}
		if n.Role == statusdoc.RoleLeader || n.Role == statusdoc.RoleFenced {
			sync = "-"
		}
		phi, heard := "-", "-"
		if h := n.Health; h != nil {
			phi, heard = fmt.Sprintf("%.1f", h.Phi), fmt.Sprintf("%.0fms", h.LastHeartbeatMs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%.3f\t%s\t%s\t%s\t%.1f\t%.1f\n", n.ID, role, addr(n), pid, state, n.DurableLSN, n.AppliedLSN, n.LagLSN, n.LagSeconds, sync, phi, heard,
			float64(n.LogBytes)/(1<<20), float64(n.DiskBytes)/(1<<20))
	}
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// collectControl fills in what the control plane knows: the topology's
// epoch and leader, and the active orchestrator's view.
func collectControl(ctx context.Context, f File, r *statusdoc.Cluster) {
	etcdOK := false
	r.EtcdOK = &etcdOK
	cli, err := coord.Dial(f.Etcd)
	if err != nil {
		return
	}
	defer cli.Close()
	store := coord.New(cli, "tandem")
	if ms, err := store.Members(ctx); err == nil {
		for _, m := range ms {
			for i := range r.Nodes {
				if r.Nodes[i].ID == m.ID {
					r.Nodes[i].Zone = m.Zone
				}
			}
		}
	}
	if p, err := store.FailoverPolicy(ctx); err == nil {
		r.FailoverPolicy = string(p)
	} else {
		r.FailoverPolicyError = err.Error()
	}
	if t, ok, err := store.Topology(ctx); err == nil {
		if ok {
			r.Epoch, r.Leader = t.Epoch, t.Leader
			for i := range r.Nodes {
				r.Nodes[i].Sync = slices.Contains(t.SyncSet, r.Nodes[i].ID)
			}
		}
	} else if errors.Is(err, coord.ErrBadTopology) {
		r.TopologyError = err.Error()
	} else {
		return
	}
	o, err := store.ActiveOrchestrator(ctx)
	if err != nil {
		return
	}
	st, err := orchapi.Status(ctx, o.HTTPAddr)
	if err != nil {
		return
	}
	r.Orchestrator, r.LastFailover, r.LeaderDown = st.ID, st.LastFailover, st.LeaderDown
	etcdOK = st.EtcdOK
	for _, h := range st.Nodes {
		for i := range r.Nodes {
			if r.Nodes[i].ID == h.ID {
				hh := h.Health
				r.Nodes[i].Health = &hh
			}
		}
	}
}

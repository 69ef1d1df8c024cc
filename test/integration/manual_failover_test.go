package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestManualFailoverPolicy, as an operator would: `tandem failover-policy
// set manual`, the leader is killed (and not restarted), `tandem status`
// says it is down and waiting for an operator while the topology keeps
// it, the orchestrator's hook command is told, and `tandem promote`
// then makes another node lead.
func TestManualFailoverPolicy(t *testing.T) {
	hookFile := filepath.Join(t.TempDir(), "hook.jsonl")
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.RestartDelay = 0 // a killed node stays down
		cfg.OrchestratorArgs = []string{"--hook-command", "cat >> " + hookFile}
	})
	ctx := context.Background()
	out, err := runTandem(t, "failover-policy", "set", "manual", "--dir", c.Dir())
	if err != nil || !strings.Contains(out, "failover policy manual (was automatic)") {
		t.Fatalf("failover-policy set manual: %v\n%s", err, out)
	}
	if out, err := runTandem(t, "failover-policy", "--dir", c.Dir()); err != nil || strings.TrimSpace(out) != "manual" {
		t.Fatalf("failover-policy: %v\n%s", err, out)
	}
	old, epoch, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldName := c.Node(old).Name
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	var st statusdoc.Cluster
	testutil.Eventually(t, "status: the leader down, waiting for an operator", 15*time.Second, func() (bool, string) {
		out, err := runTandem(t, "status", "--json", "--dir", c.Dir())
		if err != nil || json.Unmarshal([]byte(out), &st) != nil {
			return false, fmt.Sprint(err, out)
		}
		d := st.LeaderDown
		return st.FailoverPolicy == "manual" && d != nil && d.Leader == oldName && d.WaitingForOperator, out
	})
	if st.Leader != oldName || st.Epoch != epoch {
		t.Fatalf("failed over under the manual policy: leader %s epoch %d, was %s %d", st.Leader, st.Epoch, oldName, epoch)
	}
	table, err := runTandem(t, "status", "--dir", c.Dir())
	if err != nil || !strings.Contains(table, "LEADER "+oldName+" DOWN since") || !strings.Contains(table, "waiting for an operator") {
		t.Fatalf("status table: %v\n%s", err, table)
	}
	var to string
	for _, n := range c.Nodes() {
		if n.ID != old {
			to = n.Name
			break
		}
	}
	if out, err := runTandem(t, "promote", to, "--dir", c.Dir()); err != nil {
		t.Fatalf("promote %s: %v\n%s", to, err, out)
	}
	if _, err := c.WaitLeader(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if now, _, _ := c.Leader(ctx); c.Node(now).Name != to {
		t.Fatalf("leader %s after promoting %s", c.Node(now).Name, to)
	}
	testutil.Eventually(t, "the hook told of the detection and the promotion", 10*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(hookFile)
		var kinds []string
		for l := range strings.Lines(string(b)) {
			var ev struct {
				Kind      string `json:"event"`
				OldLeader string `json:"old_leader"`
				NewLeader string `json:"new_leader"`
			}
			if json.Unmarshal([]byte(l), &ev) == nil {
				kinds = append(kinds, ev.Kind+" "+ev.OldLeader+">"+ev.NewLeader)
			}
		}
		want := fmt.Sprintf("[detected %s> pre_promote %s>%s post_promote %s>%s]", oldName, oldName, to, oldName, to)
		return fmt.Sprint(kinds) == want, fmt.Sprint(kinds, " want ", want)
	})
}

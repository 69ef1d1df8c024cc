package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/statusdoc"
)

// serveStatus serves doc as /status and returns its host:port.
func serveStatus(t *testing.T, doc statusdoc.Node) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestCollect builds the cluster document from the nodes' documents: the
// leader names the epoch, a follower's lag is measured against the leader's
// last LSN, a fenced node keeps its reason, and a node that does not answer
// is down.
func TestCollect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := ln.Addr().String()
	ln.Close()
	f := File{Proxy: "127.0.0.1:6380", Nodes: []NodeInfo{
		{Name: "n1", RESPAddr: "r1", HTTPAddr: serveStatus(t, statusdoc.Node{Role: statusdoc.RoleLeader, State: statusdoc.StateLeading, Epoch: 4, PID: 11, DurableLSN: 20, AppliedLSN: 20})},
		{Name: "n2", RESPAddr: "r2", HTTPAddr: serveStatus(t, statusdoc.Node{Role: statusdoc.RoleFollower, State: "seeding", Epoch: 4, PID: 12, SeedPercent: 40})},
		{Name: "n3", RESPAddr: "r3", HTTPAddr: serveStatus(t, statusdoc.Node{Role: statusdoc.RoleFenced, State: statusdoc.StateFenced, Reason: "lead failed", Epoch: 5, PID: 13})},
		{Name: "n4", RESPAddr: "r4", HTTPAddr: downAddr, PID: 14},
	}}
	got := Collect(context.Background(), f)
	want := statusdoc.Cluster{Epoch: 4, Leader: "n1", Proxy: "127.0.0.1:6380", Nodes: []statusdoc.ClusterNode{
		{ID: "n1", Role: statusdoc.RoleLeader, Addr: "r1", PID: 11, State: statusdoc.StateLeading, DurableLSN: 20, AppliedLSN: 20},
		{ID: "n2", Role: statusdoc.RoleFollower, Addr: "r2", PID: 12, State: "seeding", LagLSN: 20, SeedPercent: 40},
		{ID: "n3", Role: statusdoc.RoleFenced, Addr: "r3", PID: 13, State: statusdoc.StateFenced, Reason: "lead failed"},
		{ID: "n4", Addr: "r4", PID: 14, State: statusdoc.StateDown},
	}}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("Collect =\n %s\nwant\n %s", gb, wb)
	}
	var table bytes.Buffer
	PrintTable(&table, got)
	for _, s := range []string{"epoch 4, leader n1, proxy 127.0.0.1:6380", "seeding 40%", "fenced (lead failed)", "down"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table has no %q:\n%s", s, table.String())
		}
	}
}

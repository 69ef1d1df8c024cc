package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/dataformat"
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
// is down (with the reason when its data dir's format is refused).
func TestCollect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := ln.Addr().String()
	ln.Close()
	// n5 is down because its data dir is of a newer format.
	newerDir := t.TempDir()
	if err := dataformat.Write(nil, newerDir, dataformat.Current+1); err != nil {
		t.Fatal(err)
	}
	f := File{Proxy: "127.0.0.1:6380", Nodes: []NodeInfo{
		{Name: "n1", RESPAddr: "r1", HTTPAddr: serveStatus(t, statusdoc.Node{Role: statusdoc.RoleLeader, State: statusdoc.StateLeading, Epoch: 4, PID: 11, DurableLSN: 20, AppliedLSN: 20})},
		{Name: "n2", RESPAddr: "r2", HTTPAddr: serveStatus(t, statusdoc.Node{Role: statusdoc.RoleFollower, State: "seeding", Epoch: 4, PID: 12, SeedPercent: 40})},
		{Name: "n3", RESPAddr: "r3", HTTPAddr: serveStatus(t, statusdoc.Node{Role: statusdoc.RoleFenced, State: statusdoc.StateFenced, Reason: "lead failed", Epoch: 5, PID: 13})},
		{Name: "n4", RESPAddr: "r4", HTTPAddr: downAddr, PID: 14},
		{Name: "n5", RESPAddr: "r5", HTTPAddr: downAddr, DataDir: newerDir},
	}}
	got := Collect(context.Background(), f)
	want := statusdoc.Cluster{Epoch: 4, Leader: "n1", Proxy: "127.0.0.1:6380", Nodes: []statusdoc.ClusterNode{
		{ID: "n1", Role: statusdoc.RoleLeader, Addr: "r1", PID: 11, State: statusdoc.StateLeading, DurableLSN: 20, AppliedLSN: 20},
		{ID: "n2", Role: statusdoc.RoleFollower, Addr: "r2", PID: 12, State: "seeding", LagLSN: 20, SeedPercent: 40},
		{ID: "n3", Role: statusdoc.RoleFenced, Addr: "r3", PID: 13, State: statusdoc.StateFenced, Reason: "lead failed"},
		{ID: "n4", Addr: "r4", PID: 14, State: statusdoc.StateDown},
		{ID: "n5", Addr: "r5", State: statusdoc.StateDown, Reason: dataformat.CheckVersion(newerDir, dataformat.Current+1).Error()},
	}}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("Collect =\n %s\nwant\n %s", gb, wb)
	}
	var table bytes.Buffer
	PrintTable(&table, got)
	for _, s := range []string{"epoch 4, leader n1, proxy 127.0.0.1:6380", "seeding 40%", "fenced (lead failed)", "down", fmt.Sprintf("down (dataformat: data dir from a newer format: %s is data dir format %d", newerDir, dataformat.Current+1)} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table has no %q:\n%s", s, table.String())
		}
	}
}

// TestPrintTableLeaderDown: under the manual failover policy the table
// says which leader is down since when, and that an operator is awaited.
func TestPrintTableLeaderDown(t *testing.T) {
	ok := true
	r := statusdoc.Cluster{Epoch: 4, Leader: "n1", EtcdOK: &ok, Orchestrator: "o1", FailoverPolicy: "manual",
		LeaderDown:   &statusdoc.LeaderDown{Leader: "n1", Epoch: 4, Since: "2026-12-05T21:00:00Z", Reason: "leader refused 2 probes in a row (process gone)", WaitingForOperator: true},
		LastFailover: &statusdoc.Failover{Kind: "detected", At: "2026-12-05T21:00:00.1Z", From: "n1", OldEpoch: 4, NewEpoch: 4, Reason: "leader refused 2 probes in a row (process gone)"}}
	var table bytes.Buffer
	PrintTable(&table, r)
	for _, s := range []string{
		"orchestrator o1, etcd ok true, failover manual\n",
		"LEADER n1 DOWN since 2026-12-05T21:00:00Z (leader refused 2 probes in a row (process gone)), waiting for an operator: tandem promote NODE",
		"last change: detected 2026-12-05T21:00:00.1Z, n1 -> (none), epoch 4 -> 4",
	} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table has no %q:\n%s", s, table.String())
		}
	}
	r.LeaderDown.WaitingForOperator, r.FailoverPolicy, r.FailoverPolicyError = false, "", `coord: failover policy "sometimes": want automatic or manual`
	table.Reset()
	PrintTable(&table, r)
	for _, s := range []string{"), failing over\n", "FAILOVER POLICY UNREADABLE (no automatic failover): coord: failover policy \"sometimes\""} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table has no %q:\n%s", s, table.String())
		}
	}
}

// TestCollectProxyAndZones: the proxy's /status (its zone and cross-zone
// reads) is in the document and the table's first line, and nodes' zones
// get a ZONE column.
func TestCollectProxyAndZones(t *testing.T) {
	ps := statusdoc.Proxy{Zone: "b", Policy: "ryw", Leader: "n1", Reads: 300, ReadsCrossZone: 120, ReadsByNode: map[string]uint64{"n1": 120, "n2": 180}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(ps)
	}))
	t.Cleanup(srv.Close)
	f := File{Proxy: "127.0.0.1:6380", ProxyHTTP: strings.TrimPrefix(srv.URL, "http://"), Nodes: []NodeInfo{
		{Name: "n1", RESPAddr: "r1", HTTPAddr: serveStatus(t, statusdoc.Node{Role: statusdoc.RoleLeader, State: statusdoc.StateLeading, Epoch: 4, PID: 11})},
	}}
	got := Collect(context.Background(), f)
	if got.ProxyStatus == nil || got.ProxyStatus.ReadsCrossZone != 120 || got.ProxyStatus.Zone != "b" {
		t.Fatalf("proxy_status = %+v", got.ProxyStatus)
	}
	got.Nodes[0].Zone = "a" // from the member record, under the control plane
	var table bytes.Buffer
	PrintTable(&table, got)
	for _, s := range []string{"proxy 127.0.0.1:6380 (zone b, policy ryw, 300 reads, 120 cross-zone)", "ADDR  ZONE", "r1    a"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table has no %q:\n%s", s, table.String())
		}
	}
}

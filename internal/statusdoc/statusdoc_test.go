package statusdoc

import (
	"encoding/json"
	"testing"
)

// The documents as tools see them. These strings are the contract: a change
// here breaks `tandem status --json` readers, bench/run.sh and dashboards.
const (
	nodeJSON    = `{"id":"n1","role":"leader","epoch":3,"state":"leading","mode":"quorum 1","addr":"127.0.0.1:6381","peer_addr":"127.0.0.1:7381","pid":42,"durable_lsn":10,"applied_lsn":9,"commit_lsn":9,"lag_lsn":0,"lag_seconds":0,"connected":true,"log_entries":10,"log_bytes":512,"followers":[{"id":"n2","addr":"127.0.0.1:6382","connected":true,"durable_lsn":8,"applied_lsn":7,"lag_lsn":3,"lag_seconds":0.25}]}`
	seedingJSON = `{"id":"n2","role":"follower","epoch":3,"state":"seeding","mode":"async","addr":"a","peer_addr":"p","pid":7,"durable_lsn":0,"applied_lsn":0,"commit_lsn":0,"lag_lsn":0,"lag_seconds":0,"leader":"l","connected":false,"seed_bytes":5,"seed_total":10,"seed_percent":50,"log_entries":0,"log_bytes":0}`
	fencedJSON  = `{"id":"n3","role":"fenced","epoch":4,"state":"fenced","reason":"lead failed","mode":"async","addr":"","peer_addr":"","pid":0,"durable_lsn":0,"applied_lsn":0,"commit_lsn":0,"lag_lsn":0,"lag_seconds":0,"connected":false,"log_entries":0,"log_bytes":0}`
	manualJSON  = `{"epoch":4,"leader":"n1","proxy":"","nodes":null,"orchestrator":"o1","etcd_ok":true,"failover_policy":"manual","leader_down":{"leader":"n1","epoch":4,"since":"2026-12-05T21:00:00Z","detected":"2026-12-05T21:00:00.1Z","reason":"leader refused 2 probes in a row","waiting_for_operator":true}}`
	orchJSON    = `{"id":"o1","active":true,"epoch":4,"leader":"n1","etcd_ok":true,"nodes":null,"failover_policy":"automatic","failover_policy_error":"bad","leader_down":{"leader":"n1","epoch":4,"since":"s","detected":"d","reason":"r","waiting_for_operator":false}}`
	clusterJSON = `{"epoch":3,"leader":"n1","proxy":"127.0.0.1:6380","nodes":[{"id":"n1","role":"leader","addr":"127.0.0.1:6381","pid":42,"state":"leading","durable_lsn":10,"applied_lsn":9,"lag_lsn":0,"lag_seconds":0,"sync":false},{"id":"n2","role":"follower","addr":"127.0.0.1:6382","pid":43,"state":"seeding","durable_lsn":0,"applied_lsn":0,"lag_lsn":10,"lag_seconds":1.5,"sync":true,"seed_percent":50},{"id":"n3","role":"","addr":"127.0.0.1:6383","pid":0,"state":"down","durable_lsn":0,"applied_lsn":0,"lag_lsn":0,"lag_seconds":0,"sync":false},{"id":"n4","role":"fenced","addr":"127.0.0.1:6384","pid":44,"state":"fenced","reason":"lead failed","durable_lsn":0,"applied_lsn":0,"lag_lsn":0,"lag_seconds":0,"sync":false}]}`
)

func TestJSONShape(t *testing.T) {
	etcdOK := true
	tests := []struct {
		name string
		doc  any
		want string
	}{
		{"leader", Node{ID: "n1", Role: RoleLeader, Epoch: 3, State: StateLeading, Mode: "quorum 1", RESPAddr: "127.0.0.1:6381", PeerAddr: "127.0.0.1:7381", PID: 42,
			DurableLSN: 10, AppliedLSN: 9, CommitLSN: 9, Connected: true, LogEntries: 10, LogBytes: 512,
			Followers: []Follower{{ID: "n2", Addr: "127.0.0.1:6382", Connected: true, DurableLSN: 8, AppliedLSN: 7, LagLSN: 3, LagSeconds: 0.25}}}, nodeJSON},
		{"seeding follower", Node{ID: "n2", Role: RoleFollower, Epoch: 3, State: "seeding", Mode: "async", RESPAddr: "a", PeerAddr: "p", PID: 7,
			Leader: "l", SeedBytes: 5, SeedTotal: 10, SeedPercent: 50}, seedingJSON},
		{"fenced", Node{ID: "n3", Role: RoleFenced, Epoch: 4, State: StateFenced, Reason: "lead failed", Mode: "async"}, fencedJSON},
		{"cluster", Cluster{Epoch: 3, Leader: "n1", Proxy: "127.0.0.1:6380", Nodes: []ClusterNode{
			{ID: "n1", Role: RoleLeader, Addr: "127.0.0.1:6381", PID: 42, State: StateLeading, DurableLSN: 10, AppliedLSN: 9},
			{ID: "n2", Role: RoleFollower, Addr: "127.0.0.1:6382", PID: 43, State: "seeding", LagLSN: 10, LagSeconds: 1.5, Sync: true, SeedPercent: 50},
			{ID: "n3", Addr: "127.0.0.1:6383", State: StateDown},
			{ID: "n4", Role: RoleFenced, Addr: "127.0.0.1:6384", PID: 44, State: StateFenced, Reason: "lead failed"},
		}}, clusterJSON},
		{"cluster, manual failover, leader down", Cluster{Epoch: 4, Leader: "n1", Orchestrator: "o1", EtcdOK: &etcdOK, FailoverPolicy: "manual",
			LeaderDown: &LeaderDown{Leader: "n1", Epoch: 4, Since: "2026-12-05T21:00:00Z", Detected: "2026-12-05T21:00:00.1Z", Reason: "leader refused 2 probes in a row", WaitingForOperator: true}}, manualJSON},
		{"orchestrator", Orchestrator{ID: "o1", Active: true, Epoch: 4, Leader: "n1", EtcdOK: true, FailoverPolicy: "automatic", FailoverPolicyError: "bad",
			LeaderDown: &LeaderDown{Leader: "n1", Epoch: 4, Since: "s", Detected: "d", Reason: "r"}}, orchJSON},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.doc)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, b, tt.want)
		}
	}
}

// TestDesignFields: every field DESIGN.md §10 names is in the cluster
// document.
func TestDesignFields(t *testing.T) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(clusterJSON), &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"epoch", "leader", "proxy", "nodes"} {
		if _, ok := top[k]; !ok {
			t.Errorf("cluster document has no %q", k)
		}
	}
	var nodes []map[string]json.RawMessage
	if err := json.Unmarshal(top["nodes"], &nodes); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"id", "role", "addr", "pid", "state", "applied_lsn", "lag_lsn", "lag_seconds", "sync"} {
		if _, ok := nodes[0][k]; !ok {
			t.Errorf("cluster document's nodes[] have no %q", k)
		}
	}
}

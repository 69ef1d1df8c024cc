// Package statusdoc is the stable contract of a node's /status document and
// of `tandem status --json`: the one place their JSON shape is declared.
// The node serves Node, the local cluster reads it back and aggregates
// Nodes into a Cluster, and scripts (bench/run.sh, operators' jq) read both.
//
// # What it promises
//
//   - Field names never change and a field's meaning never changes; new
//     fields may be added. DESIGN.md §10 fixes the cluster document's
//     fields: epoch, leader, proxy, nodes[].id, .role, .addr, .pid, .state,
//     .applied_lsn, .lag_lsn, .lag_seconds, .sync.
//   - role is one of the Role constants; state is StateLeading for a leader,
//     the follower's replication state (seeding, catching-up, streaming) for
//     a follower, StateFenced for a fenced node, and, in the cluster
//     document only, StateDown for a node that did not answer.
//   - reason is set only when role is fenced: why the node has no role.
//
// The package holds data declarations only: no I/O, no imports.
package statusdoc

// Roles a node reports. A node is always in exactly one of them.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
	// RoleFenced: the node neither leads nor follows; it refuses writes
	// and reads and says why in Reason.
	RoleFenced = "fenced"
)

// States that are not a follower's replication state.
const (
	StateLeading = "leading"
	StateFenced  = "fenced"
	// StateDown: the node did not answer (cluster document only).
	StateDown = "down"
)

// Node is one node's /status document.
type Node struct {
	ID    string `json:"id"`
	Role  string `json:"role"` // a Role constant
	Epoch uint64 `json:"epoch"`
	State string `json:"state"` // leading, seeding, catching-up, streaming, fenced
	// Reason says why a fenced node has no role (fenced only).
	Reason     string  `json:"reason,omitempty"`
	Mode       string  `json:"mode"`
	RESPAddr   string  `json:"addr"`
	PeerAddr   string  `json:"peer_addr"`
	PID        int     `json:"pid"`
	DurableLSN uint64  `json:"durable_lsn"`
	AppliedLSN uint64  `json:"applied_lsn"`
	CommitLSN  uint64  `json:"commit_lsn"`
	LagLSN     uint64  `json:"lag_lsn"`
	LagSeconds float64 `json:"lag_seconds"`
	// Leader is the leader's RESP address (followers only).
	Leader    string `json:"leader,omitempty"`
	Connected bool   `json:"connected"`
	// SeedBytes and SeedTotal report a seed in progress.
	SeedBytes   uint64  `json:"seed_bytes,omitempty"`
	SeedTotal   uint64  `json:"seed_total,omitempty"`
	SeedPercent float64 `json:"seed_percent,omitempty"`
	// Seeds counts the snapshot seeds this process has begun (followers).
	Seeds      uint64 `json:"seeds,omitempty"`
	LogEntries int64  `json:"log_entries"`
	LogBytes   int64  `json:"log_bytes"`
	// DiskBytes is everything the node's storage holds on disk (data, log,
	// Pebble's WAL and manifests).
	DiskBytes int64      `json:"disk_bytes,omitempty"`
	Followers []Follower `json:"followers,omitempty"` // leaders only
	// RollbackFiles counts the rollback files in the data directory:
	// applied writes this node had and a new leader did not, saved for
	// the operator before it re-seeded (async mode only).
	RollbackFiles int `json:"rollback_files,omitempty"`
	// Failsafe: a leader under the control plane that etcd does not
	// answer, holding its lease from its followers' echoes.
	Failsafe bool `json:"failsafe,omitempty"`
	// Degraded: a sync or semisync leader that sync-fallback switched to
	// async (no sync-set member for the fallback delay).
	Degraded bool `json:"degraded,omitempty"`
}

// Follower is a leader's view of one of its followers, in Node.Followers.
type Follower struct {
	ID         string  `json:"id"`
	Addr       string  `json:"addr"`
	Connected  bool    `json:"connected"`
	DurableLSN uint64  `json:"durable_lsn"`
	AppliedLSN uint64  `json:"applied_lsn"`
	LagLSN     uint64  `json:"lag_lsn"`
	LagSeconds float64 `json:"lag_seconds"`
}

// Cluster is what `tandem status --json` prints.
type Cluster struct {
	Epoch  uint64        `json:"epoch"`
	Leader string        `json:"leader"` // the leader's node id; empty if none
	Proxy  string        `json:"proxy"`
	Nodes  []ClusterNode `json:"nodes"`
	// ProxyStatus is the proxy's /status, when it answered.
	ProxyStatus *Proxy `json:"proxy_status,omitempty"`
	// Under the control plane: the active orchestrator's id (empty if
	// none answers), whether it reaches etcd, and the last change of
	// leader. Epoch and Leader then come from the topology in etcd.
	Orchestrator string    `json:"orchestrator,omitempty"`
	EtcdOK       *bool     `json:"etcd_ok,omitempty"`
	LastFailover *Failover `json:"last_failover,omitempty"`
	// TopologyError: the topology in etcd does not decode, and why
	// (nothing is failed over until it is repaired: tandem mode set).
	TopologyError string `json:"topology_error,omitempty"`
	// FailoverPolicy is the cluster's (automatic or manual, from etcd;
	// FailoverPolicyError if it does not parse), and LeaderDown the active
	// orchestrator's failed leader not replaced yet.
	FailoverPolicy      string      `json:"failover_policy,omitempty"`
	FailoverPolicyError string      `json:"failover_policy_error,omitempty"`
	LeaderDown          *LeaderDown `json:"leader_down,omitempty"`
}

// Proxy is a `tandem proxy`'s /status: its zone and default read policy,
// and the reads it served since it started, in all, by node, and outside
// its zone (the same counters as its INFO and /metrics).
type Proxy struct {
	Zone           string            `json:"zone"`
	Policy         string            `json:"policy"`
	Leader         string            `json:"leader"`
	Reads          uint64            `json:"reads"`
	ReadsCrossZone uint64            `json:"reads_cross_zone"`
	ReadsByNode    map[string]uint64 `json:"reads_by_node"`
}

// Failover is one change of leader (failover, switchover, promote).
type Failover struct {
	At          string  `json:"at"` // RFC 3339
	Kind        string  `json:"kind"`
	Reason      string  `json:"reason"`
	From        string  `json:"from,omitempty"`
	To          string  `json:"to"`
	OldEpoch    uint64  `json:"old_epoch"`
	NewEpoch    uint64  `json:"new_epoch"`
	DetectionMs float64 `json:"detection_ms,omitempty"`
	PromotionMs float64 `json:"promotion_ms,omitempty"`
	PauseMs     float64 `json:"pause_ms,omitempty"`
	LostWrites  uint64  `json:"lost_writes,omitempty"`
}

// Health is one node as the active orchestrator sees it.
type Health struct {
	Phi             float64 `json:"phi"`
	LastHeartbeatMs float64 `json:"last_heartbeat_ms"`
	Reachable       bool    `json:"reachable"`
}

// Orchestrator is an orchestrator's /status document.
type Orchestrator struct {
	ID           string             `json:"id"`
	Active       bool               `json:"active"`
	Epoch        uint64             `json:"epoch"`
	Leader       string             `json:"leader"`
	EtcdOK       bool               `json:"etcd_ok"`
	LastFailover *Failover          `json:"last_failover,omitempty"`
	Nodes        []OrchestratorNode `json:"nodes"`
	// TopologyError: the topology in etcd does not decode (a garbled
	// mode, sync-fallback or sync-min), and why; the orchestrator fails
	// nothing over, and refuses promote and switchover, until it does.
	TopologyError string `json:"topology_error,omitempty"`
	// FailoverPolicy is the cluster's failover policy as this
	// orchestrator read it (automatic or manual; empty before the first
	// read); FailoverPolicyError says why the stored one does not parse
	// (no automatic failover then).
	FailoverPolicy      string `json:"failover_policy,omitempty"`
	FailoverPolicyError string `json:"failover_policy_error,omitempty"`
	// LeaderDown: the active orchestrator's failed leader, not replaced
	// yet.
	LeaderDown *LeaderDown `json:"leader_down,omitempty"`
}

// LeaderDown is a failed leader the active orchestrator detected and has
// not replaced yet: for a moment during an automatic failover, and until
// an operator acts under the manual policy.
type LeaderDown struct {
	Leader string `json:"leader"`
	Epoch  uint64 `json:"epoch"`
	// Since is its last sign of life, Detected when the orchestrator
	// found it failed (RFC 3339).
	Since    string `json:"since"`
	Detected string `json:"detected"`
	Reason   string `json:"reason"`
	// WaitingForOperator: the failover policy is manual (or unreadable):
	// nothing is done until `tandem promote` or the leader's return.
	WaitingForOperator bool `json:"waiting_for_operator"`
}

// OrchestratorNode is one node in an orchestrator's /status.
type OrchestratorNode struct {
	ID         string `json:"id"`
	Role       string `json:"role,omitempty"`
	DurableLSN uint64 `json:"durable_lsn"`
	Error      string `json:"error,omitempty"`
	Health
}

// ClusterNode is one node's line in a Cluster.
type ClusterNode struct {
	ID   string `json:"id"`
	Role string `json:"role"` // a Role constant; empty if the node is down
	Addr string `json:"addr"`
	PID  int    `json:"pid"`
	// Zone is the zone in the node's member record (--zone), under the
	// control plane.
	Zone string `json:"zone,omitempty"`
	// State is the node's Node.State, or StateDown.
	State string `json:"state"`
	// Reason says why a fenced node has no role, or why a down node
	// cannot start (its data dir's format refused).
	Reason      string  `json:"reason,omitempty"`
	DurableLSN  uint64  `json:"durable_lsn"`
	AppliedLSN  uint64  `json:"applied_lsn"`
	LagLSN      uint64  `json:"lag_lsn"`
	LagSeconds  float64 `json:"lag_seconds"`
	Sync        bool    `json:"sync"`
	SeedPercent float64 `json:"seed_percent,omitempty"`
	// Health: under the control plane, the active orchestrator's view.
	Health *Health `json:"health,omitempty"`
	// RollbackFiles is the node's Node.RollbackFiles.
	RollbackFiles int `json:"rollback_files,omitempty"`
	// LogBytes and DiskBytes are the node's.
	LogBytes  int64 `json:"log_bytes,omitempty"`
	DiskBytes int64 `json:"disk_bytes,omitempty"`
}

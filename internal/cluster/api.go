// Package cluster runs a local tandem cluster as separate OS processes: one
// `tandem server` per node and, under the control plane, an embedded etcd
// and `tandem orchestrator` processes, supervised, on loopback ports; it
// writes the cluster file and collects `tandem status` from it.
//
// It is product code: `tandem up` and `tandem status` (commands of the
// CLI contract) are built on it. What it offers beyond them is what any
// supervisor offers (kill, pause, resume and restart one process, know the
// leader) and one routing hook (Config.Route, which maps onto the
// processes' --peer-route and --etcd flags); the tools (internal/tools)
// and the multi-process tests build their faults on those, so that a node
// is always a real process that can be killed with SIGKILL, paused with
// SIGSTOP and restarted on its data directory. Ports and processes go
// through internal/proc.
package cluster

import "time"

// EtcdLink names etcd as the far end of a link for Config.Route.
const EtcdLink = "etcd"

// Config describes a local cluster.
type Config struct {
	// Binary is the path of the tandem executable to run as `BINARY server`.
	Binary string
	// Dir holds one data directory per node (Dir/n1, Dir/n2, ...) and the
	// cluster file that `tandem status` reads.
	Dir string
	// Nodes is how many node processes to run; node 1 leads initially.
	Nodes int
	// BasePort is the first RESP port: node i gets BasePort+i-1 when the
	// cluster has no proxy; with one, the proxy takes BasePort and node i
	// BasePort+i. 0 picks free ports.
	BasePort int
	// RestartDelay restarts a node process that died after this long;
	// 0 means never (a test or the chaos nemesis restarts it explicitly).
	RestartDelay time.Duration
	// Route, if set, gives the address at which process from ("n1",
	// "o2") reaches to (a node "n3", or EtcdLink for its etcd endpoint),
	// whose real address is addr (host:port); it returns addr to leave the
	// link direct. The processes get the answer through --peer-route and
	// --etcd, the flags that exist for relays; the chaos harness and the
	// tests point links at fault-injecting relays this way.
	Route func(from, to, addr string) string
	// ServerArgs are extra flags passed to every `tandem server`.
	ServerArgs []string
	// NodeArgs are extra flags for one node, by id, after ServerArgs
	// (e.g. a lag injector on one follower).
	NodeArgs map[int][]string

	// ControlPlane runs the cluster under the control plane: an embedded
	// etcd in this process (data in Dir/etcd) unless Etcd names one, and
	// Orchestrators `tandem orchestrator` processes (default 1); nodes
	// take their roles from etcd instead of node 1 leading.
	ControlPlane  bool
	Etcd          []string
	Orchestrators int
	// OrchestratorArgs are extra flags passed to every orchestrator.
	OrchestratorArgs []string
	// Proxy runs a `tandem proxy` process (under the control plane only),
	// supervised like the nodes, with ProxyArgs; its HTTP port (/metrics)
	// is the nodes' HTTP ports' base.
	Proxy     bool
	ProxyArgs []string
	// SentinelPort, if not 0, is orchestrator 1's Sentinel-compatible
	// port; orchestrator i gets SentinelPort+i-1. 0 picks free ports.
	SentinelPort int
}

// NodeInfo is where one node listens and which process runs it.
type NodeInfo struct {
	ID       int    // 1-based
	Name     string // "n1", ...
	RESPAddr string // host:port for Redis clients
	PeerAddr string // host:port of the gRPC peer service
	HTTPAddr string // host:port of /status and /metrics
	PID      int    // 0 while the process is not running
	DataDir  string
	// SentinelAddr: an orchestrator's Sentinel-compatible RESP address.
	SentinelAddr string `json:",omitempty"`
}

// Package cluster runs a local tandem cluster as separate OS processes: one
// `tandem server` per node, supervised, on loopback ports. `tandem up`, the
// integration tests, `tandem chaos` and the benchmarks all start clusters
// through it, so a node is always a real process that can be killed with
// SIGKILL, paused with SIGSTOP and restarted on its data directory.
package cluster

import "time"

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
	// PeerAddr, if set, rewrites the peer (gRPC) address that node `from`
	// uses to reach node `to`; the chaos harness points it at a
	// fault-injecting relay. It returns addr unchanged when not interested.
	PeerAddr func(from, to int, addr string) string
	// ServerArgs are extra flags passed to every `tandem server`.
	ServerArgs []string

	// ControlPlane runs the cluster under the control plane: an embedded
	// etcd in this process (data in Dir/etcd) unless Etcd names one, and
	// Orchestrators `tandem orchestrator` processes (default 1); nodes
	// take their roles from etcd instead of node 1 leading.
	ControlPlane  bool
	Etcd          []string
	Orchestrators int
	// OrchestratorArgs are extra flags passed to every orchestrator.
	OrchestratorArgs []string
	// OrchestratorPeerAddr, like PeerAddr, rewrites the peer address that
	// orchestrator `from` (1-based) uses to probe node `to`.
	OrchestratorPeerAddr func(from, to int, addr string) string
	// EtcdAddr, if set, rewrites the etcd endpoint (a URL) that process
	// `from` ("n1", "o1", ...) is given; the chaos harness points it at a
	// relay to cut one process off from etcd.
	EtcdAddr func(from, endpoint string) string
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

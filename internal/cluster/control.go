package cluster

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
)

// extraPorts is how many more ports of kind ports() picks beyond the
// nodes' under the control plane: etcd's client and peer ports (kind 0),
// the orchestrators' HTTP (kind 1) and Sentinel (kind 2) ports.
func (c *Cluster) extraPorts(kind int) int {
	if !c.cfg.ControlPlane {
		return 0
	}
	switch kind {
	case 0:
		return 2
	default:
		return c.orchestrators()
	}
}

func (c *Cluster) orchestrators() int {
	if c.cfg.Orchestrators > 0 {
		return c.cfg.Orchestrators
	}
	return 1
}

// startControlPlane starts the embedded etcd (unless Config.Etcd names
// one) and connects to it.
func (c *Cluster) startControlPlane(ports [3][]string) error {
	n := c.cfg.Nodes
	c.endpoints = c.cfg.Etcd
	if len(c.endpoints) == 0 {
		e, err := embedded.Start(filepath.Join(c.cfg.Dir, "etcd"), ports[0][n], ports[0][n+1])
		if err != nil {
			return err
		}
		c.etcd = e
		c.endpoints = []string{e.Endpoint}
	}
	cli, err := coord.Dial(c.endpoints)
	if err != nil {
		return err
	}
	c.store = coord.New(cli, "tandem")
	return nil
}

// declareOrchestrators declares the orchestrator processes (after the
// nodes, whose addresses their peer routes name).
func (c *Cluster) declareOrchestrators(ports [3][]string) {
	n := c.cfg.Nodes
	for i := 1; i <= c.orchestrators(); i++ {
		name := "o" + strconv.Itoa(i)
		sentinel := ports[2][n+i-1]
		if c.cfg.SentinelPort != 0 {
			sentinel = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.cfg.SentinelPort+i-1))
		}
		p := &member{info: NodeInfo{ID: i, Name: name, HTTPAddr: ports[1][n+i-1], SentinelAddr: sentinel},
			logPath: filepath.Join(c.cfg.Dir, name+".log")}
		p.args = []string{"orchestrator", "--id", name, "--etcd", c.etcdFor(name),
			"--http-addr", p.info.HTTPAddr, "--sentinel-addr", sentinel}
		p.args = append(p.args, c.peerRoutes(name)...)
		p.args = append(p.args, c.cfg.OrchestratorArgs...)
		c.orchs = append(c.orchs, p)
	}
}

// etcdFor is the --etcd value for process name: each endpoint (a URL)
// with its host:port routed by Config.Route.
func (c *Cluster) etcdFor(name string) string {
	eps := append([]string(nil), c.endpoints...)
	for i, ep := range eps {
		if u, err := url.Parse(ep); err == nil && u.Host != "" {
			u.Host = c.route(name, EtcdLink, u.Host)
			eps[i] = u.String()
		}
	}
	return strings.Join(eps, ",")
}

// route is where process from reaches to at addr (Config.Route).
func (c *Cluster) route(from, to, addr string) string {
	if c.cfg.Route == nil {
		return addr
	}
	return c.cfg.Route(from, to, addr)
}

// peerRoutes are process from's --peer-route flags: one for each node
// whose peer address Config.Route changes.
func (c *Cluster) peerRoutes(from string) []string {
	var args []string
	for _, to := range c.nodes {
		if to.info.Name == from {
			continue
		}
		if a := c.route(from, to.info.Name, to.info.PeerAddr); a != to.info.PeerAddr {
			args = append(args, "--peer-route", to.info.Name+"="+a)
		}
	}
	return args
}

// Store is the cluster's etcd keys (nil without the control plane).
func (c *Cluster) Store() *coord.Store { return c.store }

// Endpoints are etcd's client URLs (nil without the control plane).
func (c *Cluster) Endpoints() []string { return c.endpoints }

// Orchestrators returns the orchestrator processes.
func (c *Cluster) Orchestrators() []NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NodeInfo, len(c.orchs))
	for i, p := range c.orchs {
		out[i] = p.info
	}
	return out
}

// KillOrchestrator sends SIGKILL to orchestrator i (1-based) and waits.
func (c *Cluster) KillOrchestrator(i int) error { return c.kill(c.orchs[i-1]) }

// StartOrchestrator (re)starts orchestrator i.
func (c *Cluster) StartOrchestrator(i int) error { return c.startProc(c.orchs[i-1]) }

// Leader returns the node the topology names (static: node 1) and the epoch.
func (c *Cluster) Leader(ctx context.Context) (id int, epoch uint64, err error) {
	if c.store == nil {
		return 1, 0, nil
	}
	t, ok, err := c.store.Topology(ctx)
	if err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, fmt.Errorf("cluster: no topology yet")
	}
	for _, p := range c.nodes {
		if p.info.Name == t.Leader {
			return p.info.ID, t.Epoch, nil
		}
	}
	return 0, 0, fmt.Errorf("cluster: the topology names %q, not a node of this cluster", t.Leader)
}

// WaitLeader waits until the topology names a leader that takes writes,
// and returns it. The probe is a DEL of a key that never exists: a write
// that logs nothing yet is answered only by a leader under a valid lease.
func (c *Cluster) WaitLeader(ctx context.Context, within time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		id, _, err := c.Leader(ctx)
		if err == nil {
			cl := redis.NewClient(&redis.Options{Addr: c.Node(id).RESPAddr, Protocol: 2, MaxRetries: -1, DialTimeout: 500 * time.Millisecond})
			err = cl.Del(ctx, "tandem:cluster:ready-probe").Err()
			cl.Close()
			if err == nil {
				return id, nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("cluster: no leader takes writes within %v: %w", within, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Dir is the cluster's directory (the cluster file, data and logs).
func (c *Cluster) Dir() string { return c.cfg.Dir }

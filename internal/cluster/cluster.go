package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
	"github.com/tandemdb/tandem/internal/proc"
	"github.com/tandemdb/tandem/internal/statusdoc"
)

// FileName is the cluster file in Config.Dir that `tandem status` reads.
const FileName = "cluster.json"

// Cluster is a running local cluster.
type Cluster struct {
	cfg   Config
	log   *slog.Logger
	nodes []*member
	orchs []*member
	proxy *member // nil without Config.Proxy
	// proxyPorts are the proxy's RESP, (unused) peer and HTTP addresses.
	proxyPorts [3]string

	// Under the control plane: the embedded etcd (nil with an external
	// one), its endpoints and the cluster's keys.
	etcd      *embedded.Etcd
	endpoints []string
	store     *coord.Store

	mu       sync.Mutex
	stopping bool
	wg       sync.WaitGroup
}

// member is one supervised process: a node or an orchestrator.
type member struct {
	info    NodeInfo
	logPath string
	args    []string
	p       *proc.Process // the current process; nil while none runs
	stopped bool          // stopped on purpose: do not restart
	// logFrom is where the current process's output starts in the node
	// log, which earlier processes of the node appended to.
	logFrom int64
}

// Start launches every node and waits until each answers PING.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Cluster, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.Nodes < 1 {
		return nil, fmt.Errorf("cluster: need at least one node, got %d", cfg.Nodes)
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("cluster: find tandem binary: %w", err)
		}
		cfg.Binary = exe
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	// Free ports are picked, released, then bound by the node processes:
	// another process may take one in between. The node then fails to
	// bind, and the cluster starts again on other ports.
	for attempt := 1; ; attempt++ {
		c, err := start(ctx, cfg, log)
		if err == nil || cfg.BasePort != 0 || attempt == 3 || !errors.Is(err, errPortTaken) {
			return c, err
		}
		log.Warn("a port was taken before a node bound it; starting again on other ports", "err", err)
	}
}

// errPortTaken: a node could not bind the address it was given.
var errPortTaken = errors.New("cluster: port taken")

func start(ctx context.Context, cfg Config, log *slog.Logger) (*Cluster, error) {
	c := &Cluster{cfg: cfg, log: log}
	ports, err := c.ports()
	if err != nil {
		return nil, err
	}
	if cfg.ControlPlane {
		if err := c.startControlPlane(ports); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for i := 1; i <= cfg.Nodes; i++ {
		name := "n" + strconv.Itoa(i)
		c.nodes = append(c.nodes, &member{info: NodeInfo{
			ID:       i,
			Name:     name,
			RESPAddr: ports[0][i-1],
			PeerAddr: ports[1][i-1],
			HTTPAddr: ports[2][i-1],
			DataDir:  filepath.Join(cfg.Dir, name),
		}, logPath: filepath.Join(cfg.Dir, name+".log")})
	}
	for _, p := range c.nodes {
		p.args = c.serverArgs(p.info)
	}
	if cfg.ControlPlane {
		c.declareOrchestrators(ports)
		c.declareProxy()
	}
	for _, p := range c.nodes {
		if err := c.startProc(p); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, p := range c.orchs {
		if err := c.startProc(p); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if c.proxy != nil {
		if err := c.startProc(c.proxy); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, p := range c.nodes {
		if err := WaitReady(ctx, p.info.RESPAddr); err != nil {
			c.Stop()
			if b, _ := os.ReadFile(c.LogPath(p.info.ID)); bytes.Contains(b[min(p.logFrom, int64(len(b))):], []byte("address already in use")) {
				err = fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return nil, fmt.Errorf("cluster: node %s: %w (see %s)", p.info.Name, err, c.LogPath(p.info.ID))
		}
	}
	if cfg.ControlPlane {
		if _, err := c.WaitLeader(ctx, 30*time.Second); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if c.proxy != nil {
		if err := WaitReady(ctx, c.proxy.info.RESPAddr); err != nil {
			c.Stop()
			return nil, fmt.Errorf("cluster: proxy: %w (see %s)", err, c.proxy.logPath)
		}
	}
	return c, nil
}

// ports returns RESP, peer and HTTP addresses for every node: from
// BasePort (RESP on BasePort.., peer on BasePort+100.., HTTP on
// BasePort+200..), or free ports below the ephemeral range (package proc
// says why) when BasePort is 0. With a proxy, the first RESP and HTTP
// ports are the proxy's (c.proxyPorts) and the nodes take the next ones.
func (c *Cluster) ports() ([3][]string, error) {
	var out [3][]string
	first := 0
	if c.withProxy() {
		first = 1
	}
	n := 0
	for kind := range 3 {
		n += c.cfg.Nodes + c.extraPorts(kind) + first
	}
	var free []string
	if c.cfg.BasePort == 0 {
		var err error
		if free, err = proc.FreeAddrs(n); err != nil {
			return out, fmt.Errorf("cluster: pick ports: %w", err)
		}
	}
	for kind := range 3 {
		for i := range c.cfg.Nodes + c.extraPorts(kind) + first {
			if c.cfg.BasePort != 0 {
				out[kind] = append(out[kind], proc.Addr(c.cfg.BasePort+100*kind+i))
				continue
			}
			out[kind], free = append(out[kind], free[0]), free[1:]
		}
		if first == 1 {
			c.proxyPorts[kind] = out[kind][0]
			out[kind] = out[kind][1:]
		}
	}
	return out, nil
}

func (c *Cluster) serverArgs(n NodeInfo) []string {
	args := []string{"server",
		"--id", n.Name,
		"--dir", n.DataDir,
		"--resp-addr", n.RESPAddr,
		"--peer-addr", n.PeerAddr,
		"--http-addr", n.HTTPAddr,
	}
	if c.cfg.ControlPlane {
		args = append(args, "--etcd", c.etcdFor(n.Name))
		args = append(args, c.peerRoutes(n.Name)...)
		return append(append(args, c.cfg.ServerArgs...), c.cfg.NodeArgs[n.ID]...)
	}
	if n.ID != 1 {
		leader := c.nodes[0].info
		args = append(args, "--follow-resp", leader.RESPAddr, "--follow-peer", c.route(n.Name, leader.Name, leader.PeerAddr))
	}
	return append(append(args, c.cfg.ServerArgs...), c.cfg.NodeArgs[n.ID]...)
}

// Nodes returns every node's addresses and current pid.
func (c *Cluster) Nodes() []NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]NodeInfo, len(c.nodes))
	for i, p := range c.nodes {
		out[i] = p.info
	}
	return out
}

// Node returns one node's info.
func (c *Cluster) Node(id int) NodeInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id-1].info
}

// LogPath is where node id's output goes.
func (c *Cluster) LogPath(id int) string {
	return filepath.Join(c.cfg.Dir, "n"+strconv.Itoa(id)+".log")
}

// Start (re)starts node id's process on its data directory.
func (c *Cluster) Start(id int) error { return c.startProc(c.nodes[id-1]) }

func (c *Cluster) startProc(m *member) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.p != nil {
		return nil
	}
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cluster: node log: %w", err)
	}
	if fi, err := logf.Stat(); err == nil {
		m.logFrom = fi.Size()
	}
	cmd := exec.Command(c.cfg.Binary, m.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a terminal's Ctrl-C reaches `tandem up`, which
	// stops the nodes in order, not every node at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p, err := proc.Start(cmd, logf)
	if err != nil {
		return fmt.Errorf("cluster: start %s: %w", m.info.Name, err)
	}
	m.p, m.stopped = p, false
	m.info.PID = p.Pid()
	c.log.Info("node started", "node", m.info.Name, "pid", m.info.PID, "resp", m.info.RESPAddr)
	c.writeFileLocked()
	c.wg.Add(1)
	go c.supervise(m, p)
	return nil
}

func (c *Cluster) supervise(m *member, p *proc.Process) {
	defer c.wg.Done()
	<-p.Done()
	c.mu.Lock()
	m.p = nil
	m.info.PID = 0
	restart := !c.stopping && !m.stopped && c.cfg.RestartDelay > 0
	c.writeFileLocked()
	c.mu.Unlock()
	c.log.Info("node exited", "node", m.info.Name, "err", p.Err())
	if !restart {
		return
	}
	time.Sleep(c.cfg.RestartDelay)
	c.mu.Lock()
	stop := c.stopping || m.stopped
	c.mu.Unlock()
	if !stop {
		if err := c.startProc(m); err != nil {
			c.log.Error("restart failed", "node", m.info.Name, "err", err)
		}
	}
}

// running is m's current process, or an error if none runs.
func (c *Cluster) running(m *member) (*proc.Process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.p == nil {
		return nil, fmt.Errorf("cluster: %s is not running", m.info.Name)
	}
	return m.p, nil
}

// kill sends SIGKILL to m and waits until the process is gone. Under
// RestartDelay the supervisor starts it again after that delay.
func (c *Cluster) kill(m *member) error {
	p, err := c.running(m)
	if err != nil {
		return err
	}
	return p.Kill()
}

// signal sends sig to m's process.
func (c *Cluster) signal(m *member, sig syscall.Signal) error {
	p, err := c.running(m)
	if err != nil {
		return err
	}
	return p.Signal(sig)
}

// Kill sends SIGKILL to node id and waits for the process to be gone. The
// node restarts after RestartDelay if that is set.
func (c *Cluster) Kill(id int) error { return c.kill(c.nodes[id-1]) }

// Pause stops node id with SIGSTOP and returns once every thread of it is
// stopped (proc.Process.Pause: on a loaded machine a process runs on for
// a while after the kill returns).
func (c *Cluster) Pause(id int) error {
	p, err := c.running(c.nodes[id-1])
	if err != nil {
		return err
	}
	return p.Pause(pauseWithin)
}

// pauseWithin bounds how long Pause waits for the process to stop.
const pauseWithin = 10 * time.Second

// Resume continues node id with SIGCONT.
func (c *Cluster) Resume(id int) error { return c.signal(c.nodes[id-1], syscall.SIGCONT) }

// Stop stops every process (the proxy and orchestrators first, so that
// stopping nodes causes no failover; each SIGTERM, then SIGKILL after 10 s) and waits.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	c.stopping = true
	var groups [2][]*proc.Process
	front := c.orchs
	if c.proxy != nil {
		front = append([]*member{c.proxy}, front...)
	}
	for g, ms := range [2][]*member{front, c.nodes} {
		for _, m := range ms {
			if m.p != nil {
				m.stopped = true
				groups[g] = append(groups[g], m.p)
			}
		}
	}
	c.mu.Unlock()
	var errs []error
	for _, g := range groups {
		var wg sync.WaitGroup
		errc := make(chan error, len(g))
		for _, p := range g {
			wg.Go(func() { errc <- p.Stop(10 * time.Second) })
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			errs = append(errs, err)
		}
	}
	c.wg.Wait()
	if c.store != nil {
		c.store.Client().Close()
	}
	if c.etcd != nil {
		c.etcd.Close()
	}
	return errors.Join(errs...)
}

// Status fetches node id's /status.
func (c *Cluster) Status(ctx context.Context, id int) (statusdoc.Node, error) {
	return FetchStatus(ctx, c.Node(id).HTTPAddr)
}

// Proxy is the proxy's process, if the cluster has one (RESPAddr is
// where clients connect, HTTPAddr serves /metrics).
func (c *Cluster) Proxy() (NodeInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proxy == nil {
		return NodeInfo{}, false
	}
	return c.proxy.info, true
}

// KillProxy sends SIGKILL to the proxy and waits for it to exit.
func (c *Cluster) KillProxy() error { return c.kill(c.proxy) }

// StartProxy (re)starts the proxy.
func (c *Cluster) StartProxy() error { return c.startProc(c.proxy) }

// File is the cluster file's content.
type File struct {
	Nodes []NodeInfo `json:"nodes"`
	Proxy string     `json:"proxy,omitempty"`
	// ProxyHTTP serves the proxy's /status and /metrics.
	ProxyHTTP string `json:"proxy_http,omitempty"`
	// Under the control plane: etcd's endpoints and the orchestrators.
	Etcd          []string   `json:"etcd,omitempty"`
	Orchestrators []NodeInfo `json:"orchestrators,omitempty"`
}

func (c *Cluster) writeFileLocked() {
	f := File{Etcd: c.endpoints}
	for _, p := range c.nodes {
		f.Nodes = append(f.Nodes, p.info)
	}
	for _, p := range c.orchs {
		f.Orchestrators = append(f.Orchestrators, p.info)
	}
	if c.proxy != nil {
		f.Proxy, f.ProxyHTTP = c.proxy.info.RESPAddr, c.proxy.info.HTTPAddr
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	tmp := filepath.Join(c.cfg.Dir, FileName+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		_ = os.Rename(tmp, filepath.Join(c.cfg.Dir, FileName))
	}
}

// WaitReady polls addr with PING until it answers or ctx ends (at most 30 s).
func WaitReady(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DialTimeout: 500 * time.Millisecond})
	defer cl.Close()
	for {
		err := cl.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not answering PING at %s: %w", addr, errors.Join(err, ctx.Err()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// FetchStatus reads the /status of the node whose HTTP address is addr.
func FetchStatus(ctx context.Context, addr string) (statusdoc.Node, error) {
	var s statusdoc.Node
	return s, fetchJSON(ctx, addr, &s)
}

// FetchProxyStatus reads the /status of the proxy whose HTTP address is
// addr.
func FetchProxyStatus(ctx context.Context, addr string) (statusdoc.Proxy, error) {
	var s statusdoc.Proxy
	return s, fetchJSON(ctx, addr, &s)
}

// fetchJSON decodes the /status document at HTTP address addr into s.
func fetchJSON(ctx context.Context, addr string, s any) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cluster: status of %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(s); err != nil {
		return fmt.Errorf("cluster: status of %s: %w", addr, err)
	}
	return nil
}

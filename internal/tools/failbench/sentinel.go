package failbench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/proc"
)

// The Redis Sentinel deployment the benchmark measures: the one the issue
// names, fsync on everywhere (as bench/run.sh runs Redis).
const (
	sentinelMaster       = "mymaster"
	sentinelQuorum       = 2
	sentinelDownAfter    = 1000  // ms
	sentinelFailoverTime = 10000 // ms: a stuck failover is retried after 2× this
	// clientTimeout is the failover client's dial, read and write timeout.
	clientTimeout = 500 * time.Millisecond
)

// ErrSentinelUnhealthy wraps the last reason WaitHealthy saw the deployment
// as not healthy when its context ended.
var ErrSentinelUnhealthy = errors.New("failbench: redis-sentinel not healthy")

// Sentinel is the Redis Sentinel target: 3 redis-server processes (a
// primary and 2 replicas, appendonly yes, appendfsync always, no RDB saves)
// and 3 sentinels (quorum 2, down-after-milliseconds 1000, parallel-syncs 1)
// on free loopback ports, from the redis-server in PATH. Each server reads a
// config file of its own, which Sentinel rewrites when it reconfigures it,
// so a killed primary restarts as a primary (as a real one would) and
// Sentinel turns it into a replica of the new one.
//
// Its client is go-redis's failover client. It reports detection (kill to
// the first +odown of the primary, the quorum's agreement) and promotion
// (kill to the first +switch-master) from the sentinels' event channels.
type Sentinel struct {
	cfg       Config
	servers   []*redisProc
	sentinels []*redisProc
	// one client per process, for health checks and PIDs
	serverC   map[string]*redis.Client
	sentinelC []*redis.SentinelClient
	subs      []*redis.PubSub
	wg        sync.WaitGroup

	mu     sync.Mutex
	events []sentinelEvent
}

type sentinelEvent struct {
	at       time.Time
	sentinel int
	channel  string // +sdown, +odown, +switch-master
	payload  string
}

// NewSentinel returns the Redis Sentinel target, not started.
func NewSentinel(cfg Config) *Sentinel {
	return &Sentinel{cfg: cfg, serverC: map[string]*redis.Client{}}
}

// Name implements Target.
func (s *Sentinel) Name() string { return "redis-sentinel" }

// redisProc is one redis-server process (a server or a sentinel).
type redisProc struct {
	id       string
	port     int
	dir      string
	args     []string
	mu       sync.Mutex
	p        *proc.Process // nil before the first start
	sentinel bool
}

func (p *redisProc) addr() string { return proc.Addr(p.port) }

func (p *redisProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil && !p.p.Exited() {
		return fmt.Errorf("failbench: %s is running", p.id)
	}
	out, err := os.OpenFile(filepath.Join(p.dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("failbench: %w", err)
	}
	cmd := exec.Command("redis-server", p.args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = out, out
	// A benchmark that dies must not leave servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if p.p, err = proc.Start(cmd, out); err != nil {
		return fmt.Errorf("failbench: %s: %w", p.id, err)
	}
	return nil
}

// process is the current process, nil before the first start.
func (p *redisProc) process() *proc.Process {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.p
}

func (p *redisProc) pid() int {
	if pr := p.process(); pr != nil {
		return pr.Pid()
	}
	return 0
}

// stop ends the process: SIGTERM, then SIGKILL after grace.
func (p *redisProc) stop(grace time.Duration) error {
	if pr := p.process(); pr != nil {
		return pr.Stop(grace)
	}
	return nil
}

// Start implements Target.
func (s *Sentinel) Start(ctx context.Context) error {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return fmt.Errorf("failbench: redis-sentinel target: %w (bench/failover.sh installs it)", err)
	}
	ports, err := proc.FreePorts(6)
	if err != nil {
		return err
	}
	primary := ports[0]
	for i := range 3 {
		p := &redisProc{id: fmt.Sprintf("redis%d", i+1), port: ports[i], dir: filepath.Join(s.cfg.Dir, fmt.Sprintf("redis%d", i+1))}
		conf := []string{
			fmt.Sprintf("port %d", p.port),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"dir " + p.dir,
			"logfile " + filepath.Join(p.dir, "redis.log"),
			"appendonly yes",
			"appendfsync always",
			`save ""`,
		}
		if i > 0 {
			conf = append(conf, fmt.Sprintf("replicaof 127.0.0.1 %d", primary))
		}
		if err := writeConf(p, conf); err != nil {
			return err
		}
		s.servers = append(s.servers, p)
		s.serverC[p.id] = redis.NewClient(&redis.Options{Addr: p.addr(), MaxRetries: -1, DialerRetries: 1,
			DialTimeout: time.Second, ReadTimeout: 3 * time.Second, WriteTimeout: time.Second, PoolSize: 2})
	}
	for i := range 3 {
		p := &redisProc{id: fmt.Sprintf("sentinel%d", i+1), port: ports[3+i], dir: filepath.Join(s.cfg.Dir, fmt.Sprintf("sentinel%d", i+1)), sentinel: true}
		conf := []string{
			fmt.Sprintf("port %d", p.port),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"dir " + p.dir,
			"logfile " + filepath.Join(p.dir, "sentinel.log"),
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", sentinelMaster, primary, sentinelQuorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", sentinelMaster, sentinelDownAfter),
			fmt.Sprintf("sentinel failover-timeout %s %d", sentinelMaster, sentinelFailoverTime),
			fmt.Sprintf("sentinel parallel-syncs %s 1", sentinelMaster),
		}
		if err := writeConf(p, conf); err != nil {
			return err
		}
		p.args = append(p.args, "--sentinel")
		s.sentinels = append(s.sentinels, p)
		s.sentinelC = append(s.sentinelC, redis.NewSentinelClient(&redis.Options{Addr: p.addr(), MaxRetries: -1,
			DialerRetries: 1, DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: 2}))
	}
	for _, p := range s.servers {
		if err := p.start(); err != nil {
			return err
		}
	}
	for _, p := range s.sentinels {
		if err := p.start(); err != nil {
			return err
		}
	}
	for i, p := range s.sentinels {
		if err := waitPing(ctx, p.addr()); err != nil {
			return err
		}
		s.subscribe(ctx, i, p.addr())
	}
	s.cfg.Log.Info("redis-sentinel started", "primary", s.servers[0].addr(), "dir", s.cfg.Dir)
	return s.WaitHealthy(ctx)
}

func writeConf(p *redisProc, lines []string) error {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("failbench: %w", err)
	}
	path := filepath.Join(p.dir, "redis.conf")
	if p.sentinel {
		path = filepath.Join(p.dir, "sentinel.conf")
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("failbench: %w", err)
	}
	p.args = []string{path}
	return nil
}

func waitPing(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	var err error
	for {
		if err = c.Ping(ctx).Err(); err == nil || strings.HasPrefix(err.Error(), "LOADING") {
			return nil
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return fmt.Errorf("failbench: %s does not answer PING: %w", addr, err)
		}
	}
}

// subscribe records the sentinel's failure and failover events.
func (s *Sentinel) subscribe(ctx context.Context, i int, addr string) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	ps := c.Subscribe(context.WithoutCancel(ctx), "+sdown", "+odown", "+switch-master")
	s.subs = append(s.subs, ps)
	ch := ps.Channel()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer c.Close()
		for m := range ch {
			ev := sentinelEvent{at: time.Now(), sentinel: i, channel: m.Channel, payload: m.Payload}
			s.cfg.Log.Debug("sentinel event", "sentinel", i+1, "channel", m.Channel, "payload", m.Payload)
			s.mu.Lock()
			s.events = append(s.events, ev)
			s.mu.Unlock()
		}
	}()
}

// NewClient implements Target: go-redis's failover client, with no retries
// of its own (MaxRetries -1: go-redis takes 0 as "the default, 3") and one
// dial attempt per command.
//
// go-redis's pool has a dial circuit breaker: after poolSize failed dials it
// fails every command with the last dial error and probes the address once
// a second until a dial succeeds. So the workers of one shared client see
// the new primary up to a second after Sentinel names it (the probes start
// at the kill, so a client per worker does no better); a poolSize far above
// the workers (Options.PoolSize) keeps the breaker from tripping.
func (s *Sentinel) NewClient(poolSize int) redis.UniversalClient {
	var addrs []string
	for _, p := range s.sentinels {
		addrs = append(addrs, p.addr())
	}
	return redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    sentinelMaster,
		SentinelAddrs: addrs,
		DialTimeout:   clientTimeout,
		ReadTimeout:   clientTimeout,
		WriteTimeout:  clientTimeout,
		MaxRetries:    -1,
		DialerRetries: 1,
		PoolSize:      poolSize,
		PoolTimeout:   clientTimeout,
	})
}

// masterAddr asks the sentinels, in turn, for the primary's address.
func (s *Sentinel) masterAddr(ctx context.Context) (string, error) {
	var errs []error
	for _, c := range s.sentinelC {
		a, err := c.GetMasterAddrByName(ctx, sentinelMaster).Result()
		if err == nil && len(a) == 2 {
			return net.JoinHostPort(a[0], a[1]), nil
		}
		errs = append(errs, err)
	}
	return "", fmt.Errorf("failbench: no sentinel names the primary: %w", errors.Join(errs...))
}

func (s *Sentinel) serverAt(addr string) *redisProc {
	for _, p := range s.servers {
		if p.addr() == addr {
			return p
		}
	}
	return nil
}

// Leader implements Target: the server Sentinel names, and the process_id
// that server reports.
func (s *Sentinel) Leader(ctx context.Context) (Node, error) {
	addr, err := s.masterAddr(ctx)
	if err != nil {
		return Node{}, err
	}
	p := s.serverAt(addr)
	if p == nil {
		return Node{}, fmt.Errorf("failbench: sentinel names %s, not one of ours", addr)
	}
	info, err := s.serverC[p.id].Info(ctx, "server").Result()
	if err != nil {
		return Node{}, fmt.Errorf("failbench: INFO server of %s: %w", addr, err)
	}
	pid, err := strconv.Atoi(infoFields(info)["process_id"])
	if err != nil {
		return Node{}, fmt.Errorf("failbench: process_id of %s: %w", addr, err)
	}
	return Node{ID: p.id, Addr: addr, PID: pid}, nil
}

// Kill implements Target.
func (s *Sentinel) Kill(n Node) error {
	p := s.serverAt(n.Addr)
	if p == nil || p.pid() != n.PID {
		return fmt.Errorf("failbench: %s is not a process this target started", n)
	}
	if err := p.process().Kill(); err != nil {
		return fmt.Errorf("failbench: kill %s: %w", n, err)
	}
	return nil
}

// Restart implements Target: the server starts again from its own config
// file (which says primary if it was one); Sentinel reconfigures it.
func (s *Sentinel) Restart(ctx context.Context, n Node) error {
	p := s.serverAt(n.Addr)
	if p == nil {
		return fmt.Errorf("failbench: %s is not one of ours", n)
	}
	if err := p.start(); err != nil {
		return err
	}
	return waitPing(ctx, p.addr())
}

// WaitHealthy implements Target: every sentinel names the same primary, sees
// it as up with 2 replicas up and linked and 2 other sentinels; the primary
// has 2 online replicas, each follows it, and both acknowledge all of its
// replication stream (WAIT 2).
func (s *Sentinel) WaitHealthy(ctx context.Context) error {
	var why error
	for {
		if why = s.healthy(ctx); why == nil {
			return nil
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return fmt.Errorf("%w: %w", ErrSentinelUnhealthy, why)
		}
	}
}

func (s *Sentinel) healthy(ctx context.Context) error {
	var master string
	for i, c := range s.sentinelC {
		a, err := c.GetMasterAddrByName(ctx, sentinelMaster).Result()
		if err != nil || len(a) != 2 {
			return fmt.Errorf("sentinel%d: get-master-addr-by-name: %v", i+1, err)
		}
		addr := net.JoinHostPort(a[0], a[1])
		if master == "" {
			master = addr
		} else if addr != master {
			return fmt.Errorf("sentinels disagree on the primary: %s, %s", master, addr)
		}
		m, err := c.Master(ctx, sentinelMaster).Result()
		if err != nil {
			return fmt.Errorf("sentinel%d: sentinel master: %w", i+1, err)
		}
		if m["flags"] != "master" || m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
			return fmt.Errorf("sentinel%d sees the primary as flags=%s num-slaves=%s num-other-sentinels=%s",
				i+1, m["flags"], m["num-slaves"], m["num-other-sentinels"])
		}
		rs, err := c.Replicas(ctx, sentinelMaster).Result()
		if err != nil {
			return fmt.Errorf("sentinel%d: sentinel replicas: %w", i+1, err)
		}
		for _, r := range rs {
			if r["flags"] != "slave" || r["master-link-status"] != "ok" {
				return fmt.Errorf("sentinel%d sees replica %s:%s as flags=%s link=%s", i+1, r["ip"], r["port"], r["flags"], r["master-link-status"])
			}
		}
	}
	mp := s.serverAt(master)
	if mp == nil {
		return fmt.Errorf("sentinels name %s, not one of ours", master)
	}
	for _, p := range s.servers {
		info, err := s.serverC[p.id].Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("%s: INFO replication: %w", p.id, err)
		}
		f := infoFields(info)
		if p == mp {
			if f["role"] != "master" || f["connected_slaves"] != "2" {
				return fmt.Errorf("%s (the primary): role %s, %s connected replicas", p.id, f["role"], f["connected_slaves"])
			}
			for _, k := range []string{"slave0", "slave1"} {
				if !strings.Contains(f[k], "state=online") {
					return fmt.Errorf("%s (the primary): %s: %s", p.id, k, f[k])
				}
			}
			continue
		}
		if f["role"] != "slave" || f["master_port"] != strconv.Itoa(mp.port) || f["master_link_status"] != "up" || f["master_sync_in_progress"] != "0" {
			return fmt.Errorf("%s: role %s of port %s, link %s, sync in progress %s", p.id, f["role"], f["master_port"], f["master_link_status"], f["master_sync_in_progress"])
		}
	}
	n, err := s.serverC[mp.id].Do(ctx, "WAIT", 2, 1000).Int()
	if err != nil || n < 2 {
		return fmt.Errorf("%s (the primary): WAIT 2: %d replicas, %v", mp.id, n, err)
	}
	return nil
}

// infoFields parses an INFO reply.
func infoFields(info string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			f[k] = v
		}
	}
	return f
}

// Failover implements FailoverReporter: it waits for a +switch-master after
// killed, then reports the first +odown of the primary as detection and the
// first +switch-master as promotion (the earliest any sentinel announced
// each), and counts the distinct switches since the kill.
func (s *Sentinel) Failover(ctx context.Context, killed time.Time) (Failover, error) {
	for {
		f, ok := s.failover(killed)
		if ok {
			return f, nil
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return f, fmt.Errorf("failbench: no +switch-master since the kill: %w", ctx.Err())
		}
	}
}

func (s *Sentinel) failover(killed time.Time) (Failover, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var f Failover
	var sdown time.Duration
	switches := map[string]bool{}
	for _, e := range s.events {
		if e.at.Before(killed) {
			continue
		}
		d := e.at.Sub(killed)
		switch {
		case e.channel == "+sdown" && strings.HasPrefix(e.payload, "master "):
			if sdown == 0 || d < sdown {
				sdown = d
			}
		case e.channel == "+odown" && strings.HasPrefix(e.payload, "master "):
			if f.Detected == 0 || d < f.Detected {
				f.Detected = d
			}
		case e.channel == "+switch-master":
			if f.Promoted == 0 || d < f.Promoted {
				f.Promoted = d
			}
			switches[e.payload] = true
		}
	}
	f.Promotions = len(switches)
	if sdown > 0 {
		f.Detail = fmt.Sprintf("first +sdown %s", secs(sdown))
	}
	return f, f.Promotions > 0
}

// Stop implements Target.
func (s *Sentinel) Stop() error {
	for _, ps := range s.subs {
		ps.Close()
	}
	s.wg.Wait()
	for _, c := range s.sentinelC {
		c.Close()
	}
	for _, c := range s.serverC {
		c.Close()
	}
	var wg sync.WaitGroup
	for _, p := range append(slices.Clone(s.sentinels), s.servers...) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.stop(10 * time.Second) // one that needed SIGKILL is gone all the same
		}()
	}
	wg.Wait()
	return nil
}

package commitbench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/tandemdb/tandem/internal/proc"
)

// etcdWorkersPerClient is how many workers share one clientv3.Client (one
// gRPC connection): etcd's own benchmark tool shares a few connections
// among many clients, and a connection per worker would measure gRPC's
// per-connection overhead more than etcd.
const etcdWorkersPerClient = 5

// etcdMembers is the cluster size: 3 members, so a write is durable on 2.
const etcdMembers = 3

// Etcd is a 3-member etcd cluster on loopback, from the system's etcd
// binary, loaded by Puts through the Go client.
type Etcd struct {
	log *slog.Logger

	version   string
	endpoints []string
	members   []*etcdMember

	mu      sync.Mutex
	clients []*clientv3.Client
	workers int
}

type etcdMember struct {
	name string
	p    *proc.Process
	log  *os.File
}

// NewEtcd returns the etcd target; Start starts it.
func NewEtcd(log *slog.Logger) *Etcd {
	return &Etcd{log: log}
}

func (e *Etcd) Name() string { return "etcd" }

func (e *Etcd) Describe() string {
	v := e.version
	if v == "" {
		v = "(version unknown)"
	}
	return fmt.Sprintf("etcd %s, %d members on loopback, fsync on, Put via go.etcd.io/etcd/client/v3", v, etcdMembers)
}

// etcdVersion reads the version from `etcd --version` ("etcd Version:
// 3.4.23"); Debian's build says nothing else about its origin, so the
// path tells whether it is the distribution's.
func etcdVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("commitbench: etcd: %s --version: %w", bin, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "etcd Version:"); ok {
			v = strings.TrimSpace(v)
			if bin == "/usr/bin/etcd" {
				v += " (Debian)"
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("commitbench: etcd: no version in %s --version: %q", bin, out)
}

// peerEnv is the environment without variables starting with prefix, so
// that an ETCD_* or PG* variable of the caller's cannot change a server's
// configuration behind its flags.
func peerEnv(prefix string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, prefix) {
			env = append(env, kv)
		}
	}
	return env
}

func (e *Etcd) Start(ctx context.Context, dir string) error {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return fmt.Errorf("commitbench: etcd: %w", err)
	}
	if e.version, err = etcdVersion(ctx, bin); err != nil {
		return err
	}
	ports, err := proc.FreePorts(2 * etcdMembers)
	if err != nil {
		return fmt.Errorf("commitbench: etcd: %w", err)
	}
	clientURL := func(i int) string { return "http://127.0.0.1:" + strconv.Itoa(ports[2*i]) }
	peerURL := func(i int) string { return "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]) }
	var cluster []string
	e.endpoints = nil
	for i := range etcdMembers {
		cluster = append(cluster, fmt.Sprintf("m%d=%s", i, peerURL(i)))
		e.endpoints = append(e.endpoints, clientURL(i))
	}
	// A fresh token keeps these members from ever joining a cluster left
	// over from an earlier run on the same ports.
	token := fmt.Sprintf("commitbench-%d-%d", os.Getpid(), time.Now().UnixNano())

	e.log.Info("starting etcd", "version", e.version, "members", etcdMembers, "endpoints", e.endpoints, "dir", dir)
	for i := range etcdMembers {
		name := fmt.Sprintf("m%d", i)
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			e.Stop()
			return fmt.Errorf("commitbench: etcd: %w", err)
		}
		// Durability is etcd's default (fsync of the WAL before a
		// proposal commits); --unsafe-no-fsync is deliberately absent.
		cmd := exec.Command(bin,
			"--name", name,
			"--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", clientURL(i),
			"--advertise-client-urls", clientURL(i),
			"--listen-peer-urls", peerURL(i),
			"--initial-advertise-peer-urls", peerURL(i),
			"--initial-cluster", strings.Join(cluster, ","),
			"--initial-cluster-token", token,
			"--initial-cluster-state", "new",
			"--logger", "zap",
			"--log-outputs", "stderr",
		)
		cmd.Env = peerEnv("ETCD")
		cmd.Stdout, cmd.Stderr = logf, logf
		p, err := proc.Start(cmd)
		if err != nil {
			logf.Close()
			e.Stop()
			return fmt.Errorf("commitbench: etcd: %s: %w", name, err)
		}
		m := &etcdMember{name: name, p: p, log: logf}
		e.members = append(e.members, m)
		e.log.Debug("etcd member started", "name", name, "pid", p.Pid(), "client", clientURL(i), "peer", peerURL(i))
	}
	if err := e.waitReady(ctx, 60*time.Second); err != nil {
		e.Stop()
		return err
	}
	e.log.Info("etcd started", "endpoints", e.endpoints)
	return nil
}

func (e *Etcd) newClient() (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   e.endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("commitbench: etcd: client: %w", err)
	}
	return cli, nil
}

// waitReady returns once a Put succeeds and every member answers Status
// naming the same leader, i.e. the cluster takes writes with all three
// members in it.
func (e *Etcd) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cli, err := e.newClient()
	if err != nil {
		return err
	}
	defer cli.Close()
	var last error
	for {
		for _, m := range e.members {
			select {
			case <-m.p.Done():
				return fmt.Errorf("commitbench: etcd: member %s exited during start (%v); see its log in %s", m.name, m.p.Err(), m.log.Name())
			default:
			}
		}
		last = e.ready(ctx, cli)
		if last == nil {
			return nil
		}
		e.log.Debug("etcd not ready yet", "err", last)
		select {
		case <-ctx.Done():
			return fmt.Errorf("commitbench: etcd: not ready: %w (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *Etcd) ready(ctx context.Context, cli *clientv3.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "commitbench-ready", "1"); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	var leader uint64
	for _, ep := range e.endpoints {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			return fmt.Errorf("status %s: %w", ep, err)
		}
		if st.Leader == 0 {
			return fmt.Errorf("status %s: no leader", ep)
		}
		if leader != 0 && st.Leader != leader {
			return fmt.Errorf("status %s: leader %x, another member says %x", ep, st.Leader, leader)
		}
		leader = st.Leader
	}
	return nil
}

func (e *Etcd) Processes() []Process {
	var ps []Process
	for _, m := range e.members {
		ps = append(ps, Process{Role: "member", PID: m.p.Pid()})
	}
	return ps
}

// NewWorker hands out the shared clients round-robin by blocks: workers
// 0-4 share the first client, 5-9 the second, and so on.
func (e *Etcd) NewWorker(ctx context.Context) (Worker, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.workers%etcdWorkersPerClient == 0 {
		cli, err := e.newClient()
		if err != nil {
			return nil, err
		}
		e.clients = append(e.clients, cli)
	}
	e.workers++
	return etcdWorker{cli: e.clients[len(e.clients)-1]}, nil
}

type etcdWorker struct {
	cli *clientv3.Client
}

func (w etcdWorker) Write(ctx context.Context, key string, value []byte) error {
	if _, err := w.cli.Put(ctx, key, string(value)); err != nil {
		return fmt.Errorf("commitbench: etcd: put: %w", err)
	}
	return nil
}

// Close does nothing: the client is shared with other workers and closed
// by Stop.
func (etcdWorker) Close() error { return nil }

// Stop closes the clients and stops every member: SIGTERM, then SIGKILL
// for a member still running after 10 s. The followers go first: a leader
// stopped on SIGTERM hands its leadership to a follower and, if that one
// is stopping too, waits seconds for the transfer to time out. The data
// dirs stay for the caller.
func (e *Etcd) Stop() error {
	e.mu.Lock()
	var errs []error
	for _, cli := range e.clients {
		if err := cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("commitbench: etcd: close client: %w", err))
		}
	}
	e.clients, e.workers = nil, 0
	e.mu.Unlock()
	if len(e.members) == 0 {
		return errors.Join(errs...)
	}

	leader := e.leader()
	var first, last []*etcdMember
	for i, m := range e.members {
		if i == leader {
			last = append(last, m)
		} else {
			first = append(first, m)
		}
	}
	for _, ms := range [][]*etcdMember{first, last} {
		var wg sync.WaitGroup
		errc := make(chan error, len(ms))
		for _, m := range ms {
			wg.Go(func() {
				if err := m.p.Stop(10 * time.Second); err != nil {
					errc <- fmt.Errorf("commitbench: etcd: stop %s: %w", m.name, err)
				}
				m.log.Close()
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			errs = append(errs, err)
		}
	}
	e.log.Info("etcd stopped")
	e.members = nil
	return errors.Join(errs...)
}

// leader is the index in e.members of the leader, or -1 if no member says
// it leads within a second.
func (e *Etcd) leader() int {
	cli, err := e.newClient()
	if err != nil {
		return -1
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for i, ep := range e.endpoints {
		st, err := cli.Status(ctx, ep)
		if err != nil {
			e.log.Debug("etcd status before stop", "endpoint", ep, "err", err)
			continue
		}
		if st.Header != nil && st.Header.MemberId == st.Leader {
			return i
		}
	}
	return -1
}

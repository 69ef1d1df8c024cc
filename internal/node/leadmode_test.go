package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
)

// TestLeadershipStartsInTheTopologysMode: a node named leader by a
// topology whose mode is stricter than its own --mode commits by the
// topology's mode from its first write. The agent's sync-set step also
// sets the mode, but only after apply returns, and the lease may begin
// before that; here the agent is driven by hand (apply, no run loop), so
// the step never comes: a leadership that started in the node's own mode
// (async, the server's default) acknowledges a write that no follower has,
// in a cluster that promised quorum 1 (the old code did).
func TestLeadershipStartsInTheTopologysMode(t *testing.T) {
	_, cli := embedded.ForTest(t)
	n := testNode(t, "n1", func(c *Config) { c.WriteTimeout = 300 * time.Millisecond }) // --mode async
	a := &agent{n: n, store: coord.New(cli, "tandem"), fence: time.Millisecond, keepalive: leaseKeepalive(time.Millisecond),
		wake: make(chan struct{}, 1)}
	want := commit.Mode{Kind: commit.Quorum, K: 1}
	topo := coord.Topology{Epoch: 7, Leader: "n1", Mode: coord.ModeOf(want), Changed: time.Now()}
	if err := a.store.SetTopology(context.Background(), 0, topo, nil); err != nil {
		t.Fatal(err)
	}
	a.apply(context.Background(), topo)
	r, ok := n.current().(*leading)
	if !ok || r.l.Epoch() != 7 {
		t.Fatalf("after apply: role %s, want the leader of epoch 7", roleOf(n))
	}
	if got, _ := r.l.Mode(); got != want {
		t.Fatalf("the leadership commits by %s, want the topology's %s", got, want)
	}
	// renew does not run: confirm the lease by hand, once it has begun.
	waitFor(t, "the lease to begin", 10*time.Second, func() bool {
		r.lease.Extend(time.Now().Add(time.Minute))
		return r.lease.Valid()
	})
	c := newClient(t, n)
	err := c.Set(context.Background(), "k", "v", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("SET with no follower under quorum 1: %v, want NOREPLICAS", err)
	}
}

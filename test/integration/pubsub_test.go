package integration

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestPubSubAcrossNodes runs 3 nodes (n1 leads) with subscribers on every
// node: on each follower one subscribing to the channel and one to the
// channel and a pattern matching it (RESP3), on the leader one (RESP2).
// PUBLISHes on the leader, some right after a write, and on a follower
// (forwarded to the leader) must reach every subscription exactly once,
// in one order, and a "w<i>" message must find the write k=i readable on
// the subscriber's own node when it arrives.
func TestPubSubAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	leader := client(t, c.Node(1).RESPAddr)
	if err := leader.Set(ctx, "k", "-1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c)
	// Messages reach a follower only while it streams (one seeded from a
	// snapshot has applied the write before its stream is up), and those
	// published before are lost for its subscribers, by design.
	for _, id := range []int{2, 3} {
		waitStatus(t, c, id, "streaming", func(s statusdoc.Node) bool { return s.State == "streaming" })
	}

	type sub struct {
		name  string
		node  *redis.Client // for reads on the subscriber's node
		ps    *redis.PubSub
		perMs int // deliveries per message: one per subscription
	}
	var subs []*sub
	for _, id := range []int{1, 2, 3} {
		addr := c.Node(id).RESPAddr
		for k, proto := range []int{2, 3} {
			if id == 1 && proto == 3 {
				continue
			}
			cl := redis.NewClient(&redis.Options{Addr: addr, Protocol: proto, MaxRetries: -1, ReadTimeout: 10 * time.Second})
			t.Cleanup(func() { cl.Close() })
			s := &sub{name: fmt.Sprintf("n%d/resp%d", id, proto), node: client(t, addr), perMs: 1}
			if k == 1 {
				s.ps = cl.Subscribe(ctx, "ch")
				if _, err := s.ps.Receive(ctx); err != nil {
					t.Fatal(err)
				}
				if err := s.ps.PSubscribe(ctx, "c*"); err != nil {
					t.Fatal(err)
				}
				s.perMs = 2
			} else {
				s.ps = cl.Subscribe(ctx, "ch")
			}
			if _, err := s.ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.ps.Close() })
			subs = append(subs, s)
		}
	}

	// Publish: from the leader, with a write before every 10th; every 7th
	// through follower n2 (forwarded to the leader, so it takes its place
	// in the one order).
	const n = 600
	follower := client(t, c.Node(2).RESPAddr)
	var fromLeader, fromFollower []string
	for i := range n {
		msg := strconv.Itoa(i)
		via := leader
		switch {
		case i%10 == 0:
			if err := leader.Set(ctx, "k", msg, 0).Err(); err != nil {
				t.Fatal(err)
			}
			msg = "w" + msg
		case i%7 == 0:
			via, msg = follower, "f"+msg
		}
		got, err := via.Publish(ctx, "ch", msg).Result()
		if err != nil {
			t.Fatal(err)
		}
		// The reply counts the serving node's own subscriptions: the
		// leader has one, n2 has three (one plain, one with a pattern).
		if wantN := map[*redis.Client]int64{leader: 1, follower: 3}[via]; got != wantN {
			t.Errorf("PUBLISH %s via %v = %d, want %d", msg, via, got, wantN)
		}
		if via == follower {
			fromFollower = append(fromFollower, msg)
		} else {
			fromLeader = append(fromLeader, msg)
		}
	}

	var first []string
	for _, s := range subs {
		var got []string
		seen := map[string]int{}
		for len(got) < n*s.perMs {
			m, err := s.ps.ReceiveTimeout(ctx, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: after %d messages: %v", s.name, len(got), err)
			}
			msg, ok := m.(*redis.Message)
			if !ok {
				t.Fatalf("%s: got %T %v", s.name, m, m)
			}
			got = append(got, msg.Payload)
			seen[msg.Payload]++
			if msg.Pattern == "" && strings.HasPrefix(msg.Payload, "w") {
				// The write published before it is readable here now.
				v, err := s.node.Get(ctx, "k").Int()
				if w, _ := strconv.Atoi(msg.Payload[1:]); err != nil || v < w {
					t.Errorf("%s: %s delivered while the node reads k=%d (%v)", s.name, msg.Payload, v, err)
				}
			}
		}
		// Once per subscription: with a pattern too, each message comes
		// as message then pmessage.
		var order []string
		for i := 0; i < len(got); i += s.perMs {
			for j := range s.perMs {
				if got[i+j] != got[i] {
					t.Fatalf("%s: delivery %d is %q, want %q again (once per subscription)", s.name, i+j, got[i+j], got[i])
				}
			}
			order = append(order, got[i])
		}
		for m, k := range seen {
			if k != s.perMs {
				t.Fatalf("%s: %q delivered %d times, want %d", s.name, m, k, s.perMs)
			}
		}
		// One order on every node; each publisher's messages in the order
		// it published them (a follower's PUBLISH is answered before the
		// leader publishes it, so it has no place among the leader's
		// own until it gets there).
		if first == nil {
			first = order
		} else {
			for i := range order {
				if order[i] != first[i] {
					t.Fatalf("%s: delivery %d is %q, %s's is %q: the nodes' orders differ", s.name, i, order[i], subs[0].name, first[i])
				}
			}
		}
		for _, src := range [][]string{fromLeader, fromFollower} {
			k := 0
			for _, m := range order {
				if k < len(src) && m == src[k] {
					k++
				}
			}
			if k != len(src) {
				t.Fatalf("%s: %q not in publish order", s.name, src[k])
			}
		}
		t.Logf("%s: %d deliveries in order", s.name, len(got))
	}
	// Node-local introspection.
	for id, wantSubs := range map[int]int64{1: 1, 2: 2, 3: 2} {
		cl := client(t, c.Node(id).RESPAddr)
		ns, err := cl.PubSubNumSub(ctx, "ch").Result()
		if err != nil || ns["ch"] != wantSubs {
			t.Errorf("n%d: PUBSUB NUMSUB ch = %v, %v; want %d", id, ns, err, wantSubs)
		}
	}
}

// TestPubSubThroughProxy: a subscriber through the proxy (its connection
// pinned to a node) and one on the leader directly get every message
// published through the proxy (sent to the leader), in order.
func TestPubSubThroughProxy(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) { cfg.Proxy = true })
	px, ok := c.Proxy()
	if !ok {
		t.Fatal("no proxy")
	}
	ctx := context.Background()
	leader, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pc := client(t, px.RESPAddr)
	if err := pc.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c)
	var subs []*redis.PubSub
	for _, addr := range []string{px.RESPAddr, c.Node(leader).RESPAddr} {
		ps := client(t, addr).Subscribe(ctx, "ch")
		if _, err := ps.Receive(ctx); err != nil {
			t.Fatalf("SUBSCRIBE at %s: %v", addr, err)
		}
		t.Cleanup(func() { ps.Close() })
		subs = append(subs, ps)
	}
	const n = 300
	for i := range n {
		if err := pc.Publish(ctx, "ch", strconv.Itoa(i)).Err(); err != nil {
			t.Fatalf("PUBLISH through the proxy: %v", err)
		}
	}
	for k, ps := range subs {
		for i := range n {
			m, err := ps.ReceiveTimeout(ctx, 10*time.Second)
			if err != nil {
				t.Fatalf("subscriber %d, message %d: %v", k, i, err)
			}
			if msg, ok := m.(*redis.Message); !ok || msg.Payload != strconv.Itoa(i) {
				t.Fatalf("subscriber %d: message %d is %v", k, i, m)
			}
		}
	}
}

// TestNotificationsSurviveFailover: notify-keyspace-events set on the
// leader is the cluster's (the leader sends its settings on every
// follower stream): every follower reports it, the node promoted by a
// kill -9 failover publishes the same notifications, and the killed node,
// restarted empty-handed, takes them again from the new leader. Before,
// each node kept its own and the failover turned them off.
func TestNotificationsSurviveFailover(t *testing.T) {
	c := startControlled(t, 3, nil)
	ctx := context.Background()
	old, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := client(t, c.Node(old).RESPAddr).ConfigSet(ctx, "notify-keyspace-events", "KEA").Err(); err != nil {
		t.Fatal(err)
	}
	want := client(t, c.Node(old).RESPAddr).ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]
	if want == "" {
		t.Fatal("CONFIG GET notify-keyspace-events is empty after CONFIG SET")
	}
	settingOn := func(id int) string {
		return client(t, c.Node(id).RESPAddr).ConfigGet(ctx, "notify-keyspace-events").Val()["notify-keyspace-events"]
	}
	for _, n := range c.Nodes() {
		testutil.Eventually(t, n.Name+" takes the leader's notify-keyspace-events", 10*time.Second, func() (bool, string) {
			got := settingOn(n.ID)
			return got == want, fmt.Sprintf("%q, want %q", got, want)
		})
	}
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	var next cluster.NodeInfo
	testutil.Eventually(t, "a new leader", 20*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		for _, n := range c.Nodes() {
			if n.Name == top.Leader && n.ID != old {
				next = n
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", top)
	})
	sub := redis.NewClient(&redis.Options{Addr: next.RESPAddr, Protocol: 2, MaxRetries: -1})
	t.Cleanup(func() { sub.Close() })
	ps := sub.Subscribe(ctx, "__keyevent@0__:set")
	t.Cleanup(func() { ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	nc := client(t, next.RESPAddr)
	testutil.Eventually(t, "a write on the new leader", 20*time.Second, func() (bool, string) {
		err := nc.Set(ctx, "after-failover", "v", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	m, err := ps.ReceiveMessage(mctx)
	if err != nil {
		t.Fatalf("no set notification from the new leader %s: %v", next.Name, err)
	}
	if m.Channel != "__keyevent@0__:set" || m.Payload != "after-failover" {
		t.Fatalf("got %s %q, want __keyevent@0__:set after-failover", m.Channel, m.Payload)
	}
	waitStatus(t, c, old, "following the new leader", func(s statusdoc.Node) bool {
		return s.Role == statusdoc.RoleFollower && s.State == "streaming"
	})
	testutil.Eventually(t, "the restarted node takes the cluster's setting", 10*time.Second, func() (bool, string) {
		got := settingOn(old)
		return got == want, fmt.Sprintf("%q, want %q", got, want)
	})
}

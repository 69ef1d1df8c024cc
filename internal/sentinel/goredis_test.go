package sentinel

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/testutil"
)

// backend is a stand-in data node: a redcon server answering PING, SET,
// GET, ROLE, INFO and CLIENT as a Redis 5 master would (no HELLO, so
// go-redis speaks RESP2 to it), and counting the SETs it took.
type backend struct {
	addr string
	srv  *redcon.Server
	mu   sync.Mutex
	data map[string]string
	sets int
	// fenced makes it answer as a fenced tandem node does: writes
	// -READONLY, reads -MASTERDOWN.
	fenced bool
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{data: map[string]string{}}
	b.srv = redcon.NewServerNetwork("tcp", "127.0.0.1:0", b.handle, nil, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = l.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); b.srv.Serve(l) }()
	t.Cleanup(func() { b.srv.Close(); <-done })
	return b
}

func (b *backend) handle(c redcon.Conn, cmd redcon.Command) {
	b.mu.Lock()
	defer b.mu.Unlock()
	name := strings.ToLower(string(cmd.Args[0]))
	if b.fenced && name == "set" {
		c.WriteError("READONLY You can't write against a read only replica. (tandem: this node is not the leader)")
		return
	}
	if b.fenced && name == "get" {
		c.WriteError("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (tandem: this node is fenced)")
		return
	}
	switch name {
	case "ping":
		c.WriteString("PONG")
	case "client":
		c.WriteString("OK")
	case "set":
		b.data[string(cmd.Args[1])] = string(cmd.Args[2])
		b.sets++
		c.WriteString("OK")
	case "get":
		if v, ok := b.data[string(cmd.Args[1])]; ok {
			c.WriteBulkString(v)
		} else {
			c.WriteNull()
		}
	case "role":
		c.WriteArray(3)
		c.WriteBulkString("master")
		c.WriteInt(0)
		c.WriteArray(0)
	case "info":
		c.WriteBulkString("# Replication\r\nrole:master\r\n")
	default:
		c.WriteError("ERR unknown command '" + string(cmd.Args[0]) + "'")
	}
}

func (b *backend) fence() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fenced = true
}

func (b *backend) setCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sets
}

func (b *backend) get(k string) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v, ok := b.data[k]
	return v, ok
}

// subscribed reports whether someone listens on +switch-master: a
// message for another master name, which clients ignore, reaches them.
func (f *fixture) subscribed() bool {
	return f.srv.ps.Publish("+switch-master", "not-tandem 0.0.0.0 0 0.0.0.0 0") > 0
}

func TestSentinelClient(t *testing.T) {
	f := start(t, testState(), Config{ID: "o1"})
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	sc := redis.NewSentinelClient(&redis.Options{Addr: f.addr})
	defer sc.Close()

	if err := sc.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	addr, err := sc.GetMasterAddrByName(ctx, "tandem").Result()
	if err != nil || len(addr) != 2 || addr[0] != "10.0.0.1" || addr[1] != "6379" {
		t.Fatalf("GetMasterAddrByName: %q, %v", addr, err)
	}
	if _, err := sc.GetMasterAddrByName(ctx, "other").Result(); err != redis.Nil {
		t.Errorf("GetMasterAddrByName(other): %v, want redis.Nil", err)
	}
	m, err := sc.Master(ctx, "tandem").Result()
	if err != nil || m["ip"] != "10.0.0.1" || m["port"] != "6379" || m["flags"] != "master" || m["config-epoch"] != "7" || m["num-slaves"] != "2" {
		t.Errorf("Master: %v, %v", m, err)
	}
	ms, err := sc.Masters(ctx).Result()
	if err != nil || len(ms) != 1 {
		t.Errorf("Masters: %v, %v", ms, err)
	}
	rs, err := sc.Replicas(ctx, "tandem").Result()
	if err != nil || len(rs) != 2 || rs[0]["ip"] != "10.0.0.2" || rs[0]["flags"] != "slave" || rs[1]["flags"] != "s_down,slave" || rs[1]["master-link-status"] != "err" {
		t.Errorf("Replicas: %v, %v", rs, err)
	}
	ss, err := sc.Sentinels(ctx, "tandem").Result()
	if err != nil || len(ss) != 1 || ss[0]["ip"] != "10.0.1.2" || ss[0]["port"] != "26380" {
		t.Errorf("Sentinels: %v, %v", ss, err)
	}
	for name, err := range map[string]error{
		"CkQuorum": sc.CkQuorum(ctx, "tandem").Err(),
		"Failover": sc.Failover(ctx, "tandem").Err(),
		"Reset":    sc.Reset(ctx, "*").Err(),
		"Monitor":  sc.Monitor(ctx, "m", "10.0.0.9", "6379", "1").Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "use tandem switchover") {
			t.Errorf("%s: %v", name, err)
		}
	}

	ps := sc.Subscribe(ctx, "+switch-master")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		t.Fatal(err)
	}
	next := testState()
	next.Leader = &Node{ID: "n2", Addr: "10.0.0.2:6379"}
	f.change(next)
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "tandem 10.0.0.1 6379 10.0.0.2 6379" {
		t.Errorf("+switch-master: %v, %v", msg, err)
	}
	if addr, err := sc.GetMasterAddrByName(ctx, "tandem").Result(); err != nil || addr[0] != "10.0.0.2" {
		t.Errorf("after the switch: %q, %v", addr, err)
	}
}

// TestFailoverClient: go-redis's failover client finds the leader through
// the sentinel, and after Changed publishes +switch-master its commands go
// to the new leader, though the old one still answers (only the event can
// have moved it).
func TestFailoverClient(t *testing.T) {
	b1, b2 := startBackend(t), startBackend(t)
	st := State{Epoch: 1, Leader: &Node{ID: "n1", Addr: b1.addr}, Replicas: []Node{{ID: "n2", Addr: b2.addr}}}
	f := start(t, st, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    "tandem",
		SentinelAddrs: []string{f.addr},
		MaxRetries:    -1, // each command goes once: the test sees where
	})
	defer c.Close()

	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, _ := b1.get("k"); v != "v1" {
		t.Fatalf("the first SET did not reach the leader: %q", v)
	}
	testutil.Eventually(t, "the client to subscribe to +switch-master", ioTimeout, func() (bool, string) {
		return f.subscribed(), "no subscriber"
	})

	f.change(State{Epoch: 2, Leader: &Node{ID: "n2", Addr: b2.addr}, Replicas: []Node{{ID: "n1", Addr: b1.addr}}})
	i := 0
	testutil.Eventually(t, "a SET to reach the new leader", ioTimeout, func() (bool, string) {
		i++
		err := c.Set(ctx, "k", fmt.Sprint("after-", i), 0).Err()
		_, ok := b2.get("k")
		return ok, fmt.Sprintf("SET %d: %v; old leader took %d", i, err, b1.setCount())
	})
	before := b1.setCount()
	for j := range 20 {
		if err := c.Set(ctx, "k", fmt.Sprint("then-", j), 0).Err(); err != nil {
			t.Fatalf("SET after the switch: %v", err)
		}
	}
	if v, _ := b2.get("k"); v != "then-19" || b1.setCount() != before {
		t.Errorf("after the switch: new leader has %q, old leader took %d more SETs", v, b1.setCount()-before)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "then-19" {
		t.Errorf("GET after the switch: %q, %v", v, err)
	}
}

// TestFailoverClientFencedLeader: with no event (a client that missed it),
// the fenced old leader's -READONLY makes go-redis drop the connection and
// ask the sentinel again, so a write goes to the new leader at once; its
// -MASTERDOWN to reads does not (go-redis retries on the connection it
// has), which only the event or a write ends.
func TestFailoverClientFencedLeader(t *testing.T) {
	b1, b2 := startBackend(t), startBackend(t)
	f := start(t, State{Epoch: 1, Leader: &Node{ID: "n1", Addr: b1.addr}}, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:      "tandem",
		SentinelAddrs:   []string{f.addr},
		PoolSize:        1,
		MaxRetries:      2,
		MinRetryBackoff: time.Millisecond,
		MaxRetryBackoff: time.Millisecond,
	})
	defer c.Close()
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b1.fence()
	f.set(State{Epoch: 2, Leader: &Node{ID: "n2", Addr: b2.addr}}) // no Changed: no event
	if err := c.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "MASTERDOWN") {
		t.Errorf("GET on the fenced leader: %v, want MASTERDOWN", err)
	}
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatalf("SET after the leader was fenced: %v", err)
	}
	if v, _ := b2.get("k"); v != "v2" {
		t.Errorf("the SET did not reach the new leader: %q", v)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v2" {
		t.Errorf("GET after the SET moved the client: %q, %v", v, err)
	}
}

// TestFailoverClientReplicas: go-redis's replica routing reads SENTINEL
// replicas and sends nothing to a replica flagged s_down.
func TestFailoverClientReplicas(t *testing.T) {
	leader, healthy, down := startBackend(t), startBackend(t), startBackend(t)
	st := State{Epoch: 1, Leader: &Node{ID: "n1", Addr: leader.addr}, Replicas: []Node{
		{ID: "n2", Addr: healthy.addr},
		{ID: "n3", Addr: down.addr, Down: true},
	}}
	f := start(t, st, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A client per SET, so that each picks a replica anew: with the down
	// one not filtered out, ten would all miss it one time in 1024.
	for j := range 10 {
		c := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:    "tandem",
			SentinelAddrs: []string{f.addr},
			ReplicaOnly:   true,
			MaxRetries:    -1,
		})
		err := c.Set(ctx, fmt.Sprint("k", j), "v", 0).Err()
		c.Close()
		if err != nil {
			t.Fatalf("SET: %v", err)
		}
	}
	if healthy.setCount() != 10 || down.setCount() != 0 || leader.setCount() != 0 {
		t.Errorf("SETs: healthy replica %d, down replica %d, leader %d; want 10, 0, 0",
			healthy.setCount(), down.setCount(), leader.setCount())
	}
}

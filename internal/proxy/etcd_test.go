package proxy

import (
	"context"
	"fmt"
	"github.com/tandemdb/tandem/internal/testutil"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
)

// TestFollowEtcd: the proxy takes the leader from etcd's topology and the
// addresses from the members, follows a change of leader, and when etcd
// goes away keeps serving on the last topology, saying so in INFO.
func TestFollowEtcd(t *testing.T) {
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
	// Not embedded.ForTest, which closes etcd at the end: this test
	// closes it in the middle.
	e, err := embedded.Start(t.TempDir(), free(), free())
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			e.Close()
		}
	}()
	cli, err := coord.Dial([]string{e.Endpoint})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	store := coord.New(cli, "tandem")
	l, f1, f2, _ := threeFakes(t, false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, f := range []*fakeNode{l, f1} {
		if err := store.PutMember(ctx, coord.Member{ID: f.id, RESPAddr: f.addr, Priority: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.SetTopology(ctx, 0, coord.Topology{Epoch: 1, Leader: "n1"}, nil); err != nil {
		t.Fatal(err)
	}
	p, addr := startProxy(t, Config{}, View{})
	p.membersEvery = time.Hour // the idle window below counts reads: no periodic one may fall in it
	fctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.FollowEtcd(fctx, store); close(done) }()
	defer func() { stop(); <-done }()
	c := client(t, addr)
	testutil.Eventually(t, "the leader from etcd", 5*time.Second, func() (bool, string) { l, _, _ := p.snapshot(); return l != nil && l.id == "n1", "" })
	if err := c.Set(ctx, "k", "1", 0).Err(); err != nil || l.count("set") != 1 {
		t.Fatalf("SET: %v; n1 got %d", err, l.count("set"))
	}

	// A failover in etcd: writes follow.
	f1.mu.Lock()
	f1.leader = true
	f1.mu.Unlock()
	if err := store.SetTopology(ctx, 1, coord.Topology{Epoch: 2, Leader: "n2"}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the new leader", 5*time.Second, func() (bool, string) { l, _, _ := p.snapshot(); return l != nil && l.id == "n2", "" })
	if err := c.Set(ctx, "k", "2", 0).Err(); err != nil || f1.count("set") != 1 {
		t.Fatalf("SET after the failover: %v; n2 got %d", err, f1.count("set"))
	}

	// Idle: no read of the members without a reason (a poll read them
	// every second); a member that registers is learnt from the watch.
	reads := p.etcdReads.Load()
	time.Sleep(2500 * time.Millisecond)
	if n := p.etcdReads.Load() - reads; n != 0 {
		t.Errorf("%d reads of the members in 2.5 s with nothing changed, want 0", n)
	}
	if err := store.PutMember(ctx, coord.Member{ID: f2.id, RESPAddr: f2.addr, Priority: 1}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the member that registered", 5*time.Second, func() (bool, string) {
		_, fs, _ := p.snapshot()
		for _, f := range fs {
			if f.id == f2.id {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d followers", len(fs))
	})

	// etcd goes away: the proxy serves on, and says so.
	e.Close()
	closed = true
	testutil.Eventually(t, "etcd marked unreachable", 5*time.Second, func() (bool, string) {
		info, _ := c.Info(ctx, "proxy").Result()
		return strings.Contains(info, "etcd:unreachable"), info
	})
	if err := c.Set(ctx, "k", "3", 0).Err(); err != nil || f1.count("set") != 2 {
		t.Fatalf("SET without etcd: %v; n2 got %d", err, f1.count("set"))
	}
	info, _ := c.Info(ctx, "proxy").Result()
	if !strings.Contains(info, "serving the last topology known") || !strings.Contains(info, "leader:n2") {
		t.Errorf("INFO without etcd:\n%s", info)
	}
}

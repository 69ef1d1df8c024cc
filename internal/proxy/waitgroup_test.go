package proxy

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/resp"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestBoundedReadsShareCalls: bounded reads that come together go to a
// follower in one call, each in its full form, and each client gets its
// own read's reply: one of them, whose session wrote its key on the
// leader (a floor the followers have not applied), is refused there and
// read on the leader, which the others in its group do not see. Fails
// with plantNoWaitGroups (each read a call of its own), and with a read's
// replies taken from the call's start rather than its own commands.
func TestBoundedReadsShareCalls(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	const n = maxGroup
	for _, f := range []*fakeNode{l, f1, f2} {
		f.mu.Lock()
		for i := range n {
			f.data[fmt.Sprintf("k%d", i)] = fmt.Sprintf("v%d", i)
		}
		f.mu.Unlock()
	}
	p, addr := startProxy(t, Config{Policy: Policy{Kind: resp.PolicyBounded, Bound: 50 * time.Millisecond}}, v)
	waitProbed(t, p)
	ctx := context.Background()
	clients := make([]*redis.Client, n)
	for i := range clients {
		clients[i] = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second})
		t.Cleanup(func() { clients[i].Close() })
	}
	// Groups form on a follower once a bounded read was served there.
	testutil.Eventually(t, "bounded reads served on both followers", 5*time.Second, func() (bool, string) {
		if err := clients[1].Get(ctx, "k1").Err(); err != nil {
			return false, err.Error()
		}
		return p.nodeByID("n2").boundedOK.Load() && p.nodeByID("n3").boundedOK.Load(), "not yet"
	})
	warm := f1.count("get") + f2.count("get")
	hold := make(chan struct{})
	holdGroups.Store(&hold)
	t.Cleanup(func() { holdGroups.Store(nil) })
	// Session 0 writes its key: its floor is the leader's position.
	if err := clients[0].Set(ctx, "k0", "new", 0).Err(); err != nil {
		t.Fatal(err)
	}
	want := func(i int) string {
		if i == 0 {
			return "new"
		}
		return fmt.Sprintf("v%d", i)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range clients {
		wg.Go(func() {
			got, err := c.Get(ctx, fmt.Sprintf("k%d", i)).Result()
			if err == nil && got != want(i) {
				err = fmt.Errorf("GET k%d = %q, want %q", i, got, want(i))
			}
			errs[i] = err
		})
	}
	joined := func() int {
		k := 0
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, nd := range p.nodes {
			nd.group.mu.Lock()
			if c := nd.group.next; c != nil {
				k += int(c.reads.Load())
			}
			nd.group.mu.Unlock()
		}
		return k
	}
	testutil.Eventually(t, "reads in groups", 5*time.Second, func() (bool, string) {
		k := joined()
		return k == n, fmt.Sprintf("%d of %d bounded reads joined a group", k, n)
	})
	close(hold)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	// One group per follower, and the refused read tried on the other
	// follower before the leader.
	if g := p.stats.readGroups.Load(); g == 0 || g > 3 {
		t.Errorf("%d concurrent bounded reads went in %d calls to the followers, want at most 3 (one per follower, and the refused one's next try)", n, g)
	}
	if got := f1.count("get") + f2.count("get") - warm; got != n+1 {
		t.Errorf("followers got %d reads, want %d (the refused one twice)", got, n+1)
	}
	if got := l.count("get"); got != 1 {
		t.Errorf("the leader served %d reads, want the refused one", got)
	}
}

// TestBoundedGroupsOnlyWhereServed: no group forms on a follower whose
// last bounded read was not served at once (none yet, here): reads in a
// group that all find it too stale would wait its read wait one after
// another. The reads wait on the followers (their sessions' writes not
// applied there yet), each on a connection of its own, until the
// followers catch up. Fails with plantGroupAnyFollower (a group held).
func TestBoundedGroupsOnlyWhereServed(t *testing.T) {
	_, f1, f2, v := threeFakes(t, true)
	for _, f := range []*fakeNode{f1, f2} {
		f.mu.Lock()
		f.waitReads = true
		f.mu.Unlock()
	}
	p, addr := startProxy(t, Config{Policy: Policy{Kind: resp.PolicyBounded, Bound: 50 * time.Millisecond}}, v)
	waitProbed(t, p)
	ctx := context.Background()
	const n = maxGroup
	clients := make([]*redis.Client, n)
	for i := range clients {
		clients[i] = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 10 * time.Second})
		t.Cleanup(func() { clients[i].Close() })
		if err := clients[i].Set(ctx, fmt.Sprintf("k%d", i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	hold := make(chan struct{})
	holdGroups.Store(&hold)
	t.Cleanup(func() { holdGroups.Store(nil) })
	released := false
	defer func() {
		if !released {
			close(hold)
		}
	}()
	errs := make(chan error, n)
	for i, c := range clients {
		go func() { errs <- c.Get(ctx, fmt.Sprintf("k%d", i)).Err() }()
	}
	testutil.Eventually(t, "reads waiting on the followers", 5*time.Second, func() (bool, string) {
		w := f1.waitingReads() + f2.waitingReads()
		return w == n, fmt.Sprintf("%d of %d bounded reads wait on the followers (%d groups)", w, n, p.stats.readGroups.Load())
	})
	close(hold)
	released = true
	for _, f := range []*fakeNode{f1, f2} {
		f.mu.Lock()
		for i := range n {
			f.data[fmt.Sprintf("k%d", i)] = "v"
		}
		f.mu.Unlock()
		f.catchUp(n, "k0", "v")
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if g := p.stats.readGroups.Load(); g != 0 {
		t.Errorf("%d groups formed on followers that served no bounded read yet", g)
	}
}

// nodeByID is the proxy's node id.
func (p *Proxy) nodeByID(id string) *node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nodes[id]
}

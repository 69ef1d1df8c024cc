package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestProxyBlocking: blocking pops through the proxy. A job queue (BLPOP
// consumers, LPUSH producers, all through the proxy) pops every job
// exactly once; a timeout answers nil; a client that leaves while blocked
// frees its waiter on the leader at once; and when the leader is killed
// under a blocked client, the client gets an error (UNCERTAIN or
// UNBLOCKED), never a hang, and its next BLPOP is served by the new
// leader.
func TestProxyBlocking(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) { cfg.Proxy = true })
	px, ok := c.Proxy()
	if !ok {
		t.Fatal("no proxy")
	}
	ctx := context.Background()
	pc := redis.NewClient(&redis.Options{Addr: px.RESPAddr, MaxRetries: -1, PoolSize: 16})
	defer pc.Close()

	// The queue: 4 consumers, 2 producers of 50 jobs each.
	const producers, each = 2, 50
	var mu sync.Mutex
	popped := map[string]int{}
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				v, err := pc.BLPop(ctx, 200*time.Millisecond, "jobs").Result()
				if errors.Is(err, redis.Nil) {
					select {
					case <-done:
						return
					default:
						continue
					}
				}
				if err != nil {
					t.Errorf("BLPOP through the proxy: %v", err)
					return
				}
				mu.Lock()
				popped[v[1]]++
				mu.Unlock()
			}
		}()
	}
	for p := range producers {
		for i := range each {
			if err := pc.LPush(ctx, "jobs", fmt.Sprintf("%d:%d", p, i)).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	testutil.Eventually(t, "every job popped", 30*time.Second, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(popped) == producers*each, fmt.Sprint(len(popped))
	})
	close(done)
	wg.Wait()
	for job, n := range popped {
		if n != 1 {
			t.Errorf("job %s popped %d times", job, n)
		}
	}

	// A timeout: nil after about the timeout.
	start := time.Now()
	if err := pc.BLPop(ctx, 100*time.Millisecond, "none").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("BLPOP with a timeout: %v", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("BLPOP answered after %v, before its timeout", d)
	}

	// A client that leaves while blocked: its waiter on the leader goes.
	lid, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := redis.NewClient(&redis.Options{Addr: c.Node(lid).RESPAddr, MaxRetries: -1})
	defer leader.Close()
	blocked := func() string {
		s, _ := leader.Info(ctx, "clients").Result()
		for _, line := range strings.Split(s, "\r\n") {
			if v, ok := strings.CutPrefix(line, "blocked_clients:"); ok {
				return v
			}
		}
		return "?"
	}
	conn, err := net.Dial("tcp", px.RESPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("*3\r\n$5\r\nBLPOP\r\n$4\r\ngone\r\n$1\r\n0\r\n")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the client blocked on the leader", 10*time.Second, func() (bool, string) { b := blocked(); return b == "1", b })
	conn.Close()
	testutil.Eventually(t, "the waiter gone", 10*time.Second, func() (bool, string) { b := blocked(); return b == "0", b })

	// The leader killed under a blocked client: an error, then the new
	// leader serves the next BLPOP.
	res := make(chan error, 1)
	go func() { res <- pc.BLPop(ctx, 0, "failq").Err() }()
	testutil.Eventually(t, "the client blocked on the leader", 10*time.Second, func() (bool, string) { b := blocked(); return b == "1", b })
	if err := c.Kill(lid); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		if err == nil || !(strings.HasPrefix(err.Error(), "UNCERTAIN") || strings.HasPrefix(err.Error(), "UNBLOCKED")) {
			t.Fatalf("blocked client when its leader was killed: %v, want UNCERTAIN or UNBLOCKED", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the blocked client got no answer in 30 s after its leader was killed")
	}
	testutil.Eventually(t, "writes through the proxy to the new leader", 30*time.Second, func() (bool, string) {
		err := pc.Set(ctx, "probe", "1", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	got := make(chan *redis.StringSliceCmd, 1)
	go func() { got <- pc.BLPop(ctx, 20*time.Second, "failq") }()
	if err := pc.LPush(ctx, "failq", "after").Err(); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if v, err := r.Result(); err != nil || v[1] != "after" {
			t.Fatalf("BLPOP after the failover = %v, %v", v, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no BLPOP served by the new leader in 30 s")
	}
}

// Package integration runs real tandem server processes on loopback and
// checks replication end to end: convergence, catch-up after kill -9,
// seeding of empty and lagging followers, and bad input.
package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/testbin"
	"github.com/tandemdb/tandem/internal/testutil"
)

func startCluster(t *testing.T, nodes int, args ...string) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	dir := t.TempDir()
	c, err := cluster.Start(context.Background(), cluster.Config{
		Binary:     testbin.Path(t),
		Dir:        dir,
		Nodes:      nodes,
		ServerArgs: args,
	}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, n := range c.Nodes() {
				b, _ := os.ReadFile(c.LogPath(n.ID))
				t.Logf("--- log of %s ---\n%s", n.Name, tail(string(b), 60))
			}
		}
	})
	return c
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

func client(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

type digest struct {
	applied int64
	sum     string
}

func digestOf(ctx context.Context, addr string) (digest, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	v, err := c.Do(ctx, "TANDEM.DIGEST").Slice()
	if err != nil {
		return digest{}, err
	}
	if len(v) != 2 {
		return digest{}, fmt.Errorf("TANDEM.DIGEST returned %d items", len(v))
	}
	return digest{applied: v[0].(int64), sum: v[1].(string)}, nil
}

// readable reports a node's reads answering LOADING (not caught up).
func readable(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	if err := c.Exists(ctx, "tandem:converged?").Err(); err != nil && strings.HasPrefix(err.Error(), "LOADING") {
		return err
	}
	return nil
}

// waitConverged waits until every running node has applied the leader's
// last LSN and answers reads, and then compares the keyspace digests.
// Writes must have stopped.
func waitConverged(t *testing.T, c *cluster.Cluster) {
	t.Helper()
	ctx := context.Background()
	var ds []digest
	testutil.Eventually(t, "the nodes to converge", 60*time.Second, func() (bool, string) {
		ds = ds[:0]
		for _, n := range c.Nodes() {
			d, err := digestOf(ctx, n.RESPAddr)
			if err != nil {
				return false, err.Error()
			}
			ds = append(ds, d)
			// A follower seeded by a snapshot has applied the leader's
			// last LSN before the stream tells it it has caught up; until
			// then its reads answer LOADING.
			if err := readable(ctx, n.RESPAddr); err != nil {
				return false, fmt.Sprintf("%s: %v", n.RESPAddr, err)
			}
		}
		for _, d := range ds[1:] {
			if d.applied != ds[0].applied {
				return false, fmt.Sprintf("%+v", ds)
			}
		}
		return true, ""
	})
	for i, d := range ds[1:] {
		if d.sum != ds[0].sum {
			t.Fatalf("node n%d digest %s differs from leader %s at applied lsn %d", i+2, d.sum, ds[0].sum, d.applied)
		}
	}
	t.Logf("converged: %d nodes at applied lsn %d, digest %s", len(ds), ds[0].applied, ds[0].sum[:16])
}

// load writes to the leader until stopped, returning how many writes were
// acknowledged.
func load(t *testing.T, addr string, prefix string) (stop func() int64) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer c.Close()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("%s:%d:%d", prefix, w, i%500)
				if err := c.Set(ctx, key, fmt.Sprintf("v%d", i), 0).Err(); err == nil {
					n.Add(1)
				} else if ctx.Err() == nil {
					t.Errorf("load write: %v", err)
					return
				}
			}
		}()
	}
	return func() int64 {
		cancel()
		wg.Wait()
		return n.Load()
	}
}

// waitStreaming waits until node id reports that it streams from the leader,
// so that what a test does next starts from a follower that was seeded.
func waitStreaming(t *testing.T, c *cluster.Cluster, id int) statusdoc.Node {
	t.Helper()
	return waitStatus(t, c, id, "streaming", func(s statusdoc.Node) bool { return s.State == "streaming" })
}

// waitStatus polls node id's /status until cond holds (30 s at most) and
// returns that status.
func waitStatus(t *testing.T, c *cluster.Cluster, id int, what string, cond func(statusdoc.Node) bool) statusdoc.Node {
	t.Helper()
	var s statusdoc.Node
	testutil.Eventually(t, fmt.Sprintf("n%d to reach %s", id, what), 30*time.Second, func() (bool, string) {
		var err error
		s, err = c.Status(context.Background(), id)
		return err == nil && cond(s), fmt.Sprintf("%+v (%v)", s, err)
	})
	return s
}

// logContains reports whether node id's log holds s (used only for what
// has no status counter: a panic or fatal error).
func logContains(t *testing.T, c *cluster.Cluster, id int, s string) bool {
	b, err := os.ReadFile(c.LogPath(id))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), s)
}

func TestWritesReachEveryFollower(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	leader := client(t, c.Node(1).RESPAddr)
	pipe := leader.Pipeline()
	for i := range 2000 {
		pipe.Set(ctx, fmt.Sprintf("key:%d", i), fmt.Sprintf("value-%d", i), 0)
	}
	pipe.Incr(ctx, "counter")
	pipe.IncrBy(ctx, "counter", 41)
	pipe.Set(ctx, "ttl", "x", time.Hour)
	pipe.Del(ctx, "key:0")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c)
	for _, id := range []int{2, 3} {
		f := client(t, c.Node(id).RESPAddr)
		if v, err := f.Get(ctx, "key:7").Result(); err != nil || v != "value-7" {
			t.Errorf("n%d GET key:7 = %q, %v", id, v, err)
		}
		if v, err := f.Get(ctx, "counter").Int(); err != nil || v != 42 {
			t.Errorf("n%d GET counter = %d, %v", id, v, err)
		}
		if err := f.Get(ctx, "key:0").Err(); !errors.Is(err, redis.Nil) {
			t.Errorf("n%d GET deleted key: %v", id, err)
		}
		if ttl, err := f.TTL(ctx, "ttl").Result(); err != nil || ttl <= 0 || ttl > time.Hour {
			t.Errorf("n%d TTL = %v, %v", id, ttl, err)
		}
		err := f.Set(ctx, "nope", "1", 0).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "READONLY You can't write against a read only replica.") {
			t.Errorf("n%d write on follower: %v", id, err)
		}
	}
}

func TestExpiryIsReplicated(t *testing.T) {
	c := startCluster(t, 2)
	ctx := context.Background()
	leader := client(t, c.Node(1).RESPAddr)
	follower := client(t, c.Node(2).RESPAddr)
	if err := leader.Set(ctx, "short", "v", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the expired key to be deleted on the leader", 10*time.Second, func() (bool, string) {
		n, err := leader.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 0, fmt.Sprintf("%d keys", n)
	})
	// The follower never serves the expired key, and the delete replicates.
	// A follower serves reads once it has caught up with its leader
	// (LOADING before): on a loaded machine it may not have, in the
	// fraction of a second since the cluster started.
	waitStreaming(t, c, 2)
	if err := follower.Get(ctx, "short").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("follower served an expired key: %v", err)
	}
	waitConverged(t, c)
}

func TestKilledFollowerCatchesUpWithoutSnapshot(t *testing.T) {
	c := startCluster(t, 3)
	stop := load(t, c.Node(1).RESPAddr, "catchup")
	// A follower killed while it is still being seeded must be seeded again;
	// this test is about one that had finished.
	// Instead of sleeping under load, each step waits for the state the
	// next one needs: n2 has applied a good part of the load, the leader
	// has moved on well past n2 while it is down, and n2 has caught up
	// past that gap while the load goes on.
	const gap = 500 // entries
	s := waitStreaming(t, c, 2)
	s = waitStatus(t, c, 2, "applied "+fmt.Sprint(s.AppliedLSN+gap), func(x statusdoc.Node) bool { return x.AppliedLSN >= s.AppliedLSN+gap })
	if err := c.Kill(2); err != nil {
		t.Fatal(err)
	}
	down := s.AppliedLSN
	l := waitStatus(t, c, 1, fmt.Sprintf("durable lsn %d", down+gap), func(x statusdoc.Node) bool { return x.DurableLSN >= down+gap })
	if err := c.Start(2); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitReady(context.Background(), c.Node(2).RESPAddr); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, 2, fmt.Sprintf("streaming past lsn %d", l.DurableLSN), func(x statusdoc.Node) bool {
		return x.State == "streaming" && x.AppliedLSN >= l.DurableLSN
	})
	acked := stop()
	t.Logf("%d writes acknowledged under load", acked)
	waitConverged(t, c)
	if s, err := c.Status(context.Background(), 2); err != nil || s.Seeds != 0 {
		t.Errorf("restarted follower began %d seeds (%v); it should have resumed from its log", s.Seeds, err)
	}
}

func TestEmptyNodeIsSeededUnderLoad(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	if err := c.Kill(3); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(c.Node(3).DataDir); err != nil {
		t.Fatal(err)
	}
	leader := client(t, c.Node(1).RESPAddr)
	pipe := leader.Pipeline()
	for i := range 20000 {
		pipe.Set(ctx, fmt.Sprintf("seed:%d", i), strings.Repeat("x", 100), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	stop := load(t, c.Node(1).RESPAddr, "during-seed")
	if err := c.Start(3); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitReady(ctx, c.Node(3).RESPAddr); err != nil {
		t.Fatal(err)
	}
	waitStreaming(t, c, 3) // seeded and caught up while the load runs
	stop()
	waitConverged(t, c)
	if s, err := c.Status(ctx, 3); err != nil || s.Seeds == 0 {
		t.Errorf("empty node was not seeded from a snapshot (%d seeds, %v)", s.Seeds, err)
	}
	s, err := c.Status(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if s.State != "streaming" {
		t.Errorf("seeded node state = %q, want streaming", s.State)
	}
}

func TestFollowerBehindRetainedLogIsReseeded(t *testing.T) {
	c := startCluster(t, 3, "--retain-bytes", "65536")
	ctx := context.Background()
	if err := c.Kill(3); err != nil {
		t.Fatal(err)
	}
	leader := client(t, c.Node(1).RESPAddr)
	for round := range 5 {
		pipe := leader.Pipeline()
		for i := range 2000 {
			pipe.Set(ctx, fmt.Sprintf("r%d:%d", round, i), strings.Repeat("y", 100), 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Retention runs every second; wait until the log was trimmed.
	testutil.Eventually(t, "the leader's log to be trimmed to the retention cap", 10*time.Second, func() (bool, string) {
		b := logBytes(t, c.Node(1).HTTPAddr)
		return b <= 65536, fmt.Sprintf("%d bytes", b)
	})
	if err := c.Start(3); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c)
	if s, err := c.Status(ctx, 3); err != nil || s.Seeds == 0 {
		t.Errorf("follower behind the retained log was not re-seeded (%d seeds, %v)", s.Seeds, err)
	}
}

func logBytes(t *testing.T, httpAddr string) int64 {
	var s struct {
		LogBytes int64 `json:"log_bytes"`
	}
	b, err := httpGet(httpAddr + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if err := jsonUnmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s.LogBytes
}

func TestBadInputKeepsServing(t *testing.T) {
	c := startCluster(t, 1)
	addr := c.Node(1).RESPAddr
	ctx := context.Background()
	cl := client(t, addr)
	if err := cl.Set(ctx, "s", "text", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cmd  []any
		want string
	}{
		{"unknown command", []any{"FROBNICATE", "a"}, "ERR unknown command 'FROBNICATE'"},
		{"wrong arity", []any{"GET"}, "ERR wrong number of arguments for 'get' command"},
		{"incr on text", []any{"INCR", "s"}, "ERR value is not an integer or out of range"},
		{"bad expire", []any{"SET", "k", "v", "EX", "0"}, "ERR invalid expire time in 'set' command"},
		{"syntax", []any{"SET", "k", "v", "NX", "XX"}, "ERR syntax error"},
	}
	for _, tc := range cases {
		err := cl.Do(ctx, tc.cmd...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want prefix %q", tc.name, err, tc.want)
		}
	}
	raw := func(payload string) string {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(payload)); err != nil {
			return "write error: " + err.Error()
		}
		line, _ := bufio.NewReader(conn).ReadString('\n')
		return line
	}
	if got := raw("*1\r\n$600000000\r\n"); !strings.HasPrefix(got, "-ERR Protocol error") {
		t.Errorf("oversized bulk: %q", got)
	}
	if got := raw("*2\r\n$3\r\nGET\r\n$x\r\n"); !strings.HasPrefix(got, "-ERR Protocol error") {
		t.Errorf("malformed bulk length: %q", got)
	}
	if v, err := cl.Get(ctx, "s").Result(); err != nil || v != "text" {
		t.Fatalf("node stopped serving after bad input: %q %v", v, err)
	}
}

// TestWaitCountsDurableFollowers checks WAIT against real followers: it
// returns once both have made the connection's last write durable, and
// counts only the live one after the other is killed.
func TestWaitCountsDurableFollowers(t *testing.T) {
	c := startCluster(t, 3)
	ctx := context.Background()
	waitStreaming(t, c, 2)
	waitStreaming(t, c, 3)
	leader := redis.NewClient(&redis.Options{Addr: c.Node(1).RESPAddr, PoolSize: 1})
	t.Cleanup(func() { leader.Close() })
	if err := leader.Set(ctx, "w", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if n, err := leader.Wait(ctx, 2, 5*time.Second).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 = %d, %v; want 2", n, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("WAIT 2 took %v with both followers streaming", d)
	}
	if err := c.Kill(3); err != nil {
		t.Fatal(err)
	}
	if err := leader.Set(ctx, "w", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := leader.Wait(ctx, 2, 500*time.Millisecond).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 2 with one follower dead = %d, %v; want 1 after the timeout", n, err)
	}
}

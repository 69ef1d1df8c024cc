package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/testutil"
)

// proxyInfo reads the proxy's INFO proxy section as key: value.
func proxyInfo(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	s, err := c.Info(context.Background(), "proxy").Result()
	if err != nil {
		t.Fatalf("INFO proxy: %v", err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(s, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

func infoInt(m map[string]string, k string) int {
	n, _ := strconv.Atoi(m[k])
	return n
}

// TestProxy runs a 3-node cluster with its proxy (policy any) and checks,
// through the proxy: go-redis and raw RESP work; writes reach the leader;
// reads go to the followers; a follower killed with -9 under a read load
// gets no read once marked down and at most the reads in flight fail;
// writes sent while the leader is killed wait for the new leader and
// succeed (or, if in flight at the kill, answer UNCERTAIN).
func TestProxy(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.Proxy = true
		cfg.ProxyArgs = []string{"--policy", "any", "--write-wait", "10s"}
		cfg.RestartDelay = 0
	})
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(c.Dir(), "p1.log"))
			t.Logf("--- log of p1 ---\n%s", tail(string(b), 60))
		}
	})
	px, ok := c.Proxy()
	if !ok {
		t.Fatal("no proxy")
	}
	ctx := context.Background()
	pc := redis.NewClient(&redis.Options{Addr: px.RESPAddr, MaxRetries: -1, PoolSize: 20})
	defer pc.Close()
	leader, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc := redis.NewClient(&redis.Options{Addr: c.Node(leader).RESPAddr, Protocol: 2, MaxRetries: -1})
	defer lc.Close()

	// Writes through the proxy are on the leader.
	for i := range 50 {
		if err := pc.Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatalf("SET through the proxy: %v", err)
		}
	}
	if v, err := lc.Get(ctx, "k49").Result(); err != nil || v != "49" {
		t.Fatalf("the leader has k49 = %q, %v", v, err)
	}
	// Raw RESP, as redis-cli sends it, pipelined.
	nc, err := net.Dial("tcp", px.RESPAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(nc, "*3\r\n$3\r\nSET\r\n$3\r\nraw\r\n$1\r\nx\r\n*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n*1\r\n$4\r\nPING\r\n")
	r := bufio.NewReader(nc)
	for _, want := range []string{"+OK", ":1", "+PONG"} {
		if line, err := r.ReadString('\n'); err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("raw reply %q, %v; want %q", line, err, want)
		}
	}
	nc.Close()

	// Reads under any go to the followers.
	testutil.Eventually(t, "followers have k49", 10*time.Second, func() (bool, string) {
		v, err := pc.Get(ctx, "k49").Result()
		return err == nil && v == "49", fmt.Sprint(v, err)
	})
	for range 200 {
		if err := pc.Get(ctx, "k1").Err(); err != nil {
			t.Fatalf("GET through the proxy: %v", err)
		}
	}
	info := proxyInfo(t, pc)
	ln := c.Node(leader).Name
	if infoInt(info, "reads_node_"+ln) != 0 || infoInt(info, "reads_policy_any") < 200 {
		t.Fatalf("under any: leader served %s reads, any served %s", info["reads_node_"+ln], info["reads_policy_any"])
	}

	// Kill -9 a follower under a read load through the proxy.
	victim := leader%3 + 1
	vn := c.Node(victim).Name
	var reads, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := pc.Get(ctx, "k1").Err(); err != nil {
					failed.Add(1)
				}
				reads.Add(1)
			}
		}()
	}
	testutil.Eventually(t, "the victim serves reads", 10*time.Second, func() (bool, string) {
		return infoInt(proxyInfo(t, pc), "reads_node_"+vn) > infoInt(info, "reads_node_"+vn)+100, ""
	})
	if err := c.Kill(victim); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, vn+" marked down", 5*time.Second, func() (bool, string) {
		return strings.Contains(proxyInfo(t, pc)["node_"+vn], "state=down"), ""
	})
	downInfo := proxyInfo(t, pc)
	atDown := infoInt(downInfo, "reads_node_"+vn)
	base := reads.Load()
	testutil.Eventually(t, "1000 more reads", 20*time.Second, func() (bool, string) { return reads.Load() > base+1000, "" })
	close(stop)
	wg.Wait()
	info = proxyInfo(t, pc)
	if got := infoInt(info, "reads_node_"+vn); got != atDown {
		t.Errorf("%s served %d reads after it was marked down", vn, got-atDown)
	}
	// Counted where a read is sent (a read in flight when the node died
	// may fail a moment after it was marked down: that is not one).
	if got := infoInt(info, "reads_sent_to_down_node"); got != 0 {
		t.Errorf("%d reads were sent to a node marked down", got)
	}
	t.Logf("follower kill: %d reads, %d failed, %s in flight failed at the proxy (retried elsewhere: %s)",
		reads.Load(), failed.Load(), info["requests_failed_in_flight"], info["reads_retried_after_node_failure"])
	if failed.Load() > 8 {
		t.Errorf("%d reads failed; at most the 8 in flight may", failed.Load())
	}
	if err := c.Start(victim); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, vn+" back", 20*time.Second, func() (bool, string) {
		m := proxyInfo(t, pc)
		return strings.Contains(m["node_"+vn], "state=up"), m["node_"+vn]
	})
	waitConverged(t, c)

	// Kill the leader under a write load: writes wait for the new one.
	var oks, uncertain atomic.Int64
	var otherErr atomic.Value
	var lastOK atomic.Int64
	stop = make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				err := pc.Set(ctx, fmt.Sprintf("w%d-%d", w, i), i, 0).Err()
				switch {
				case err == nil:
					oks.Add(1)
					lastOK.Store(time.Now().UnixNano())
				case strings.HasPrefix(err.Error(), "UNCERTAIN"):
					uncertain.Add(1)
				default:
					otherErr.Store(err)
				}
			}
		}()
	}
	testutil.Eventually(t, "writes flow", 10*time.Second, func() (bool, string) { return oks.Load() > 100, "" })
	killedAt := time.Now()
	if err := c.Kill(leader); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "writes succeed after the failover", 20*time.Second, func() (bool, string) {
		return lastOK.Load() > killedAt.Add(100*time.Millisecond).UnixNano(), ""
	})
	close(stop)
	wg.Wait()
	info = proxyInfo(t, pc)
	t.Logf("leader kill: %d writes ok, %d uncertain, writes waited %s, epoch now %s leader %s",
		oks.Load(), uncertain.Load(), info["writes_waited_for_leader"], info["epoch"], info["leader"])
	if err, _ := otherErr.Load().(error); err != nil && !errors.Is(err, redis.Nil) {
		t.Errorf("a write through the proxy failed across the failover: %v", err)
	}
	if uncertain.Load() > 4 {
		t.Errorf("%d writes UNCERTAIN; at most the 4 in flight at the kill may be", uncertain.Load())
	}
	if info["leader"] == ln {
		t.Errorf("the proxy still routes to the killed leader %s", ln)
	}
}

// TestProxyTransactions: MULTI/EXEC and WATCH through the proxy, which
// pins each transaction's session to a connection of its own to the
// leader: optimistic increments from concurrent clients lose nothing,
// a transaction's writes are one entry, and a ryw session reads them
// through the proxy at once.
func TestProxyTransactions(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.Proxy = true
		cfg.ProxyArgs = []string{"--policy", "ryw"}
	})
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(c.Dir(), "p1.log"))
			t.Logf("--- log of p1 ---\n%s", tail(string(b), 60))
		}
	})
	px, ok := c.Proxy()
	if !ok {
		t.Fatal("no proxy")
	}
	ctx := context.Background()
	const clients, each = 3, 10
	var wg sync.WaitGroup
	for range clients {
		pc := redis.NewClient(&redis.Options{Addr: px.RESPAddr, MaxRetries: -1, PoolSize: 2})
		defer pc.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				for {
					err := pc.Watch(ctx, func(tx *redis.Tx) error {
						v, err := tx.Get(ctx, "ctr").Int()
						if err != nil && !errors.Is(err, redis.Nil) {
							return err
						}
						_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
							p.Set(ctx, "ctr", v+1, 0)
							p.Set(ctx, "ctr:copy", v+1, 0)
							return nil
						})
						return err
					}, "ctr")
					if errors.Is(err, redis.TxFailedErr) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	// Read on the leader: this new connection has written nothing, so
	// under ryw a follower that has not applied the last EXEC may serve it.
	lc := redis.NewClient(&redis.Options{Addr: px.RESPAddr, MaxRetries: -1, PoolSize: 1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, "TANDEM.READPOLICY", "leader").Err()
		}})
	defer lc.Close()
	if v, err := lc.Get(ctx, "ctr").Int(); err != nil || v != clients*each {
		t.Fatalf("ctr = %d, %v after %d increments through the proxy", v, err, clients*each)
	}
	pc := redis.NewClient(&redis.Options{Addr: px.RESPAddr, MaxRetries: -1, PoolSize: 1})
	defer pc.Close()
	// Read-your-writes on a follower right after EXEC, on one connection
	// (a proxy session is a connection; go-redis may run TxPipelined and
	// GET on two of its pool's).
	conn := pc.Conn()
	defer conn.Close()
	for i := range 20 {
		if _, err := conn.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, "ryw", i, 0)
			p.Incr(ctx, "ryw:n")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if v, err := conn.Get(ctx, "ryw").Int(); err != nil || v != i {
			t.Fatalf("a ryw read after EXEC through the proxy: %d, %v; want %d", v, err, i)
		}
	}
	// A queuing error aborts, and the session is free again.
	if err := conn.Process(ctx, redis.NewStatusCmd(ctx, "MULTI")); err != nil {
		t.Fatal(err)
	}
	if err := conn.Do(ctx, "NOSUCH").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR unknown command") {
		t.Fatalf("unknown command in MULTI through the proxy: %v", err)
	}
	if err := conn.Do(ctx, "EXEC").Err(); err == nil || !strings.HasPrefix(err.Error(), "EXECABORT") {
		t.Fatalf("EXEC after a queuing error through the proxy: %v", err)
	}
	if err := conn.Do(ctx, "EXEC").Err(); err == nil || err.Error() != "ERR EXEC without MULTI" {
		t.Fatalf("second EXEC through the proxy: %v", err)
	}
	waitConverged(t, c)
}

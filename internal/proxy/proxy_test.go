package proxy

import (
	"bufio"
	"context"
	"fmt"
	"github.com/tandemdb/tandem/internal/testutil"
	"log/slog"
	"net"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tidwall/redcon"

	"github.com/tandemdb/tandem/internal/resp"
)

func startProxy(t *testing.T, cfg Config, v View) (*Proxy, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	p := New(cfg)
	p.SetView(v)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ln) }()
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		<-done
	})
	return p, ln.Addr().String()
}

func client(t *testing.T, addr string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

func threeFakes(t *testing.T, positions bool) (l, f1, f2 *fakeNode, v View) {
	l = startFake(t, "n1", true, positions)
	f1 = startFake(t, "n2", false, positions)
	f2 = startFake(t, "n3", false, positions)
	return l, f1, f2, View{Epoch: 1, Leader: "n1", Members: []Member{l.member(), f1.member(), f2.member()}}
}

// TestRouting: writes and non-read commands reach the leader; under any,
// reads reach followers only; under leader, the leader; go-redis through
// the proxy works unchanged (HELLO 3 refused, RESP2).
func TestRouting(t *testing.T) {
	l, f1, f2, v := threeFakes(t, false)
	p, addr := startProxy(t, Config{Policy: Policy{Kind: resp.PolicyAny}}, v)
	// The proxy asks each new node whether it serves read policies; that
	// probe is a request in flight, and the reads below go to the least
	// loaded follower. 20 reads from one client take a few ms, less than
	// the probe's round trip on a busy machine: one follower would get
	// them all, rightly.
	waitProbesAnswered(t, p)
	ctx := context.Background()
	c := client(t, addr)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if l.count("set") != 1 || f1.count("set")+f2.count("set") != 0 {
		t.Fatalf("SET reached leader %d times, followers %d", l.count("set"), f1.count("set")+f2.count("set"))
	}
	for range 20 {
		// The followers are fakes without replication: nil is right.
		if err := c.Get(ctx, "k").Err(); err != redis.Nil {
			t.Fatalf("GET under any: %v, want nil from a follower", err)
		}
	}
	if l.count("get") != 0 || f1.count("get")+f2.count("get") != 20 {
		t.Errorf("under any: leader served %d GETs, followers %d; want 0 and 20", l.count("get"), f1.count("get")+f2.count("get"))
	}
	if f1.count("get") == 0 || f2.count("get") == 0 {
		t.Errorf("under any one follower got every read (%d, %d)", f1.count("get"), f2.count("get"))
	}
	if err := c.Do(ctx, "TANDEM.READPOLICY", "leader").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET under leader = %q, %v", got, err)
	}
	if pol, _ := c.Do(ctx, "TANDEM.READPOLICY").Text(); pol != "leader" {
		t.Errorf("TANDEM.READPOLICY = %q", pol)
	}
	// /metrics says the same.
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`tandem_proxy_reads_total{policy="any"} 20`, `tandem_proxy_node_reads_total{node="n1"} 1`, `tandem_proxy_node_up{node="n2"} 1`, "tandem_proxy_etcd_ok 1"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q:\n%s", want, rec.Body.String())
		}
	}
	// The proxy's INFO.
	info, err := c.Info(ctx, "proxy").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Proxy", "leader:n1", "reads_policy_any:20", "reads_policy_leader:1", "reads_node_n1:1", "node_n2:addr="} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO proxy lacks %q:\n%s", want, info)
		}
	}
}

// TestMultiplexing: 50 clients share ConnsPerNode connections per node
// (and as many for reads), and a pipeline's replies come back in order.
func TestMultiplexing(t *testing.T) {
	l, f1, f2, v := threeFakes(t, false)
	_, addr := startProxy(t, Config{Policy: Policy{Kind: resp.PolicyAny}, ConnsPerNode: 2}, v)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			defer c.Close()
			pipe := c.Pipeline()
			var cmds []*redis.StatusCmd
			for j := range 16 {
				cmds = append(cmds, pipe.Set(ctx, fmt.Sprintf("k%d-%d", i, j), j, 0))
			}
			get := pipe.Get(ctx, "x")
			if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
				errs <- err
				return
			}
			for _, cmd := range cmds {
				if cmd.Val() != "OK" {
					errs <- fmt.Errorf("SET in pipeline: %v", cmd.Err())
				}
			}
			if get.Err() != redis.Nil {
				errs <- fmt.Errorf("GET in pipeline: %v", get.Err())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if l.count("set") != 50*16 {
		t.Errorf("leader got %d SETs, want %d", l.count("set"), 50*16)
	}
	// ConnsPerNode for writes, as many for reads.
	for _, f := range []*fakeNode{l, f1, f2} {
		if n := f.srv.Clients(); n > 4 {
			t.Errorf("%s has %d connections from the proxy, want at most 4", f.id, n)
		}
	}

	// Raw RESP, as redis-cli sends it: a pipeline in one write.
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprint(nc, "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n")
	r := bufio.NewReader(nc)
	for _, want := range []string{"+OK", "+PONG", ":1", ":2"} {
		line, err := r.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != want {
			t.Fatalf("raw pipeline reply %q, %v; want %q", line, err, want)
		}
	}
}

// TestFollowerDies: reads under any keep being answered when a follower
// goes away, and once it is marked down none is routed to it.
func TestFollowerDies(t *testing.T) {
	_, f1, f2, v := threeFakes(t, false)
	p, addr := startProxy(t, Config{Policy: Policy{Kind: resp.PolicyAny}}, v)
	ctx := context.Background()
	c := client(t, addr)
	for range 10 {
		if err := c.Get(ctx, "k").Err(); err != redis.Nil {
			t.Fatal(err)
		}
	}
	f1.srv.Close()
	testutil.Eventually(t, "n2 marked down", 5*time.Second, func() (bool, string) {
		p.mu.Lock()
		n := p.nodes["n2"]
		p.mu.Unlock()
		return !n.healthy(), ""
	})
	before, retried := f2.count("get"), p.stats.readsRetried.Load()
	for i := range 100 {
		if err := c.Get(ctx, "k").Err(); err != redis.Nil {
			t.Fatalf("read %d after a follower died: %v", i, err)
		}
	}
	if got := f2.count("get") - before; got != 100 {
		t.Errorf("the live follower served %d of 100 reads", got)
	}
	if n := p.stats.readsRetried.Load() - retried; n != 0 {
		t.Errorf("%d reads were sent to the down follower", n)
	}
}

// TestWriteWaitsForLeader: with no leader, a write waits for one (and
// succeeds when it comes), up to WriteWait; READONLY from a former
// leader makes it wait for the next.
func TestWriteWaitsForLeader(t *testing.T) {
	l, f1, f2, v := threeFakes(t, false)
	none := v
	none.Leader = ""
	p, addr := startProxy(t, Config{WriteWait: 5 * time.Second}, none)
	ctx := context.Background()
	c := client(t, addr)
	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, "k", "v", 0).Err() }()
	testutil.Eventually(t, "the write waits", 5*time.Second, func() (bool, string) { return p.stats.writesWaited.Load() == 1, "" })
	p.SetView(v)
	if err := <-done; err != nil {
		t.Fatalf("write after the leader appeared: %v", err)
	}
	if l.count("set") != 1 {
		t.Errorf("leader got %d SETs", l.count("set"))
	}

	// n1 steps down (READONLY); the write waits for n2.
	l.mu.Lock()
	l.leader = false
	l.mu.Unlock()
	go func() { done <- c.Set(ctx, "k", "w", 0).Err() }()
	testutil.Eventually(t, "the write waits again", 5*time.Second, func() (bool, string) { return p.stats.writesWaited.Load() == 2, "" })
	f1.mu.Lock()
	f1.leader = true
	f1.mu.Unlock()
	v2 := v
	v2.Epoch, v2.Leader = 2, "n2"
	p.SetView(v2)
	if err := <-done; err != nil {
		t.Fatalf("write after the failover: %v", err)
	}
	if f1.count("set") != 1 || f2.count("set") != 0 {
		t.Errorf("new leader got %d SETs", f1.count("set"))
	}

	// A read under the leader policy waits for a leader too.
	p.SetView(none)
	rc := client(t, addr)
	rc.Do(ctx, "TANDEM.READPOLICY", "leader")
	go func() { done <- rc.Get(ctx, "k").Err() }()
	testutil.Eventually(t, "the read waits", 5*time.Second, func() (bool, string) { return p.stats.readsWaited.Load() == 1, "" })
	p.SetView(v2)
	if err := <-done; err != nil {
		t.Fatalf("read after a leader appeared: %v", err)
	}

	// No leader at all: refused after WriteWait, as not sent.
	p2, addr2 := startProxy(t, Config{WriteWait: 50 * time.Millisecond}, none)
	err := client(t, addr2).Set(ctx, "k", "v", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "TRYAGAIN tandem proxy: no leader") {
		t.Errorf("write with no leader: %v", err)
	}
	if p2.stats.writesNoLeader.Load() != 1 {
		t.Errorf("writes_no_leader = %d", p2.stats.writesNoLeader.Load())
	}
}

// TestUncertainWrite: a write whose connection breaks after it was sent
// is answered UNCERTAIN and never sent again.
func TestUncertainWrite(t *testing.T) {
	l, _, _, v := threeFakes(t, false)
	l.drop = "incr"
	p, addr := startProxy(t, Config{}, v)
	err := client(t, addr).Incr(context.Background(), "n").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "UNCERTAIN tandem proxy") {
		t.Fatalf("INCR on a dropped connection: %v", err)
	}
	if n := l.count("incr"); n != 1 {
		t.Errorf("INCR reached the leader %d times, want 1", n)
	}
	if p.stats.writesUncertain.Load() != 1 || p.stats.inflightFailed.Load() != 1 {
		t.Errorf("writes_uncertain %d, failed in flight %d; want 1, 1", p.stats.writesUncertain.Load(), p.stats.inflightFailed.Load())
	}
}

// TestStatefulRefused: SUBSCRIBE and friends get a clear error naming
// the leader, and reach no node (MULTI and WATCH pin the session instead:
// test/integration's TestProxyTransactions).
func TestStatefulRefused(t *testing.T) {
	l, _, _, v := threeFakes(t, false)
	_, addr := startProxy(t, Config{}, v)
	c := client(t, addr)
	for _, cmd := range [][]any{{"MONITOR"}, {"WAIT", "1", "0"}, {"TANDEM.DURABILITY", "REPLICAS", "1"}} {
		err := c.Do(context.Background(), cmd...).Err()
		if err == nil || !strings.Contains(err.Error(), "tandem proxy: "+cmd[0].(string)+" holds state on its connection") || !strings.Contains(err.Error(), l.addr) {
			t.Errorf("%v: %v", cmd, err)
		}
	}
	if got := l.received(); len(got) > 1 { // the policy probe only
		t.Errorf("leader received %q", got)
	}
	// With no transaction: answered as a node would, reaching no node.
	for cmd, want := range map[string]string{"EXEC": "ERR EXEC without MULTI", "DISCARD": "ERR DISCARD without MULTI"} {
		if err := c.Do(context.Background(), cmd).Err(); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %s", cmd, err, want)
		}
	}
	if err := c.Do(context.Background(), "UNWATCH").Err(); err != nil {
		t.Errorf("UNWATCH: %v", err)
	}
}

// TestRYWThroughFollowers: on nodes that enforce read policies, a ryw
// read carries the session's token; a follower behind it says "read
// elsewhere" and the proxy goes on to the leader; a caught-up follower
// serves it.
func TestRYWThroughFollowers(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	// Reads that wait or are refused are under test: no leader share.
	p, addr := startProxy(t, Config{clock: clock, LeaderShare: -1}, v)
	waitProbed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	tok, err := c.Do(ctx, "TANDEM.TOKEN").Text()
	if err != nil || tok != "t1:1:1" {
		t.Fatalf("token after a write = %q, %v; want t1:1:1", tok, err)
	}
	// Both followers are behind (lsn 0): the leader serves it.
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("ryw GET = %q, %v; want the write", got, err)
	}
	if f1.count("get")+f2.count("get") != 2 || l.count("get") != 1 {
		t.Errorf("GETs: followers %d, leader %d; want 2 refused then the leader", f1.count("get")+f2.count("get"), l.count("get"))
	}
	// n2 catches up: once the refusals age out, it serves the next read.
	mu.Lock()
	now = now.Add(staleTTL)
	mu.Unlock()
	f1.mu.Lock()
	f1.lsn, f1.data["k"] = 1, "v"
	f1.mu.Unlock()
	f2.mu.Lock()
	f2.lsn, f2.data["k"] = 1, "v"
	f2.mu.Unlock()
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("ryw GET = %q, %v", got, err)
	}
	if l.count("get") != 1 {
		t.Errorf("a caught-up follower did not serve the read")
	}
	// What a follower received for it: the session's state, the read,
	// the position back, and RESET (which the layer answers).
	served := f1
	if f2.count("get") == 2 {
		served = f2
	}
	rec := served.received()
	tail := strings.Join(rec[len(rec)-4:], " | ")
	if tail != "TANDEM.READPOLICY ryw | TANDEM.TOKEN t1:1:1 | get k | TANDEM.TOKEN" {
		t.Errorf("follower received %q", tail)
	}
	served.mu.Lock()
	resets := served.resets
	served.mu.Unlock()
	if resets != 2 {
		t.Errorf("follower had its session reset %d times, want 2 (after each positional read)", resets)
	}
	info, _ := c.Info(ctx, "proxy").Result()
	for _, want := range []string{"reads_sent_elsewhere:2", "reads_fallback_leader_read-elsewhere:1", "reads_policy_ryw:2"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q:\n%s", want, info)
		}
	}
	// A token given to the session raises its floor; a malformed one is
	// refused.
	if err := c.Do(ctx, "TANDEM.TOKEN", "t1:1:7").Err(); err != nil {
		t.Fatal(err)
	}
	if tok, _ := c.Do(ctx, "TANDEM.TOKEN").Text(); tok != "t1:1:7" {
		t.Errorf("token after TANDEM.TOKEN t1:1:7 = %q", tok)
	}
	if err := c.Do(ctx, "TANDEM.TOKEN", "bogus").Err(); err == nil || !strings.Contains(err.Error(), "malformed token") {
		t.Errorf("malformed token: %v", err)
	}
}

// TestNoPositionsFallsBackToLeader: on nodes without read policies, a
// ryw read goes to the leader (which gives it), counted as a fallback.
func TestNoPositionsFallsBackToLeader(t *testing.T) {
	l, f1, f2, v := threeFakes(t, false)
	p, addr := startProxy(t, Config{}, v)
	testutil.Eventually(t, "nodes probed", 5*time.Second, func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.nodes["n2"].positions.Load() == 2 && p.nodes["n3"].positions.Load() == 2, ""
	})
	ctx := context.Background()
	c := client(t, addr)
	c.Set(ctx, "k", "v", 0)
	for range 5 {
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
			t.Fatalf("GET = %q, %v", got, err)
		}
	}
	if l.count("get") != 5 || f1.count("get")+f2.count("get") != 0 {
		t.Errorf("leader served %d, followers %d", l.count("get"), f1.count("get")+f2.count("get"))
	}
	info, _ := c.Info(ctx, "proxy").Result()
	if !strings.Contains(info, "reads_fallback_leader_no-positions:5") {
		t.Errorf("INFO:\n%s", info)
	}
}

// TestIsRead: plain reads (strings, hashes, sets) may go to a follower;
// writes and the reads whose cursor lives on one node (SCAN, HSCAN,
// SSCAN) go to the leader.
func TestIsRead(t *testing.T) {
	for cmd, want := range map[string]bool{
		"GET": true, "hget": true, "HGETALL": true, "HRANDFIELD": true, "DBSIZE": true,
		"SET": false, "HSET": false, "HDEL": false, "FLUSHALL": false,
		"SCAN": false, "HSCAN": false, "nosuchcommand": false,
		"ZRANGE": true, "ZSCORE": true, "ZADD": false, "ZRANGESTORE": false, "ZSCAN": false,
		"SMEMBERS": true, "SRANDMEMBER": true, "SINTERCARD": true, "SADD": false, "SPOP": false, "SSCAN": false,
	} {
		if got := isRead([][]byte{[]byte(cmd)}); got != want {
			t.Errorf("isRead(%s) = %v, want %v", cmd, got, want)
		}
	}
}

// TestZoneRouting: a proxy in zone b with the leader and one follower in
// zone a and one follower in b: reads any policy lets a follower serve go
// to the follower in b (monotonic sessions stick to it too, whatever their
// user); leader reads cross zones, and so do reads once b has no follower;
// INFO counts the cross-zone reads.
func TestZoneRouting(t *testing.T) {
	l, fa, fb, v := threeFakes(t, true)
	zones := map[string]string{"n1": "a", "n2": "a", "n3": "b"}
	for i := range v.Members {
		v.Members[i].Zone = zones[v.Members[i].ID]
	}
	p, addr := startProxy(t, Config{Zone: "b", Policy: Policy{Kind: resp.PolicyAny}}, v)
	waitProbed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	crossZone := func() string {
		info, err := c.Info(ctx, "proxy").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "reads_cross_zone:"); ok {
				return v
			}
		}
		t.Fatalf("INFO proxy lacks reads_cross_zone:\n%s", info)
		return ""
	}
	for range 20 {
		if err := c.Get(ctx, "k").Err(); err != redis.Nil {
			t.Fatalf("GET under any: %v", err)
		}
	}
	if fb.count("get") != 20 || fa.count("get") != 0 || l.count("get") != 0 {
		t.Errorf("under any: zone b's follower served %d of 20, zone a's %d, the leader %d", fb.count("get"), fa.count("get"), l.count("get"))
	}
	if got := crossZone(); got != "0" {
		t.Errorf("reads_cross_zone = %s after in-zone reads, want 0", got)
	}
	// Monotonic sessions of several users all stick to the follower in b.
	for u := range 8 {
		mc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, PoolSize: 1})
		for _, cmd := range [][]any{{"TANDEM.READPOLICY", "monotonic"}, {"TANDEM.USER", fmt.Sprint("user", u)}} {
			if err := mc.Do(ctx, cmd...).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			if err := mc.Get(ctx, "k").Err(); err != redis.Nil {
				t.Fatalf("GET under monotonic: %v", err)
			}
		}
		mc.Close()
	}
	if fb.count("get") != 20+24 || fa.count("get") != 0 {
		t.Errorf("monotonic: zone b's follower served %d of 24, zone a's %d", fb.count("get")-20, fa.count("get"))
	}
	// The leader policy reads the leader, in zone a.
	if err := c.Do(ctx, "TANDEM.READPOLICY", "leader").Err(); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := c.Get(ctx, "k").Err(); err != redis.Nil {
			t.Fatalf("GET under leader: %v", err)
		}
	}
	if got := crossZone(); l.count("get") != 5 || got != "5" {
		t.Errorf("under leader: the leader served %d of 5, reads_cross_zone = %s; want 5 and 5", l.count("get"), got)
	}
	// Without a follower in b, any reads zone a's follower, across zones.
	v.Members = v.Members[:2]
	p.SetView(v)
	if err := c.Do(ctx, "TANDEM.READPOLICY", "any").Err(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := c.Get(ctx, "k").Err(); err != redis.Nil {
			t.Fatalf("GET under any: %v", err)
		}
	}
	if got := crossZone(); fa.count("get") != 4 || got != "9" {
		t.Errorf("no follower in b: zone a's follower served %d of 4, reads_cross_zone = %s; want 4 and 9", fa.count("get"), got)
	}
	// /status (tandem status) says the same.
	rec := httptest.NewRecorder()
	p.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if want := `"zone":"b","policy":"any","leader":"n1","reads":53,"reads_cross_zone":9`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/status = %s, want it to contain %s", rec.Body.String(), want)
	}
}

// TestSubscribePinsToANode: SUBSCRIBE pins the client's connection to a
// connection of its own to a follower, whose every reply the client then
// gets; other clients keep the shared connections; closing the client
// ends the pin. UNSUBSCRIBE on a connection that never subscribed is
// answered by the proxy.
func TestSubscribePinsToANode(t *testing.T) {
	l, f1, f2, v := threeFakes(t, false)
	_, addr := startProxy(t, Config{Policy: Policy{Kind: resp.PolicyAny}}, v)
	c := client(t, addr)
	ctx := context.Background()
	if got, err := c.Do(ctx, "UNSUBSCRIBE", "a").Slice(); err != nil || fmt.Sprint(got) != "[unsubscribe a 0]" {
		t.Fatalf("UNSUBSCRIBE before subscribing: %v, %v", got, err)
	}

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	// Pipelined: a write, then the SUBSCRIBE, then a command after it.
	if _, err := conn.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n*2\r\n$3\r\nGET\r\n$6\r\npinned\r\n")); err != nil {
		t.Fatal(err)
	}
	want := []string{"+OK", "*3", "$9", "subscribe", "$2", "ch", ":1", "$-1"}
	for _, w := range want {
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := rd.ReadString('\n')
		if err != nil || strings.TrimSuffix(line, "\r\n") != w {
			t.Fatalf("got %q, %v; want %q", line, err, w)
		}
	}
	var pinned *fakeNode
	for _, f := range []*fakeNode{f1, f2} {
		if slices.Contains(f.received(), "SUBSCRIBE ch") {
			pinned = f
		}
	}
	if pinned == nil || !slices.Contains(pinned.received(), "GET pinned") || slices.Contains(l.received(), "SUBSCRIBE ch") {
		t.Fatalf("SUBSCRIBE and the GET after it did not go to one follower: leader %q, f1 %q, f2 %q", l.received(), f1.received(), f2.received())
	}
	if got := pinnedConns(t, c); got != 1 {
		t.Errorf("pinned connections %d, want 1", got)
	}
	conn.Close()
	testutil.Eventually(t, "the pin to end", 5*time.Second, func() (bool, string) {
		n := pinnedConns(t, c)
		return n == 0, fmt.Sprint(n)
	})

	// SSUBSCRIBE pins too (the cluster is one shard); SUNSUBSCRIBE
	// before it is the proxy's.
	if got, err := c.Do(ctx, "SUNSUBSCRIBE", "s").Slice(); err != nil || fmt.Sprint(got) != "[sunsubscribe s 0]" {
		t.Fatalf("SUNSUBSCRIBE before subscribing: %v, %v", got, err)
	}
	sconn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sconn.Close()
	if _, err := sconn.Write([]byte("*2\r\n$10\r\nSSUBSCRIBE\r\n$2\r\nsc\r\n")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "SSUBSCRIBE on a follower", 5*time.Second, func() (bool, string) {
		on := slices.Contains(f1.received(), "SSUBSCRIBE sc") || slices.Contains(f2.received(), "SSUBSCRIBE sc")
		return on && pinnedConns(t, c) == 1, fmt.Sprint(f1.received(), f2.received())
	})
}

// pinnedConns reads INFO proxy's pubsub_pinned_connections.
func pinnedConns(t *testing.T, c *redis.Client) int {
	t.Helper()
	s, err := c.Info(context.Background(), "proxy").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(s, "\r\n") {
		if v, ok := strings.CutPrefix(line, "pubsub_pinned_connections:"); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no pubsub_pinned_connections in %q", s)
	return 0
}

// TestRYWPipelineIsOneRun: a ryw session's pipelined writes reach the
// leader as one run (the user once, the writes back to back, one
// TANDEM.TOKEN and one RESET), so that the node starts them together and
// they share commits; the session's position is the last write's, and a
// read later in the pipeline carries it. With per-write tokens each write
// would wait on the node for the previous one's commit.
func TestRYWPipelineIsOneRun(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	p, addr := startProxy(t, Config{}, v)
	waitProbed(t, p)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rd := bufio.NewReader(nc)
	line := func() string {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		s, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(s, "\r\n")
	}
	fmt.Fprint(nc, "*2\r\n$11\r\nTANDEM.USER\r\n$1\r\nu\r\n")
	if got := line(); got != "+OK" {
		t.Fatalf("TANDEM.USER: %q", got)
	}
	// One write of the client: 16 SETs, a GET, and the token.
	var b strings.Builder
	for i := range 16 {
		k := fmt.Sprintf("k%02d", i)
		fmt.Fprintf(&b, "*3\r\n$3\r\nSET\r\n$3\r\n%s\r\n$1\r\n%d\r\n", k, i%10)
	}
	b.WriteString("*2\r\n$3\r\nGET\r\n$3\r\nk15\r\n*1\r\n$12\r\nTANDEM.TOKEN\r\n")
	if _, err := nc.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	for i := range 16 {
		if got := line(); got != "+OK" {
			t.Fatalf("SET %d: %q", i, got)
		}
	}
	if got := line() + " " + line(); got != "$1 5" {
		t.Fatalf("GET after the writes: %q (followers are behind: the leader serves it)", got)
	}
	if got := line() + " " + line(); got != "$7 t1:1:16" {
		t.Fatalf("token after 16 writes: %q, want t1:1:16", got)
	}
	var sets []string
	for i := range 16 {
		sets = append(sets, fmt.Sprintf("SET k%02d %d", i, i%10))
	}
	// Undone with commands a node starts without waiting for the commits
	// before them, not RESET.
	want := "TANDEM.USER u | " + strings.Join(sets, " | ") + " | TANDEM.TOKEN | TANDEM.USER  | TANDEM.TOKEN RESET | "
	rec := strings.Join(l.received(), " | ")
	if !strings.Contains(rec, want) {
		t.Errorf("leader received\n%s\nwant the run\n%s", rec, want)
	}
	if l.count("tandem.token") != 4 { // the run's and its reset, and the GET's floor and position
		t.Errorf("leader got %d TANDEM.TOKEN, want 4 (two for the 16 writes): %s", l.count("tandem.token"), rec)
	}
	l.mu.Lock()
	resets := l.resets
	l.mu.Unlock()
	if resets != 1 {
		t.Errorf("leader had its session RESET %d times, want 1 (after the GET only)", resets)
	}
	// The GET carried the run's position to the followers, which are
	// behind it.
	for _, f := range []*fakeNode{f1, f2} {
		if got := f.received(); !slices.Contains(got, "TANDEM.TOKEN t1:1:16") {
			t.Errorf("%s got %q, want the GET with floor t1:1:16", f.id, got)
		}
	}
}

// probed waits until the proxy knows every node serves read policies.
func probed(t *testing.T, p *Proxy) {
	t.Helper()
	waitProbed(t, p)
}

// TestReadsAvoidFollowersThatRefused: a ryw read after a write the
// followers have not applied is tried on them (each may wait for it);
// one that refused gets no such read for staleTTL (the leader serves it
// at once), while reads it is known to serve at once still go to it; a
// bounded read the same.
func TestReadsAvoidFollowersThatRefused(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	var mu sync.Mutex
	now := time.Unix(1000, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	// Reads that wait or are refused are under test: no leader share.
	p, addr := startProxy(t, Config{clock: clock, LeaderShare: -1}, v)
	probed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	catchUp := func(lsn uint64, val string) {
		f1.catchUp(lsn, "k", val)
		f2.catchUp(lsn, "k", val)
	}
	get := func(c *redis.Client, want string) {
		t.Helper()
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != want {
			t.Fatalf("GET = %q, %v; want %q", got, err, want)
		}
	}
	gets := func() (followers, leader int) { return f1.count("get") + f2.count("get"), l.count("get") }
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	catchUp(1, "v1")
	// Both followers serve reads at t1:1:1 (ties rotate between them).
	for i := 0; f1.count("get") == 0 || f2.count("get") == 0; i++ {
		if i == 50 {
			t.Fatalf("reads did not reach both followers: %d, %d", f1.count("get"), f2.count("get"))
		}
		get(c, "v1")
	}
	if l.count("get") != 0 {
		t.Fatalf("the leader served %d reads of caught-up followers", l.count("get"))
	}

	// A write the followers have not applied: its read is tried on both
	// (the fakes refuse at once), then the leader serves it.
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	fg, lg := gets()
	get(c, "v2")
	if f, l := gets(); f != fg+2 || l != lg+1 {
		t.Errorf("first read after a write: followers got %d GETs, leader %d; want 2 refused, then the leader", f-fg, l-lg)
	}
	// Both refused: the next read goes to the leader without trying them.
	fg, lg = gets()
	get(c, "v2")
	if f, l := gets(); f != fg || l != lg+1 {
		t.Errorf("after the refusals: followers got %d GETs, leader %d; want 0 and 1", f-fg, l-lg)
	}
	info, _ := c.Info(ctx, "proxy").Result()
	if !strings.Contains(info, "reads_fallback_leader_followers-behind:1") {
		t.Errorf("INFO lacks the fallback:\n%s", info)
	}
	// A session whose floor they are known to have applied still reads
	// there.
	c2 := client(t, addr)
	fg, lg = gets()
	get(c2, "v1")
	if f, l := gets(); f != fg+1 || l != lg {
		t.Errorf("a read the followers serve at once: followers got %d GETs, leader %d; want 1 and 0", f-fg, l-lg)
	}
	// The refusals age out: a follower is asked again, and serves once
	// it has caught up.
	catchUp(2, "v2")
	advance(staleTTL)
	fg, lg = gets()
	get(c, "v2")
	if f, l := gets(); f != fg+1 || l != lg {
		t.Errorf("after staleTTL: followers got %d GETs, leader %d; want 1 and 0", f-fg, l-lg)
	}

	// bounded: a follower's refusal keeps bounded reads off it for
	// staleTTL. (The fakes refuse a read behind the session's floor
	// under any policy but any.)
	if err := c.Do(ctx, "TANDEM.READPOLICY", "bounded", "50").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "v3", 0).Err(); err != nil {
		t.Fatal(err)
	}
	get(c, "v3") // both followers refuse, the leader serves
	fg, lg = gets()
	get(c, "v3")
	if f, l := gets(); f != fg || l != lg+1 {
		t.Errorf("bounded after refusals: followers got %d GETs, leader %d; want 0 and 1", f-fg, l-lg)
	}
	advance(staleTTL)
	catchUp(3, "v3")
	get(c, "v3")
	if f, _ := gets(); f != fg+1 {
		t.Errorf("bounded after staleTTL: followers got %d GETs, want 1", f-fg)
	}
}

// TestWaitingReadHoldsUpNoOne: a read that waits on a follower for the
// session's floor (the node answers a connection's requests in order)
// goes on a connection of its own: another session's read of the same
// follower, on the one shared connection, is served meanwhile. The
// waiting read is served by the follower once it catches up, not sent to
// the leader; under monotonic too (the session's sticky follower).
func TestWaitingReadHoldsUpNoOne(t *testing.T) {
	l := startFake(t, "n1", true, true)
	f := startFake(t, "n2", false, true)
	f.waitReads = true
	v := View{Epoch: 1, Leader: "n1", Members: []Member{l.member(), f.member()}}
	// A read that waits is under test: no leader share.
	p, addr := startProxy(t, Config{ConnsPerNode: 1, LeaderShare: -1}, v)
	probed(t, p)
	ctx := context.Background()
	writer, other := client(t, addr), client(t, addr)
	for i, pol := range []string{"ryw", "monotonic"} {
		if err := writer.Do(ctx, "TANDEM.READPOLICY", pol).Err(); err != nil {
			t.Fatal(err)
		}
		val := "v" + strconv.Itoa(i+1)
		if err := writer.Set(ctx, "k", val, 0).Err(); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			v, err := writer.Get(ctx, "k").Result()
			if err != nil {
				v = "error: " + err.Error()
			}
			got <- v
		}()
		testutil.Eventually(t, "the read waits on the follower", 5*time.Second, func() (bool, string) {
			return f.waitingReads() == 1, fmt.Sprintf("%d waiting", f.waitingReads())
		})
		// Another session's read of the follower is served by it while
		// the first still waits there (on a shared connection it would
		// wait behind it until the proxy gave up on the connection, and
		// then be served by the leader).
		fg := f.count("get")
		if err := other.Get(ctx, "other").Err(); err != redis.Nil {
			t.Fatalf("%s: another session's read while one waits: %v; want a nil reply", pol, err)
		}
		if f.count("get") != fg+1 || len(got) != 0 || f.waitingReads() != 1 {
			t.Fatalf("%s: another session's read was held up by the waiting one (follower GETs %d more, first read answered %v)", pol, f.count("get")-fg, len(got) != 0)
		}
		f.catchUp(uint64(i+1), "k", val)
		if v := <-got; v != val {
			t.Fatalf("%s: the waiting read answered %q, want %q", pol, v, val)
		}
		if n := l.count("get"); n != 0 {
			t.Fatalf("%s: the leader served %d reads; the follower should have, once caught up", pol, n)
		}
	}
	if info, _ := other.Info(ctx, "proxy").Result(); !strings.Contains(info, "reads_may_wait:2\r\n") || !strings.Contains(info, "reads_may_wait_on_shared:0\r\n") {
		t.Errorf("INFO does not count the 2 reads that may wait:\n%s", info)
	}
}

// TestLeaderReadsDoNotWaitForWrites: the leader's reads go on shared
// connections of their own, not behind other sessions' writes (a node
// runs a pipeline's command only once the writes before it commit); a
// read pipelined after the session's own write still goes after it.
func TestLeaderReadsDoNotWaitForWrites(t *testing.T) {
	l := startFake(t, "n1", true, false)
	l.hold = make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(l.hold) }) }
	v := View{Epoch: 1, Leader: "n1", Members: []Member{l.member()}}
	p, addr := startProxy(t, Config{ConnsPerNode: 1, Policy: Policy{Kind: resp.PolicyLeader}}, v)
	t.Cleanup(release) // runs before the proxy's and the fake's
	ctx := context.Background()
	a, b, c := client(t, addr), client(t, addr), client(t, addr)
	if err := b.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	slow := make(chan error, 1)
	go func() { slow <- a.Set(ctx, "slow", "x", 0).Err() }()
	testutil.Eventually(t, "the slow write holds the leader's write connection", 5*time.Second, func() (bool, string) {
		return l.waitingReads() == 1, "not yet"
	})
	// Another session's read is answered while the write waits.
	if got, err := b.Get(ctx, "k").Result(); err != nil || got != "v1" {
		t.Fatalf("GET while another session's write waits = %q, %v; want v1", got, err)
	}
	if len(slow) != 0 {
		t.Fatal("the slow write was answered before it was let go")
	}
	// A read pipelined after the session's own write waits for it.
	pipe := c.Pipeline()
	pipe.Set(ctx, "k", "v2", 0)
	get := pipe.Get(ctx, "k")
	done := make(chan error, 1)
	go func() { _, err := pipe.Exec(ctx); done <- err }()
	p.mu.Lock()
	n1 := p.nodes["n1"]
	p.mu.Unlock()
	testutil.Eventually(t, "the pipeline sent", 5*time.Second, func() (bool, string) {
		// Queued behind the slow write: it, the SET and the GET.
		return n1.inflight.Load() == 3 || l.count("get") == 2, fmt.Sprintf("%d in flight", n1.inflight.Load())
	})
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := get.Val(); got != "v2" {
		t.Errorf("a GET pipelined after the session's SET answered %q, want v2", got)
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestMonotonicWaitsOnItsFollower: a monotonic read its sticky follower
// refused (not applied within its read wait) is sent to wait there again,
// not to the leader, whose position the followers would then have to
// reach for the session's next reads; the refusal tells the proxy where
// the follower is.
func TestMonotonicWaitsOnItsFollower(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	for _, f := range []*fakeNode{f1, f2} {
		f.waitReads, f.readWait = true, 20*time.Millisecond
	}
	p, addr := startProxy(t, Config{}, v)
	probed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	if err := c.Do(ctx, "TANDEM.READPOLICY", "monotonic").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	go func() {
		v, err := c.Get(ctx, "k").Result()
		if err != nil {
			v = "error: " + err.Error()
		}
		got <- v
	}()
	// Refused at least twice by the same follower, then it catches up.
	var sticky, other *fakeNode
	testutil.Eventually(t, "the read refused twice", 5*time.Second, func() (bool, string) {
		switch {
		case f1.count("get") >= 2:
			sticky, other = f1, f2
		case f2.count("get") >= 2:
			sticky, other = f2, f1
		}
		return sticky != nil, fmt.Sprintf("GETs %d, %d", f1.count("get"), f2.count("get"))
	})
	sticky.catchUp(1, "k", "v1")
	if v := <-got; v != "v1" {
		t.Fatalf("monotonic GET = %q, want v1", v)
	}
	if n := l.count("get") + other.count("get"); n != 0 {
		t.Errorf("the read went elsewhere (%d GETs at the leader and the other follower); it should wait on its follower", n)
	}
	if info, _ := c.Info(ctx, "proxy").Result(); !strings.Contains(info, "reads_waited_again:") || strings.Contains(info, "reads_waited_again:0\r\n") {
		t.Errorf("INFO does not count the reads sent to wait again:\n%s", info)
	}
	p.mu.Lock()
	n := p.nodes[sticky.id]
	p.mu.Unlock()
	if !n.knownApplied(position{Epoch: 1, LSN: 1}) {
		t.Errorf("the proxy does not know the follower applied 1:1 after serving the read there")
	}
}

func TestAppliedIn(t *testing.T) {
	for _, tc := range []struct {
		reply string
		want  position
		ok    bool
	}{
		{"-TRYAGAIN tandem: read elsewhere: this node has not applied the position 3:20 within the read wait (applied 3:17)\r\n", position{Epoch: 3, LSN: 17}, true},
		{"-TRYAGAIN tandem: read elsewhere: this node has not applied the position 3:20 within the read wait (applied 0:0)\r\n", position{}, true},
		{"-TRYAGAIN tandem: read elsewhere: this node has not applied the position 3:20 within the read wait\r\n", position{}, false},
		{"-TRYAGAIN tandem: read elsewhere: this node has not applied the position 3:20 within the read wait (applied 3:x)\r\n", position{}, false},
	} {
		got, ok := appliedIn([]byte(tc.reply))
		if got != tc.want || ok != tc.ok {
			t.Errorf("appliedIn(%q) = %v, %v; want %v, %v", tc.reply, got, ok, tc.want, tc.ok)
		}
	}
}

// TestSlowForAWhile: a follower is found slow for bounded and
// linearizable reads when all of them were slow for slowWindow, not on a
// burst of slow ones.
func TestSlowForAWhile(t *testing.T) {
	n := &node{}
	ms := time.Millisecond
	at := time.Unix(1000, 0)
	for i, tc := range []struct {
		after, d time.Duration
		slow     bool
	}{
		{0, 200 * ms, false}, {10 * ms, 200 * ms, false}, {50 * ms, 200 * ms, false}, // a burst on a busy machine
		{1 * ms, 2 * ms, false},    // a fast one: not a lagging follower
		{100 * ms, 60 * ms, false}, // slow from here on
		{50 * ms, 60 * ms, false},
		{49 * ms, 60 * ms, false},
		{1 * ms, 60 * ms, true}, // slowWindow of slow reads: slow, and it starts over
		{1 * ms, 60 * ms, false},
		{100 * ms, 60 * ms, true},
	} {
		at = at.Add(tc.after)
		if got := n.slow(tc.d, at); got != tc.slow {
			t.Fatalf("read %d (%v): slow = %v, want %v", i, tc.d, got, tc.slow)
		}
	}
}

// TestWaitingReadOfAClientThatLeft: when a client leaves while its read
// waits on a follower, the connection of the read's own is closed (it
// carries nothing else; kept, a node that never answered would keep it
// from the next waiting read).
func TestWaitingReadOfAClientThatLeft(t *testing.T) {
	l := startFake(t, "n1", true, true)
	f := startFake(t, "n2", false, true)
	f.waitReads, f.readWait = true, 300*time.Millisecond
	v := View{Epoch: 1, Leader: "n1", Members: []Member{l.member(), f.member()}}
	// A read that waits is under test: no leader share.
	p, addr := startProxy(t, Config{LeaderShare: -1}, v)
	probed(t, p)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprint(nc, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
	if line, err := bufio.NewReader(nc).ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("SET: %q, %v", line, err)
	}
	fmt.Fprint(nc, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
	testutil.Eventually(t, "the read waits on the follower", 5*time.Second, func() (bool, string) {
		return f.waitingReads() == 1, fmt.Sprintf("%d waiting", f.waitingReads())
	})
	p.mu.Lock()
	n := p.nodes["n2"]
	p.mu.Unlock()
	n.wmu.Lock()
	u := n.waitAll[0]
	n.wmu.Unlock()
	nc.Close()
	testutil.Eventually(t, "the read's connection closed", 5*time.Second, func() (bool, string) {
		u.qmu.Lock()
		defer u.qmu.Unlock()
		return u.broken != nil && len(u.pending) == 0, "still open"
	})
}

// TestRYWLeaderRatherThanWait: a ryw read whose floor (the session's own
// write) no follower is known to have applied goes to the leader at once
// instead of waiting out a follower's lag, within the leader's share
// (LeaderShare: one leader read per ten the followers served); past the
// share it waits on a follower, and the followers earn the share back.
func TestRYWLeaderRatherThanWait(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	f1.waitReads, f2.waitReads = true, true
	p, addr := startProxy(t, Config{LeaderShare: 0.1}, v)
	waitProbed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	catchUp := func(lsn uint64, val string) {
		f1.catchUp(lsn, "k", val)
		f2.catchUp(lsn, "k", val)
	}
	get := func(want string) {
		t.Helper()
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != want {
			t.Fatalf("GET = %q, %v; want %q", got, err, want)
		}
	}
	followerGets := func() int { return f1.count("get") + f2.count("get") }
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	catchUp(1, "v1")
	// 30 reads the followers serve: the leader's share is 3 reads.
	for range 30 {
		get("v1")
	}
	if l.count("get") != 0 {
		t.Fatalf("the leader served %d reads before any share was earned", l.count("get"))
	}

	mayWait := func() string {
		info, _ := c.Info(ctx, "proxy").Result()
		_, rest, _ := strings.Cut(info, "reads_may_wait:")
		n, _, _ := strings.Cut(rest, "\r\n")
		return n
	}
	waited := mayWait()

	// A write the followers have not applied: its reads go to the leader
	// at once, none waits on (or is refused by) a follower.
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	fg := followerGets()
	for range 3 {
		get("v2")
	}
	if followerGets() != fg || l.count("get") != 3 {
		t.Fatalf("reads after the write: followers got %d GETs, leader %d; want 0 and 3 (the share)", followerGets()-fg, l.count("get"))
	}
	info, _ := c.Info(ctx, "proxy").Result()
	if !strings.Contains(info, "reads_fallback_leader_floor-not-applied:3\r\n") || mayWait() != waited {
		t.Errorf("INFO does not count 3 leader reads for floor-not-applied and no more reads that may wait (%s before):\n%s", waited, info)
	}

	// The share is spent: the next read waits on a follower.
	got := make(chan string, 1)
	go func() {
		v, err := c.Get(ctx, "k").Result()
		if err != nil {
			v = "error: " + err.Error()
		}
		got <- v
	}()
	testutil.Eventually(t, "the read waits on a follower", 5*time.Second, func() (bool, string) {
		n := f1.waitingReads() + f2.waitingReads()
		return n == 1, fmt.Sprintf("%d waiting", n)
	})
	catchUp(2, "v2")
	if v := <-got; v != "v2" {
		t.Fatalf("the waiting read answered %q, want v2", v)
	}
	if l.count("get") != 3 {
		t.Errorf("the leader served %d reads, want still 3", l.count("get"))
	}
}

// TestRYWLeaderReadsKnownForm: a ryw read the leader serves because the
// followers are not known to have the session's last write
// (floor-not-applied) goes in the known form (TANDEM.TOKEN RESET, the
// read, TANDEM.TOKEN): the leader acknowledged that write, so it had
// applied it. Its token must still prove the floor: a leader whose
// position went back under the write (a history replaced under the
// proxy's view) serves the known form below the floor, and the read is
// sent again with the session's state, which the node refuses, and
// served by a follower that has it, never answered stale.
func TestRYWLeaderReadsKnownForm(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	p, addr := startProxy(t, Config{LeaderShare: 0.1}, v)
	waitProbed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	get := func(want string) {
		t.Helper()
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != want {
			t.Fatalf("GET = %q, %v; want %q", got, err, want)
		}
	}
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f1.catchUp(1, "k", "v1")
	f2.catchUp(1, "k", "v1")
	// 30 reads the followers serve: the leader's share is 3 reads.
	for range 30 {
		get("v1")
	}
	if err := c.Set(ctx, "k", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	policies := l.count("tandem.readpolicy") // the probe's
	get("v2")
	rec := l.received()
	const known = "TANDEM.TOKEN RESET | get k | TANDEM.TOKEN"
	if tail := strings.Join(rec[max(0, len(rec)-3):], " | "); l.count("get") != 1 || tail != known {
		t.Fatalf("the leader served %d reads and last received %q; want 1, in the form %q", l.count("get"), tail, known)
	}
	if n := l.count("tandem.readpolicy"); n != policies {
		t.Errorf("the leader got %d TANDEM.READPOLICY for the read, want 0 (the known form)", n-policies)
	}

	// The leader goes back below the write (same epoch, LSN 1) with an
	// old value, the followers have the write but the proxy does not
	// know it: the next read goes to the leader in the known form, its
	// token does not prove the floor, and the session's state sent
	// after it is refused there and served by a follower.
	f1.catchUp(2, "k", "v2")
	f2.catchUp(2, "k", "v2")
	l.mu.Lock()
	l.lsn, l.data["k"] = 1, "old"
	l.mu.Unlock()
	get("v2")
	info, _ := c.Info(ctx, "proxy").Result()
	if !strings.Contains(info, "reads_floor_unproven:1\r\n") || !strings.Contains(info, "reads_fallback_leader_floor-not-applied:2\r\n") {
		t.Errorf("INFO does not count 2 leader reads for floor-not-applied, one of them unproven:\n%s", info)
	}
}

// TestKnownFormReplies: reads in the known form, whose three replies the
// proxy copies into one buffer per call (upConn.read), answer each its
// own value, of any size (in a buffer, past it, over several reads of the
// connection), while many sessions' pipelines share the connections.
func TestKnownFormReplies(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	p, addr := startProxy(t, Config{LeaderShare: -1, ConnsPerNode: 1}, v)
	waitProbed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	sizes := []int{0, 1, 60, 100, 120, 127, 128, 200, 1000, 70_000}
	want := map[string]string{}
	for i, n := range sizes {
		k, val := fmt.Sprintf("k%d", i), strings.Repeat(string(rune('a'+i)), n)
		if err := c.Set(ctx, k, val, 0).Err(); err != nil {
			t.Fatal(err)
		}
		want[k] = val
		for _, f := range []*fakeNode{f1, f2} {
			f.catchUp(uint64(i+1), k, val)
		}
	}
	c.Get(ctx, "k0") // a read served there makes the floor known
	c.Get(ctx, "k0")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client(t, addr)
			for range 20 {
				cmds, err := c.Pipelined(ctx, func(pl redis.Pipeliner) error {
					for i := range sizes {
						pl.Get(ctx, fmt.Sprintf("k%d", i))
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				for _, cmd := range cmds {
					g := cmd.(*redis.StringCmd)
					if k := g.Args()[1].(string); g.Val() != want[k] {
						t.Errorf("GET %s: %d bytes %.20q..., want %d bytes", k, len(g.Val()), g.Val(), len(want[k]))
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	if l.count("get") != 0 {
		t.Errorf("the leader served %d reads", l.count("get"))
	}
	info, _ := c.Info(ctx, "proxy").Result()
	if !strings.Contains(info, "reads_floor_known:") || strings.Contains(info, "reads_floor_known:0\r\n") {
		t.Errorf("no read went in the known form:\n%s", info)
	}
}

// TestKnownFloorReads: a ryw read on a follower known to have applied the
// session's floor goes without the session's state: the first on a read
// connection in the known form (TANDEM.TOKEN RESET, the read,
// TANDEM.TOKEN), the next ones proved (the read alone between two
// TANDEM.APPLIED), and the token or proofs must prove the floor: a
// follower whose applied position went back under what the proxy knew
// (a history a failover replaced) serves it below the floor, and the
// read is sent again with the session's state, which the node enforces
// (here: refused by both followers, served by the leader), never
// answered stale.
func TestKnownFloorReads(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	p, addr := startProxy(t, Config{LeaderShare: -1}, v)
	waitProbed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	get := func(want string) {
		t.Helper()
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != want {
			t.Fatalf("GET = %q, %v; want %q", got, err, want)
		}
	}
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f1.catchUp(1, "k", "v1")
	f2.catchUp(1, "k", "v1")
	for range 10 {
		get("v1")
	}
	tail := func(f *fakeNode) string {
		rec := f.received()
		return strings.Join(rec[max(0, len(rec)-3):], " | ")
	}
	const proved = "TANDEM.APPLIED | get k | TANDEM.APPLIED"
	if tail(f1) != proved && tail(f2) != proved {
		t.Fatalf("reads of a known floor: the followers last received %q and %q; want %q", tail(f1), tail(f2), proved)
	}
	for _, f := range []*fakeNode{f1, f2} {
		if rec := strings.Join(f.received(), " | "); f.count("get") > 0 && !strings.Contains(rec, "TANDEM.TOKEN RESET | get k | TANDEM.TOKEN") {
			t.Fatalf("%s's first read on its read connection was not in the known form: %q", f.id, rec)
		}
	}
	if l.count("get") != 0 {
		t.Fatalf("the leader served %d reads", l.count("get"))
	}

	// Both followers go back below the floor (same epoch, LSN 0) with
	// the old value: the proxy still knows them at 1:1.
	for _, f := range []*fakeNode{f1, f2} {
		f.mu.Lock()
		f.lsn, f.data["k"] = 0, "old"
		f.mu.Unlock()
	}
	get("v1")
	if l.count("get") != 1 {
		t.Errorf("the leader served %d reads, want 1 (both followers refuse the state)", l.count("get"))
	}
	info, _ := c.Info(ctx, "proxy").Result()
	if !strings.Contains(info, "reads_floor_unproven:1\r\n") {
		t.Errorf("INFO does not count the unproven read:\n%s", info)
	}
}

// waitProbesAnswered waits until every node answered the proxy's probe
// (TANDEM.READPOLICY), whether it serves read policies or not, so that no
// probe is in flight and counted as a node's load.
func waitProbesAnswered(t *testing.T, p *Proxy) {
	t.Helper()
	testutil.Eventually(t, "nodes' probes answered", 5*time.Second, func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, n := range p.nodes {
			if n.positions.Load() == 0 {
				return false, "node " + n.id + " has not answered its probe"
			}
		}
		return true, ""
	})
}

// waitProbed waits until p has asked every node whether it enforces read
// policies and each said it does.
func waitProbed(t *testing.T, p *Proxy) {
	t.Helper()
	testutil.Eventually(t, "nodes probed", 5*time.Second, func() (bool, string) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, n := range p.nodes {
			if n.positions.Load() != 1 {
				return false, "node " + n.id + " not probed"
			}
		}
		return true, ""
	})
}

// TestProvedReadsShareProofs: concurrent ryw reads of a known floor cost
// a follower one command each and a share of a proof, not the known
// form's three (plantKnownForm sends every one in the known form).
func TestProvedReadsShareProofs(t *testing.T) {
	l, f1, f2, v := threeFakes(t, true)
	p, addr := startProxy(t, Config{LeaderShare: -1}, v)
	waitProbed(t, p)
	ctx := context.Background()
	c := client(t, addr)
	if err := c.Set(ctx, "k", "v1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f1.catchUp(1, "k", "v1")
	f2.catchUp(1, "k", "v1")
	const pipelines, depth = 20, 50
	for range pipelines {
		cmds, err := c.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for range depth {
				pl.Get(ctx, "k")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, cmd := range cmds {
			if v := cmd.(*redis.StringCmd).Val(); v != "v1" {
				t.Fatalf("GET = %q, want v1", v)
			}
		}
	}
	reads := f1.count("get") + f2.count("get")
	cmds := len(f1.received()) + len(f2.received())
	if reads != pipelines*depth || l.count("get") != 0 {
		t.Fatalf("followers served %d reads, the leader %d; want %d and 0", reads, l.count("get"), pipelines*depth)
	}
	// Each pipeline's reads share a write to each follower, and so its
	// proof (a few writes more where the proxy's sender split one).
	if per := float64(cmds) / float64(reads); per > 1.2 {
		t.Fatalf("followers received %d commands for %d reads (%.2f a read); want at most 1.2", cmds, reads, per)
	}
	if n := p.stats.readsFloorUnproven.Load(); n != 0 {
		t.Fatalf("%d reads unproven", n)
	}
}

// TestProvedReadNeedsProofBefore: a proved read on a connection with no
// proof answered before it (a new connection) is not taken on the proof
// after it alone: the node may have caught up with the floor only after
// serving it. plantProofAfterOnly takes it.
func TestProvedReadNeedsProofBefore(t *testing.T) {
	floor := position{Epoch: 1, LSN: 5}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The node serves each GET below the floor, then has the floor
	// applied by the time of the proof after it.
	srv := redcon.NewServer(ln.Addr().String(), func(c redcon.Conn, cmd redcon.Command) {
		switch strings.ToUpper(string(cmd.Args[0])) {
		case "TANDEM.APPLIED":
			c.WriteBulkString(resp.FormatToken(floor))
		default:
			c.WriteBulkString("old")
		}
	}, nil, nil)
	go srv.Serve(ln)
	defer srv.Close()
	p := New(Config{Logger: slog.New(slog.DiscardHandler)})
	defer p.Close()
	n := newNode(p, "n2", ln.Addr().String(), "")
	defer n.close()
	u := n.rconns[0]
	read := func() *call {
		c := newCall(n, [][]byte{[]byte("GET"), []byte("k")})
		c.proved = true
		u.send(c, true)
		<-c.done
		if c.err != nil {
			t.Fatal(c.err)
		}
		return c
	}
	first := read()
	if first.before != (position{}) || first.after != floor {
		t.Fatalf("first read: proofs %v and %v, want none and %v", first.before, first.after, floor)
	}
	if first.provesFloor(floor) {
		t.Fatal("a read with no proof before it proves the floor")
	}
	if !u.provenIn(floor) {
		t.Fatal("the connection's proof is not known for the next read")
	}
	second := read()
	if second.before != floor || second.after != floor || !second.provesFloor(floor) {
		t.Fatalf("second read: proofs %v and %v, proves %v; want %v, %v, true", second.before, second.after, second.provesFloor(floor), floor, floor)
	}
}

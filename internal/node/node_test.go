package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/testutil"
)

// testNode starts a node on loopback with free ports and a temporary data
// directory; it closes with the test. edit changes the config first.
func testNode(t testing.TB, id string, edit func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		ID:       id,
		DataDir:  t.TempDir(),
		RESPAddr: "127.0.0.1:0",
		PeerAddr: "127.0.0.1:0",
		HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Fatal:    func(err error) { t.Errorf("node %s: fatal: %v", id, err) },
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(n.Close)
	return n
}

func quorum(k int) func(*Config) {
	return func(c *Config) { c.Mode = commit.Mode{Kind: commit.Quorum, K: k} }
}

// follow makes n follow leader.
func follow(t *testing.T, n, leader *Node) {
	t.Helper()
	respAddr, peer, _ := leader.Addrs()
	if err := n.Follow(respAddr, peer); err != nil {
		t.Fatalf("%s follow %s: %v", n.cfg.ID, leader.cfg.ID, err)
	}
}

// roleOf is the node's role as its own type says.
func roleOf(n *Node) string {
	switch n.current().(type) {
	case *leading:
		return "leader"
	case *following:
		return "follower"
	case *fenced:
		return "fenced"
	}
	return "none"
}

// newClient is a go-redis client that never retries: every error a test
// sees is the server's answer. go-redis sends HELLO 3 on each new
// connection.
func newClient(t testing.TB, n *Node) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: n.respAddr, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { c.Close() })
	return c
}

// checkRole checks that n has role want, and that Status, ROLE, INFO and
// HELLO (on a fresh connection) all say so without failing.
func checkRole(t *testing.T, n *Node, want string) {
	t.Helper()
	if got := roleOf(n); got != want {
		t.Fatalf("%s: role %s, want %s", n.cfg.ID, got, want)
	}
	if st := n.Status(); st.Role != want || (want == "fenced" && st.State != "fenced") {
		t.Fatalf("%s: status role %q state %q, want role %s", n.cfg.ID, st.Role, st.State, want)
	}
	redisRole := map[string]string{"leader": "master", "follower": "slave", "fenced": "fenced"}[want]
	c := redis.NewClient(&redis.Options{Addr: n.respAddr, MaxRetries: -1, DialTimeout: 2 * time.Second, ReadTimeout: 5 * time.Second})
	defer c.Close()
	ctx := context.Background()
	hello, err := c.Do(ctx, "HELLO", "3").Result()
	if err != nil {
		t.Fatalf("%s: HELLO: %v", n.cfg.ID, err)
	}
	helloRole := "replica"
	if want == "leader" {
		helloRole = "master"
	}
	if m, ok := hello.(map[any]any); !ok || m["role"] != helloRole {
		t.Fatalf("%s: HELLO = %v, want role %s", n.cfg.ID, hello, helloRole)
	}
	role, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(role) == 0 || role[0] != redisRole {
		t.Fatalf("%s: ROLE = %v, %v; want %s", n.cfg.ID, role, err, redisRole)
	}
	info, err := c.Info(ctx, "replication").Result()
	if err != nil || !strings.Contains(info, "role:"+redisRole+"\r\n") {
		t.Fatalf("%s: INFO replication = %q, %v; want role:%s", n.cfg.ID, info, err, redisRole)
	}
	if want != "leader" {
		err := c.Set(ctx, "probe", "x", 0).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "READONLY ") {
			t.Fatalf("%s (%s): SET = %v, want READONLY", n.cfg.ID, want, err)
		}
	}
	if want == "fenced" {
		err := c.Get(ctx, "probe").Err()
		if err == nil || !strings.HasPrefix(err.Error(), "MASTERDOWN ") {
			t.Fatalf("%s: GET on a fenced node = %v, want MASTERDOWN", n.cfg.ID, err)
		}
		if !strings.Contains(info, "tandem_state:fenced\r\n") || !strings.Contains(info, "tandem_fenced_reason:") {
			t.Fatalf("%s: INFO of a fenced node lacks state or reason: %q", n.cfg.ID, info)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, what, within, func() (bool, string) { return cond(), "" })
}

// flips is how many times the transition tests repeat: small for CI,
// larger with TANDEM_NODE_FLIPS.
func flips(t *testing.T, def int) int {
	if s := os.Getenv("TANDEM_NODE_FLIPS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("TANDEM_NODE_FLIPS=%q: %v", s, err)
		}
		return n
	}
	if testing.Short() {
		return def / 5
	}
	return def
}

// expectedErr reports whether err is an answer a client may get while
// roles change: the redirect and retry codes, or a timeout or broken
// connection (unknown outcome).
func expectedErr(err error, write bool) bool {
	if errors.Is(err, redis.Nil) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) {
		return true
	}
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	s := err.Error()
	codes := []string{"LOADING ", "MASTERDOWN "}
	if write {
		codes = []string{"READONLY ", "NOREPLICAS ", "TRYAGAIN ", "UNCERTAIN "}
	}
	for _, c := range codes {
		if strings.HasPrefix(s, c) {
			return true
		}
	}
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe") || strings.Contains(s, "use of closed")
}

// probe asks every node for its role in every way until ctx ends, so that
// the questions race with the transitions. It fails the test on an error
// from a question that must always be answered.
func probe(ctx context.Context, t *testing.T, nodes []*Node) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		clients := make([]*redis.Client, len(nodes))
		for i, n := range nodes {
			clients[i] = redis.NewClient(&redis.Options{Addr: n.respAddr, MaxRetries: -1, ReadTimeout: 5 * time.Second})
			defer clients[i].Close()
		}
		hc := http.Client{Timeout: 5 * time.Second}
		for i := 0; ctx.Err() == nil; i++ {
			k := i % len(nodes)
			n, c := nodes[k], clients[k]
			_ = n.Status()
			for _, cmd := range [][]any{{"ROLE"}, {"INFO"}, {"HELLO", "3"}} {
				if err := c.Do(ctx, cmd...).Err(); err != nil && ctx.Err() == nil {
					t.Errorf("%s: %v: %v", n.cfg.ID, cmd, err)
					return
				}
			}
			if i%10 == 0 {
				_, _, httpAddr := n.Addrs()
				for _, path := range []string{"/status", "/metrics"} {
					resp, err := hc.Get("http://" + httpAddr + path)
					if err != nil {
						t.Errorf("%s: GET %s: %v", n.cfg.ID, path, err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("%s: GET %s: %s", n.cfg.ID, path, resp.Status)
						return
					}
				}
			}
		}
	}()
	return done
}

// load writes unique keys round robin to every node and reads from every
// node until ctx ends. Each write a node acknowledged is in the returned
// map (read it after done closes).
type load struct {
	done  chan struct{}
	acked []map[string]string // per writer; read after done
	n     atomic.Int64        // acknowledged writes so far
}

// clientsOf returns one single-connection client per node.
func clientsOf(nodes []*Node) []*redis.Client {
	cs := make([]*redis.Client, len(nodes))
	for i, n := range nodes {
		cs[i] = redis.NewClient(&redis.Options{Addr: n.respAddr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 3 * time.Second})
	}
	return cs
}

func closeAll(cs []*redis.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// finish stops the load and the prober, waits for the nodes to converge on
// leader and checks that every acknowledged write is there; it returns how
// many there were.
func (l *load) finish(t *testing.T, stop context.CancelFunc, probed <-chan struct{}, leader *Node, nodes []*Node) int {
	t.Helper()
	stop()
	<-l.done
	<-probed
	waitConverged(t, leader, nodes)
	return checkAcked(t, leader, l)
}

func startLoad(ctx context.Context, t *testing.T, nodes []*Node, writers, readers int) *load {
	l := &load{done: make(chan struct{}), acked: make([]map[string]string, writers)}
	finished := make(chan struct{}, writers+readers)
	for w := range writers {
		l.acked[w] = map[string]string{}
		go func() {
			defer func() { finished <- struct{}{} }()
			cs := clientsOf(nodes)
			defer closeAll(cs)
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("w%d:%d", w, i), fmt.Sprintf("v%d", i)
				// Every fifth key expires at once, so that the expiry loop
				// proposes deletes while roles change; it is not checked.
				ttl := time.Duration(0)
				if i%5 == 4 {
					k, ttl = "ttl:"+k, 20*time.Millisecond
				}
				octx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := cs[i%len(cs)].Set(octx, k, v, ttl).Err()
				cancel()
				switch {
				case err == nil && ttl != 0:
				case err == nil:
					l.acked[w][k] = v
					l.n.Add(1)
				case ctx.Err() != nil:
				case !expectedErr(err, true):
					t.Errorf("write %s to %s: %v", k, nodes[i%len(cs)].cfg.ID, err)
					return
				}
			}
		}()
	}
	for r := range readers {
		go func() {
			defer func() { finished <- struct{}{} }()
			cs := clientsOf(nodes)
			defer closeAll(cs)
			for i := 0; ctx.Err() == nil; i++ {
				err := cs[i%len(cs)].Get(ctx, fmt.Sprintf("w%d:%d", r%max(writers, 1), i/len(cs))).Err()
				if err != nil && ctx.Err() == nil && !expectedErr(err, false) {
					t.Errorf("read from %s: %v", nodes[i%len(cs)].cfg.ID, err)
					return
				}
			}
		}()
	}
	go func() {
		for range writers + readers {
			<-finished
		}
		close(l.done)
	}()
	return l
}

// waitConverged waits until every node has applied what leader has
// durably logged, then compares digests.
func waitConverged(t *testing.T, leader *Node, nodes []*Node) {
	t.Helper()
	// The expiry loop may still delete keys through the log, so the
	// replicas are compared at one applied LSN, again until they agree:
	// a follower can apply an entry before the leader's applier has.
	testutil.Eventually(t, "replicas to apply the leader's log and agree", 30*time.Second, func() (bool, string) {
		wantLSN, want, err := leader.db.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if wantLSN != leader.db.Durable().LSN {
			return false, fmt.Sprintf("leader applied %d of %d", wantLSN, leader.db.Durable().LSN)
		}
		for _, n := range nodes {
			lsn, sum, err := n.db.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if lsn != wantLSN || sum != want {
				return false, fmt.Sprintf("%s digest %x at %d, leader %s has %x at %d", n.cfg.ID, sum, lsn, leader.cfg.ID, want, wantLSN)
			}
			// A follower serves reads once it has caught up with its
			// leader (LOADING before): the stream says so a heartbeat
			// after the data is there.
			if r, ok := n.current().(*following); ok && !n.readsResumed.Load() && !r.f.CaughtUp() {
				return false, fmt.Sprintf("%s has not yet caught up (reads answer LOADING)", n.cfg.ID)
			}
		}
		return true, ""
	})
}

// checkAcked reads every acknowledged write on n.
func checkAcked(t *testing.T, n *Node, l *load) int {
	t.Helper()
	c := newClient(t, n)
	ctx := context.Background()
	total := 0
	for _, m := range l.acked {
		pipe := c.Pipeline()
		keys := make([]string, 0, len(m))
		cmds := make([]*redis.StringCmd, 0, len(m))
		for k := range m {
			keys = append(keys, k)
			cmds = append(cmds, pipe.Get(ctx, k))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("read back acknowledged writes: %v", err)
		}
		for i, cmd := range cmds {
			if v, err := cmd.Result(); err != nil || v != m[keys[i]] {
				t.Errorf("acknowledged write %s=%s lost: read %q, %v", keys[i], m[keys[i]], v, err)
			}
		}
		total += len(m)
	}
	return total
}

// waitAcked waits until the load has had more writes acknowledged than
// after: the current leadership takes writes.
func (l *load) waitAcked(t *testing.T, after int64) {
	t.Helper()
	waitFor(t, "a write to be acknowledged", 10*time.Second, func() bool { return l.n.Load() > after })
}

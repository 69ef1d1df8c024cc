package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/coord/embedded"
	"github.com/tandemdb/tandem/internal/node"
	"github.com/tandemdb/tandem/internal/proc"
	"github.com/tandemdb/tandem/internal/testutil"
)

// testCluster is three in-process nodes under an embedded etcd; the test
// plays the orchestrator by writing the topology.
type testCluster struct {
	t     *testing.T
	etcd  *embedded.Etcd
	store *coord.Store
	nodes map[string]*node.Node
	epoch uint64
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startCluster starts nodes n1..n3 in mode (every acknowledged write is on
// every follower under "quorum 2") and makes n1 the leader at epoch 1.
func startCluster(t *testing.T, mode string) *testCluster {
	t.Helper()
	return startClusterWith(t, mode, nil)
}

// startClusterWith is startCluster with edit applied to each node's config.
func startClusterWith(t *testing.T, mode string, edit func(*node.Config)) *testCluster {
	t.Helper()
	e, cli := embedded.ForTest(t)
	m, err := commit.ParseMode(mode)
	if err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, etcd: e, store: coord.New(cli, "tandem"), nodes: map[string]*node.Node{}}
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("n%d", i)
		cfg := node.Config{
			ID: id, DataDir: t.TempDir(), Mode: m,
			RESPAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Etcd: []string{e.Endpoint}, Priority: 50,
			Fatal:  func(err error) { t.Errorf("node %s: fatal: %v", id, err) },
			Logger: testLogger(t),
		}
		if edit != nil {
			edit(&cfg)
		}
		n, err := node.Start(cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[id] = n
		t.Cleanup(n.Close)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	testutil.Eventually(t, "three members registered", 10*time.Second, func() (bool, string) {
		ms, err := c.store.Members(ctx)
		return err == nil && len(ms) == 3, fmt.Sprintf("%d members, %v", len(ms), err)
	})
	c.setLeader("n1")
	return c
}

// setLeader makes id the leader at the next epoch.
func (c *testCluster) setLeader(id string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.store.SetTopology(ctx, c.epoch, coord.Topology{Epoch: c.epoch + 1, Leader: id}, nil); err != nil {
		c.t.Fatal(err)
	}
	c.epoch++
}

func (c *testCluster) respAddr(id string) string {
	a, _, _ := c.nodes[id].Addrs()
	return a
}

// direct is a plain go-redis client of one node.
func (c *testCluster) direct(id string) *redis.Client {
	r := redis.NewClient(&redis.Options{Addr: c.respAddr(id), MaxRetries: -1})
	c.t.Cleanup(func() { r.Close() })
	return r
}

func newClient(t *testing.T, opt Options) *Client {
	t.Helper()
	opt.Logger = testLogger(t)
	c, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitForLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// writer writes unique keys and increments a counter until stopped,
// recording what was acknowledged.
type writer struct {
	c    *Client
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	acked      []string // keys whose SET was acknowledged
	marks      int      // how many times mark was called
	ackedAfter []string // keys whose SET began after the last mark and was acknowledged
	incrOK     int      // INCRs acknowledged
	incrUnsure int      // INCRs that returned an error (outcome unknown)
	setErrs    []error
}

func startWriter(c *Client, prefix string) *writer {
	w := &writer{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			k := prefix + strconv.Itoa(i)
			w.mu.Lock()
			marks := w.marks
			w.mu.Unlock()
			err := c.Set(ctx, k, i, 0).Err()
			_, ierr := c.Incr(ctx, prefix+"counter").Result()
			cancel()
			w.mu.Lock()
			if err == nil {
				w.acked = append(w.acked, k)
				// A SET that began before the mark counts as before it,
				// even if its reply is recorded after: the old leader may
				// have acknowledged it just before it was stopped.
				if marks == w.marks {
					w.ackedAfter = append(w.ackedAfter, k)
				}
			} else {
				w.setErrs = append(w.setErrs, err)
			}
			if ierr == nil {
				w.incrOK++
			} else {
				w.incrUnsure++
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// mark starts counting acknowledgements anew: only SETs that begin after
// it count.
func (w *writer) mark() {
	w.mu.Lock()
	w.marks++
	w.ackedAfter = nil
	w.mu.Unlock()
}

func (w *writer) ackedSinceMark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ackedAfter)
}

// state describes the writer for a timed-out wait.
func (w *writer) state() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := fmt.Sprintf("%d acknowledged since the mark, %d in all, %d SET errors", len(w.ackedAfter), len(w.acked), len(w.setErrs))
	if len(w.setErrs) > 0 {
		s += fmt.Sprintf(" (last: %v)", w.setErrs[len(w.setErrs)-1])
	}
	return s
}

func (w *writer) halt() {
	close(w.stop)
	<-w.done
}

// check verifies every acknowledged SET on r and the counter's bounds.
func (w *writer) check(t *testing.T, r *redis.Client, prefix string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if len(w.setErrs) > 0 {
		t.Errorf("%d SETs failed, first: %v (SET k v is retried until FailoverTimeout)", len(w.setErrs), w.setErrs[0])
	}
	for _, k := range w.acked {
		v, err := r.Get(ctx, k).Result()
		if err != nil || v != k[len(prefix):] {
			t.Errorf("acknowledged SET %s: GET = %q, %v", k, v, err)
		}
	}
	n, err := r.Get(ctx, prefix+"counter").Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	// Each INCR ran at most once: an uncertain one is not retried.
	if n < w.incrOK || n > w.incrOK+w.incrUnsure {
		t.Errorf("counter = %d, want between %d acknowledged and %d sent INCRs", n, w.incrOK, w.incrOK+w.incrUnsure)
	}
	t.Logf("%d SETs acknowledged; counter %d: %d INCRs acknowledged, %d uncertain", len(w.acked), n, w.incrOK, w.incrUnsure)
}

func TestFollowsTopologyInEtcd(t *testing.T) {
	tc := startCluster(t, "quorum 2")
	c := newClient(t, Options{Etcd: []string{tc.etcd.Endpoint}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if err := c.Set(ctx, "first", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if id, addr, epoch := c.Leader(); id != "n1" || addr != tc.respAddr("n1") || epoch != 1 {
		t.Fatalf("Leader() = %s %s %d, want n1 %s 1", id, addr, epoch, tc.respAddr("n1"))
	}
	if role, err := tc.direct("n1").Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("n1 ROLE = %v, %v", role, err)
	}
	if v, err := tc.direct("n1").Get(ctx, "first").Result(); v != "1" {
		t.Fatalf("GET first on n1 = %q, %v", v, err)
	}

	w := startWriter(c, "k")
	testutil.Eventually(t, "writes before the change", 10*time.Second, func() (bool, string) {
		return w.ackedSinceMark() >= 20, w.state()
	})
	w.mark()
	changed := time.Now()
	tc.setLeader("n2")
	testutil.Eventually(t, "the client to follow n2", time.Second, func() (bool, string) {
		id, addr, epoch := c.Leader()
		return id == "n2" && addr == tc.respAddr("n2") && epoch == 2, fmt.Sprint(id, addr, epoch)
	})
	t.Logf("client followed n2 after %v", time.Since(changed))
	testutil.Eventually(t, "writes after the change", 5*time.Second, func() (bool, string) {
		return w.ackedSinceMark() >= 20, w.state()
	})
	w.halt()
	w.check(t, tc.direct("n2"), "k")
	if role, err := tc.direct("n2").Do(ctx, "ROLE").Slice(); err != nil || role[0] != "master" {
		t.Fatalf("n2 ROLE = %v, %v", role, err)
	}
}

func TestFollowsLeaderByRole(t *testing.T) {
	tc := startCluster(t, "quorum 2")
	c := newClient(t, Options{Addrs: []string{tc.respAddr("n1"), tc.respAddr("n2"), tc.respAddr("n3")}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A node starts fenced and n1 leads once it has seen the topology and
	// its lease: the probes must find it, whenever that is.
	if err := c.Set(ctx, "first", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if id, addr, epoch := c.Leader(); id != "n1" || addr != tc.respAddr("n1") || epoch != 1 {
		t.Fatalf("Leader() = %s %s %d, want n1 %s 1", id, addr, epoch, tc.respAddr("n1"))
	}

	w := startWriter(c, "a")
	testutil.Eventually(t, "writes before the change", 10*time.Second, func() (bool, string) {
		return w.ackedSinceMark() >= 20, w.state()
	})
	w.mark()
	tc.setLeader("n3")
	testutil.Eventually(t, "writes through n3", 5*time.Second, func() (bool, string) {
		n := w.ackedSinceMark()
		id, _, epoch := c.Leader()
		return n >= 20 && id == "n3" && epoch == 2, fmt.Sprint(w.state(), "; leader ", id, " epoch ", epoch)
	})
	w.halt()
	w.check(t, tc.direct("n3"), "a")
}

// TestLeaderDies stops the leader, then names another: writes go on
// through the new one soon after the topology changes.
func TestLeaderDies(t *testing.T) {
	tc := startCluster(t, "quorum 1")
	c := newClient(t, Options{Etcd: []string{tc.etcd.Endpoint}})
	w := startWriter(c, "d")
	testutil.Eventually(t, "writes before the failure", 10*time.Second, func() (bool, string) {
		return w.ackedSinceMark() >= 20, w.state()
	})
	tc.nodes["n1"].Close()
	w.mark()
	changed := time.Now()
	tc.setLeader("n2")
	testutil.Eventually(t, "writes through n2", 3*time.Second, func() (bool, string) {
		return w.ackedSinceMark() > 0, w.state()
	})
	t.Logf("writes succeed again %v after the topology changed", time.Since(changed))
	testutil.Eventually(t, "more writes through n2", 5*time.Second, func() (bool, string) {
		return w.ackedSinceMark() >= 20, w.state()
	})
	w.halt()
	if id, _, epoch := c.Leader(); id != "n2" || epoch != 2 {
		t.Fatalf("Leader() = %s, epoch %d", id, epoch)
	}
	// Under quorum 1 an acknowledged write is on n2 or n3, not
	// necessarily on n2; those acknowledged by n2 must be there.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := tc.direct("n2")
	w.mu.Lock()
	after := w.ackedAfter
	w.mu.Unlock()
	for _, k := range after {
		if v, err := r.Get(ctx, k).Result(); err != nil || v != k[1:] {
			t.Errorf("SET %s acknowledged after the failover: GET on n2 = %q, %v", k, v, err)
		}
	}
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	addrs, err := proc.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	return addrs[0]
}

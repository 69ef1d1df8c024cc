package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/proc"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestRotateLeaderUnderLoad hands the leadership round three nodes under
// quorum 1 while clients write to and read from every node and others ask
// every node for its role. Each rotation is a planned switchover: fence the
// leader, promote the most advanced follower, make the others follow it.
// After every step each node has exactly one role and says so everywhere;
// at the end the replicas are identical and every acknowledged write is on
// the final leader.
func TestRotateLeaderUnderLoad(t *testing.T) {
	n1 := testNode(t, "n1", quorum(1))
	n2 := testNode(t, "n2", quorum(1))
	n3 := testNode(t, "n3", quorum(1))
	nodes := []*Node{n1, n2, n3}
	follow(t, n2, n1)
	follow(t, n3, n1)
	checkRole(t, n1, "leader")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probed := probe(ctx, t, nodes)
	l := startLoad(ctx, t, nodes, 4, 2)
	l.waitAcked(t, 0)

	leader := n1
	rotations := flips(t, 25)
	start := time.Now()
	for i := range rotations {
		before := l.n.Load()
		leader.Fence(fmt.Sprintf("test: switchover %d", i))
		checkRole(t, leader, "fenced")
		// Every acknowledged write is durable on some follower: the most
		// advanced one, by the (epoch, LSN) of its last entry, has them
		// all (a follower that has not reconnected since the last rotation
		// may hold a longer log of an older epoch). With the leader fenced
		// nothing new arrives.
		var next *Node
		for _, n := range nodes {
			if n != leader && (next == nil || ahead(n.db.Durable(), next.db.Durable())) {
				next = n
			}
		}
		if err := next.Lead(); err != nil {
			t.Fatalf("rotation %d: %s lead: %v", i, next.cfg.ID, err)
		}
		checkRole(t, next, "leader")
		for _, n := range nodes {
			if n != next {
				follow(t, n, next)
				checkRole(t, n, "follower")
			}
		}
		// A static Lead takes the epoch after the highest this node has
		// seen; only the control plane hands out epochs cluster-wide. So
		// every follower must have seen this leadership's epoch before the
		// next rotation, or two leaderships could share an epoch (and
		// (epoch, LSN) would no longer name one entry).
		for _, n := range nodes {
			testutil.Eventually(t, n.cfg.ID+" to see epoch of "+next.cfg.ID, 10*time.Second, func() (bool, string) {
				return n.db.Epoch() >= next.db.Epoch(), fmt.Sprintf("%d < %d", n.db.Epoch(), next.db.Epoch())
			})
		}
		leader = next
		l.waitAcked(t, before)
		if t.Failed() {
			break
		}
	}
	elapsed := time.Since(start)
	acked := l.finish(t, cancel, probed, leader, nodes)
	t.Logf("%d rotations (%d role changes) in %v; %d acknowledged writes all on %s", rotations, 4*rotations, elapsed.Round(time.Millisecond), acked, leader.cfg.ID)
}

// ahead reports whether log position a is more advanced than b: a later
// epoch, or the same epoch and a higher LSN.
func ahead(a, b logrec.Position) bool {
	return a.Epoch > b.Epoch || (a.Epoch == b.Epoch && a.LSN > b.LSN)
}

// TestLeadFenceLeadUnderLoad fences and restarts the leadership of one node
// many times under load (async), and now and then fences and restarts its
// follower. The leader never follows, so its log keeps every acknowledged
// write.
func TestLeadFenceLeadUnderLoad(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	nodes := []*Node{n1, n2}
	follow(t, n2, n1)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	probed := probe(ctx, t, nodes)
	l := startLoad(ctx, t, nodes, 4, 2)
	l.waitAcked(t, 0)

	count := flips(t, 200)
	start := time.Now()
	for i := range count {
		before := l.n.Load()
		n1.Fence(fmt.Sprintf("test: flip %d", i))
		checkRole(t, n1, "fenced")
		if err := n1.Lead(); err != nil {
			t.Fatalf("flip %d: lead: %v", i, err)
		}
		checkRole(t, n1, "leader")
		if i%10 == 0 {
			n2.Fence("test: fence the follower")
			checkRole(t, n2, "fenced")
			follow(t, n2, n1)
			checkRole(t, n2, "follower")
		}
		l.waitAcked(t, before)
		if t.Failed() {
			break
		}
	}
	elapsed := time.Since(start)
	acked := l.finish(t, cancel, probed, n1, nodes)
	t.Logf("%d fence/lead flips in %v; %d acknowledged writes all on n1", count, elapsed.Round(time.Millisecond), acked)
}

var errInjected = errors.New("injected lead failure")

// TestStartServesClientsOnceItLeads: a node started as a one-node leader
// answers no client before it leads. A write sent while Start's Lead is
// still running (held here in leadHook) is answered by the leader once
// Lead is done, not refused with READONLY by the node that is starting
// (what a client of `tandem up` saw when it wrote as soon as PING was
// answered).
func TestStartServesClientsOnceItLeads(t *testing.T) {
	addrs, err := proc.FreeAddrs(1)
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	type started struct {
		n   *Node
		err error
	}
	done := make(chan started, 1)
	dir := t.TempDir() // here: its removal runs after the cleanup below
	go func() {
		n, err := Start(Config{
			ID: "n1", DataDir: dir,
			RESPAddr: addrs[0], PeerAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
			Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			Fatal:    func(err error) { t.Errorf("fatal: %v", err) },
			leadHook: func() error { close(entered); <-release; return nil },
		})
		done <- started{n, err}
	}()
	var (
		released bool
		result   *started
	)
	wait := func() started {
		if result == nil {
			r := <-done
			result = &r
		}
		return *result
	}
	t.Cleanup(func() {
		if !released {
			close(release)
		}
		if r := wait(); r.n != nil {
			r.n.Close()
		}
	})
	select {
	case <-entered:
	case r := <-done:
		result = &r
		t.Fatalf("Start returned before Lead ran: %v", r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not reach Lead in 10s")
	}
	conn, err := net.DialTimeout("tcp", addrs[0], 5*time.Second)
	if err != nil {
		t.Fatalf("dial while the node starts: %v", err)
	}
	defer conn.Close()
	if _, err := fmt.Fprint(conn, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"); err != nil {
		t.Fatal(err)
	}
	// Nothing answers while Lead runs (a node that served would refuse
	// at once; a slow machine can only hide that, not fake it).
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if line, err := br.ReadString('\n'); err == nil {
		t.Fatalf("answered %q while starting, before it led", strings.TrimSpace(line))
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read while starting: %v, want no answer yet", err)
	}
	close(release)
	released = true
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := br.ReadString('\n'); err != nil || line != "+OK\r\n" {
		t.Fatalf("SET sent while starting = %q, %v; want +OK from the leader", line, err)
	}
	if r := wait(); r.err != nil {
		t.Fatalf("Start: %v", r.err)
	}
}

// TestFailedLeadFences makes Lead fail after the old role has stopped, from
// a follower and from a fenced node: the node is fenced with the error as
// the reason, answers every role question, refuses writes and reads, and
// leads once Lead succeeds.
func TestFailedLeadFences(t *testing.T) {
	var fail atomic.Bool
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", func(c *Config) {
		c.leadHook = func() error {
			if fail.Load() {
				return errInjected
			}
			return nil
		}
	})
	follow(t, n2, n1)
	ctx := context.Background()
	if err := newClient(t, n1).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "n2 to apply the write", 10*time.Second, func() bool { return n2.db.Applied() >= n1.db.Durable().LSN })

	fail.Store(true)
	for _, from := range []string{"follower", "fenced"} {
		if err := n2.Lead(); !errors.Is(err, errInjected) {
			t.Fatalf("lead from %s: %v, want the injected error", from, err)
		}
		checkRole(t, n2, "fenced")
		err := newClient(t, n2).Get(ctx, "k").Err()
		const want = "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (tandem: this node is fenced: node: lead: injected lead failure)"
		if err == nil || err.Error() != want {
			t.Fatalf("GET on the fenced node = %v, want %q", err, want)
		}
		err = newClient(t, n2).Set(ctx, "k", "w", 0).Err()
		const wantW = "READONLY You can't write against a read only replica. (tandem: this node is not the leader)"
		if err == nil || err.Error() != wantW {
			t.Fatalf("SET on the fenced node = %v, want %q", err, wantW)
		}
	}

	fail.Store(false)
	if err := n2.Lead(); err != nil {
		t.Fatal(err)
	}
	checkRole(t, n2, "leader")
	c := newClient(t, n2)
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET k on the new leader = %q, %v", v, err)
	}
	if err := c.Set(ctx, "k2", "v2", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestLeaderThatStepsDownFences makes a leader see a higher epoch (a node
// that led after it connects as its follower): the leader stops by itself
// and the node becomes fenced, saying why.
func TestLeaderThatStepsDownFences(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	waitFor(t, "n2 to connect", 10*time.Second, func() bool { return n2.Status().Connected })
	if err := n2.Lead(); err != nil { // a higher epoch than n1's
		t.Fatal(err)
	}
	follow(t, n2, n1) // n2 says hello at its higher epoch
	waitFor(t, "n1 to step down", 10*time.Second, func() bool { return roleOf(n1) == "fenced" })
	checkRole(t, n1, "fenced")
	if r, ok := n1.current().(*fenced); !ok || !strings.Contains(r.reason, "leader stopped") {
		t.Fatalf("n1 role %#v, want fenced because its leader stopped", n1.current())
	}

	if err := n2.Lead(); err != nil {
		t.Fatal(err)
	}
	follow(t, n1, n2)
	checkRole(t, n2, "leader")
	checkRole(t, n1, "follower")
	ctx := context.Background()
	if err := newClient(t, n2).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, n2, []*Node{n1, n2})
}

// TestClosedNodeChangesNoRole checks that Close is final and idempotent.
func TestClosedNodeChangesNoRole(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	n2 := testNode(t, "n2", nil)
	follow(t, n2, n1)
	n2.Close()
	n2.Close()
	if err := n2.Lead(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lead after Close: %v, want ErrClosed", err)
	}
	respAddr, peer, _ := n1.Addrs()
	if err := n2.Follow(respAddr, peer); !errors.Is(err, ErrClosed) {
		t.Fatalf("Follow after Close: %v, want ErrClosed", err)
	}
	n2.Fence("after close")
	if roleOf(n2) != "fenced" {
		t.Fatalf("closed node role %s, want fenced", roleOf(n2))
	}
}

// TestSeedAcrossFence starts empty followers, which ask for a snapshot,
// and fences and restarts the leader while they are being seeded: the
// role change does not wait for a snapshot to finish, and each follower is
// seeded from the next leadership.
func TestSeedAcrossFence(t *testing.T) {
	n1 := testNode(t, "n1", nil)
	c := newClient(t, n1)
	ctx := context.Background()
	pipe := c.Pipeline()
	for i := range 5000 {
		pipe.Set(ctx, fmt.Sprintf("seed:%d", i), strings.Repeat("x", 100), 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	nodes := []*Node{n1}
	for i := range 5 {
		n := testNode(t, fmt.Sprintf("f%d", i), nil)
		follow(t, n, n1)
		nodes = append(nodes, n)
		n1.Fence("test: fence during a seed")
		checkRole(t, n1, "fenced")
		if err := n1.Lead(); err != nil {
			t.Fatal(err)
		}
		checkRole(t, n1, "leader")
	}
	waitConverged(t, n1, nodes)
}

// TestRestartedFollowerReadsOnlyOnceCaughtUp: a follower that restarts may
// come back with less applied than it served before (Pebble's apply is not
// synced; after a kill -9 it replays from what Pebble kept), so until it
// has caught up with a leader it answers LOADING, never an older value.
func TestRestartedFollowerReadsOnlyOnceCaughtUp(t *testing.T) {
	leader := testNode(t, "l", nil)
	dir := t.TempDir()
	f := testNode(t, "f", func(c *Config) { c.DataDir = dir })
	follow(t, f, leader)
	ctx := context.Background()
	if err := newClient(t, leader).Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	fc := newClient(t, f)
	waitFor(t, "the follower serves k", 5*time.Second, func() bool {
		v, err := fc.Get(ctx, "k").Result()
		return err == nil && v == "v"
	})
	f.Close()

	leader.Fence("test: no leader while the follower restarts")
	f2 := testNode(t, "f", func(c *Config) { c.DataDir = dir })
	follow(t, f2, leader)
	c2 := newClient(t, f2)
	if err := c2.Get(ctx, "k").Err(); err == nil || !strings.HasPrefix(err.Error(), "LOADING") {
		t.Fatalf("a restarted follower that has not caught up answered GET k with %v, want LOADING", err)
	}
	if err := leader.Lead(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the restarted follower serves k once caught up", 10*time.Second, func() bool {
		v, err := c2.Get(ctx, "k").Result()
		return err == nil && v == "v"
	})
}

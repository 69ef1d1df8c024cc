package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
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

// TestReplicaOfFlipsUnderLoad hands the leadership round three real node
// processes with REPLICAOF, under quorum 2 (every acknowledged write is on
// both followers), while clients write to and read from every node. After
// each switchover every node answers ROLE as its new role; at the end no
// process has died or restarted, the replicas are identical, and every
// acknowledged write is on the final leader.
func TestReplicaOfFlipsUnderLoad(t *testing.T) {
	c := startCluster(t, 3, "--mode", "quorum 2")
	nodes := c.Nodes()
	pids := map[int]int{}
	for _, n := range nodes {
		pids[n.ID] = n.PID
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := flipLoad(ctx, t, nodes, 4)
	waitAckedSince(t, l, 0)

	rotations := 20
	if s := os.Getenv("TANDEM_INTEGRATION_FLIPS"); s != "" {
		var err error
		if rotations, err = strconv.Atoi(s); err != nil {
			t.Fatalf("TANDEM_INTEGRATION_FLIPS=%q: %v", s, err)
		}
	}
	leader := nodes[0]
	start := time.Now()
	for i := range rotations {
		before := l.n.Load()
		// Any follower may be promoted: under quorum 2 each holds every
		// acknowledged write, and after the wait at the end of the last
		// rotation both stream from the current leadership, so neither
		// holds a longer log of an older epoch.
		next := nodes[(i+1)%len(nodes)]
		// The old leader follows first: from then on nothing commits until
		// next leads, and next holds every acknowledged write (quorum 2).
		replicaOf(t, leader, &next)
		replicaOf(t, next, nil)
		for _, n := range nodes {
			if n.ID != next.ID && n.ID != leader.ID {
				replicaOf(t, n, &next)
			}
		}
		for _, n := range nodes {
			checkRedisRole(t, n, next)
		}
		leader = next
		waitAckedSince(t, l, before+5) // the new leadership takes writes
		if t.Failed() {
			break
		}
	}
	elapsed := time.Since(start)
	cancel()
	l.wg.Wait()
	for _, n := range c.Nodes() {
		if n.PID != pids[n.ID] {
			t.Fatalf("%s: pid %d, started as %d: the process died", n.Name, n.PID, pids[n.ID])
		}
		for _, bad := range []string{"panic:", "fatal error:", "DATA RACE"} {
			if logContains(t, c, n.ID, bad) {
				t.Fatalf("%s's log has %q", n.Name, bad)
			}
		}
	}
	waitConverged(t, c)
	acked := 0
	lc := client(t, leader.RESPAddr)
	bg := context.Background()
	for _, m := range l.acked {
		pipe := lc.Pipeline()
		cmds := map[string]*redis.StringCmd{}
		for k := range m {
			cmds[k] = pipe.Get(bg, k)
		}
		if _, err := pipe.Exec(bg); err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		for k, cmd := range cmds {
			if v, err := cmd.Result(); err != nil || v != m[k] {
				t.Errorf("acknowledged write %s=%s lost: read %q, %v", k, m[k], v, err)
			}
		}
		acked += len(m)
	}
	t.Logf("%d REPLICAOF switchovers in %v; %d acknowledged writes all on %s", rotations, elapsed.Round(time.Millisecond), acked, leader.Name)
}

// replicaOf sends REPLICAOF to n: of leader, or NO ONE when leader is nil.
func replicaOf(t *testing.T, n cluster.NodeInfo, leader *cluster.NodeInfo) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: n.RESPAddr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer c.Close()
	args := []any{"REPLICAOF", "NO", "ONE"}
	if leader != nil {
		host, port, _ := net.SplitHostPort(leader.RESPAddr)
		args = []any{"REPLICAOF", host, port}
	}
	if err := c.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("%s %v: %v", n.Name, args, err)
	}
}

// checkRedisRole checks ROLE and HELLO (go-redis sends it on connect) on n
// against the leader.
func checkRedisRole(t *testing.T, n, leader cluster.NodeInfo) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: n.RESPAddr, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer c.Close()
	role, err := c.Do(context.Background(), "ROLE").Slice()
	if err != nil || len(role) == 0 {
		t.Fatalf("%s: ROLE = %v, %v", n.Name, role, err)
	}
	_, port, _ := net.SplitHostPort(leader.RESPAddr)
	switch {
	case n.ID == leader.ID && role[0] != "master":
		t.Fatalf("%s: ROLE = %v, want master", n.Name, role)
	case n.ID != leader.ID && (role[0] != "slave" || len(role) < 3 || fmt.Sprint(role[2]) != port):
		t.Fatalf("%s: ROLE = %v, want slave of port %s", n.Name, role, port)
	}
}

type flipLoadState struct {
	wg    sync.WaitGroup
	acked []map[string]string // per writer; read after wg.Wait
	n     atomic.Int64
}

// flipLoad writes unique keys round robin to every node, and reads them
// back from every node, until ctx ends. It fails the test on an error a
// client should not see while roles change.
func flipLoad(ctx context.Context, t *testing.T, nodes []cluster.NodeInfo, writers int) *flipLoadState {
	l := &flipLoadState{acked: make([]map[string]string, writers)}
	for w := range writers {
		l.acked[w] = map[string]string{}
		l.wg.Add(2)
		clients := func() []*redis.Client {
			cs := make([]*redis.Client, len(nodes))
			for i, n := range nodes {
				cs[i] = redis.NewClient(&redis.Options{Addr: n.RESPAddr, MaxRetries: -1, PoolSize: 1, ReadTimeout: 3 * time.Second})
			}
			return cs
		}
		go func() {
			defer l.wg.Done()
			cs := clients()
			defer closeAll(cs)
			for i := 0; ctx.Err() == nil; i++ {
				k, v := fmt.Sprintf("flip:%d:%d", w, i), fmt.Sprintf("v%d", i)
				octx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := cs[i%len(cs)].Set(octx, k, v, 0).Err()
				cancel()
				switch {
				case err == nil:
					l.acked[w][k] = v
					l.n.Add(1)
				case ctx.Err() != nil:
				case !clientMayGet(err, "READONLY ", "NOREPLICAS ", "TRYAGAIN ", "UNCERTAIN "):
					t.Errorf("write %s to %s: %v", k, nodes[i%len(cs)].Name, err)
					return
				}
			}
		}()
		go func() {
			defer l.wg.Done()
			cs := clients()
			defer closeAll(cs)
			for i := 0; ctx.Err() == nil; i++ {
				err := cs[i%len(cs)].Get(ctx, fmt.Sprintf("flip:%d:%d", w, i/len(cs))).Err()
				if err != nil && ctx.Err() == nil && !clientMayGet(err, "LOADING ", "MASTERDOWN ") {
					t.Errorf("read from %s: %v", nodes[i%len(cs)].Name, err)
					return
				}
			}
		}()
	}
	return l
}

func closeAll(cs []*redis.Client) {
	for _, c := range cs {
		c.Close()
	}
}

// clientMayGet reports whether err is one of the codes, a miss, or a
// timeout or broken connection (an unknown outcome).
func clientMayGet(err error, codes ...string) bool {
	if errors.Is(err, redis.Nil) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	s := err.Error()
	for _, c := range codes {
		if strings.HasPrefix(s, c) {
			return true
		}
	}
	return strings.Contains(s, "EOF") || strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe")
}

func waitAckedSince(t *testing.T, l *flipLoadState, after int64) {
	t.Helper()
	testutil.Eventually(t, "a write to be acknowledged", 15*time.Second, func() (bool, string) {
		return l.n.Load() > after, fmt.Sprintf("%d acknowledged so far", l.n.Load())
	})
}

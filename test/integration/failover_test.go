package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	_ "github.com/tandemdb/tandem/internal/chaos/relay"
	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/testbin"
	"github.com/tandemdb/tandem/internal/testutil"
)

// startControlled starts a cluster under the control plane (embedded etcd,
// two orchestrators) and waits for its first leader.
func startControlled(t *testing.T, nodes int, tweak func(*cluster.Config)) *cluster.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process test: skipped with -short")
	}
	cfg := cluster.Config{
		Binary:        testbin.Path(t),
		Dir:           t.TempDir(),
		Nodes:         nodes,
		ControlPlane:  true,
		Orchestrators: 2,
		RestartDelay:  300 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := cluster.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			for _, n := range c.Nodes() {
				b, _ := os.ReadFile(c.LogPath(n.ID))
				t.Logf("--- log of %s ---\n%s", n.Name, tail(string(b), 40))
			}
			for _, o := range c.Orchestrators() {
				b, _ := os.ReadFile(filepath.Join(cfg.Dir, o.Name+".log"))
				t.Logf("--- log of %s ---\n%s", o.Name, tail(string(b), 40))
			}
		}
	})
	return c
}

// ack is one acknowledged write of the unique-key load.
type ack struct {
	key    string
	at     time.Time
	leader int // the node that acknowledged it
}

// uniqueLoad writes unique keys through whichever node the topology names
// leader, finding the new one after an error, and records every
// acknowledgement.
type uniqueLoad struct {
	c      *cluster.Cluster
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	acks   []ack
}

func startUniqueLoad(t *testing.T, c *cluster.Cluster, writers int) *uniqueLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &uniqueLoad{c: c, cancel: cancel}
	for w := range writers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			clients := map[int]*redis.Client{}
			defer func() {
				for _, cl := range clients {
					cl.Close()
				}
			}()
			for i := 0; ctx.Err() == nil; i++ {
				id, _, err := c.Leader(ctx)
				if err != nil {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				cl := clients[id]
				if cl == nil {
					cl = redis.NewClient(&redis.Options{Addr: c.Node(id).RESPAddr, Protocol: 2, MaxRetries: -1,
						DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second, PoolSize: 1})
					clients[id] = cl
				}
				key := fmt.Sprintf("u:%d:%d", w, i)
				if err := cl.Set(ctx, key, "v", 0).Err(); err == nil {
					l.mu.Lock()
					l.acks = append(l.acks, ack{key: key, at: time.Now(), leader: id})
					l.mu.Unlock()
				} else {
					time.Sleep(2 * time.Millisecond) // an error: look the leader up again
				}
			}
		}()
	}
	return l
}

func (l *uniqueLoad) stop() []ack {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.acks, func(i, j int) bool { return l.acks[i].at.Before(l.acks[j].at) })
	return l.acks
}

// acked returns how many writes were acknowledged so far.
func (l *uniqueLoad) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// waitAcksBy waits until a node other than old acknowledged writes.
func (l *uniqueLoad) waitAcksBy(t *testing.T, old int, within time.Duration) {
	t.Helper()
	testutil.Eventually(t, "writes acknowledged by a new leader", within, func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := len(l.acks) - 1; i >= 0 && i > len(l.acks)-50; i-- {
			if l.acks[i].leader != old {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d acks", len(l.acks))
	})
}

// gap is the unavailability around a change of leader: from the last
// acknowledgement by old to the first by another node.
func gap(acks []ack, old int) time.Duration {
	var last, first time.Time
	for _, a := range acks {
		if a.leader == old {
			last = a.at
		} else if !last.IsZero() && first.IsZero() {
			first = a.at
		}
	}
	if last.IsZero() || first.IsZero() {
		return -1
	}
	return first.Sub(last)
}

// rolledBack returns the keys written by entries in every rollback file of
// the cluster's nodes.
func rolledBack(t *testing.T, c *cluster.Cluster) map[string]bool {
	out := map[string]bool{}
	for _, n := range c.Nodes() {
		files, _ := filepath.Glob(filepath.Join(n.DataDir, "rollback-*.jsonl"))
		for _, f := range files {
			fh, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(fh)
			sc.Buffer(make([]byte, 1<<20), 1<<30)
			for sc.Scan() {
				var e struct {
					Ops []struct {
						Key []byte
					}
				}
				if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
					t.Fatalf("rollback file %s: %v", f, err)
				}
				for _, op := range e.Ops {
					out[string(op.Key)] = true
				}
			}
			fh.Close()
		}
	}
	return out
}

// checkAcked reads every acknowledged key from the leader: each must be
// there, or (async: acknowledged by an old leader that lost it) in a
// rollback file. It returns how many were rolled back.
func checkAcked(t *testing.T, c *cluster.Cluster, acks []ack) int {
	t.Helper()
	ctx := context.Background()
	id, err := c.WaitLeader(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := client(t, c.Node(id).RESPAddr)
	var missing []string
	pipe := cl.Pipeline()
	cmds := make([]*redis.IntCmd, len(acks))
	for i, a := range acks {
		cmds[i] = pipe.Exists(ctx, a.key)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, cmd := range cmds {
		if cmd.Val() != 1 {
			missing = append(missing, acks[i].key)
		}
	}
	if len(missing) == 0 {
		return 0
	}
	rb := rolledBack(t, c)
	var vanished []string
	for _, k := range missing {
		if !rb[k] {
			vanished = append(vanished, k)
		}
	}
	if len(vanished) > 0 {
		t.Fatalf("%d of %d acknowledged writes are neither on the leader nor in a rollback file, e.g. %v", len(vanished), len(acks), vanished[:min(5, len(vanished))])
	}
	return len(missing)
}

func topologyOf(t *testing.T, c *cluster.Cluster) coord.Topology {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	top, _, err := c.Store().Topology(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// TestKillLeaderFailsOver: kill -9 the leader under a steady write load;
// the orchestrator promotes a follower, writes resume within a second,
// every acknowledged write is on the new leader or (async) in the old
// leader's rollback file, the old leader comes back as a follower and the
// digests match. Twice in a row.
func TestKillLeaderFailsOver(t *testing.T) {
	c := startControlled(t, 3, nil)
	l := startUniqueLoad(t, c, 8)
	for round := 1; round <= 2; round++ {
		testutil.Eventually(t, "some writes", 10*time.Second, func() (bool, string) { return l.acked() > 200*round, "" })
		old, epoch, err := c.Leader(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Kill(old); err != nil {
			t.Fatal(err)
		}
		l.waitAcksBy(t, old, 5*time.Second)
		top := topologyOf(t, c)
		if top.Epoch <= epoch || top.Leader == c.Node(old).Name {
			t.Fatalf("round %d: topology %+v after killing n%d at epoch %d", round, top, old, epoch)
		}
		// The old leader rejoins as a follower by itself.
		waitStatus(t, c, old, "following the new leader", func(s statusdoc.Node) bool {
			return s.Role == statusdoc.RoleFollower && s.State == "streaming"
		})
	}
	acks := l.stop()
	rolled := checkAcked(t, c, acks)
	waitConverged(t, c)
	t.Logf("%d writes acknowledged, %d rolled back (async)", len(acks), rolled)
}

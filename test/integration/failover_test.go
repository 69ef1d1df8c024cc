package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/cluster"
	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/statusdoc"
	"github.com/tandemdb/tandem/internal/testbin"
	"github.com/tandemdb/tandem/internal/testutil"
	"github.com/tandemdb/tandem/internal/tools/chaos/relay"
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
	leaders := watchLeader(ctx, c)
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
				id, changed := leaders.get()
				if id == 0 {
					leaders.await(ctx, changed)
					continue
				}
				cl := clients[id]
				if cl == nil {
					cl = redis.NewClient(&redis.Options{Addr: c.Node(id).RESPAddr, Protocol: 2, MaxRetries: -1,
						DialTimeout: 200 * time.Millisecond, ReadTimeout: 250 * time.Millisecond, WriteTimeout: 250 * time.Millisecond, PoolSize: 1})
					clients[id] = cl
				}
				key := fmt.Sprintf("u:%d:%d", w, i)
				if err := cl.Set(ctx, key, "v", 0).Err(); err == nil {
					l.mu.Lock()
					l.acks = append(l.acks, ack{key: key, at: time.Now(), leader: id})
					l.mu.Unlock()
				} else {
					leaders.await(ctx, changed) // most errors end with a new leader
				}
			}
		}()
	}
	return l
}

// leaderView is the leader the topology in etcd names, kept by a watch.
type leaderView struct {
	mu      sync.Mutex
	id      int           // 0 while none is known
	changed chan struct{} // closed when id changes
}

func watchLeader(ctx context.Context, c *cluster.Cluster) *leaderView {
	v := &leaderView{changed: make(chan struct{})}
	go func() {
		for top := range c.Store().WatchTopology(ctx) {
			id := 0
			for _, n := range c.Nodes() {
				if n.Name == top.Leader {
					id = n.ID
				}
			}
			v.mu.Lock()
			if id != v.id {
				v.id = id
				close(v.changed)
				v.changed = make(chan struct{})
			}
			v.mu.Unlock()
		}
	}()
	return v
}

// get returns the leader and a channel closed when it changes.
func (v *leaderView) get() (int, <-chan struct{}) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.id, v.changed
}

// await waits for the leader to change, or briefly when the error came
// from a leader that stays (a timeout, TRYAGAIN).
func (v *leaderView) await(ctx context.Context, changed <-chan struct{}) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-changed:
	case <-t.C:
	case <-ctx.Done():
	}
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
	// Only acknowledgements from now on count: the last ones before the
	// fault may come from a leader before old, when old led only briefly.
	since := time.Now()
	testutil.Eventually(t, "writes acknowledged by a new leader", within, func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := len(l.acks) - 1; i >= 0 && !l.acks[i].at.Before(since); i-- {
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

// noOverlap fails if old acknowledged a write after another node had
// begun to acknowledge: two leaders must never answer in overlapping time.
func noOverlap(t *testing.T, acks []ack, old int) {
	t.Helper()
	var firstNew time.Time
	for _, a := range acks {
		if a.leader != old {
			firstNew = a.at
			break
		}
	}
	for _, a := range acks {
		if a.leader == old && !firstNew.IsZero() && a.at.After(firstNew) {
			t.Fatalf("old leader n%d acknowledged %s at %v, %v after the new leader's first acknowledgement", old, a.key, a.at, a.at.Sub(firstNew))
		}
	}
}

// TestPausedLeaderStepsDown: SIGSTOP the leader for longer than detection;
// a follower is promoted; after SIGCONT the old leader acknowledges
// nothing more in its old epoch and follows the new leader.
func TestPausedLeaderStepsDown(t *testing.T) {
	c := startControlled(t, 3, nil)
	l := startUniqueLoad(t, c, 8)
	testutil.Eventually(t, "some writes", 10*time.Second, func() (bool, string) { return l.acked() > 200, "" })
	// A leader paused within the detector's grace for a new leader (1 s,
	// or until it answers) is failed over only when the grace ends: wait
	// it out, so that this measures detection of a settled leader.
	settled := leaderSince(t, c).Add(time.Second)
	testutil.Until(3*time.Second, func() bool { return time.Now().After(settled) })
	old, _, _ := c.Leader(context.Background())
	t.Logf("pausing n%d at %s", old, time.Now().Format("15:04:05.000"))
	if err := c.Pause(old); err != nil {
		t.Fatal(err)
	}
	l.waitAcksBy(t, old, 5*time.Second)
	if err := c.Resume(old); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, old, "following the new leader", func(s statusdoc.Node) bool {
		return s.Role == statusdoc.RoleFollower && s.State == "streaming"
	})
	testutil.Eventually(t, "more writes", 10*time.Second, func() (bool, string) { return l.acked() > 600, "" })
	acks := l.stop()
	noOverlap(t, acks, old)
	checkAcked(t, c, acks)
	waitConverged(t, c)
	t.Logf("unavailability %v", gap(acks, old))
	logEvents(t, c)
}

// leaderSince is when the current leader was given its role.
func leaderSince(t *testing.T, c *cluster.Cluster) time.Time {
	evs, err := c.Store().Events(context.Background(), 1)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %v %v", evs, err)
	}
	return evs[0].At
}

// logEvents logs the cluster's changes of leader.
func logEvents(t *testing.T, c *cluster.Cluster) {
	evs, err := c.Store().Events(context.Background(), 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		t.Logf("event %s %s %s->%s epoch %d->%d detection %.0f ms promotion %.0f ms: %s", ev.At.Format("15:04:05.000"), ev.Kind, ev.From, ev.To, ev.OldEpoch, ev.NewEpoch, ev.DetectionMs, ev.PromotionMs, ev.Reason)
	}
}

// TestStandbyOrchestratorTakesOver: kill -9 the active orchestrator; the
// standby takes the election, and then fails a killed leader over.
func TestStandbyOrchestratorTakesOver(t *testing.T) {
	c := startControlled(t, 3, nil)
	ctx := context.Background()
	active := func() string {
		o, err := c.Store().ActiveOrchestrator(ctx)
		if err != nil {
			return ""
		}
		return o.ID
	}
	first := active()
	if first == "" {
		t.Fatal("no active orchestrator")
	}
	var idx int
	for _, o := range c.Orchestrators() {
		if o.Name == first {
			idx = o.ID
		}
	}
	killed := time.Now()
	if err := c.KillOrchestrator(idx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "a standby to take over", 5*time.Second, func() (bool, string) {
		a := active()
		return a != "" && a != first, a
	})
	t.Logf("standby active %v after the kill", time.Since(killed))
	old, epoch, _ := c.Leader(ctx)
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "a failover by the standby", 10*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		return top.Epoch > epoch && top.Leader != c.Node(old).Name, fmt.Sprintf("%+v", top)
	})
	if _, err := c.WaitLeader(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestOrchestratorCutFromLeaderOnly: with every orchestrator's link to the
// leader cut, the followers still hear the leader and veto a failover:
// the epoch does not move and writes go on.
func TestOrchestratorCutFromLeaderOnly(t *testing.T) {
	var mu sync.Mutex
	relays := map[int]*relay.Relay{} // to node -> one relay per orchestrator link
	var all []*relay.Relay
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.Route = func(from, to, addr string) string {
			var o int
			if _, err := fmt.Sscanf(from, "o%d", &o); err != nil || to == cluster.EtcdLink {
				return addr // only the orchestrators' probe links
			}
			r, err := relay.Listen(addr, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if to == "n1" {
				relays[o] = r
			}
			all = append(all, r)
			return r.Addr()
		}
	})
	t.Cleanup(func() {
		for _, r := range all {
			r.Close()
		}
	})
	ctx := context.Background()
	leader, epoch, _ := c.Leader(ctx)
	if leader != 1 {
		t.Fatalf("bootstrap chose n%d, not n1 (equal positions, equal priorities: the lowest id)", leader)
	}
	l := startUniqueLoad(t, c, 4)
	// Cut only once n1 has served writes and the orchestrators have
	// probed it since (their interval is 100 ms): cut right after the
	// bootstrap, their last answer from n1 was from before its lease
	// ("fenced"), a leader they never saw serving, which the followers'
	// veto does not cover, and they failed it over (seen once in CI).
	var serving time.Time
	testutil.Eventually(t, "n1 serving writes for 500 ms", 10*time.Second, func() (bool, string) {
		if serving.IsZero() && l.acked() > 0 {
			serving = time.Now()
		}
		return !serving.IsZero() && time.Since(serving) >= 500*time.Millisecond, fmt.Sprintf("%d writes acknowledged", l.acked())
	})
	for _, r := range relays {
		r.Cut()
	}
	cutAt := time.Now()
	// Long past detection (a few hundred ms) and the refused-probe path.
	testutil.Until(2*time.Second, func() bool { return topologyOf(t, c).Epoch != epoch })
	for _, r := range relays {
		r.Heal()
	}
	acks := l.stop()
	if top := topologyOf(t, c); top.Epoch != epoch {
		t.Fatalf("a cut between the orchestrators and a live leader caused a failover: %+v", top)
	}
	var after int
	for _, a := range acks {
		if a.at.After(cutAt) {
			after++
		}
	}
	if after == 0 {
		t.Fatal("no write was acknowledged while the orchestrators were cut from the leader")
	}
	t.Logf("%d writes acknowledged during the cut; epoch stayed %d", after, epoch)
}

// TestSwitchoverAndPromote: a planned switchover under load loses nothing,
// pauses writes under a second and the old leader follows; REPLICAOF NO ONE
// on a follower is a switchover too; REPLICAOF to a non-leader is refused.
func TestSwitchoverAndPromote(t *testing.T) {
	c := startControlled(t, 3, nil)
	ctx := context.Background()
	l := startUniqueLoad(t, c, 4)
	testutil.Eventually(t, "some writes", 10*time.Second, func() (bool, string) { return l.acked() > 200, "" })
	out, err := runTandem(t, "switchover", "--dir", c.Dir())
	if err != nil {
		t.Fatalf("switchover: %v\n%s", err, out)
	}
	t.Logf("switchover: %s", out)
	old := 1
	top := topologyOf(t, c)
	if top.Leader == "n1" {
		t.Fatalf("switchover left n1 leading: %+v", top)
	}
	testutil.Eventually(t, "writes after the switchover", 10*time.Second, func() (bool, string) { return l.acked() > 500, "" })
	// REPLICAOF NO ONE on the node that does not lead now.
	var target cluster.NodeInfo
	for _, n := range c.Nodes() {
		if n.Name != top.Leader {
			target = n
			break
		}
	}
	waitStatus(t, c, target.ID, "streaming", func(s statusdoc.Node) bool { return s.State == "streaming" })
	cl := client(t, target.RESPAddr)
	if err := cl.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatalf("REPLICAOF NO ONE on %s: %v", target.Name, err)
	}
	if top2 := topologyOf(t, c); top2.Leader != target.Name || top2.Epoch <= top.Epoch {
		t.Fatalf("after REPLICAOF NO ONE on %s: %+v", target.Name, top2)
	}
	// REPLICAOF host port naming a follower is refused, naming the leader accepted.
	other := c.Node(old)
	if other.Name == target.Name {
		other = c.Node(2)
	}
	waitStatus(t, c, other.ID, "streaming", func(s statusdoc.Node) bool { return s.State == "streaming" && s.Role == statusdoc.RoleFollower })
	host, port, _ := strings.Cut(other.RESPAddr, ":")
	if err := client(t, target.RESPAddr).Do(ctx, "REPLICAOF", host, port).Err(); err == nil {
		t.Fatal("REPLICAOF to a follower was accepted on the leader")
	}
	host, port, _ = strings.Cut(target.RESPAddr, ":")
	if err := client(t, other.RESPAddr).Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatalf("REPLICAOF naming the current leader: %v", err)
	}
	acks := l.stop()
	if lost := checkAcked(t, c, acks); lost != 0 {
		t.Fatalf("planned switchovers lost %d acknowledged writes", lost)
	}
	waitConverged(t, c)
	evs, err := c.Store().Events(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Kind == "switchover" {
			t.Logf("switchover %s -> %s pause %.1f ms", ev.From, ev.To, ev.PauseMs)
			if ev.PauseMs <= 0 || ev.PauseMs > 1000 {
				t.Errorf("switchover pause %.1f ms, want (0, 1000]", ev.PauseMs)
			}
		}
	}
}

// TestSentinelClientFollowsFailover: go-redis's NewFailoverClient, pointed
// at the orchestrators' Sentinel ports, keeps writing through a kill -9
// failover.
func TestSentinelClientFollowsFailover(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) { cfg.SentinelPort = 0 })
	var addrs []string
	for _, o := range c.Orchestrators() {
		addrs = append(addrs, o.SentinelAddr)
	}
	fc := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "tandem", SentinelAddrs: addrs, Protocol: 2,
		MaxRetries: -1, DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer fc.Close()
	ctx := context.Background()
	testutil.Eventually(t, "a write through the Sentinel client", 10*time.Second, func() (bool, string) {
		err := fc.Set(ctx, "s0", "v", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	old, _, _ := c.Leader(ctx)
	if err := c.Kill(old); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	testutil.Eventually(t, "writes through the Sentinel client after the failover", 10*time.Second, func() (bool, string) {
		err := fc.Set(ctx, "s1", "v", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("Sentinel client writing again %v after the kill", time.Since(killed))
	now, _, _ := c.Leader(ctx)
	if now == old {
		t.Fatalf("no failover happened")
	}
}

// runTandem runs the tandem binary with args and returns its output.
func runTandem(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(testbin.Path(t), args...).CombinedOutput()
	return string(out), err
}

// TestEtcdOutageKeepsTheLeader: with every process cut off from etcd the
// leader keeps acknowledging writes while its followers echo its stream
// (failsafe), and nothing fails over; with only the leader cut off the
// same holds (the followers vouch for it).
func TestEtcdOutageKeepsTheLeader(t *testing.T) {
	var mu sync.Mutex
	relays := map[string]*relay.Relay{}
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		// Async: under semisync a leader cut from etcd was once failed
		// over as "not answering" (seen in CI, not understood yet; see
		// the closing note of issue 9). The failsafe itself is mode-free.
		cfg.ServerArgs = []string{"--mode", "async"}
		cfg.OrchestratorArgs = []string{"--mode", "async"}
		cfg.Route = func(from, to, addr string) string {
			if to != cluster.EtcdLink {
				return addr
			}
			r, err := relay.Listen(addr, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			relays[from] = r
			mu.Unlock()
			return r.Addr()
		}
	})
	t.Cleanup(func() {
		for _, r := range relays {
			r.Close()
		}
	})
	ctx := context.Background()
	leader, epoch, _ := c.Leader(ctx)
	name := c.Node(leader).Name
	l := startUniqueLoad(t, c, 4)
	testutil.Eventually(t, "some writes", 10*time.Second, func() (bool, string) { return l.acked() > 100, "" })
	for _, phase := range []struct {
		name  string
		fault func(p string, r *relay.Relay)
	}{
		{"leader cut from etcd", func(p string, r *relay.Relay) {
			if p == name {
				r.Cut()
			}
		}},
		{"everyone cut from etcd", func(_ string, r *relay.Relay) { r.Cut() }},
		// etcd answers the leader, but later than its lease lasts (as
		// under CPU saturation): the followers' echoes must hold it.
		{"leader's etcd 250 ms slow", func(p string, r *relay.Relay) {
			if p == name {
				r.Delay(250 * time.Millisecond)
			}
		}},
	} {
		for p, r := range relays {
			phase.fault(p, r)
		}
		before := l.acked()
		cutAt := time.Now()
		// The load looks the leader up in etcd, which this test process
		// still reaches; the cut processes do not.
		testutil.Eventually(t, "writes acknowledged during the cut ("+phase.name+")", 5*time.Second, func() (bool, string) {
			return l.acked() > before+200 && time.Since(cutAt) > time.Second, fmt.Sprint(l.acked() - before)
		})
		for _, r := range relays {
			r.Heal()
		}
		if top := topologyOf(t, c); top.Epoch != epoch || top.Leader != name {
			t.Fatalf("%s: the topology changed to %+v", phase.name, top)
		}
		t.Logf("%s: %d writes acknowledged in %v, no failover", phase.name, l.acked()-before, time.Since(cutAt).Round(time.Millisecond))
	}
	acks := l.stop()
	if lost := checkAcked(t, c, acks); lost != 0 {
		t.Fatalf("%d acknowledged writes lost", lost)
	}
}

// TestSlowDiskIsNoFailure: a leader whose log appends stall for a second
// every two seconds is slow, not dead: it answers heartbeats and its
// followers hear its stream, so nothing fails over.
func TestSlowDiskIsNoFailure(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) { cfg.ServerArgs = []string{"--buggify", "slow-disk"} })
	_, epoch, _ := c.Leader(context.Background())
	l := startUniqueLoad(t, c, 4)
	start := time.Now()
	testutil.Until(5*time.Second, func() bool { return topologyOf(t, c).Epoch != epoch })
	acks := l.stop()
	if top := topologyOf(t, c); top.Epoch != epoch {
		logEvents(t, c)
		t.Fatalf("a leader with a slow disk was failed over: %+v", top)
	}
	// The stalls happened: writes paused for most of a second.
	var longest time.Duration
	for i := 1; i < len(acks); i++ {
		longest = max(longest, acks[i].at.Sub(acks[i-1].at))
	}
	if longest < 800*time.Millisecond {
		t.Fatalf("no stall seen (longest pause between acknowledgements %v in %v): the fault did not work", longest, time.Since(start))
	}
	t.Logf("longest write stall %v, %d writes, no failover", longest, len(acks))
}

// TestSyncModesLoseNothingOnFailover: under semisync and sync the leader
// manages a sync set in etcd; kill -9 of the leader, three times under a
// load of unique keys, promotes a member of the set, and every
// acknowledged write is on the new leader (none may be only in a rollback
// file).
func TestSyncModesLoseNothingOnFailover(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		nodes int
	}{{"semisync", 3}, {"sync", 3}, {"quorum 2", 4}} {
		t.Run(tc.mode, func(t *testing.T) { testNoLossOnFailover(t, tc.mode, tc.nodes) })
	}
}

func testNoLossOnFailover(t *testing.T, mode string, nodes int) {
	c := startControlled(t, nodes, func(cfg *cluster.Config) {
		cfg.ServerArgs = []string{"--mode", mode}
		cfg.OrchestratorArgs = []string{"--mode", mode}
	})
	// semisync keeps one member in the sync set, sync every follower;
	// quorum K has no set (any K followers).
	want := map[string]int{"semisync": 1, "sync": nodes - 1}[mode]
	testutil.Eventually(t, "a published sync set", 10*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		return len(top.SyncSet) == want, fmt.Sprintf("%+v", top)
	})
	l := startUniqueLoad(t, c, 8)
	for round := 1; round <= 3; round++ {
		testutil.Eventually(t, "some writes", 10*time.Second, func() (bool, string) { return l.acked() > 300*round, "" })
		top := topologyOf(t, c)
		old, _, _ := c.Leader(context.Background())
		if err := c.Kill(old); err != nil {
			t.Fatal(err)
		}
		l.waitAcksBy(t, old, 10*time.Second)
		next := topologyOf(t, c)
		if want > 0 && !slices.Contains(top.SyncSet, next.Leader) {
			t.Fatalf("round %d: promoted %s, not the sync set's member (set %v)", round, next.Leader, top.SyncSet)
		}
		waitStatus(t, c, old, "following the new leader", func(s statusdoc.Node) bool {
			return s.Role == statusdoc.RoleFollower && s.State == "streaming"
		})
		testutil.Eventually(t, "a sync set for the new leader", 10*time.Second, func() (bool, string) {
			top := topologyOf(t, c)
			return len(top.SyncSet) == want && !slices.Contains(top.SyncSet, top.Leader), fmt.Sprintf("%+v", top)
		})
	}
	acks := l.stop()
	ctx := context.Background()
	id, err := c.WaitLeader(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cl := client(t, c.Node(id).RESPAddr)
	missing := 0
	for _, a := range acks {
		if n, err := cl.Exists(ctx, a.key).Result(); err != nil || n != 1 {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%s lost %d of %d acknowledged writes over 3 failovers", mode, missing, len(acks))
	}
	waitConverged(t, c)
	logEvents(t, c)
	t.Logf("%d acknowledged writes, none lost, over 3 failovers", len(acks))
}

// TestSemisyncReplacesAPausedMember: SIGSTOP the sync set's member; the
// leader replaces it with the other follower and writes resume within a
// couple of seconds; after SIGCONT everything converges.
func TestSemisyncReplacesAPausedMember(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.ServerArgs = []string{"--mode", "semisync"}
		cfg.OrchestratorArgs = []string{"--mode", "semisync"}
	})
	var member string
	testutil.Eventually(t, "a published sync set", 10*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		if len(top.SyncSet) == 1 {
			member = top.SyncSet[0]
		}
		return member != "", fmt.Sprintf("%+v", top)
	})
	l := startUniqueLoad(t, c, 4)
	testutil.Eventually(t, "some writes", 10*time.Second, func() (bool, string) { return l.acked() > 200, "" })
	id := 0
	for _, n := range c.Nodes() {
		if n.Name == member {
			id = n.ID
		}
	}
	if err := c.Pause(id); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	testutil.Eventually(t, "the other follower in the sync set", 10*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		return len(top.SyncSet) == 1 && top.SyncSet[0] != member, fmt.Sprintf("%+v", top)
	})
	before := l.acked()
	testutil.Eventually(t, "writes after the replacement", 10*time.Second, func() (bool, string) { return l.acked() > before+100, "" })
	// The longest gap between acknowledgements around the pause is how
	// long writes waited for a new member.
	l.mu.Lock()
	var stall time.Duration
	var last time.Time
	for _, a := range l.acks {
		if a.at.After(paused.Add(-time.Second)) && !last.IsZero() {
			stall = max(stall, a.at.Sub(last))
		}
		last = a.at
	}
	l.mu.Unlock()
	t.Logf("sync set moved from %s; writes stalled %v at most", member, stall.Round(time.Millisecond))
	if stall > 1500*time.Millisecond {
		t.Errorf("writes stalled %v after the sync member paused, want about a second at most", stall)
	}
	if err := c.Resume(id); err != nil {
		t.Fatal(err)
	}
	acks := l.stop()
	if lost := checkAcked(t, c, acks); lost != 0 {
		t.Fatalf("%d acknowledged writes lost", lost)
	}
	waitConverged(t, c)
}

// TestSyncFallback: a semisync leader with one follower. With
// sync-fallback never, a paused follower makes writes answer NOREPLICAS
// after the write timeout; with "after 1s" the leader degrades to async
// (status says so, an event is recorded) and writes are acknowledged
// again; after SIGCONT the follower is the sync set's member again and the
// degradation ends.
func TestSyncFallback(t *testing.T) {
	c := startControlled(t, 2, func(cfg *cluster.Config) {
		cfg.ServerArgs = []string{"--mode", "semisync", "--write-timeout", "1s"}
		cfg.OrchestratorArgs = []string{"--mode", "semisync"}
	})
	ctx := context.Background()
	testutil.Eventually(t, "a published sync set", 10*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		return len(top.SyncSet) == 1, fmt.Sprintf("%+v", top)
	})
	leader, _, _ := c.Leader(ctx)
	follower := 3 - leader
	lc := client(t, c.Node(leader).RESPAddr)
	if err := lc.Set(ctx, "a", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(follower); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := lc.Set(ctx, "b", "2", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("write with the only sync member paused (sync-fallback never): %v, want NOREPLICAS", err)
	}
	t.Logf("NOREPLICAS after %v", time.Since(start).Round(time.Millisecond))

	out, err := runTandem(t, "mode", "set", "semisync", "--sync-fallback", "after 1s", "--dir", c.Dir())
	if err != nil {
		t.Fatalf("mode set: %v\n%s", err, out)
	}
	start = time.Now()
	testutil.Eventually(t, "writes acknowledged in async after the fallback delay", 10*time.Second, func() (bool, string) {
		err := lc.Set(ctx, "c", "3", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	t.Logf("degraded to async; writes acknowledged again %v after the fallback was allowed", time.Since(start).Round(time.Millisecond))
	if s := waitStatus(t, c, leader, "degraded", func(s statusdoc.Node) bool { return s.Degraded }); !s.Degraded {
		t.Fatal("status does not say degraded")
	}
	if err := c.Resume(follower); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, leader, "sync restored", func(s statusdoc.Node) bool { return !s.Degraded })
	evs, err := c.Store().Events(ctx, 20)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Kind)
	}
	if !slices.Contains(kinds, "sync-fallback") || !slices.Contains(kinds, "sync-restored") {
		t.Fatalf("events %v, want sync-fallback and sync-restored", kinds)
	}
	// Semisync again: the write needs the follower.
	if err := lc.Set(ctx, "d", "4", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitConverged(t, c)
}

// TestSyncMin: with sync-min 2 and two followers under semisync, pausing
// one makes writes fail at once with NOREPLICAS (not after the write
// timeout); after SIGCONT they are acknowledged again.
func TestSyncMin(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.ServerArgs = []string{"--mode", "semisync", "--write-timeout", "5s"}
		cfg.OrchestratorArgs = []string{"--mode", "semisync"}
	})
	ctx := context.Background()
	// Rules that cannot work with three members are refused, with why.
	for _, args := range [][]string{{"quorum 9"}, {"semisync", "--sync-min", "3"}} {
		out, err := runTandem(t, append(append([]string{"mode", "set"}, args...), "--dir", c.Dir())...)
		if err == nil || !strings.Contains(out, "the cluster has 3 members (2 followers)") || !strings.Contains(out, "--force") {
			t.Fatalf("mode set %q on 3 nodes: %v\n%s; want it refused with the reason", args, err, out)
		}
	}
	if out, err := runTandem(t, "mode", "set", "semisync", "--sync-min", "2", "--dir", c.Dir()); err != nil {
		t.Fatalf("mode set: %v\n%s", err, out)
	}
	testutil.Eventually(t, "a sync set of two", 10*time.Second, func() (bool, string) {
		top := topologyOf(t, c)
		return len(top.SyncSet) == 2, fmt.Sprintf("%+v", top)
	})
	leader, _, _ := c.Leader(ctx)
	lc := client(t, c.Node(leader).RESPAddr)
	testutil.Eventually(t, "a write with both members there", 10*time.Second, func() (bool, string) {
		err := lc.Set(ctx, "a", "1", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	other := 1
	for other == leader {
		other++
	}
	if err := c.Pause(other); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "writes refused below sync-min", 10*time.Second, func() (bool, string) {
		start := time.Now()
		err := lc.Set(ctx, "b", "2", 0).Err()
		return err != nil && strings.HasPrefix(err.Error(), "NOREPLICAS") && time.Since(start) < time.Second, fmt.Sprint(err)
	})
	if err := c.Resume(other); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "writes again after SIGCONT", 10*time.Second, func() (bool, string) {
		err := lc.Set(ctx, "c", "3", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
}

// TestDurabilityFloor: on a semisync cluster, a connection that asks for
// TANDEM.DURABILITY REPLICAS 2 has its writes answered only while both
// followers store them; with the follower outside the sync set paused, the
// cluster's own writes go on, the strict connection's get NOREPLICAS
// (applied all the same), and after SIGCONT they are answered again.
func TestDurabilityFloor(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.ServerArgs = []string{"--mode", "semisync"}
		cfg.OrchestratorArgs = []string{"--mode", "semisync"}
	})
	ctx := context.Background()
	var top coord.Topology
	testutil.Eventually(t, "a published sync set", 10*time.Second, func() (bool, string) {
		top = topologyOf(t, c)
		return len(top.SyncSet) == 1, fmt.Sprintf("%+v", top)
	})
	leader, other := 0, 0
	for _, n := range c.Nodes() {
		switch {
		case n.Name == top.Leader:
			leader = n.ID
		case n.Name != top.SyncSet[0]:
			other = n.ID
		}
	}
	plain := client(t, c.Node(leader).RESPAddr)
	strict := redis.NewClient(&redis.Options{
		Addr: c.Node(leader).RESPAddr, PoolSize: 1, MaxRetries: -1,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			return cn.Do(ctx, "TANDEM.DURABILITY", "REPLICAS", "2", "TIMEOUT", "300").Err()
		},
	})
	t.Cleanup(func() { strict.Close() })
	testutil.Eventually(t, "a write on both followers", 10*time.Second, func() (bool, string) {
		err := strict.Set(ctx, "s", "1", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	if err := c.Pause(other); err != nil {
		t.Fatal(err)
	}
	if err := plain.Set(ctx, "p", "1", 0).Err(); err != nil {
		t.Fatalf("semisync write with the sync member up: %v", err)
	}
	err := strict.Set(ctx, "s", "2", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("REPLICAS 2 write with a follower paused: %v, want NOREPLICAS", err)
	}
	if v, err := plain.Get(ctx, "s").Result(); err != nil || v != "2" {
		t.Fatalf("GET s = %q, %v: the write should be committed under semisync", v, err)
	}
	if err := c.Resume(other); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "strict writes answered after SIGCONT", 10*time.Second, func() (bool, string) {
		err := strict.Set(ctx, "s", "3", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	waitConverged(t, c)
}

// TestNoReadOfUncommittedWrite: a write is visible to readers only once it
// is committed (MySQL's AFTER_SYNC, not AFTER_COMMIT). In quorum 2 on
// three nodes, with one follower paused, a write is durable on the leader
// and on the other follower but cannot commit; readers polling both must
// keep seeing the old value until the write commits after SIGCONT.
func TestNoReadOfUncommittedWrite(t *testing.T) {
	c := startControlled(t, 3, func(cfg *cluster.Config) {
		cfg.ServerArgs = []string{"--mode", "quorum 2", "--write-timeout", "3s"}
		cfg.OrchestratorArgs = []string{"--mode", "quorum 2"}
	})
	ctx := context.Background()
	leader, _, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var followers []int
	for _, n := range c.Nodes() {
		if n.ID != leader {
			followers = append(followers, n.ID)
		}
	}
	paused, other := followers[0], followers[1]
	lc := client(t, c.Node(leader).RESPAddr)
	fc := client(t, c.Node(other).RESPAddr)
	testutil.Eventually(t, "a write on both followers", 10*time.Second, func() (bool, string) {
		err := lc.Set(ctx, "k", "old", 0).Err()
		return err == nil, fmt.Sprint(err)
	})
	testutil.Eventually(t, "the follower to apply it", 10*time.Second, func() (bool, string) {
		v, err := fc.Get(ctx, "k").Result()
		return v == "old", fmt.Sprint(v, err)
	})
	before, err := c.Status(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(paused); err != nil {
		t.Fatal(err)
	}
	answered := make(chan error, 1)
	go func() { answered <- lc.Set(ctx, "k", "new", 0).Err() }()
	// The write is on the other follower's disk, not committed.
	waitStatus(t, c, other, "the uncommitted write durable", func(s statusdoc.Node) bool {
		return s.DurableLSN > before.DurableLSN
	})
	reads := 0
	for done := false; !done; {
		select {
		case err := <-answered:
			if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
				// Seen once in CI, not reproduced since (25 of 25 under
				// load): keep what the leader and the paused node said.
				ls, lerr := c.Status(ctx, leader)
				ps, perr := c.Status(ctx, paused)
				t.Fatalf("write with a quorum of 2 and one follower paused: %v, want NOREPLICAS\nleader status: %+v (%v)\npaused node's status (it should not answer): %+v (%v)", err, ls, lerr, ps, perr)
			}
			done = true
		default:
		}
		for name, rc := range map[string]*redis.Client{"leader": lc, "follower": fc} {
			if v, err := rc.Get(ctx, "k").Result(); err == nil && v != "old" {
				t.Fatalf("the %s shows %q, a write not yet committed (read %d)", name, v, reads)
			}
			reads++
		}
	}
	t.Logf("%d reads of leader and follower while the write waited: none saw it", reads)
	if err := c.Resume(paused); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the write committed after SIGCONT, on the follower too", 10*time.Second, func() (bool, string) {
		v, err := fc.Get(ctx, "k").Result()
		return v == "new", fmt.Sprint(v, err)
	})
	waitConverged(t, c)
}

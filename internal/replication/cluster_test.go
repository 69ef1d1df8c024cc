package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/storage"
	"github.com/tandemdb/tandem/internal/testutil"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// Helpers for tests that run a leader and followers in one process over
// package inmem's network (testNet). Every test stops what it starts before
// it returns: cleanups run followers first, then the leader, then the
// network (which waits for every handler), then the databases.

const dbDir = "/db"

// waitTimeout bounds every wait; tests poll rather than sleep.
const waitTimeout = 20 * time.Second

func testLogger(t *testing.T, node string) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil)).With("node", node)
}

func openDB(t *testing.T, fs vfs.FS) *storage.DB {
	t.Helper()
	db, err := storage.Open(dbDir, storage.Options{FS: fs, CacheBytes: 1 << 20, Logger: testLogger(t, "db"), CheckPriors: true})
	if err != nil {
		t.Fatalf("open db: %v", err)
	}
	return db
}

// leaderName is the test leader's endpoint on its network.
const leaderName = "leader"

// testNet is the in-memory network a test leader listens on, as
// leaderName. It is a Dialer to the leader from an endpoint named
// "follower" (for a Follower made by hand); a follower started with
// newFollowerNode or start dials from its own id instead (from), so a
// test can put faults on that follower's links by name: SetHook(id,
// leaderName, ...), Partition(id, leaderName).
type testNet struct {
	*inmem.Network
	// serveErrs receives every replication stream's Serve error (nil
	// results are left out), on the handler's goroutine as soon as Serve
	// returned (inmem's ServeDone).
	serveErrs chan error
	// replicates and snapshots count the streams dialed to the leader
	// (including refused dials), from every endpoint.
	replicates, snapshots dialCount
	// served counts the replication streams the leader began to serve.
	// A stream's connection is registered before its handler starts, so
	// a Cut after served counted it cuts it (or it has already ended);
	// a dial is counted before that.
	served atomic.Int32

	mu      sync.Mutex
	clients map[string]bool // every endpoint that dialed the leader
}

// dialCount reads a count off the network's stats.
type dialCount func() int32

func (c dialCount) Load() int32 { return c() }

func newTestNet(l *Leader) *testNet {
	n := &testNet{serveErrs: make(chan error, 1000), clients: map[string]bool{}}
	n.Network = inmem.New(inmem.Config{ServeDone: func(_, _ string, kind inmem.Kind, err error) {
		if kind == inmem.Replicate && err != nil {
			n.serveErrs <- err
		}
	}})
	n.replicates = n.count(func(s inmem.LinkStats) int { return s.Replicates })
	n.snapshots = n.count(func(s inmem.LinkStats) int { return s.Snapshots })
	n.Listen(leaderName, countServes{l, &n.served})
	return n
}

// countServes is a leader that counts the replication streams it began to
// serve.
type countServes struct {
	*Leader
	served *atomic.Int32
}

func (c countServes) Serve(ctx context.Context, s LeaderStream) error {
	c.served.Add(1)
	return c.Leader.Serve(ctx, s)
}

// from is the dialer from the endpoint named id to the leader.
func (n *testNet) from(id string) *inmem.Dialer {
	n.mu.Lock()
	n.clients[id] = true
	n.mu.Unlock()
	return n.Dialer(id, leaderName)
}

func (n *testNet) clientNames() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for c := range n.clients {
		out = append(out, c)
	}
	return out
}

func (n *testNet) count(f func(inmem.LinkStats) int) dialCount {
	return func() int32 {
		total := 0
		for _, c := range n.clientNames() {
			total += f(n.Stats(c, leaderName))
		}
		return int32(total)
	}
}

// Cut breaks every open stream to the leader; followers redial.
func (n *testNet) Cut() {
	for _, c := range n.clientNames() {
		n.Network.Cut(c, leaderName)
	}
}

// Replicate implements Dialer, from the endpoint "follower".
func (n *testNet) Replicate(ctx context.Context) (FollowerStream, error) {
	return n.from("follower").Replicate(ctx)
}

// Snapshot implements Dialer, from the endpoint "follower".
func (n *testNet) Snapshot(ctx context.Context, req *peerpb.SnapshotRequest) (SnapshotReceiver, error) {
	return n.from("follower").Snapshot(ctx, req)
}

// testLeader is a leader on its own MemFS.
type testLeader struct {
	*Leader
	fs     *vfs.MemFS
	db     *storage.DB
	dialer *testNet
}

// startLeader records epoch in db and starts a leader on it, listening on a
// network of its own (dialer).
func startLeader(t *testing.T, fs *vfs.MemFS, db *storage.DB, epoch uint64, mode commit.Mode, tweak func(*LeaderConfig)) *testLeader {
	t.Helper()
	if err := db.StartEpoch(epoch, db.Durable().LSN+1); err != nil {
		t.Fatalf("StartEpoch: %v", err)
	}
	cfg := LeaderConfig{DB: db, NodeID: "leader", Mode: mode, Logger: testLogger(t, "leader"), Heartbeat: 20 * time.Millisecond}
	if tweak != nil {
		tweak(&cfg)
	}
	l, err := NewLeader(cfg, epoch)
	if err != nil {
		t.Fatalf("NewLeader: %v", err)
	}
	tl := &testLeader{Leader: l, fs: fs, db: db, dialer: newTestNet(l)}
	t.Cleanup(func() {
		l.Close()
		tl.dialer.Close()
		db.Close()
	})
	return tl
}

func newLeader(t *testing.T, epoch uint64, mode commit.Mode, tweak func(*LeaderConfig)) *testLeader {
	fs := vfs.NewMem()
	return startLeader(t, fs, openDB(t, fs), epoch, mode, tweak)
}

// testFollower is a Follower running on its own MemFS.
type testFollower struct {
	id     string
	fs     *vfs.MemFS
	db     *storage.DB
	f      *Follower
	cancel context.CancelFunc
	done   chan error
	// tweak, if set, adjusts the follower's configuration at each start.
	tweak func(*FollowerConfig)
}

func newFollowerNode(t *testing.T, id string, fs *vfs.MemFS, d Dialer) *testFollower {
	t.Helper()
	n := &testFollower{id: id, fs: fs}
	n.start(t, d)
	t.Cleanup(func() { n.stop(t) })
	return n
}

// start opens the database and runs the follower. On a testNet it dials
// from its own id.
func (n *testFollower) start(t *testing.T, d Dialer) {
	t.Helper()
	if tn, ok := d.(*testNet); ok {
		d = tn.from(n.id)
	}
	n.db = openDB(t, n.fs)
	cfg := FollowerConfig{
		DB: n.db, NodeID: n.id, Dial: d, Logger: testLogger(t, n.id),
		Retry: 5 * time.Millisecond, DataDir: t.TempDir(),
	}
	if n.tweak != nil {
		n.tweak(&cfg)
	}
	n.f = NewFollower(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.f.Run(ctx) }()
}

// stop ends Run and closes the database, as a restart would.
func (n *testFollower) stop(t *testing.T) {
	t.Helper()
	if n.cancel == nil {
		return
	}
	n.cancel()
	select {
	case err := <-n.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: Run returned %v, want context.Canceled", n.id, err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("%s: Run did not stop", n.id)
	}
	n.cancel = nil
	if err := n.db.Close(); err != nil {
		t.Errorf("%s: close db: %v", n.id, err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	testutil.Eventually(t, what, waitTimeout, cond)
}

// waitConverged waits until every follower has the leader's data at the
// leader's applied LSN.
func waitConverged(t *testing.T, l *testLeader, fs ...*testFollower) {
	t.Helper()
	waitFor(t, "followers to converge", func() (bool, string) {
		la, lsum, err := l.db.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if st := l.Status(); st.Applied != la || st.Durable != la {
			return false, fmt.Sprintf("leader durable %d applied %d, digest at %d", st.Durable, st.Applied, la)
		}
		for _, f := range fs {
			fa, fsum, err := f.db.Digest()
			if err != nil {
				t.Fatal(err)
			}
			// Digest reads Pebble; Applied and Seeding are updated just
			// after the write that Digest may already see.
			// Durable too: a follower applies committed entries while
			// its own fsync of them runs (applyAhead), so its data may
			// converge before its log has.
			if fa != la || fsum != lsum || f.db.Applied() != la || f.db.Durable().LSN < la || f.db.Seeding() {
				return false, fmt.Sprintf("leader applied %d, %s applied %d (%d in memory, seeding %v), digests equal %v",
					la, f.id, fa, f.db.Applied(), f.db.Seeding(), fsum == lsum)
			}
		}
		return true, ""
	})
}

func putExec(key, value string) func(commands.View, int64) (commands.Result, error) {
	return func(commands.View, int64) (commands.Result, error) {
		return commands.Result{Reply: commands.OK, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte(key), Value: []byte(value)}}}, nil
	}
}

func propose(t *testing.T, l *testLeader, exec func(commands.View, int64) (commands.Result, error)) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, lsn, err := l.Propose(ctx, exec)
	if err != nil {
		t.Fatalf("Propose: %v", err)
	}
	return lsn
}

// writes proposes keys prefix0..prefix<n-1>, each from its own goroutine in
// groups so that group commit batches them.
func writes(t *testing.T, l *testLeader, prefix string, n int) {
	t.Helper()
	const parallel = 8
	errs := make(chan error, n)
	sem := make(chan struct{}, parallel)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			_, _, err := l.Propose(ctx, putExec(fmt.Sprintf("%s%d", prefix, i), fmt.Sprintf("value-%s-%d", prefix, i)))
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("Propose: %v", err)
		}
	}
}

// incrExec is an INCR: it reads key through the view it is given, adds one
// and logs the new value. It sends what it read on seen.
func incrExec(key string, seen chan<- int64) func(commands.View, int64) (commands.Result, error) {
	return func(v commands.View, _ int64) (commands.Result, error) {
		var n int64
		val, ok, err := v.Get([]byte(key))
		if err != nil {
			return commands.Result{}, err
		}
		if ok {
			if n, err = strconv.ParseInt(string(val.Data), 10, 64); err != nil {
				return commands.Result{}, commands.ErrNotInteger
			}
		}
		seen <- n
		n++
		return commands.Result{Reply: commands.Int(n), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte(key), Value: []byte(strconv.FormatInt(n, 10))}}}, nil
	}
}

type proposeResult struct {
	reply commands.Reply
	lsn   uint64
	err   error
}

// proposeAsync runs Propose on a goroutine; the result arrives on the channel.
func proposeAsync(ctx context.Context, l *testLeader, exec func(commands.View, int64) (commands.Result, error)) <-chan proposeResult {
	out := make(chan proposeResult, 1)
	go func() {
		r, lsn, err := l.Propose(ctx, exec)
		out <- proposeResult{r, lsn, err}
	}()
	return out
}

func get(t *testing.T, db *storage.DB, key string) (string, bool) {
	t.Helper()
	v, ok, err := storage.View{DB: db, NowMs: time.Now().UnixMilli()}.Get([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return string(v.Data), ok
}

// waitConnected waits until n followers are streaming from l. A follower
// that connects only after the first write would be seeded instead.
func waitConnected(t *testing.T, l *testLeader, n int) {
	t.Helper()
	waitFor(t, "followers to connect", func() (bool, string) {
		st := l.Status()
		c := 0
		for _, f := range st.Followers {
			if f.Connected {
				c++
			}
		}
		return c == n, fmt.Sprintf("%+v", st.Followers)
	})
}

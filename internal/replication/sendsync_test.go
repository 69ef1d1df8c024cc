package replication

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/storage"
)

// syncGate is a file system whose files in dir (the log's directory)
// block in SyncData while the gate is held: a leader whose fdatasync has
// not returned yet. Everything else passes through.
type syncGate struct {
	vfs.FS
	dir string

	mu   sync.Mutex
	held chan struct{} // nil: open
}

func (g *syncGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = make(chan struct{})
	}
}

func (g *syncGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held != nil {
		close(g.held)
		g.held = nil
	}
}

func (g *syncGate) wait() {
	g.mu.Lock()
	held := g.held
	g.mu.Unlock()
	if held != nil {
		<-held
	}
}

func (g *syncGate) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || g.PathDir(name) != g.dir {
		return f, err
	}
	return gatedFile{f, g}, nil
}

func (g *syncGate) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.Create(name, c)
	return g.wrap(name, f, err)
}

func (g *syncGate) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := g.FS.OpenReadWrite(name, c, opts...)
	return g.wrap(name, f, err)
}

type gatedFile struct {
	vfs.File
	g *syncGate
}

func (f gatedFile) SyncData() error {
	f.g.wait()
	return f.File.SyncData()
}

// TestLeaderCrashAfterSendingConverges: a leader sends entries before its
// own fdatasync of them returns; a follower makes them durable; the leader
// crashes (a crash clone of its file system: what was not synced is
// gone) and restarts, leading again (BeginEpoch, as the node does) and
// writing other entries at the same LSNs. The follower must end with the
// leader's log and data exactly: the handshake truncates the entries the
// leader lost (they are of an older epoch than the leader's at those
// LSNs), saving them to a rollback file. The planted fault (a restart that
// resumes its epoch) leaves the follower with the lost entries under the
// (epoch, LSN) of the leader's new ones, which this test catches.
func TestLeaderCrashAfterSendingConverges(t *testing.T) {
	for _, mode := range []commit.Mode{{Kind: commit.Async}, {Kind: commit.SemiSync}} {
		t.Run(mode.String(), func(t *testing.T) {
			if diverged := crashAfterSending(t, mode, Buggify{}); diverged != "" {
				t.Error(diverged)
			}
		})
	}
}

func TestLeaderCrashAfterSendingCatchesResumedEpoch(t *testing.T) {
	if diverged := crashAfterSending(t, commit.Mode{Kind: commit.Async}, Buggify{LeaderResumesEpoch: true}); diverged == "" {
		t.Error("a leader that resumed its epoch after losing entries it had sent: the follower converged anyway, the test catches nothing")
	} else {
		t.Logf("caught: %s", diverged)
	}
}

// crashAfterSending runs the scenario of TestLeaderCrashAfterSendingConverges
// and says how the follower diverged from the leader, "" if it did not.
func crashAfterSending(t *testing.T, mode commit.Mode, bug Buggify) string {
	t.Helper()
	mem := vfs.NewCrashableMem()
	gate := &syncGate{FS: mem, dir: mem.PathJoin(dbDir, "log")}
	db1 := openDB(t, gate)
	l1 := beginLeader(t, db1, mode, bug)
	f := newFollowerNode(t, "f", vfs.NewMem(), l1.dialer)
	waitConnected(t, l1, 1)
	if mode.NeedsSyncSet() {
		l1.SetSyncSet([]string{"f"})
	}
	for i := range 5 {
		propose(t, l1, putExec(fmt.Sprint("k", i), "before"))
	}
	waitConverged(t, l1, f)

	// The leader's fdatasync hangs; a write is sent meanwhile.
	gate.hold()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	proposeAsync(ctx, l1, putExec("k0", "lost"))
	waitFor(t, "the follower to hold the entry the leader is still syncing", func() (bool, string) {
		d := f.db.Durable().LSN
		return d == 6, fmt.Sprintf("follower durable %d, leader %+v", d, l1.Status())
	})
	if st := l1.Status(); st.Durable != 5 || st.Commit != 5 {
		t.Fatalf("leader durable %d commit %d, want 5 and 5 while its sync hangs", st.Durable, st.Commit)
	}

	// Crash: only what was synced survives. (The old leader is stopped,
	// its sync let go, on the old file system nobody reads again.)
	crashed := mem.CrashClone(vfs.CrashCloneCfg{})
	f.stop(t)
	gate.release()
	l1.Close()

	db2 := openDB(t, crashed)
	if d := db2.Durable().LSN; d != 5 {
		t.Fatalf("after the crash the leader's log ends at %d, want 5", d)
	}
	l2 := beginLeader(t, db2, mode, bug)
	if mode.NeedsSyncSet() {
		l2.SetSyncSet([]string{"f"})
	}
	// The new leader writes other entries at LSNs 6-8 (durable on it
	// before the follower is back, so the handshake sees them), then the
	// follower comes back.
	var results []<-chan proposeResult
	for i := range 3 {
		results = append(results, proposeAsync(ctx, l2, putExec(fmt.Sprint("k", i), "after")))
		waitFor(t, "the new leader's write to be durable", func() (bool, string) {
			st := l2.Status()
			return st.Durable == 6+uint64(i), fmt.Sprintf("%+v", st)
		})
	}
	f.start(t, l2.dialer)
	for _, r := range results {
		if res := <-r; res.err != nil {
			t.Fatalf("write on the new leader: %v", res.err)
		}
	}
	// The follower's durable LSN too, not its applied one alone: it
	// applies committed entries while its fsync of them runs (applyAhead),
	// and ReadLog below reads only up to its durable LSN.
	waitFor(t, "the follower to reach the leader's position", func() (bool, string) {
		st := l2.Status()
		return st.Applied == 8 && f.db.Applied() == 8 && f.db.Durable().LSN == 8,
			fmt.Sprintf("leader %+v, follower durable %d applied %d", st, f.db.Durable().LSN, f.db.Applied())
	})

	ll, err := db2.ReadLog(1, 8, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	fl, err := f.db.ReadLog(1, 8, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	_, lsum, err := db2.Digest()
	if err != nil {
		t.Fatal(err)
	}
	_, fsum, err := f.db.Digest()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case !reflect.DeepEqual(ll, fl):
		return fmt.Sprintf("the follower's log 1-8 differs from the leader's (epoch histories: follower %v, leader %v)", f.db.EpochHistory(), db2.EpochHistory())
	case lsum != fsum:
		return "the follower's data differs from the leader's"
	}
	if got, _ := get(t, f.db, "k0"); got != "after" {
		return fmt.Sprintf("the follower has k0=%q, want %q", got, "after")
	}
	if n := rolledBackEntries(t, f.f.cfg.DataDir); n != 1 {
		t.Errorf("the follower saved %d dropped entries, want the one the leader lost", n)
	}
	return ""
}

// beginLeader starts a leadership on db as the node does: at the epoch
// BeginEpoch gives (static: the next after every one seen), on a network
// of its own. The caller closes it.
func beginLeader(t *testing.T, db *storage.DB, mode commit.Mode, bug Buggify) *testLeader {
	t.Helper()
	epoch, err := BeginEpoch(db, 0, bug)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLeader(LeaderConfig{DB: db, NodeID: "leader", Mode: mode, Logger: testLogger(t, "leader"),
		Heartbeat: 20 * time.Millisecond, Buggify: bug}, epoch)
	if err != nil {
		t.Fatalf("NewLeader: %v", err)
	}
	tl := &testLeader{Leader: l, db: db, dialer: newTestNet(l)}
	t.Cleanup(func() {
		l.Close()
		tl.dialer.Close()
		db.Close()
	})
	return tl
}

// TestReconnectDuringSyncKeepsSentEntries: a follower whose stream breaks
// while it holds an entry the leader is still syncing reconnects and is
// streamed to from after it: the handshake counts the entries this
// leadership sent (sentLog), so the follower neither drops nor saves to a
// rollback file an entry that was never lost.
func TestReconnectDuringSyncKeepsSentEntries(t *testing.T) {
	mem := vfs.NewMem()
	gate := &syncGate{FS: mem, dir: mem.PathJoin(dbDir, "log")}
	l := beginLeader(t, openDB(t, gate), commit.Mode{Kind: commit.Async}, Buggify{})
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	propose(t, l, putExec("k", "1"))
	waitConverged(t, l, f)

	gate.hold()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res := proposeAsync(ctx, l, putExec("k", "2"))
	waitFor(t, "the follower to hold the entry the leader is still syncing", func() (bool, string) {
		return f.db.Durable().LSN == 2, fmt.Sprintf("follower durable %d", f.db.Durable().LSN)
	})
	dials := l.dialer.replicates.Load()
	l.dialer.Cut()
	waitFor(t, "the follower to reconnect", func() (bool, string) {
		st := l.Status()
		return l.dialer.replicates.Load() > dials && len(st.Followers) == 1 && st.Followers[0].Connected && st.Followers[0].DurableLSN == 2,
			fmt.Sprintf("%d dials, %+v", l.dialer.replicates.Load(), st.Followers)
	})
	if st := l.Status(); st.Durable != 1 {
		t.Fatalf("leader durable %d, want 1 while its sync hangs", st.Durable)
	}
	gate.release()
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	waitConverged(t, l, f)
	if n := rolledBackEntries(t, f.f.cfg.DataDir); n != 0 {
		t.Errorf("the follower dropped %d entries it shared with the leader", n)
	}
}

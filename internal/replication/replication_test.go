package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/testutil"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// TestReplicateToTwoFollowers: writes proposed on the leader reach both
// followers, under each commit mode, without any snapshot; b's links are
// slow, so the two move at different paces.
func TestReplicateToTwoFollowers(t *testing.T) {
	modes := []commit.Mode{{Kind: commit.Async}, {Kind: commit.Quorum, K: 1}, {Kind: commit.Quorum, K: 2}}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			l := newLeader(t, 1, mode, func(c *LeaderConfig) { c.MaxBatchBytes = 512 })
			a := newFollowerNode(t, "a", vfs.NewMem(), l.dialer)
			b := newFollowerNode(t, "b", vfs.NewMem(), l.dialer)
			// Followers that connect after the first write would be seeded.
			waitConnected(t, l, 2)
			l.dialer.SetHook(leaderName, "b", inmem.Delay(0, 2*time.Millisecond))
			l.dialer.SetHook("b", leaderName, inmem.Delay(0, 2*time.Millisecond))
			writes(t, l, "k", 200)
			// Deletes and expiring values replicate too.
			propose(t, l, func(commands.View, int64) (commands.Result, error) {
				return commands.Result{Reply: commands.OK, Ops: []logrec.Op{
					{Kind: logrec.OpDelete, Key: []byte("k1")},
					{Kind: logrec.OpPut, Key: []byte("exp"), Value: []byte("v"), ExpireAtMs: time.Now().Add(time.Hour).UnixMilli()},
				}}, nil
			})
			waitConverged(t, l, a, b)
			if st := l.Status(); st.Applied != 201 || st.Commit != 201 {
				t.Errorf("leader status %+v, want applied and commit 201", st)
			}
			waitFor(t, "leader to see both followers' progress", func() (bool, string) {
				st := l.Status()
				for _, f := range st.Followers {
					if !f.Connected || f.DurableLSN != 201 || f.AppliedLSN != 201 {
						return false, fmt.Sprintf("%+v", st.Followers)
					}
				}
				return len(st.Followers) == 2, fmt.Sprintf("%+v", st.Followers)
			})
			for _, f := range []*testFollower{a, b} {
				if _, ok := get(t, f.db, "k1"); ok {
					t.Errorf("%s: deleted key k1 present", f.id)
				}
				if v, ok := get(t, f.db, "k7"); !ok || v != "value-k-7" {
					t.Errorf("%s: k7 = %q, %v", f.id, v, ok)
				}
				waitFor(t, f.id+" to report streaming", func() (bool, string) {
					st := f.f.Status()
					return st.State == StateStreaming && st.Applied == 201 && st.LagLSN == 0, fmt.Sprintf("%+v", st)
				})
			}
			if n := l.dialer.snapshots.Load(); n != 0 {
				t.Errorf("%d snapshots, want 0", n)
			}
		})
	}
}

// TestFollowerRestartResumes: a follower that restarts, whose stream is
// cut, or that is partitioned from the leader for a while, continues from
// its durable LSN without a snapshot.
func TestFollowerRestartResumes(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	writes(t, l, "a", 50)
	waitConverged(t, l, f)

	f.stop(t)
	writes(t, l, "b", 50)
	db := openDB(t, f.fs)
	if got := db.Durable(); got != (logrec.Position{Epoch: 1, LSN: 50}) {
		t.Fatalf("follower reopens at durable %v, want (1,50)", got)
	}
	db.Close()
	f.start(t, l.dialer)
	waitConverged(t, l, f)

	// Cut the stream while writes go on. A reconnection is a stream the
	// leader began to serve, not a dial: a dial is counted before its
	// connection is registered, and a Cut in between missed the new
	// stream, which then lived on with no reconnection to wait for.
	before := l.dialer.served.Load()
	done := make(chan struct{})
	go func() {
		defer close(done)
		writes(t, l, "c", 100)
	}()
	for i := 0; i < 3; i++ {
		l.dialer.Cut()
		waitFor(t, "the follower to reconnect", func() (bool, string) {
			n := l.dialer.served.Load()
			return n > before, fmt.Sprintf("%d streams served", n)
		})
		before = l.dialer.served.Load()
	}
	<-done
	waitConverged(t, l, f)

	// Partition it while writes go on: its dials are refused until Heal.
	l.dialer.Partition("f", leaderName)
	writes(t, l, "d", 50)
	refused := l.dialer.Stats("f", leaderName).Replicates
	waitFor(t, "the follower to redial into the partition", func() (bool, string) {
		n := l.dialer.Stats("f", leaderName).Replicates
		return n >= refused+2, fmt.Sprintf("%d dials, %d before", n, refused)
	})
	if st := f.f.Status(); st.Connected || st.Applied != 200 {
		t.Fatalf("partitioned follower: %+v", st)
	}
	l.dialer.Heal()
	waitConverged(t, l, f)
	if n := l.dialer.snapshots.Load(); n != 0 {
		t.Errorf("%d snapshots, want 0", n)
	}
}

// TestEmptyFollowerSeeded: a follower that joins a leader with data is seeded
// from a snapshot, then streams.
func TestEmptyFollowerSeeded(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.ChunkBytes = 100 })
	writes(t, l, "k", 100)
	propose(t, l, func(commands.View, int64) (commands.Result, error) {
		return commands.Result{Reply: commands.OK, Ops: []logrec.Op{
			{Kind: logrec.OpPut, Key: []byte("exp"), Value: []byte("v"), ExpireAtMs: time.Now().Add(time.Hour).UnixMilli()},
		}}, nil
	})
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConverged(t, l, f)
	if n := l.dialer.snapshots.Load(); n != 1 {
		t.Errorf("%d snapshots, want 1", n)
	}
	if f.db.Seeding() {
		t.Error("follower still seeding")
	}
	if got, want := f.db.EpochHistory(), l.db.EpochHistory(); !reflect.DeepEqual(got, want) {
		t.Errorf("follower epoch history %v, want the leader's %v", got, want)
	}
	// After the seed it streams.
	writes(t, l, "more", 20)
	waitConverged(t, l, f)
	if n := l.dialer.snapshots.Load(); n != 1 {
		t.Errorf("%d snapshots after streaming, want 1", n)
	}
	if keys, err := f.db.ExpiredKeys(time.Now().Add(2*time.Hour).UnixMilli(), 10); err != nil || len(keys) != 1 {
		t.Errorf("seeded expiry index: ExpiredKeys = %q, %v", keys, err)
	}
}

// TestSeedCutMidwayStartsAgain: a seed whose snapshot stream is cut after
// the follower ingested part of it starts again from scratch. The leader
// deletes every key the first snapshot holds before the cut, so anything
// of the partial seed that survived would show in the digests.
func TestSeedCutMidwayStartsAgain(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.ChunkBytes = 100 })
	writes(t, l, "k", 100)
	var follower atomic.Pointer[Follower]
	var chunks atomic.Int32
	l.dialer.SetHook(leaderName, "f", func(m inmem.Message, _ *rand.Rand) inmem.Action {
		if m.Kind != inmem.Snapshot || chunks.Add(1) != 5 { // the header, then data
			return inmem.Action{}
		}
		// On the transport's goroutine: no Fatal here.
		if !testutil.Until(waitTimeout, func() bool { f := follower.Load(); return f != nil && f.Status().SeedBytes > 0 }) {
			t.Error("the follower ingested no chunk of the first seed")
		}
		var ops []logrec.Op
		for i := range 100 {
			ops = append(ops, logrec.Op{Kind: logrec.OpDelete, Key: []byte(fmt.Sprint("k", i))})
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, _, err := l.Propose(ctx, func(commands.View, int64) (commands.Result, error) {
			return commands.Result{Reply: commands.OK, Ops: ops}, nil
		}); err != nil {
			t.Errorf("Propose the deletes: %v", err)
		}
		return inmem.Action{Cut: true}
	})
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	follower.Store(f.f)
	waitConverged(t, l, f)
	if n, seeds := l.dialer.snapshots.Load(), f.f.Status().Seeds; n != 2 || seeds != 2 {
		t.Errorf("%d snapshots sent, %d seeds begun; want 2 and 2", n, seeds)
	}
	if _, ok := get(t, f.db, "k7"); ok {
		t.Error("k7, ingested by the cut seed and deleted since, is on the follower")
	}
}

// TestFollowerBehindRetentionReseeded: a follower whose position the leader
// trimmed from its log is re-seeded.
func TestFollowerBehindRetentionReseeded(t *testing.T) {
	const retain = 30_000
	value := string(make([]byte, 1000))
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.RetainBytes = retain
		c.RetentionEvery = 10 * time.Millisecond
	})
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	for i := 0; i < 10; i++ {
		propose(t, l, putExec(fmt.Sprint("a", i), value))
	}
	waitConverged(t, l, f)
	if _, size := l.db.LogSize(); size > retain/2 {
		t.Fatalf("log of %d bytes is already over half the cap", size)
	}
	f.stop(t)
	for i := 0; i < 40; i++ {
		propose(t, l, putExec(fmt.Sprint("b", i), value))
	}
	// The leader's retention (every 10 ms here) trims past the stopped
	// follower's position once the log is over the cap.
	waitFor(t, "retention to trim past the follower", func() (bool, string) {
		base := l.db.LogBase().LSN
		_, size := l.db.LogSize()
		return base > 10 && size <= retain, fmt.Sprintf("log base %d, %d bytes; want base past the follower's 10, at most %d bytes", base, size, retain)
	})
	f.start(t, l.dialer)
	waitConverged(t, l, f)
	if n := l.dialer.snapshots.Load(); n != 1 {
		t.Errorf("%d snapshots, want 1", n)
	}
	writes(t, l, "c", 10)
	waitConverged(t, l, f)
}

// TestDivergedFollowerTruncated: a follower holding entries of an epoch the
// leader superseded drops them, and re-seeds if it had applied them.
func TestDivergedFollowerTruncated(t *testing.T) {
	shared := []logrec.Entry{
		{Epoch: 1, LSN: 1, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("a"), Value: []byte("1")}}},
		{Epoch: 1, LSN: 2, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("b"), Value: []byte("2")}}},
		{Epoch: 1, LSN: 3, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("c"), Value: []byte("3")}}},
	}
	// Written by the old epoch-1 leader, never known to the new leader.
	diverged := []logrec.Entry{
		{Epoch: 1, LSN: 4, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("a"), Value: []byte("lost")}}},
		{Epoch: 1, LSN: 5, Ops: []logrec.Op{{Kind: logrec.OpDelete, Key: []byte("b")}}},
	}
	tests := []struct {
		name          string
		applied       int // follower entries applied before it meets the new leader
		wantSnapshots int32
		wantRollback  int // entries in rollback files (every dropped entry is saved)
	}{
		{"unapplied suffix truncated, and saved", 3, 0, 2},
		{"applied suffix saved and re-seeded", 5, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lfs := vfs.NewMem()
			ldb := openDB(t, lfs)
			if err := ldb.AppendLog(encodeAll(shared)); err != nil {
				t.Fatal(err)
			}
			if err := ldb.Apply(shared); err != nil {
				t.Fatal(err)
			}
			l := startLeader(t, lfs, ldb, 2, commit.Mode{Kind: commit.Async}, nil)
			for i := 0; i < 3; i++ {
				propose(t, l, putExec(fmt.Sprint("new", i), "x"))
			}

			all := append(append([]logrec.Entry(nil), shared...), diverged...)
			f := newFollowerNode(t, "f", logFS(t, all, tt.applied), l.dialer)
			waitConverged(t, l, f)
			if n := l.dialer.snapshots.Load(); n != tt.wantSnapshots {
				t.Errorf("%d snapshots, want %d", n, tt.wantSnapshots)
			}
			if v, _ := get(t, f.db, "a"); v != "1" {
				t.Errorf("a = %q on the follower, want the leader's 1", v)
			}
			// The follower's log now holds the leader's epoch-2 entries.
			if tt.wantSnapshots == 0 {
				fl, err := f.db.ReadLog(4, 6, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				ll, err := l.db.ReadLog(4, 6, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(fl, ll) {
					t.Error("follower log 4-6 differs from the leader's")
				}
			}
			if got, want := f.db.EpochHistory(), l.db.EpochHistory(); !reflect.DeepEqual(got, want) {
				t.Errorf("follower epoch history %v, want %v", got, want)
			}
			if n := rolledBackEntries(t, f.f.cfg.DataDir); n != tt.wantRollback {
				t.Errorf("rollback files hold %d entries, want %d", n, tt.wantRollback)
			}
		})
	}
}

// rolledBackEntries counts the entries in every rollback file in dir.
func rolledBackEntries(t *testing.T, dir string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "rollback-*.jsonl"))
	n := 0
	for _, f := range files {
		n += countLines(t, f)
	}
	return n
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	n := 0
	for s := bufio.NewScanner(file); s.Scan(); {
		n++
	}
	return n
}

// TestStaleLeaderRefused: a follower that has seen epoch 5 does not follow a
// leader at epoch 3; that leader learns the newer epoch and steps down.
func TestStaleLeaderRefused(t *testing.T) {
	l := newLeader(t, 3, commit.Mode{Kind: commit.Async}, nil)
	for i := 0; i < 3; i++ {
		propose(t, l, putExec(fmt.Sprint("k", i), "leader"))
	}

	fs := vfs.NewMem()
	db := openDB(t, fs)
	defer db.Close()
	if err := db.ObserveEpoch(5); err != nil {
		t.Fatal(err)
	}
	e := logrec.Entry{Epoch: 5, LSN: 1, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("mine"), Value: []byte("1")}}}
	if err := db.AppendLog([][]byte{logrec.Encode(&e)}); err != nil {
		t.Fatal(err)
	}
	if err := db.Apply([]logrec.Entry{e}); err != nil {
		t.Fatal(err)
	}
	_, sumBefore, _ := db.Digest()
	f := NewFollower(FollowerConfig{DB: db, NodeID: "f", Dial: l.dialer, Logger: testLogger(t, "f"), DataDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.session(ctx); err == nil {
		t.Fatal("session with a stale leader succeeded")
	}
	select {
	case err := <-l.dialer.serveErrs:
		if !errors.Is(err, ErrStaleEpoch) {
			t.Errorf("Serve returned %v, want ErrStaleEpoch", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Serve did not return")
	}
	waitFor(t, "the stale leader to step down", func() (bool, string) {
		_, _, err := l.Propose(ctx, putExec("x", "y"))
		return errors.Is(err, ErrNotLeader), fmt.Sprint(err)
	})
	if got := l.db.Epoch(); got != 5 {
		t.Errorf("stale leader's db epoch %d, want 5 (persisted before stepping down)", got)
	}
	applied, sum, _ := db.Digest()
	if applied != 1 || sum != sumBefore || db.Durable() != (logrec.Position{Epoch: 5, LSN: 1}) || db.Epoch() != 5 {
		t.Errorf("follower changed: applied %d, same data %v, durable %v, epoch %d", applied, sum == sumBefore, db.Durable(), db.Epoch())
	}
	if n := l.dialer.snapshots.Load(); n != 0 {
		t.Errorf("%d snapshots, want 0", n)
	}
}

// TestFollowerRefusesStaleMessages plays a scripted leader: any message
// from an epoch below what the follower has seen ends the session with
// ErrStaleEpoch and leaves its data alone.
func TestFollowerRefusesStaleMessages(t *testing.T) {
	entry := func(epoch, lsn uint64) []byte {
		return logrec.Encode(&logrec.Entry{Epoch: epoch, LSN: lsn, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k"), Value: []byte(fmt.Sprint(lsn))}}})
	}
	start := func(epoch, from uint64) *peerpb.LeaderMessage {
		return &peerpb.LeaderMessage{Epoch: epoch, Body: &peerpb.LeaderMessage_Start{Start: &peerpb.Start{FromLsn: from}}}
	}
	appendMsg := func(epoch, commitLSN uint64, entries ...[]byte) *peerpb.LeaderMessage {
		return &peerpb.LeaderMessage{Epoch: epoch, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{Entries: entries, CommitLsn: commitLSN}}}
	}
	tests := []struct {
		name   string
		script scriptDialer
		want   error
	}{
		{"handshake from epoch 3", scriptDialer{msgs: []*peerpb.LeaderMessage{start(3, 2)}}, ErrStaleEpoch},
		{"truncate from epoch 3", scriptDialer{msgs: []*peerpb.LeaderMessage{
			{Epoch: 3, Body: &peerpb.LeaderMessage_Truncate{Truncate: &peerpb.Truncate{AfterLsn: 0}}},
		}}, ErrStaleEpoch},
		{"snapshot request from epoch 3", scriptDialer{msgs: []*peerpb.LeaderMessage{
			{Epoch: 3, Body: &peerpb.LeaderMessage_NeedSnapshot{NeedSnapshot: &peerpb.NeedSnapshot{}}},
		}}, ErrStaleEpoch},
		{"append from epoch 4 after a start at 5", scriptDialer{msgs: []*peerpb.LeaderMessage{
			start(5, 2), appendMsg(4, 2, entry(4, 2)),
		}}, ErrStaleEpoch},
		{"snapshot from epoch 3", scriptDialer{
			msgs: []*peerpb.LeaderMessage{{Epoch: 5, Body: &peerpb.LeaderMessage_NeedSnapshot{NeedSnapshot: &peerpb.NeedSnapshot{}}}},
			chunks: []*peerpb.SnapshotChunk{
				{Epoch: 3, Body: &peerpb.SnapshotChunk_Header{Header: &peerpb.SnapshotHeader{Position: &peerpb.Position{Epoch: 3, Lsn: 9}}}},
				{Epoch: 3, Body: &peerpb.SnapshotChunk_Done{Done: &peerpb.SnapshotDone{}}},
			},
		}, ErrStaleEpoch},
		{"entry out of order", scriptDialer{msgs: []*peerpb.LeaderMessage{
			start(5, 2), appendMsg(5, 3, entry(5, 3)),
		}}, ErrOutOfOrder},
		{"start past the follower's log", scriptDialer{msgs: []*peerpb.LeaderMessage{start(5, 7)}}, ErrOutOfOrder},
		{"corrupt entry", scriptDialer{msgs: []*peerpb.LeaderMessage{
			start(5, 2), appendMsg(5, 2, func() []byte { b := entry(5, 2); b[len(b)-1] ^= 1; return b }()),
		}}, logrec.ErrCorrupt},
		// An intact entry of a format this build does not read: refused,
		// never appended or applied.
		{"entry of a newer log format", scriptDialer{msgs: []*peerpb.LeaderMessage{
			start(5, 2), appendMsg(5, 2, func() []byte { b := entry(5, 2); b[frame.HeaderLen] = logrec.MaxFormat + 1; frame.Seal(b); return b }()),
		}}, logrec.ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := openDB(t, vfs.NewMem())
			defer db.Close()
			if err := db.ObserveEpoch(5); err != nil {
				t.Fatal(err)
			}
			e := logrec.Entry{Epoch: 5, LSN: 1, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("mine"), Value: []byte("1")}}}
			if err := db.AppendLog([][]byte{logrec.Encode(&e)}); err != nil {
				t.Fatal(err)
			}
			if err := db.Apply([]logrec.Entry{e}); err != nil {
				t.Fatal(err)
			}
			_, before, _ := db.Digest()
			script := tt.script
			f := NewFollower(FollowerConfig{DB: db, NodeID: "f", Dial: &script, Logger: testLogger(t, "f"), DataDir: t.TempDir()})
			err := f.session(context.Background())
			if !errors.Is(err, tt.want) {
				t.Fatalf("session error %v, want %v", err, tt.want)
			}
			applied, after, _ := db.Digest()
			if applied != 1 || after != before || db.Durable() != (logrec.Position{Epoch: 5, LSN: 1}) || db.Epoch() != 5 || db.Seeding() {
				t.Errorf("follower changed: applied %d, same data %v, durable %v, epoch %d, seeding %v",
					applied, after == before, db.Durable(), db.Epoch(), db.Seeding())
			}
			if h := script.sent[0].GetHello(); h.GetLogFormat() != uint32(logrec.MaxFormat) {
				t.Errorf("hello advertises log format %d, want %d", h.GetLogFormat(), logrec.MaxFormat)
			}
			if len(script.sent) == 0 || script.sent[0].GetHello().GetDurable().GetLsn() != 1 || script.sent[0].Epoch != 5 {
				t.Errorf("hello = %v, want durable 1 at epoch 5", script.sent)
			}
		})
	}
}

// TestProposeSeesUncommittedOverlay: in quorum mode with no follower, writes
// stay uncommitted, yet a later read-modify-write sees them; once a follower
// connects both commit.
func TestProposeSeesUncommittedOverlay(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	seen := make(chan int64, 2)
	first := proposeAsync(ctx, l, incrExec("ctr", seen))
	if n := <-seen; n != 0 {
		t.Fatalf("first INCR read %d, want 0", n)
	}
	second := proposeAsync(ctx, l, incrExec("ctr", seen))
	if n := <-seen; n != 1 {
		t.Fatalf("second INCR read %d, want the first's uncommitted 1", n)
	}
	waitFor(t, "both entries durable on the leader", func() (bool, string) {
		st := l.Status()
		return st.Durable == 2, fmt.Sprintf("%+v", st)
	})
	if st := l.Status(); st.Commit != 0 || st.Applied != 0 {
		t.Errorf("without followers: commit %d applied %d, want 0", st.Commit, st.Applied)
	}
	if _, ok := get(t, l.db, "ctr"); ok {
		t.Error("uncommitted write visible in the leader's data")
	}
	select {
	case r := <-first:
		t.Fatalf("first Propose returned before commit: %+v", r)
	case r := <-second:
		t.Fatalf("second Propose returned before commit: %+v", r)
	default:
	}

	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	for i, ch := range []<-chan proposeResult{first, second} {
		select {
		case r := <-ch:
			if r.err != nil || r.reply != commands.Int(i+1) || r.lsn != uint64(i+1) {
				t.Errorf("proposal %d: %+v, want reply %d at lsn %d", i+1, r, i+1, i+1)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("proposal %d did not commit after a follower connected", i+1)
		}
	}
	if v, ok := get(t, l.db, "ctr"); v != "2" || !ok {
		t.Errorf("ctr = %q, %v; want 2", v, ok)
	}
	waitConverged(t, l, f)
	// With the follower there, a third INCR commits and reads committed data.
	if r, _, err := l.Propose(ctx, incrExec("ctr", seen)); err != nil || r != commands.Int(3) {
		t.Errorf("third INCR = %v, %v", r, err)
	}
}

// TestProposeNoOpsWaitsForApplied: a command that logs nothing does not
// reply before the writes it may have read are applied.
func TestProposeNoOpsWaitsForApplied(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	write := proposeAsync(ctx, l, putExec("k", "v"))
	read := func(v commands.View, _ int64) (commands.Result, error) {
		val, ok, err := v.Get([]byte("k"))
		if err != nil || !ok {
			return commands.Result{Reply: commands.Null}, err
		}
		return commands.Result{Reply: commands.Bulk(val.Data)}, nil
	}
	waitFor(t, "the write to be queued", func() (bool, string) {
		st := l.Status()
		return st.Durable == 1, fmt.Sprintf("%+v", st)
	})
	// A caller that gives up gets its context's error.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	_, _, err := l.Propose(short, read)
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no-op Propose with an uncommitted write before it: %v, want DeadlineExceeded", err)
	}
	pending := proposeAsync(ctx, l, read)
	// Once its wait is registered with the core, only the write's apply
	// can end it.
	waitFor(t, "the no-op Propose to wait", func() (bool, string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.core.waits) == 1, fmt.Sprintf("%d waits", len(l.core.waits))
	})
	select {
	case r := <-pending:
		t.Fatalf("no-op Propose returned %+v before the write committed", r)
	default:
	}
	newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	for name, ch := range map[string]<-chan proposeResult{"write": write, "read": pending} {
		select {
		case r := <-ch:
			if r.err != nil {
				t.Errorf("%s: %v", name, r.err)
			}
			if name == "read" && (r.lsn != 0 || !reflect.DeepEqual(r.reply, commands.Bulk("v"))) {
				t.Errorf("read = %+v, want v with no LSN", r)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%s did not return after a follower connected", name)
		}
	}
	if st := l.Status(); st.Applied != 1 {
		t.Errorf("applied %d after the read returned, want 1", st.Applied)
	}
	// Nothing pending: a no-op Propose returns at once, without a wait
	// of the core (what it read was applied when it ran).
	waits := l.handoffs.wait.Load()
	if _, lsn, err := l.Propose(ctx, read); err != nil || lsn != 0 {
		t.Errorf("idle no-op Propose: lsn %d, %v", lsn, err)
	}
	if n := l.handoffs.wait.Load() - waits; n != 0 {
		t.Errorf("idle no-op Propose waited for the core %d times, want 0", n)
	}
}

// TestLeaderClose: pending writes fail with ErrNotLeader, and so does every
// later Propose.
func TestLeaderClose(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	pending := proposeAsync(ctx, l, putExec("k", "v"))
	waitFor(t, "the write to be durable", func() (bool, string) {
		return l.Status().Durable == 1, fmt.Sprintf("%+v", l.Status())
	})
	l.Close()
	if r := <-pending; !errors.Is(r.err, ErrNotLeader) {
		t.Errorf("pending Propose: %v, want ErrNotLeader", r.err)
	}
	if _, _, err := l.Propose(ctx, putExec("k", "v")); !errors.Is(err, ErrNotLeader) {
		t.Errorf("Propose after Close: %v, want ErrNotLeader", err)
	}
	l.Close() // idempotent
}

// TestLeaderRestartCommitsTail: entries a leader made durable but did not
// commit are applied by the next leader once the mode's rule allows.
func TestLeaderRestartCommitsTail(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	// The old leader logged entries 1-3 in epoch 1 but applied only 1.
	var es []logrec.Entry
	var raws [][]byte
	for i := uint64(1); i <= 3; i++ {
		e := logrec.Entry{Epoch: 1, LSN: i, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte(fmt.Sprint("k", i)), Value: []byte("v")}}}
		es = append(es, e)
		raws = append(raws, logrec.Encode(&e))
	}
	if err := db.AppendLog(raws); err != nil {
		t.Fatal(err)
	}
	if err := db.Apply(es[:1]); err != nil {
		t.Fatal(err)
	}
	l := startLeader(t, fs, db, 2, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
	// An INCR-like read sees the tail through the overlay.
	seen := make(chan int64, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	res := proposeAsync(ctx, l, func(v commands.View, now int64) (commands.Result, error) {
		_, ok, err := v.Get([]byte("k3"))
		if ok {
			seen <- 1
		} else {
			seen <- 0
		}
		return commands.Result{Reply: commands.OK, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k4"), Value: []byte("v")}}}, err
	})
	if <-seen != 1 {
		t.Error("the uncommitted tail is not in the overlay")
	}
	if st := l.Status(); st.Applied != 1 {
		t.Errorf("applied %d before any follower, want 1", st.Applied)
	}
	// Entries 2 and 3 may have been acknowledged before the restart: reads
	// must not be served without them.
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := l.ReadBarrier(short); !errors.Is(err, ErrNotReady) {
		t.Errorf("ReadBarrier with the tail uncommitted = %v, want ErrNotReady", err)
	}
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	if r := <-res; r.err != nil || r.lsn != 4 {
		t.Errorf("Propose: %+v, want lsn 4", r)
	}
	if err := l.ReadBarrier(ctx); err != nil {
		t.Errorf("ReadBarrier once the tail committed = %v", err)
	}
	waitConverged(t, l, f)
}

// TestAsyncLeaderRestartReadableAtOnce: under async the tail commits when
// the leader starts, so reads need not wait.
func TestAsyncLeaderRestartReadableAtOnce(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	e := logrec.Entry{Epoch: 1, LSN: 1, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k"), Value: []byte("v")}}}
	if err := db.AppendLog([][]byte{logrec.Encode(&e)}); err != nil {
		t.Fatal(err)
	}
	l := startLeader(t, fs, db, 2, commit.Mode{Kind: commit.Async}, nil)
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := l.ReadBarrier(short); err != nil {
		t.Errorf("ReadBarrier = %v, want nil", err)
	}
	if _, ok := get(t, db, "k"); !ok {
		t.Error("the tail is not applied")
	}
}

// TestQuorumLeaderWithNothingApplied: under quorum, a leader's first writes
// commit only once a follower streams them. A follower that would be seeded
// (empty, or diverged from its first entry) must not be sent an empty
// snapshot at LSN 0 over and over: it replays the log instead.
func TestQuorumLeaderWithNothingApplied(t *testing.T) {
	old := func(lsn uint64) logrec.Entry {
		return logrec.Entry{Epoch: 1, LSN: lsn, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("old"), Value: []byte(fmt.Sprint(lsn))}}}
	}
	tests := []struct {
		name          string
		logged        uint64 // epoch-1 entries in the follower's log
		applied       uint64
		wantSnapshots int32
	}{
		{"empty follower", 0, 0, 0},
		{"diverged from the first entry", 2, 0, 0},
		{"diverged and applied", 2, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLeader(t, 2, commit.Mode{Kind: commit.Quorum, K: 1}, nil)
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			pending := proposeAsync(ctx, l, putExec("k", "v"))
			waitFor(t, "the write to be durable", func() (bool, string) {
				return l.Status().Durable == 1, fmt.Sprintf("%+v", l.Status())
			})
			fs := vfs.NewMem()
			db := openDB(t, fs)
			var es []logrec.Entry
			var raws [][]byte
			for lsn := uint64(1); lsn <= tt.logged; lsn++ {
				es = append(es, old(lsn))
				raws = append(raws, logrec.Encode(&es[len(es)-1]))
			}
			if err := db.AppendLog(raws); err != nil {
				t.Fatal(err)
			}
			if err := db.Apply(es[:tt.applied]); err != nil {
				t.Fatal(err)
			}
			db.Close()
			f := newFollowerNode(t, "f", fs, l.dialer)
			select {
			case r := <-pending:
				if r.err != nil || r.lsn != 1 {
					t.Fatalf("Propose = %+v, want lsn 1", r)
				}
			case <-time.After(waitTimeout):
				t.Fatalf("the write never committed; %d snapshots sent", l.dialer.snapshots.Load())
			}
			waitConverged(t, l, f)
			if _, ok := get(t, f.db, "old"); ok {
				t.Error("the diverged write survived")
			}
			if n := l.dialer.snapshots.Load(); n != tt.wantSnapshots {
				t.Errorf("%d snapshots, want %d", n, tt.wantSnapshots)
			}
		})
	}
}

package replication

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
)

// startGatedFollower runs a follower of a fakeLeader that never holds
// (SyncHold off) on an in-memory disk whose log syncs block while gate is
// held, once it has joined the stream.
func startGatedFollower(t *testing.T) (*Follower, *fakeLeader, *syncGate) {
	t.Helper()
	s := newFakeLeader()
	mem := vfs.NewMem()
	gate := &syncGate{FS: mem, dir: mem.PathJoin(dbDir, "log")}
	db := openDB(t, gate)
	f := NewFollower(FollowerConfig{DB: db, NodeID: "f", Dial: s, SyncHold: -1, Retry: time.Millisecond, Logger: testLogger(t, "f")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	t.Cleanup(func() { gate.release(); cancel(); <-done; db.Close() })
	waitFor(t, "the follower to join", func() (bool, string) { return f.Status().Connected, "not connected" })
	return f, s, gate
}

// durableReported waits until the follower reported lsn durable.
func durableReported(t *testing.T, s *fakeLeader, lsn uint64) {
	t.Helper()
	waitFor(t, "the entries reported durable", func() (bool, string) {
		return s.durable.Load() >= lsn, fmt.Sprintf("durable %d reported, want %d", s.durable.Load(), lsn)
	})
}

// waitAppliedWithin runs WaitApplied for want, bounded by d.
func waitAppliedWithin(f *Follower, want logrec.Position, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return f.WaitApplied(ctx, want)
}

// TestCommittedEntriesApplyBeforeTheNextFsync: under a steady write load
// each message carries new entries and the commit LSN of the ones before
// (the leader sends entries before its fsync); the entries it commits
// were durable already, and are applied before the new ones' fsync, so a
// read waiting for them does not wait for that fsync (Follower.applyEarly).
// Fails if the apply is put back after the fsync.
func TestCommittedEntriesApplyBeforeTheNextFsync(t *testing.T) {
	f, s, gate := startGatedFollower(t)
	s.in <- appendOf(1, 2, 0, false)
	durableReported(t, s, 2)
	gate.hold() // the next fsync does not return until released
	s.in <- appendOf(3, 4, 2, false)
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 2}, 5*time.Second); err != nil {
		t.Fatalf("lsn 2, committed by the message whose own entries are being synced: %v (applied %d): its apply waited for that fsync", err, f.cfg.DB.Applied())
	}
	if c := f.Counts(); c.Applies != 1 {
		t.Fatalf("counts %+v: want one apply", c)
	}
	gate.release()
	s.in <- appendOf(5, 4, 4, false)
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 4}, 5*time.Second); err != nil {
		t.Fatalf("lsn 4 after the fsync: %v", err)
	}
}

// TestCommittedEntriesApplyWhileTheirFsyncRuns: entries the leader says
// are committed are applied while this follower's own fsync of them runs
// (Follower.applyAhead): a message that commits its own entries (a
// follower catching up, messages merged while an fsync ran, the leader's
// answer to a waiting read arriving with them) makes them readable
// before the fsync returns, the durable tail it commits in the same
// apply; they are reported durable only once synced. Fails with the
// apply put back after the fsync.
func TestCommittedEntriesApplyWhileTheirFsyncRuns(t *testing.T) {
	f, s, gate := startGatedFollower(t)
	s.in <- appendOf(1, 2, 0, false)
	durableReported(t, s, 2)
	gate.hold()
	s.in <- appendOf(3, 4, 4, false) // commits 1-4, its own 3-4 too
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 4}, 5*time.Second); err != nil {
		t.Fatalf("lsn 4, committed, while its fsync is held: %v (applied %d): the apply waited for the fsync", err, f.cfg.DB.Applied())
	}
	if d := s.durable.Load(); d != 2 {
		t.Fatalf("durable %d reported while the fsync of 3-4 is held", d)
	}
	if c := f.Counts(); c.Applies != 1 {
		t.Fatalf("counts %+v: want 1-4 applied in one batch", c)
	}
	gate.release()
	durableReported(t, s, 4)
	waitFor(t, "lsn 4 reported applied", func() (bool, string) { return s.applied.Load() == 4, fmt.Sprintf("applied %d", s.applied.Load()) })
}

// TestUncommittedEntriesWaitForTheirCommit: entries past the leader's
// commit LSN are persisted and reported durable but not applied, however
// long their fsync takes, until a message commits them; the planted
// plantApplyUncommitted (applyAhead applies every entry of the append)
// fails it.
func TestUncommittedEntriesWaitForTheirCommit(t *testing.T) {
	f, s, gate := startGatedFollower(t)
	s.in <- appendOf(1, 2, 2, false)
	durableReported(t, s, 2)
	gate.hold()
	s.in <- appendOf(3, 4, 2, false) // 3-4 not committed
	gate.release()
	durableReported(t, s, 4)
	if a := f.cfg.DB.Applied(); a != 2 {
		t.Fatalf("applied %d with the commit LSN at 2", a)
	}
	if a := s.applied.Load(); a != 2 {
		t.Fatalf("applied %d reported with the commit LSN at 2", a)
	}
	s.in <- appendOf(5, 4, 4, false) // a heartbeat that commits them
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 4}, 5*time.Second); err != nil {
		t.Fatalf("lsn 4 once committed: %v", err)
	}
}

// TestCommitArrivingDuringTheFsyncApplies: a commit LSN that arrives
// while this follower's fsync of the entries it commits runs (the
// leader's answer to a waiting read, under load) makes them readable
// then, while a read waits (Follower.applyAsCommitted), not after the
// fsync and the next step; they are reported durable only once synced.
// Fails with applyAsCommitted taken out.
func TestCommitArrivingDuringTheFsyncApplies(t *testing.T) {
	f, s, gate := startGatedFollower(t)
	done := f.Awaiting() // a read waits (asking the leader first)
	defer done()
	gate.hold()
	s.in <- appendOf(1, 2, 0, false) // its fsync is held
	waitFor(t, "the append to begin", func() (bool, string) { return f.appending.Load(), "not appending" })
	s.in <- appendOf(3, 2, 2, false) // the leader's commit, no entries
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 2}, 5*time.Second); err != nil {
		t.Fatalf("lsn 2, committed while its fsync is held: %v (applied %d)", err, f.cfg.DB.Applied())
	}
	if d := s.durable.Load(); d != 0 {
		t.Fatalf("durable %d reported while the fsync of 1-2 is held", d)
	}
	gate.release()
	durableReported(t, s, 2)
	waitFor(t, "lsn 2 reported applied", func() (bool, string) { return s.applied.Load() == 2, fmt.Sprintf("applied %d", s.applied.Load()) })
}

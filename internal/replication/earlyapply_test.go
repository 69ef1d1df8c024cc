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

// TestEarlyApplySplitsOnlyForAWaitingRead: when a message commits both the
// durable tail and its own new entries (a follower catching up), the tail
// is applied before the fsync only while a read waits (a second apply);
// otherwise all of it after, in one.
func TestEarlyApplySplitsOnlyForAWaitingRead(t *testing.T) {
	f, s, gate := startGatedFollower(t)
	s.in <- appendOf(1, 2, 0, false)
	durableReported(t, s, 2)
	s.in <- appendOf(3, 4, 4, false) // commits 1-4: one apply, after the fsync
	durableReported(t, s, 4)
	waitFor(t, "lsn 4 applied", func() (bool, string) { return s.applied.Load() == 4, fmt.Sprintf("applied %d", s.applied.Load()) })
	if c := f.Counts(); c.Applies != 1 {
		t.Fatalf("counts %+v: want 1-4 applied together, with no read waiting", c)
	}

	s.in <- appendOf(5, 6, 4, false)
	durableReported(t, s, 6)
	done := f.Awaiting() // a read about to wait (asking the leader first)
	defer done()
	gate.hold()
	s.in <- appendOf(7, 8, 8, false)
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 6}, 5*time.Second); err != nil {
		t.Fatalf("lsn 6 with a read waiting: %v (applied %d): it waited for the fsync of 7-8", err, f.cfg.DB.Applied())
	}
	gate.release()
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 8}, 5*time.Second); err != nil {
		t.Fatalf("lsn 8 after the fsync: %v", err)
	}
	if c := f.Counts(); c.Applies != 3 {
		t.Fatalf("counts %+v: want 3 applies (1-4, then 5-6 before the fsync and 7-8 after)", c)
	}
}

// TestCommitAppliedWhileTheLogSyncs: while a read waits, a step's log
// append runs on the stream's syncer and the loop goes on taking the
// leader's messages: a later message's commit LSN (a waiting read's
// answer, a heartbeat) is applied while that fsync runs, not after it,
// and entries that arrive meanwhile wait for it and go in one append.
// Fails with the append run by the loop itself (the answer waits for the
// fsync).
func TestCommitAppliedWhileTheLogSyncs(t *testing.T) {
	f, s, gate := startGatedFollower(t)
	s.in <- appendOf(1, 2, 0, false)
	durableReported(t, s, 2)
	done := f.Awaiting() // a read waits on this follower
	defer done()
	gate.hold()
	s.in <- appendOf(3, 4, 0, false)
	waitFor(t, "the append of 3-4 to block at the gate", func() (bool, string) { return f.appending.Load(), "not appending" })
	s.in <- appendOf(5, 6, 0, false) // waits for the append of 3-4
	s.in <- appendOf(1, 0, 2, false) // the answer: a heartbeat committing 1-2
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 2}, 5*time.Second); err != nil {
		t.Fatalf("lsn 2, committed by a heartbeat that came during the fsync of 3-4: %v (applied %d): it waited for that fsync", err, f.cfg.DB.Applied())
	}
	if d := f.cfg.DB.Durable().LSN; d != 2 {
		t.Fatalf("durable %d during the held fsync of 3-4, want 2", d)
	}
	appends := f.Counts().Appends
	gate.release()
	s.in <- appendOf(1, 0, 6, false)
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 6}, 5*time.Second); err != nil {
		t.Fatalf("lsn 6 after the fsync: %v", err)
	}
	durableReported(t, s, 6)
	if n := f.Counts().Appends - appends; n != 2 {
		t.Fatalf("%d appends after the held one, want 2: 3-4, then 5-6 (queued during it)", n)
	}
}

// TestStreamEndWaitsForTheSyncer: a stream that ends while the syncer
// appends (a read waiting) persists what was queued behind that append
// before it returns, and the next stream starts after it: the log is
// never appended by two goroutines, nor left with a gap.
func TestStreamEndWaitsForTheSyncer(t *testing.T) {
	f, s, gate := startGatedFollower(t)
	s.in <- appendOf(1, 2, 2, false)
	durableReported(t, s, 2)
	done := f.Awaiting()
	defer done()
	gate.hold()
	s.in <- appendOf(3, 4, 2, false)
	waitFor(t, "the append of 3-4 to block at the gate", func() (bool, string) { return f.appending.Load(), "not appending" })
	steps := f.Counts().Steps
	s.in <- appendOf(5, 6, 4, false)
	waitFor(t, "5-6 to be queued behind the held append", func() (bool, string) { return f.Counts().Steps > steps, "not stepped" })
	wakes := f.Counts().Wakes
	s.in <- nil // the stream breaks
	waitFor(t, "the loop to take the stream's end", func() (bool, string) { return f.Counts().Wakes > wakes, "not taken" })
	gate.release()
	waitFor(t, "the follower to reconnect", func() (bool, string) {
		return f.Status().Connected && f.cfg.DB.Durable().LSN == 6, fmt.Sprintf("durable %d", f.cfg.DB.Durable().LSN)
	})
	s.in <- appendOf(7, 8, 8, false)
	if err := waitAppliedWithin(f, logrec.Position{Epoch: 1, LSN: 8}, 5*time.Second); err != nil {
		t.Fatalf("lsn 8 on the next stream: %v", err)
	}
}

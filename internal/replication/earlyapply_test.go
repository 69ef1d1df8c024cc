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

package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/testutil"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// TestFollowerReadWaits runs a follower that applies every batch 200 ms
// late (Buggify.FollowerApplyDelay) and checks the waits the read policies
// use: WaitApplied gives up at its deadline with ErrReadElsewhere and
// returns once the entry is applied; WaitFresh refuses while the follower
// is held and is satisfied, to 50 ms, once it caught up; the leader's
// ReadIndex is at or after every acknowledged write.
func TestFollowerReadWaits(t *testing.T) {
	l := newLeader(t, 3, commit.Mode{Kind: commit.Async}, nil)
	fs := vfs.NewMem()
	db := openDB(t, fs)
	f := NewFollower(FollowerConfig{
		DB: db, NodeID: "f", Dial: l.dialer.from("f"), Logger: testLogger(t, "f"),
		Retry: 5 * time.Millisecond, DataDir: t.TempDir(),
		Buggify: Buggify{FollowerApplyDelay: 200 * time.Millisecond},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		db.Close()
	})
	waitConnected(t, l, 1)

	lsn := propose(t, l, putExec("k", "v1"))
	pos := logrec.Position{Epoch: 3, LSN: lsn}
	if ri, err := l.ReadIndex(context.Background()); err != nil || Compare(ri, pos) < 0 {
		t.Fatalf("ReadIndex = %v, %v; want at or after the acknowledged write %v", ri, err, pos)
	}
	if err := l.WaitApplied(context.Background(), pos); err != nil {
		t.Fatalf("leader WaitApplied(%v) = %v: the leader applies before it acknowledges", pos, err)
	}

	short, cancelShort := context.WithTimeout(context.Background(), 10*time.Millisecond)
	err := f.WaitApplied(short, pos)
	cancelShort()
	if !errors.Is(err, ErrReadElsewhere) {
		t.Fatalf("WaitApplied within 10 ms of the write on a follower 200 ms behind = %v, want ErrReadElsewhere", err)
	}
	held, cancelHeld := context.WithTimeout(context.Background(), 100*time.Millisecond)
	err = f.WaitFresh(held, 10*time.Millisecond)
	cancelHeld()
	if !errors.Is(err, ErrReadElsewhere) {
		t.Fatalf("WaitFresh(10ms) while the follower is held 200 ms = %v, want ErrReadElsewhere", err)
	}

	long, cancelLong := context.WithTimeout(context.Background(), waitTimeout)
	defer cancelLong()
	if err := f.WaitApplied(long, pos); err != nil {
		t.Fatalf("WaitApplied = %v", err)
	}
	if v, ok := get(t, db, "k"); !ok || v != "v1" {
		t.Fatalf("after WaitApplied the follower has k = %q, %v", v, ok)
	}
	// An idle stream proves freshness as of the follower's last report,
	// which comes back with the next heartbeat (every 20 ms here): to a
	// heartbeat and a round trip.
	if err := f.WaitFresh(long, 50*time.Millisecond); err != nil {
		t.Fatalf("WaitFresh(50ms) once caught up: %v", err)
	}
	if st, ok := f.Staleness(); !ok || st > 50*time.Millisecond {
		t.Fatalf("Staleness = %v, %v right after WaitFresh(50ms)", st, ok)
	}
	// A position this history replaced: a follower only says "elsewhere".
	err = f.WaitApplied(long, logrec.Position{Epoch: 2, LSN: lsn})
	if !errors.Is(err, ErrReadElsewhere) {
		t.Fatalf("follower WaitApplied of a replaced position = %v, want ErrReadElsewhere", err)
	}
	if err := l.WaitApplied(long, logrec.Position{Epoch: 2, LSN: lsn}); !errors.Is(err, ErrPositionLost) {
		t.Fatalf("leader WaitApplied of a replaced position = %v, want ErrPositionLost", err)
	}
}

// TestFreshness: a message proves freshness as of its read stamp (the
// follower's report the leader had received before it read the commit
// LSN) once its commit LSN is applied, and only if the leader sent it
// under its lease.
func TestFreshness(t *testing.T) {
	r := followerReads{changed: make(chan struct{})}
	for _, s := range []struct {
		commit, applied uint64
		at              int64
		leased          bool
		fresh           int64
	}{
		{5, 5, 100, false, 0},  // lease lapsed: proves nothing
		{5, 5, 200, true, 200}, // applied through its commit
		{9, 7, 300, true, 200}, // commit 9 not applied yet
		{9, 8, 350, true, 200},
		{9, 9, 400, true, 400}, // now both: the later arrival counts
		{12, 12, 500, false, 400},
	} {
		if s.leased { // the stream's reader records only leased messages
			r.arrived(r.generation(), s.commit, s.at, func() uint64 { return s.applied }, 0, 0, false)
		} else {
			r.advanced(s.applied)
		}
		if at, _ := r.state(); at != s.fresh {
			t.Fatalf("after %+v freshAt = %d, want %d", s, at, s.fresh)
		}
	}
	gen := r.generation()
	r.clearFresh()
	if at, _ := r.state(); at != 0 {
		t.Fatalf("after the stream ended freshAt = %d", at)
	}
	// A message the ended stream's reader takes late proves nothing in
	// the next stream.
	r.arrived(gen, 1, 600, func() uint64 { return 12 }, 0, 0, false)
	if at, _ := r.state(); at != 0 {
		t.Fatalf("an arrival of an ended stream set freshAt = %d", at)
	}
}

// TestFreshnessSurvivesLateDelivery: a message that reaches the follower
// late proves nothing as of when it was read: its commit LSN is the
// leader's when the leader sent it, and a slow link, or a follower whose
// stream reader was starved of CPU under load (the message waiting in
// the socket), can hand it over long after a later write was
// acknowledged. The link holds the leader's messages back 150 ms, and
// those committing the write 400 ms: while the write (acknowledged at
// once, async) is not applied on the follower, the follower must not
// believe itself within 50 ms of the leader once the write is more than
// 50 ms old. Freshness taken from each message's arrival did (the read
// under bounded 50 that TestE2ESemisyncKillAfterAck saw once missed a
// write acknowledged 69 ms before it began).
func TestFreshnessSurvivesLateDelivery(t *testing.T) {
	l := newLeader(t, 3, commit.Mode{Kind: commit.Async}, nil)
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	first := propose(t, l, putExec("k", "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.f.WaitApplied(ctx, logrec.Position{Epoch: 3, LSN: first}); err != nil {
		t.Fatal(err)
	}
	if err := f.f.WaitFresh(ctx, 50*time.Millisecond); err != nil {
		t.Fatalf("a caught-up follower is not fresh: %v", err)
	}
	l.dialer.SetHook(leaderName, "f", func(m inmem.Message, _ *rand.Rand) inmem.Action {
		if lm, ok := m.Msg.(*peerpb.LeaderMessage); ok && lm.GetAppend().GetCommitLsn() > first {
			return inmem.Action{Delay: 400 * time.Millisecond}
		}
		return inmem.Action{Delay: 150 * time.Millisecond}
	})
	lsn := propose(t, l, putExec("k", "v2"))
	acked := time.Now()
	const bound = 50 * time.Millisecond
	// Checked after every change of the follower's freshness (an
	// arrival or an apply), until the write is applied.
	polls, believed := 0, 0
	for {
		_, changed := f.f.reads.state()
		if f.db.Applied() >= lsn {
			break
		}
		// Fresh first: the write must still be missing after it.
		fresh := f.f.Fresh(bound)
		age := time.Since(acked)
		if fresh && f.db.Applied() < lsn && age > bound+5*time.Millisecond {
			st, _ := f.f.Staleness()
			t.Fatalf("the follower believes it is %v behind its leader (bound %v) but misses lsn %d, acknowledged %v ago (applied %d)", st, bound, lsn, age.Round(time.Millisecond), f.db.Applied())
		}
		if fresh {
			believed++
		}
		polls++
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("the write at lsn %d never applied on the follower", lsn)
		}
	}
	t.Logf("%d steps while the write was missing, %d of them fresh within %v", polls, believed, bound)
	l.dialer.SetHook(leaderName, "f", nil)
	if err := f.f.WaitFresh(ctx, bound); err != nil {
		t.Fatalf("the follower never proved itself fresh again: %v", err)
	}
}

// TestNewLeaderProvesNoFreshnessBelowItsStart: a promoted follower leads
// with a durable tail it has not applied (its old leader acknowledged
// those writes once they were durable here, and died before it said so);
// until its commit reaches the start of its leadership those writes may
// be acknowledged and still missing everywhere, so its messages prove no
// follower fresh. Under semisync with a sync set that never answers, the
// commit stays below the start: the follower must not believe itself
// within a second of its leader. Once the commit passes the start, it does.
func TestNewLeaderProvesNoFreshnessBelowItsStart(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	var raws [][]byte
	for lsn := uint64(1); lsn <= 3; lsn++ {
		e := logrec.Entry{Epoch: 2, LSN: lsn, TimeNs: int64(lsn), Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("k"), Value: []byte(fmt.Sprint("v", lsn))}}}
		raws = append(raws, logrec.Encode(&e))
	}
	if err := db.AppendLog(raws); err != nil {
		t.Fatal(err)
	}
	l := startLeader(t, fs, db, 3, commit.Mode{Kind: commit.SemiSync}, nil)
	l.SetSyncSet([]string{"g"}) // never connects
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	testutil.Eventually(t, "the follower to hold the tail", waitTimeout, func() (bool, string) {
		return f.db.Durable().LSN >= 3, fmt.Sprint("durable ", f.db.Durable())
	})
	// Heartbeats every 20 ms: 15 of them.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err := f.f.WaitFresh(short, time.Second)
	cancelShort()
	if !errors.Is(err, ErrReadElsewhere) {
		t.Fatalf("WaitFresh(1s) while the leader's commit (%d) is below its start (3) = %v, want ErrReadElsewhere", l.Status().Commit, err)
	}
	l.SetSyncSet([]string{"f"})
	if err := f.f.WaitFresh(ctx, time.Second); err != nil {
		t.Fatalf("WaitFresh(1s) once the commit passed the start: %v", err)
	}
	if v, ok := get(t, f.db, "k"); !ok || v != "v3" {
		t.Fatalf("a fresh follower has k = %q, %v; want v3", v, ok)
	}
}

// TestRoundTripTimesClassify: a served round trip is counted with the
// proof that served it: an answer whose commit LSN was past the durable
// log when it arrived is NeedLog (its apply waited for the follower's own
// fsync) and its apply wait is ApplyNeedLog; one whose commit LSN was
// past the append in progress too is Queued (ApplyQueued); one already
// applied on arrival is none of them, and its apply wait is none.
func TestRoundTripTimesClassify(t *testing.T) {
	f := &Follower{}
	r := &f.reads
	r.changed = make(chan struct{})
	gen := r.generation()
	r.arrived(gen, 5, 100, func() uint64 { return 3 }, 4, 6, true) // commit 5, durable 4, appending 5-6, applied 3
	if p, _ := r.proven(); p.at != 0 {
		t.Fatalf("proven %+v before lsn 5 is applied", p)
	}
	r.advanced(5)
	p, _ := r.proven()
	if p.at != 100 || !p.needLog || !p.inAppend || p.queued || p.proved < p.arrived {
		t.Fatalf("proof %+v: want stamp 100, need_log, in_append, not queued, proved after arrival", p)
	}
	r.served(50, p)
	r.arrived(gen, 9, 150, func() uint64 { return 5 }, 6, 8, true) // commit 9, appending 7-8: 9 in no append
	r.advanced(9)
	if p, _ = r.proven(); p.at != 150 || !p.needLog || !p.queued {
		t.Fatalf("proof %+v: want stamp 150, need_log, queued", p)
	}
	q0 := time.Duration(p.proved - p.arrived)
	r.served(100, p)
	r.arrived(gen, 9, 200, func() uint64 { return 9 }, 9, 0, false) // durable and applied already
	p, _ = r.proven()
	if p.at != 200 || p.needLog || p.inAppend || p.queued {
		t.Fatalf("proof %+v: want stamp 200, proven on arrival, none", p)
	}
	r.served(150, p)
	rt := f.RoundTripTimes()
	if rt.Reads != 3 || rt.NeedLog != 2 || rt.InAppend != 2 || rt.Queued != 1 || rt.Ask != 150 {
		t.Fatalf("times %+v: want 3 reads, 2 need_log, 2 in_append, 1 queued, ask 50+50+50 ns", rt)
	}
	if rt.ApplyNeedLog != rt.Apply-time.Duration(p.proved-p.arrived) {
		t.Fatalf("times %+v: the need_log reads' apply is not ApplyNeedLog", rt)
	}
	if rt.ApplyQueued != q0 {
		t.Fatalf("times %+v: the queued read's apply is not ApplyQueued (%v)", rt, q0)
	}
}

package replication

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/testutil"
	"github.com/tandemdb/tandem/internal/transport/inmem"
)

// TestRoundTripRead: WaitRoundTrip (a linearizable read's ReadIndex on
// the stream) returns only once the follower has applied a write the
// leader acknowledged before the call began, however fresh the follower
// proved itself just before: the leader's messages take 200 ms to arrive
// and the write is acknowledged at once (async). A freshness proved by a
// report sent before the read began would serve it without the write
// (plantFreshFromBefore).
func TestRoundTripRead(t *testing.T) {
	l := newLeader(t, 3, commit.Mode{Kind: commit.Async}, nil)
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	first := propose(t, l, putExec("k", "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.f.WaitApplied(ctx, logrec.Position{Epoch: 3, LSN: first}); err != nil {
		t.Fatal(err)
	}
	if !f.f.AnswersReads() {
		t.Fatal("the leader's Start does not say it answers waiting reads")
	}
	if err := f.f.WaitRoundTrip(ctx); err != nil {
		t.Fatalf("WaitRoundTrip on a caught-up follower: %v", err)
	}
	l.dialer.SetHook(leaderName, "f", func(m inmem.Message, _ *rand.Rand) inmem.Action {
		if _, ok := m.Msg.(*peerpb.LeaderMessage); ok {
			return inmem.Action{Delay: 200 * time.Millisecond}
		}
		return inmem.Action{}
	})
	for i := range 3 {
		lsn := propose(t, l, putExec("k", fmt.Sprint("v", i+2)))
		if err := f.f.WaitRoundTrip(ctx); err != nil {
			t.Fatalf("WaitRoundTrip after write %d: %v", i, err)
		}
		if applied := f.db.Applied(); applied < lsn {
			t.Fatalf("WaitRoundTrip returned with lsn %d applied; the write at lsn %d was acknowledged before the read began", applied, lsn)
		}
		if v, _ := get(t, f.db, "k"); v != fmt.Sprint("v", i+2) {
			t.Fatalf("after WaitRoundTrip k = %q, want v%d", v, i+2)
		}
	}
}

// TestRoundTripReadBelowStart: a promoted follower whose commit is below
// the start of its leadership answers no waiting read (writes its old
// leader acknowledged may be past its commit), as it proves no freshness
// (TestNewLeaderProvesNoFreshnessBelowItsStart); once the commit passes
// the start it does. plantAnswerBelowStart answers at once and fails.
func TestRoundTripReadBelowStart(t *testing.T) {
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
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	err := f.f.WaitRoundTrip(short)
	cancelShort()
	if !errors.Is(err, ErrReadElsewhere) {
		v, _ := get(t, f.db, "k")
		t.Fatalf("WaitRoundTrip while the leader's commit (%d) is below its start (3) = %v (k = %q), want ErrReadElsewhere", l.Status().Commit, err, v)
	}
	l.SetSyncSet([]string{"f"})
	if err := f.f.WaitRoundTrip(ctx); err != nil {
		t.Fatalf("WaitRoundTrip once the commit passed the start: %v", err)
	}
	if v, ok := get(t, f.db, "k"); !ok || v != "v3" {
		t.Fatalf("after WaitRoundTrip k = %q, %v; want v3", v, ok)
	}
}

// TestRoundTripReadIsPrompt: on an idle stream whose heartbeats come a
// second apart, a waiting read's report is answered at once, not with
// the next heartbeat.
func TestRoundTripReadIsPrompt(t *testing.T) {
	l := newLeader(t, 3, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.Heartbeat, c.IdleHeartbeat = time.Second, time.Second
	})
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	lsn := propose(t, l, putExec("k", "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.f.WaitApplied(ctx, logrec.Position{Epoch: 3, LSN: lsn}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		start := time.Now()
		short, cancelShort := context.WithTimeout(ctx, 500*time.Millisecond)
		err := f.f.WaitRoundTrip(short)
		cancelShort()
		if err != nil {
			t.Fatalf("read %d: WaitRoundTrip on an idle stream with 1 s heartbeats: %v after %v", i, err, time.Since(start))
		}
	}
}

// TestRoundTripReadCostsTwoMessages: a waiting read's round trip on an
// idle stream is one report (the asker's question) and one heartbeat (the
// leader's answer), not a third message: the answer carries no lease
// stamp while the lease wants no echoes, and a follower whose only
// waiting reads have their answer does not report after stepping it
// (followerReads.wantsReports), and the answers do not wake the
// follower's stepping goroutine. Under `tandem bench reads` every
// linearizable batch pays its round trip on each side.
func TestRoundTripReadCostsTwoMessages(t *testing.T) {
	l := newLeader(t, 3, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.Heartbeat, c.IdleHeartbeat = time.Second, time.Second
	})
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	lsn := propose(t, l, putExec("k", "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.f.WaitApplied(ctx, logrec.Position{Epoch: 3, LSN: lsn}); err != nil {
		t.Fatal(err)
	}
	if err := f.f.WaitRoundTrip(ctx); err != nil {
		t.Fatal(err)
	}
	const reads = 20
	c0, p0 := f.f.Counts(), l.Handoffs().Progress
	for i := range reads {
		if err := f.f.WaitRoundTrip(ctx); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
	}
	// The follower's stream has taken every answer (the last one's
	// report, if it sends one, may be a moment later: counted or not,
	// a third message per round trip is far past the bound).
	testutil.Eventually(t, "the follower to take the answers", waitTimeout, func() (bool, string) {
		got := f.f.Counts().Sub(c0).Messages
		return got >= reads, fmt.Sprintf("%d messages taken", got)
	})
	c := f.f.Counts().Sub(c0)
	progress := l.Handoffs().Progress - p0
	// Slack of 2 each way: an idle report (progressEvery) or heartbeat
	// (1 s) may fall inside the reads.
	if c.Reports > reads+2 || progress > reads+2 || c.Messages > reads+2 {
		t.Fatalf("%d round trips cost %d reports (leader took %d) and %d leader messages; want at most %d each", reads, c.Reports, progress, c.Messages, reads+2)
	}
	// The answers bring the stepping goroutine nothing (no entries, the
	// commit it has): the stream's reader takes them alone, no wake-up
	// each (plantStepEmptyHeartbeats hands every one on). Slack of 3:
	// a report window's first heartbeat goes on.
	if c.Steps > 3 || c.Wakes > 3 {
		t.Fatalf("%d round trips woke the stepping goroutine %d times (%d steps); want at most 3", reads, c.Wakes, c.Steps)
	}
	t.Logf("%d round trips: %d reports, %d leader messages, %d steps", reads, c.Reports, c.Messages, c.Steps)
}

// TestRoundTripReadAfterQuestionLeft: a read that begins while another
// read's question is in flight is not served by that question's answer,
// which the leader may have read before a write acknowledged just before
// the read began: it needs a question that left after it began (as etcd
// batches ReadIndex requests: one in flight serves only the reads that
// came before it). The leader's answer to the first question takes
// 200 ms to arrive and its Appends 500 ms (the link keeps their order): a
// write acknowledged after the answer left must be applied when the
// second read returns. plantJoinInFlight (the second read takes the
// answer to the question in flight) serves it with the write 300 ms
// away.
func TestRoundTripReadAfterQuestionLeft(t *testing.T) {
	l := newLeader(t, 3, commit.Mode{Kind: commit.Async}, nil)
	f := newFollowerNode(t, "f", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	first := propose(t, l, putExec("k", "v1"))
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := f.f.WaitApplied(ctx, logrec.Position{Epoch: 3, LSN: first}); err != nil {
		t.Fatal(err)
	}
	if err := f.f.WaitRoundTrip(ctx); err != nil {
		t.Fatalf("WaitRoundTrip on a caught-up follower: %v", err)
	}
	var echoed atomic.Int64 // the highest read stamp the leader sent
	l.dialer.SetHook(leaderName, "f", func(m inmem.Message, _ *rand.Rand) inmem.Action {
		lm, ok := m.Msg.(*peerpb.LeaderMessage)
		if !ok {
			return inmem.Action{}
		}
		a := lm.GetAppend()
		if a != nil && a.ReadStamp > echoed.Load() {
			echoed.Store(a.ReadStamp) // the hook runs on the sender alone
		}
		if a != nil && len(a.Entries) > 0 {
			return inmem.Action{Delay: 500 * time.Millisecond}
		}
		return inmem.Action{Delay: 200 * time.Millisecond}
	})
	asked := f.f.reads.asked.Load()
	first1 := make(chan error, 1)
	go func() { first1 <- f.f.WaitRoundTrip(ctx) }()
	var q int64
	testutil.Eventually(t, "the first read's question to go", waitTimeout, func() (bool, string) {
		q = f.f.reads.asked.Load()
		return q > asked, "none sent"
	})
	testutil.Eventually(t, "the leader to answer it", waitTimeout, func() (bool, string) {
		return echoed.Load() >= q, fmt.Sprintf("echoed %d, question %d", echoed.Load(), q)
	})
	lsn := propose(t, l, putExec("k", "v2")) // acknowledged after the answer left
	if err := f.f.WaitRoundTrip(ctx); err != nil {
		t.Fatalf("WaitRoundTrip begun while a question was in flight: %v", err)
	}
	if applied := f.db.Applied(); applied < lsn {
		t.Fatalf("WaitRoundTrip returned with lsn %d applied; the write at lsn %d was acknowledged before the read began (the question in flight was answered before it)", applied, lsn)
	}
	if err := <-first1; err != nil {
		t.Fatalf("the first read: %v", err)
	}
	if rt := f.f.RoundTripTimes(); rt.Asks < 2 {
		t.Fatalf("%d questions for two reads, the second begun after the first's question left", rt.Asks)
	}
}

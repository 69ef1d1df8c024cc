package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/logrec"
)

// followerReads is what a follower's reads wait on: a broadcast of every
// applied step, and the freshness the stream proves for bounded-staleness
// reads.
//
// Freshness is proved by a round trip, never by a message's arrival. Each
// progress report carries a read stamp, the follower's monotonic clock
// when it sent the report; each Append carries a stamp the leader had
// received before it read the Append's commit LSN (0: none). Once the
// follower has applied through that commit LSN, everything the leader had
// acknowledged before the stamp is applied: the follower is at most
// (now − stamp) behind, the round trip included. freshAt is the latest
// stamp for which that holds. The arrival proves nothing: a message's
// commit LSN is the leader's when it sent it, and a slow link or a
// follower whose stream reader was starved of CPU hands it over long
// after later writes were acknowledged (a bounded-50 read missed a write
// acknowledged 69 ms before it began that way;
// TestFreshnessSurvivesLateDelivery). An arrival is recorded as the
// stream's reader takes the message (arrived), not once the follower has
// stepped it: what it proves does not depend on when the follower reads
// it, only on the follower's applying its commit LSN, and a waiting
// read's answer then does not queue behind the fsyncs of the messages
// before it. The leader pairs a stamp with a
// commit LSN only while that is its commit, and only once its commit has
// reached the start of its leadership (until then a promoted follower's
// durable tail may hold writes an earlier leader acknowledged). Only
// messages the leader sent under its lease count: a deposed leader cut
// off with this follower goes on sending heartbeats, but no newer leader
// acknowledges a write before that lease has lapsed. Under load every
// message moves the follower's positions, so it reports after each and
// the stamps stay a round trip old; an idle stream reports every
// progressEvery, and every heartbeat while a read waits on it.
type followerReads struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced after every applied step
	freshAt int64         // mono ns; 0: nothing proven on this stream
	// waiting are arrivals whose commit LSN is not applied yet, oldest
	// first; commit LSNs do not decrease along it.
	waiting []arrival
	// readers counts the reads blocked in WaitApplied or WaitFresh, and
	// waiter (capacity 1) tells the stream that one began to wait: it
	// stops holding deferred entries (FollowerConfig.SyncHold), whose
	// apply the read may be waiting for.
	readers atomic.Int32
	waiter  chan struct{}
	// want is the latest start (mono ns) of a read that waits for a round
	// trip begun after it (WaitRoundTrip): the stream sends a report
	// marked read_waits once it has sent none stamped after want.
	// answers says the current stream's leader answers such reports at
	// once (Start.answers_reads); cleared with the stream.
	want    atomic.Int64
	answers atomic.Bool
	// ask (capacity 1) wakes the stream's asker for a want; asked is
	// the latest read stamp the stream sent; asks counts the questions
	// the asker sent (RoundTripTimes.Asks).
	ask   chan struct{}
	asked atomic.Int64
	asks  atomic.Uint64
	// gen counts the streams' ends (clearFresh): a stream's reader that
	// outlives its stream records nothing in the next one's.
	gen uint64
	// proof is how freshAt came about (RoundTripTimes).
	proof proof
	// times sums where round-trip reads waited (RoundTripTimes).
	times roundTripTimes
	// floorWaits, floorWaitNs and floorRefused count the reads that
	// WaitApplied made wait for a position not applied yet, how long,
	// and those it refused at the end of their wait (FloorWaits).
	floorWaits, floorRefused atomic.Uint64
	floorWaitNs              atomic.Int64
}

// proof is the freshness the stream proved last (freshAt) and how it
// came about, for RoundTripTimes: when the message that proved it
// arrived and when its commit LSN was applied, and what the follower was
// doing at its arrival.
type proof struct {
	at      int64 // freshAt
	arrived int64 // mono: the proving message's arrival
	proved  int64 // mono: its commit LSN applied
	// needLog: at arrival its commit LSN was past this follower's
	// durable log; inAppend: the stepping loop was in a log append;
	// queued: its commit LSN was past the end of that append too (it
	// named entries in no append yet, queued behind it).
	needLog, inAppend, queued bool
}

type roundTripTimes struct {
	reads, needLog, inAppend, queued atomic.Uint64
	askNs, answerNs, applyNs, wakeNs atomic.Int64
	applyNeedLogNs, applyQueuedNs    atomic.Int64
	appends                          atomic.Uint64
	appendNs                         atomic.Int64
}

// RoundTripTimes is where a follower's round-trip reads (WaitRoundTrip:
// linearizable, a bounded read the stream had not proven) spent their
// wait, summed over the reads served: Ask from the read's start to the
// question the leader answered (the stamp of the report it echoed: the
// asker's wake-up, or 0 when a report sent anyway took the question),
// Answer from that question to the arrival of the leader's answer (the
// round trip: the leader's handling and both hops), Apply from that arrival
// to the apply of its commit LSN, Wake from that apply to the read's
// return. NeedLog counts the reads whose answer named a commit LSN past
// this follower's durable log when it arrived (the apply waited for this
// follower's own log append), InAppend those whose answer arrived while
// the stepping loop was in a log append (an fsync), and Queued those
// whose answer named entries past the end of that append (or past the
// durable log, between appends): entries that had arrived, or were yet
// to, but were in no log append (ApplyQueued: their part of Apply).
// Appends and
// AppendTime are the follower's log appends and their time, reads or not.
// Asks counts the questions the asker sent (round trips begun for these
// reads: one covers every read that began before it left).
type RoundTripTimes struct {
	Reads, NeedLog, InAppend, Queued, Asks uint64
	Ask, Answer, Apply, Wake               time.Duration
	// ApplyNeedLog is the part of Apply spent by the NeedLog reads,
	// ApplyQueued by the Queued ones.
	ApplyNeedLog, ApplyQueued time.Duration
	Appends                   uint64
	AppendTime                time.Duration
}

// Sub is t minus an earlier t.
func (t RoundTripTimes) Sub(o RoundTripTimes) RoundTripTimes {
	return RoundTripTimes{
		Reads: t.Reads - o.Reads, NeedLog: t.NeedLog - o.NeedLog, InAppend: t.InAppend - o.InAppend, Queued: t.Queued - o.Queued, Asks: t.Asks - o.Asks,
		Ask: t.Ask - o.Ask, Answer: t.Answer - o.Answer, Apply: t.Apply - o.Apply, ApplyNeedLog: t.ApplyNeedLog - o.ApplyNeedLog, ApplyQueued: t.ApplyQueued - o.ApplyQueued, Wake: t.Wake - o.Wake,
		Appends: t.Appends - o.Appends, AppendTime: t.AppendTime - o.AppendTime,
	}
}

// RoundTripTimes returns where the follower's round-trip reads waited so
// far.
func (f *Follower) RoundTripTimes() RoundTripTimes {
	t := &f.reads.times
	return RoundTripTimes{
		Reads: t.reads.Load(), NeedLog: t.needLog.Load(), InAppend: t.inAppend.Load(), Queued: t.queued.Load(), Asks: f.reads.asks.Load(),
		Ask: time.Duration(t.askNs.Load()), Answer: time.Duration(t.answerNs.Load()), Apply: time.Duration(t.applyNs.Load()),
		ApplyNeedLog: time.Duration(t.applyNeedLogNs.Load()), ApplyQueued: time.Duration(t.applyQueuedNs.Load()), Wake: time.Duration(t.wakeNs.Load()),
		Appends: t.appends.Load(), AppendTime: time.Duration(t.appendNs.Load()),
	}
}

// served records a round-trip read that began at since (mono) and was
// served by p.
func (r *followerReads) served(since int64, p proof) {
	now := mono(time.Now())
	t := &r.times
	t.reads.Add(1)
	t.askNs.Add(max(p.at-since, 0))
	t.answerNs.Add(max(p.arrived-max(p.at, since), 0))
	t.applyNs.Add(max(p.proved-p.arrived, 0))
	t.wakeNs.Add(max(now-p.proved, 0))
	if p.needLog {
		t.needLog.Add(1)
		t.applyNeedLogNs.Add(max(p.proved-p.arrived, 0))
	}
	if p.inAppend {
		t.inAppend.Add(1)
	}
	if p.queued {
		t.queued.Add(1)
		t.applyQueuedNs.Add(max(p.proved-p.arrived, 0))
	}
}

// generation returns the current stream's generation, for arrived.
func (r *followerReads) generation() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gen
}

// arrived records a message of stream gen as it arrives: commit was its
// commit LSN, stamp its read stamp, sent under the leader's lease. The
// applied LSN is read under mu, after any advanced before it (the storage
// applies before the stream reports it), so an arrival already applied
// proves its freshness at once. durable is the follower's durable log end
// now, appendEnd the last LSN of the log append in progress (0: none)
// and inAppend whether its loop is in a log append (RoundTripTimes).
func (r *followerReads) arrived(gen, commit uint64, stamp int64, applied func() uint64, durable, appendEnd uint64, inAppend bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if gen != r.gen {
		return
	}
	if stamp <= r.freshAt || (len(r.waiting) > 0 && r.waiting[len(r.waiting)-1].at >= stamp) {
		// Proven already, or by an arrival before it (its commit LSN
		// no higher) as soon as this one could be: most Appends of a
		// busy stream carry the stamp the one before carried.
		return
	}
	if len(r.waiting) == maxArrivals {
		r.waiting = r.waiting[1:]
	}
	r.waiting = append(r.waiting, arrival{commit: commit, at: stamp, arrived: mono(time.Now()), needLog: commit > durable, inAppend: inAppend, queued: commit > max(durable, appendEnd)})
	r.advancedLocked(applied())
}

// blocked marks a read as waiting until the returned func is called.
func (r *followerReads) blocked() (done func()) {
	r.readers.Add(1)
	select {
	case r.waiter <- struct{}{}:
	default:
	}
	return func() { r.readers.Add(-1) }
}

// readWaits reports whether a read waits on the follower's progress.
func (r *followerReads) readWaits() bool { return r.readers.Load() > 0 }

// wantsReports reports whether a waiting read needs the stream's next
// progress report, beyond the reports positions and the lease call for:
// a round trip wanted that no report sent so far answers (want past
// asked: WaitRoundTrip, whose asker sends one at once too), or, while
// the leader does not answer such reports (answers), any waiting read,
// since a bounded read (WaitFresh) is then proved only by the echo of
// the stamps the follower sends. Other waits need none: a read waiting
// for an applied position (WaitApplied) waits for this follower's own
// progress, and a round trip once answered is proved by the answer's
// apply, not by the reports after it. (Every step's report while any
// read waited sent a third message per round trip, the report after
// stepping the leader's answer: BenchmarkLinearizableUnderWrites.)
func (r *followerReads) wantsReports() bool {
	if want := r.want.Load(); want != 0 && want >= r.asked.Load() {
		return true
	}
	return !r.answers.Load() && r.readWaits()
}

type arrival struct {
	commit                    uint64
	at                        int64
	arrived                   int64 // mono, and the rest as proof's
	needLog, inAppend, queued bool
}

// maxArrivals bounds followerReads.waiting. Dropping the oldest loses
// nothing: a later arrival's commit LSN is at least theirs, so it proves
// a later freshness once applied.
const maxArrivals = 1024

// advanced wakes the reads waiting for the applied LSN after an apply
// (a step, or an early apply within one: Follower.applyEarly), and proves
// the freshness of the arrivals it covers.
func (r *followerReads) advanced(applied uint64) {
	r.mu.Lock()
	r.advancedLocked(applied)
	r.mu.Unlock()
}

func (r *followerReads) advancedLocked(applied uint64) {
	i := 0
	for ; i < len(r.waiting) && r.waiting[i].commit <= applied; i++ {
		if a := r.waiting[i]; a.at > r.freshAt {
			r.freshAt = a.at
			r.proof = proof{at: a.at, arrived: a.arrived, needLog: a.needLog, inAppend: a.inAppend, queued: a.queued}
		}
	}
	if i > 0 && r.proof.proved == 0 {
		r.proof.proved = mono(time.Now())
	}
	r.waiting = r.waiting[i:]
	close(r.changed)
	r.changed = make(chan struct{})
}

// clearFresh forgets the freshness when a stream ends: a follower cut off
// from its leader proves nothing new, and the next stream may be another
// leader's.
func (r *followerReads) clearFresh() {
	r.answers.Store(false)
	r.mu.Lock()
	r.gen++
	r.freshAt, r.waiting, r.proof = 0, nil, proof{}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
}

func (r *followerReads) state() (freshAt int64, changed <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.freshAt, r.changed
}

// proven is state with the proof of freshAt.
func (r *followerReads) proven() (proof, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.proof
	p.at = r.freshAt
	return p, r.changed
}

// AppliedPosition returns the position of the follower's last applied
// entry.
func (f *Follower) AppliedPosition() logrec.Position {
	applied := f.cfg.DB.Applied()
	return logrec.Position{Epoch: EpochAt(f.cfg.DB.EpochHistory(), applied), LSN: applied}
}

// WaitApplied returns nil once the follower has applied the entry want
// names, in the same history (Lineage). It returns an ErrReadElsewhere
// error when its history differs from want's, or when ctx's deadline
// passes first (the caller's read wait), and ctx.Err() when ctx is
// canceled. A follower never decides that want is lost (ErrPositionLost):
// its own history may be the one a failover replaces; the leader decides.
func (f *Follower) WaitApplied(ctx context.Context, want logrec.Position) error {
	var began time.Time // the first wait's start; zero: none
	waited := func() {
		if !began.IsZero() {
			f.reads.floorWaits.Add(1)
			f.reads.floorWaitNs.Add(int64(time.Since(began)))
		}
	}
	for {
		_, changed := f.reads.state()
		applied := f.AppliedPosition()
		v := Lineage(f.cfg.DB.EpochHistory(), applied, want)
		if v == Reached {
			waited()
			return nil
		}
		if v != Behind {
			waited()
			return verdictErr(v, false, want, applied)
		}
		if began.IsZero() {
			began = time.Now()
		}
		done := f.reads.blocked()
		select {
		case <-changed:
			done()
		case <-ctx.Done():
			done()
			waited()
			f.reads.floorRefused.Add(1)
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return verdictErr(Behind, false, want, f.AppliedPosition())
			}
			return ctx.Err()
		}
	}
}

// FloorWaits counts the reads WaitApplied made wait for a position this
// follower had not applied yet (a ryw or monotonic floor behind its lag,
// a linearizable read's commit position): Waits of them, Time waited in
// all, Refused at the end of their wait (the read went elsewhere).
type FloorWaits struct {
	Waits, Refused uint64
	Time           time.Duration
}

// FloorWaits returns the follower's floor waits so far.
func (f *Follower) FloorWaits() FloorWaits {
	return FloorWaits{Waits: f.reads.floorWaits.Load(), Refused: f.reads.floorRefused.Load(), Time: time.Duration(f.reads.floorWaitNs.Load())}
}

// Awaiting marks a read as about to wait for this follower's progress
// until done is called: a read that first asks the leader for the
// position to wait for (ReadIndex) calls it before it asks, so that the
// stream stops holding deferred entries (FollowerConfig.SyncHold) and
// applies committed ones ahead of the next fsync (applyEarly) while the
// question is out, not only once the answer is in.
func (f *Follower) Awaiting() (done func()) { return f.reads.blocked() }

// Staleness returns how far behind the leader the follower's applied data
// is at most, on the leader's clock (see followerReads; the stream's
// one-way transit excluded), and false if the current stream has proven
// nothing yet.
func (f *Follower) Staleness() (time.Duration, bool) {
	at, _ := f.reads.state()
	if at == 0 {
		return 0, false
	}
	return time.Duration(mono(time.Now()) - at), true
}

// Fresh reports whether the follower's staleness is within bound now.
func (f *Follower) Fresh(bound time.Duration) bool {
	st, ok := f.Staleness()
	return ok && st <= bound
}

// WaitFresh returns nil once the follower's staleness is within bound: it
// has applied everything the leader committed more than bound ago. An idle
// stream proves it anew with each heartbeat, so a read may wait up to a
// heartbeat interval. It returns an ErrReadElsewhere error when ctx's
// deadline passes first, ctx.Err() when ctx is canceled.
func (f *Follower) WaitFresh(ctx context.Context, bound time.Duration) error {
	_, err := f.reads.waitFor(ctx, func(at int64) bool {
		return at != 0 && time.Duration(mono(time.Now())-at) <= bound
	}, func() error {
		st, ok := f.Staleness()
		if !ok {
			return fmt.Errorf("%w: this node has not heard its leader on the current stream; staleness unknown, bound %v", ErrReadElsewhere, bound)
		}
		return fmt.Errorf("%w: this node is %v behind its leader, above the bound %v", ErrReadElsewhere, st.Round(time.Millisecond), bound)
	})
	return err
}

// waitFor returns nil once ok holds for the freshness the stream proved
// (freshAt), checked again at each change; at ctx's deadline it returns
// late(), when ctx is canceled ctx.Err(). The call counts as a blocked
// read (blocked) while it waits.
func (r *followerReads) waitFor(ctx context.Context, ok func(freshAt int64) bool, late func() error) (proof, error) {
	for {
		p, changed := r.proven()
		if ok(p.at) {
			return p, nil
		}
		done := r.blocked()
		select {
		case <-changed:
			done()
		case <-ctx.Done():
			done()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return proof{}, late()
			}
			return proof{}, ctx.Err()
		}
	}
}

// AnswersReads reports whether the current stream's leader answers a
// waiting read's report at once (Start.answers_reads), so that
// WaitRoundTrip costs about a round trip; false with no stream.
func (f *Follower) AnswersReads() bool { return f.reads.answers.Load() }

// plantFreshFromBefore is a planted bug for tests: WaitRoundTrip takes a
// freshness proved by a report sent before the read began
// (TestRoundTripRead must catch it).
var plantFreshFromBefore = false

// plantStepEmptyHeartbeats is a planted inefficiency for tests: the
// stream's reader hands the stepping goroutine every heartbeat, also
// those with nothing for it (TestRoundTripReadCostsTwoMessages counts its
// wake-ups).
var plantStepEmptyHeartbeats = false

// plantJoinInFlight is a planted bug for tests: a read takes the answer
// to the last question sent, even one that left before the read began
// (TestRoundTripReadAfterQuestionLeft must catch it).
var plantJoinInFlight = false

// WaitRoundTrip returns nil once the follower has applied everything the
// leader acknowledged before the call began: the ReadIndex of a
// linearizable read, proved on the stream instead of by an RPC. The call
// marks a round trip wanted; the stream sends a report stamped after the
// call began, marked read_waits, at once, and the leader answers it with
// its commit LSN under its lease (leader.answerRead). Once that commit is
// applied, the freshness the stream proves (freshAt, the echoed stamp) is
// past the call's start, and every write acknowledged before the start
// was acknowledged before the leader received the stamp: at or before
// the commit. A freshness proved from a stamp sent before the call began
// never serves it (it may predate a write acknowledged just before the
// read). It returns an ErrReadElsewhere error when ctx's deadline passes
// first, ctx.Err() when ctx is canceled.
func (f *Follower) WaitRoundTrip(ctx context.Context) error {
	since := mono(time.Now())
	if asked := f.reads.asked.Load(); plantJoinInFlight && asked != 0 {
		since = min(since, asked-1)
	}
	for {
		cur := f.reads.want.Load()
		if since <= cur || f.reads.want.CompareAndSwap(cur, since) {
			break
		}
	}
	select { // the stream's asker sends the question at once
	case f.reads.ask <- struct{}{}:
	default:
	}
	p, err := f.reads.waitFor(ctx, func(at int64) bool {
		return at > since || (plantFreshFromBefore && at != 0)
	}, func() error {
		return fmt.Errorf("%w: this node has not applied what its leader committed when the read began", ErrReadElsewhere)
	})
	if err == nil {
		f.reads.served(since, p)
	}
	return err
}

// ReadIndex returns the leader's commit position, learned under its lease
// (ReadBarrier first): every write acknowledged before the call began is at
// or before it, so a follower that waits until it has applied it serves a
// linearizable read (etcd's ReadIndex, with the lease in place of a
// heartbeat round).
func (l *Leader) ReadIndex(ctx context.Context) (logrec.Position, error) {
	if err := l.ReadBarrier(ctx); err != nil {
		return logrec.Position{}, err
	}
	l.mu.Lock()
	commit := l.core.commit
	l.mu.Unlock()
	return logrec.Position{Epoch: EpochAt(l.cfg.DB.EpochHistory(), commit), LSN: commit}, nil
}

// StartPosition returns the position of the last entry that was durable
// when this leadership began: every write acknowledged under an earlier
// leadership, and kept, is at or before it.
func (l *Leader) StartPosition() logrec.Position {
	return l.start
}

// AppliedPosition returns the position of the leader's last applied entry
// as its data shows it (the storage's applied LSN, which the core's
// follows): not the leader's hot lock, which every write takes.
func (l *Leader) AppliedPosition() logrec.Position {
	return l.cfg.DB.AppliedPosition()
}

// HoldsApplied reports whether want is an entry of this leadership that
// the leader has applied, which WaitApplied then answers at once: every
// entry of the log past the leadership's start is of its epoch, so no
// history is consulted. The common floor of a read on the leader (the
// session's last write or read there), checked without a context, a
// timer or a copy of the history; false says nothing (ask WaitApplied).
func (l *Leader) HoldsApplied(want logrec.Position) bool {
	// startLSN never changes after NewLeader: no lock needed.
	return want.Epoch == l.epoch && want.LSN > l.core.startLSN && want.LSN <= l.cfg.DB.Applied()
}

// WaitApplied returns nil once the leader has applied the entry want names
// in its history. The leader's verdict is final: a want its history
// replaced, an older epoch's entry past this leadership's start, or an
// entry of its own epoch it has not written, is ErrPositionLost. A want from a later epoch than the
// leader's, or one its history holds an older epoch for, means a newer
// leader exists: ErrReadElsewhere. Otherwise it waits until ctx's deadline
// (a legitimate position is applied at once: the leader acknowledges
// writes only once applied, and followers apply only what it committed)
// and then answers ErrReadElsewhere.
func (l *Leader) WaitApplied(ctx context.Context, want logrec.Position) error {
	if l.HoldsApplied(want) {
		return nil
	}
	applied := l.AppliedPosition()
	switch v := Lineage(l.cfg.DB.EpochHistory(), applied, want); {
	case v == Reached:
		return nil
	case v != Behind:
		return verdictErr(v, true, want, applied)
	case want.Epoch > l.epoch:
		return fmt.Errorf("%w: the position %d:%d is from a later epoch than this leader's %d", ErrReadElsewhere, want.Epoch, want.LSN, l.epoch)
	case want.Epoch < l.epoch && want.LSN > l.core.startLSN:
		// Every entry of this leadership's log after its start is of its
		// own epoch: an older epoch's entry there was lost (an async
		// leader's write its successor never had), now, before this
		// leader has written that far.
		return verdictErr(Replaced, true, want, applied)
	case want.Epoch == l.epoch:
		l.mu.Lock()
		last := l.core.last
		l.mu.Unlock()
		if want.LSN > last {
			// Positions are handed out only for applied entries: this
			// one was never written (a forged or corrupted token).
			return fmt.Errorf("%w: position %d:%d was never written: this leadership has written up to lsn %d", ErrPositionLost, want.Epoch, want.LSN, last)
		}
	}
	if err := l.waitApplied(ctx, want.LSN); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return verdictErr(Behind, true, want, l.AppliedPosition())
		}
		return err
	}
	// Applied through want.LSN now: check the entry's epoch too.
	applied = l.AppliedPosition()
	if v := Lineage(l.cfg.DB.EpochHistory(), applied, want); v != Reached {
		return verdictErr(v, true, want, applied)
	}
	return nil
}

package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/snapshot"
	"github.com/tandemdb/tandem/internal/storage"
)

// DefaultSyncHold is FollowerConfig.SyncHold's default.
const DefaultSyncHold = 2 * time.Millisecond

// DefaultLeaderTimeout is FollowerConfig.LeaderTimeout's default: 20 of
// the leader's default heartbeat interval (LeaderConfig.Heartbeat, 100
// ms). An idle stream carries a heartbeat at least every 1.25 intervals
// (leaderCore.Beat), so it takes some 16 missed heartbeats in a row: a
// leader starved of CPU or in a long GC pause for a second does not trip
// it, and a dead stream is still left within 2 s, far sooner than TCP
// gives up on a connection (minutes).
const DefaultLeaderTimeout = 2 * time.Second

// Follower states, as status reports them.
const (
	StateSeeding    = "seeding"
	StateCatchingUp = "catching-up"
	StateStreaming  = "streaming"
)

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	DB       *storage.DB
	NodeID   string
	RESPAddr string
	HTTPAddr string
	// DataDir receives rollback files: applied writes the new leader never
	// had, written out before the node is re-seeded.
	DataDir string
	Dial    Dialer
	Logger  *slog.Logger
	// Retry is the pause before reconnecting after a broken stream.
	Retry time.Duration
	// LeaderTimeout is how long the follower waits on its stream (the
	// handshake, the stream, a seed's chunks) hearing nothing from the
	// leader, neither entries nor a heartbeat, before it takes the
	// stream for dead: it closes it (ErrLeaderSilent), asks a Redialer
	// dialer for a new connection, and connects again, to whoever leads
	// then. It is the mirror of the leader's LeaderConfig.FollowerTimeout
	// (a follower unheard of that long has its stream closed even if the
	// connection is open): without it a stream that went silent with its
	// connection open (a FIN lost in a one-way partition, a middlebox
	// that dropped the flow) left the follower behind for good, serving
	// ever staler reads and missing from the commits it is part of. It
	// must be well above the leader's longest silence on an idle stream,
	// 1.25 of its heartbeat interval (LeaderConfig.IdleHeartbeat). Time
	// the follower spends not waiting on the stream (persisting what
	// came) does not count. 0: DefaultLeaderTimeout; negative: never.
	LeaderTimeout time.Duration
	Buggify       Buggify
	// Now is the follower's clock (only for status).
	Now func() time.Time
	// SyncHold is how long the follower may hold entries the leader sent
	// with defer_sync (no one waits for their durable report: async mode,
	// no WAIT) before it persists them, so that one fsync, one apply and
	// one report take several of the leader's messages: a follower's
	// fsync is most of its CPU per write. Their apply, and with it a read
	// on this follower, may be that much later; a read that waits on this
	// follower ends the hold at once. 0: DefaultSyncHold; negative: never
	// hold.
	SyncHold time.Duration
	// Deliver hands a pub/sub message from the leader to this node's
	// subscribers (pubsub.go); nil: the follower takes none.
	Deliver func(channel, message []byte)
	// DeliverShard is Deliver for a sharded message (SPUBLISH); nil: the
	// follower takes none.
	DeliverShard func(channel, message []byte)
	// Delivered, if set, is called after a run of Deliver and
	// DeliverShard calls (the messages of one Publish from the leader,
	// or those an apply released), before the follower waits for
	// anything: the node may hold its subscribers' wake-ups until then,
	// so that each sends the run in one write (pubsub.PublishHeld).
	Delivered func()
	// SetSettings takes the leader's settings as this node's (sent first
	// on each stream and on every change, settings.go), from the stream's
	// goroutine; nil: the follower takes none.
	SetSettings func(Settings)
}

// FollowerStatus is what status and INFO show about a follower.
type FollowerStatus struct {
	State      string
	Connected  bool
	Epoch      uint64
	Durable    uint64
	Applied    uint64
	Commit     uint64
	LeaderLast uint64
	LagLSN     uint64
	LagSeconds float64
	// LastContact is when the leader was last heard from.
	LastContact time.Time
	SeedBytes   uint64
	SeedTotal   uint64
	// Seeds counts the snapshot seeds begun since the follower started.
	Seeds uint64
}

// Follower keeps a node's log and data following a leader.
type Follower struct {
	cfg FollowerConfig
	log *slog.Logger

	mu     sync.Mutex
	status FollowerStatus
	// lastRecv is when the stream last delivered a message (Unix ns), set
	// by the receiving goroutine.
	lastRecv atomic.Int64
	// caughtUp: see CaughtUp.
	caughtUp atomic.Bool
	// applyCount counts applied entries and skipped holds the keys dropped
	// so far, for the FollowerSkipEntry fault.
	applyCount uint64
	skipped    map[string]bool
	// arrivals are when the entries through each LSN arrived, oldest
	// first, for the FollowerApplyDelay fault (stepping goroutine only).
	arrivals []entryArrival
	// reads is what the read policies wait on (reads.go).
	reads followerReads
	// pub is pub/sub's part (pubsub.go).
	pub followerPub
	// counts is what FollowerCounts reports.
	counts followerCounts
	// appending: the stepping loop is in a log append (RoundTripTimes);
	// appendEnd: the last LSN of that append (0: none).
	appending atomic.Bool
	appendEnd atomic.Uint64
	// commits are the current stream's commit LSNs as they arrive
	// (applyAsCommitted); a new stream gets new ones.
	commits atomic.Pointer[arrivedCommits]
}

// arrivedCommits is the highest commit LSN one stream's reader has taken
// from its leader's Appends (of the stream's epoch) and a note (capacity
// 1) after each raise.
type arrivedCommits struct {
	lsn  atomic.Uint64
	note chan struct{}
}

// FollowerCounts counts a follower's work per replicated write: the
// stream messages it took (an entry sent in parts counts once), the steps
// it ran (a step takes a message and those gathered with it), its log
// appends (one fdatasync each), its applies (one Pebble batch each) and
// its progress reports. Each step, append, apply and report is a fixed
// cost shared by the entries it carries, so these divided by the writes
// say how well the follower batches (BenchmarkFollowerWrite, package
// node, prints them per write). Wakes counts the times the stepping
// goroutine woke to take a message from the receiver: each is a
// goroutine hand-off, and during a sync hold the messages it may merge
// wait for the hold's end without one (see receive).
type FollowerCounts struct {
	Messages, Steps, Appends, Applies, Reports, Wakes uint64
}

// Sub is c minus an earlier count.
func (c FollowerCounts) Sub(o FollowerCounts) FollowerCounts {
	return FollowerCounts{
		Messages: c.Messages - o.Messages, Steps: c.Steps - o.Steps, Appends: c.Appends - o.Appends,
		Applies: c.Applies - o.Applies, Reports: c.Reports - o.Reports, Wakes: c.Wakes - o.Wakes,
	}
}

type followerCounts struct {
	messages, steps, appends, applies, reports, wakes atomic.Uint64
}

// Counts returns the work this follower has done so far.
func (f *Follower) Counts() FollowerCounts {
	c := &f.counts
	return FollowerCounts{
		Messages: c.messages.Load(), Steps: c.steps.Load(), Appends: c.appends.Load(),
		Applies: c.applies.Load(), Reports: c.reports.Load(), Wakes: c.wakes.Load(),
	}
}

// NewFollower returns a follower of the leader that cfg.Dial reaches.
func NewFollower(cfg FollowerConfig) *Follower {
	if cfg.Retry == 0 {
		cfg.Retry = 100 * time.Millisecond
	}
	if cfg.SyncHold == 0 {
		cfg.SyncHold = DefaultSyncHold
	}
	if cfg.LeaderTimeout == 0 {
		cfg.LeaderTimeout = DefaultLeaderTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	f := &Follower{cfg: cfg, log: log.With("role", "follower")}
	// A follower's writes are seldom read back soon: its applies update
	// the rows its readers cached and cache no others (an empty cache on
	// a follower that serves no reads; storage.DB.SetWritesFill). A
	// leader on this data turns filling back on (NewLeader).
	cfg.DB.SetWritesFill(false)
	f.reads.changed = make(chan struct{})
	f.reads.waiter = make(chan struct{}, 1)
	f.reads.ask = make(chan struct{}, 1)
	f.pub.fwd = make(chan *peerpb.PubMessage, 1024)
	f.status.State = StateCatchingUp
	if cfg.DB.Seeding() {
		f.status.State = StateSeeding
	}
	f.status.Durable = cfg.DB.Durable().LSN
	f.status.Applied = cfg.DB.Applied()
	f.status.Epoch = cfg.DB.Epoch()
	return f
}

// Status returns the follower's current status.
func (f *Follower) Status() FollowerStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.status
	if r := time.Unix(0, f.lastRecv.Load()); r.After(st.LastContact) {
		st.LastContact = r
	}
	return st
}

// Loading reports whether the data is partial (a seed is under way) and
// must not be served.
func (f *Follower) Loading() bool { return f.cfg.DB.Seeding() }

// CaughtUp reports whether this follower has, at least once, applied
// everything its leader had committed when it last heard from it. Until
// then what it has applied may be older than what this node served before
// a crash (Pebble's apply is not synced: a restart can come back below the
// applied LSN it had, and replays from there), so a node that just started
// must not serve reads from it.
func (f *Follower) CaughtUp() bool {
	if f.caughtUp.Load() {
		return true
	}
	f.mu.Lock()
	streaming := f.status.State == StateStreaming
	f.mu.Unlock()
	if streaming {
		f.caughtUp.Store(true) // and stays, whatever the state does later
	}
	return streaming
}

func (f *Follower) setState(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status.State != s {
		f.log.Info("follower state", "state", s)
	}
	f.status.State = s
}

// Run follows the leader until ctx ends, reconnecting after failures.
func (f *Follower) Run(ctx context.Context) error {
	var lastErr string
	for {
		err := f.session(ctx)
		f.mu.Lock()
		f.status.Connected = false
		f.mu.Unlock()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err == nil:
			lastErr = ""
		case errors.Is(err, logrec.ErrUnsupported):
			// An intact entry this build cannot read (a newer leader's
			// format): applying a prefix or skipping it would diverge.
			// Stop following; the node reports why (fenced, with this
			// error as the reason) until it is upgraded.
			f.log.Error("the leader sent a log entry this build cannot read; stopping: upgrade this node", "err", err, "reads_formats_up_to", logrec.MaxFormat)
			return fmt.Errorf("replication: stopped following: %w", err)
		case frame.IsCorruption(err) || errors.Is(err, ErrOutOfOrder):
			// A damaged entry or snapshot chunk (or damaged local data) is
			// refused, never applied or skipped: say so loudly, every time.
			f.log.Error("leader sent data that does not verify; refusing it", "err", err)
		case errors.Is(err, ErrLeaderSilent):
			// session logged it, once per silent stream. A new stream on
			// the same connection would be as dead as this one (gRPC
			// carries every stream to a peer on one TCP connection): a
			// dialer that can, starts a new one.
			lastErr = ""
			if r, ok := f.cfg.Dial.(Redialer); ok {
				if err := r.Redial(); err != nil {
					f.log.Warn("could not replace the connection to the leader", "err", err)
				}
			}
		case err.Error() != lastErr:
			// Retries every Retry interval: log each distinct failure once.
			f.log.Warn("replication stream ended; retrying", "err", err)
			lastErr = err.Error()
		}
		select {
		case <-time.After(f.cfg.Retry):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// session runs one stream: handshake, then appends until it breaks, or
// until the leader is silent for LeaderTimeout (ErrLeaderSilent).
func (f *Follower) session(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := &silenceWatch{}
	if t := f.cfg.LeaderTimeout; t > 0 && !plantNoLeaderTimeout && !f.cfg.Buggify.FollowerNoLeaderTimeout {
		go w.run(ctx, t, cancel)
	}
	defer func() {
		// The watch ended the stream: whatever error that made (a
		// cancelled receive, ctx's end) is ErrLeaderSilent.
		if err != nil && errors.Is(context.Cause(ctx), ErrLeaderSilent) {
			silent := time.Duration(w.silent.Load())
			leaderSilences.Add(1)
			f.log.Warn("heard nothing from the leader; closing the stream and reconnecting", "silent", silent, "leader_timeout", f.cfg.LeaderTimeout, "epoch", f.cfg.DB.Epoch())
			err = fmt.Errorf("%w: nothing received for %v", ErrLeaderSilent, silent)
		}
	}()
	db := f.cfg.DB
	if db.Seeding() {
		return f.seed(ctx, w)
	}
	stream, err := f.cfg.Dial.Replicate(ctx)
	if err != nil {
		return fmt.Errorf("replication: connect: %w", err)
	}
	defer stream.CloseSend()
	stream = watchedStream{stream, w}
	durable := db.Durable()
	err = stream.Send(&peerpb.FollowerMessage{Epoch: db.Epoch(), Body: &peerpb.FollowerMessage_Hello{Hello: &peerpb.Hello{
		NodeId:        f.cfg.NodeID,
		Durable:       &peerpb.Position{Epoch: durable.Epoch, Lsn: durable.LSN},
		RespAddr:      f.cfg.RESPAddr,
		HttpAddr:      f.cfg.HTTPAddr,
		LogFormat:     uint32(logrec.MaxFormat),
		TakesPublish:  f.cfg.Deliver != nil,
		TakesSpublish: f.cfg.Deliver != nil && f.cfg.DeliverShard != nil,
		TakesParts:    true, // receive puts them together (parts.go)
		TakesSettings: f.cfg.SetSettings != nil,
	}}})
	if err != nil {
		return fmt.Errorf("replication: send hello: %w", err)
	}
	m, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("replication: handshake: %w", err)
	}
	if m.Epoch < db.Epoch() {
		return fmt.Errorf("%w: leader at epoch %d, seen %d", ErrStaleEpoch, m.Epoch, db.Epoch())
	}
	if err := db.ObserveEpoch(m.Epoch); err != nil {
		return err
	}
	switch b := m.Body.(type) {
	case *peerpb.LeaderMessage_Truncate:
		return f.truncate(ctx, w, b.Truncate)
	case *peerpb.LeaderMessage_NeedSnapshot:
		return f.seed(ctx, w)
	case *peerpb.LeaderMessage_Start:
		if b.Start.FromLsn != durable.LSN+1 {
			return fmt.Errorf("%w: leader starts at %d, durable %d", ErrOutOfOrder, b.Start.FromLsn, durable.LSN)
		}
	default:
		return fmt.Errorf("replication: unexpected handshake message %T", m.Body)
	}
	f.reads.answers.Store(m.GetStart().GetAnswersReads())
	return f.stream(ctx, w, stream, m.Epoch, m.GetStart().GetTakesPublish(), m.GetStart().GetTakesSpublish())
}

func (f *Follower) stream(ctx context.Context, w *silenceWatch, stream FollowerStream, epoch uint64, takesPub, takesShard bool) error {
	db := f.cfg.DB
	core := &followerCore{epoch: epoch, durable: db.Durable(), applied: db.Applied()}
	if core.applied < core.durable.LSN {
		raws, err := db.ReadLog(core.applied+1, core.durable.LSN, 1<<62)
		if err != nil {
			return fmt.Errorf("replication: load unapplied tail: %w", err)
		}
		for _, raw := range raws {
			e, err := logrec.DecodeVerified(raw) // ReadLog verified it
			if err != nil {
				return fmt.Errorf("replication: load unapplied tail: %w", err)
			}
			core.pending = append(core.pending, e)
		}
	}
	f.mu.Lock()
	f.status.Connected = true
	f.mu.Unlock()
	f.log.Info("streaming from leader", "epoch", epoch, "durable_lsn", core.durable.LSN, "applied_lsn", core.applied)
	readAhead := 16
	if f.cfg.Buggify.FollowerApplyDelay > 0 {
		readAhead = 4096
	}
	// Freshness is recorded as each message arrives (reads.go, arrived),
	// not once the loop below has stepped it: a waiting read's answer
	// does not queue behind the fsyncs of the messages before it, and
	// counts once the loop has applied its commit LSN.
	gen := f.reads.generation()
	commits := &arrivedCommits{note: make(chan struct{}, 1)}
	f.commits.Store(commits)
	// window is the report window (reportWindow) of the last Append the
	// reader handed to the loop; the reader's alone.
	window := int64(-1)
	in, urgent := receive(ctx, stream, func() { f.lastRecv.Store(f.cfg.Now().UnixNano()) }, readAhead, func(m *peerpb.LeaderMessage) (readWaits, drop bool) {
		a := m.GetAppend()
		if a == nil || m.Epoch != epoch {
			return false, false
		}
		news := a.CommitLsn > commits.lsn.Load()
		if news {
			commits.lsn.Store(a.CommitLsn) // this goroutine's alone
			select {
			case commits.note <- struct{}{}:
			default:
			}
		}
		if a.ReadStamp != 0 && !a.LeaseLapsed {
			f.reads.arrived(gen, a.CommitLsn, a.ReadStamp, f.cfg.DB.Applied, f.cfg.DB.Durable().LSN, f.appendEnd.Load(), f.appending.Load())
			readWaits = f.reads.readWaits()
		}
		w := reportWindow(a.LeaderTimeUnixNano)
		if !news && len(a.Entries) == 0 && a.LeaseStamp == 0 && !a.LeaseLapsed && w == window &&
			(a.DeferSync || (a.ReadStamp >= f.reads.asked.Load() && a.CommitLsn <= f.cfg.DB.Applied())) &&
			f.cfg.Buggify.FollowerApplyDelay == 0 && !plantStepEmptyHeartbeats {
			// A heartbeat with nothing for the loop: no entries, a
			// commit LSN an Append handed on already carried, no
			// lease stamp to echo, in a report window the loop has
			// seen, and no sync hold to end (it defers; or it answers
			// the latest question and its commit LSN is applied: the
			// leader's answer to a waiting read does not defer, so
			// that it ends a hold holding what the read needs, and a
			// WAIT's does not either). Most are those answers, whose
			// proof arrived took above; stepping one cost the loop a
			// wake-up per round trip.
			f.counts.messages.Add(1)
			return readWaits, true
		}
		window = w
		return readWaits, false
	})
	defer f.reads.clearFresh()
	// sendMu orders this stream's sends: the loop's and the asker's.
	var sendMu sync.Mutex
	send := func(m *peerpb.FollowerMessage) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(m)
	}
	// The asker sends a waiting read's question (WaitRoundTrip) at once,
	// not when the loop is done with the message it steps (an fsync
	// under load): a report with the read stamp alone (no positions,
	// which the leader takes as the highest it has seen).
	askDone := make(chan struct{})
	defer close(askDone)
	go func() {
		for {
			select {
			case <-f.reads.ask:
			case <-askDone:
				return
			case <-ctx.Done():
				return
			}
			if want := f.reads.want.Load(); want == 0 || want < f.reads.asked.Load() {
				continue // a report stamped after it is out
			}
			stamp := mono(time.Now())
			f.reads.asked.Store(stamp)
			if send(&peerpb.FollowerMessage{Epoch: epoch, Body: &peerpb.FollowerMessage_Progress{Progress: &peerpb.Progress{ReadStamp: stamp, ReadWaits: true}}}) != nil {
				return // the loop sees the stream fail
			}
			f.counts.reports.Add(1)
			f.reads.asks.Add(1)
		}
	}()
	// Messages published while no stream runs are lost (pubsub.go).
	f.pub.fwdOK.Store(takesPub)
	f.pub.fwdShardOK.Store(takesPub && takesShard)
	defer func() {
		f.pub.fwdOK.Store(false)
		f.pub.fwdShardOK.Store(false)
		f.pub.held, f.pub.heldBytes = nil, 0
		for len(f.pub.fwd) > 0 { // not sent: lost with the stream
			<-f.pub.fwd
			f.pub.dropped.Add(1)
		}
	}()
	var held *received
	// merged sees each message gather merges into the one it began with.
	merged := func(r *received) {
		f.counts.messages.Add(1)
		if f.cfg.Buggify.FollowerApplyDelay > 0 {
			f.noteArrival(r)
		}
	}
	// reported is the last progress report sent: a heartbeat that moved
	// nothing and asked for no echo (no lease stamp) is answered only
	// once progressEvery has passed since it, or while a waiting read
	// wants reports (followerReads.wantsReports): each report's read
	// stamp comes back with the next Append, which proves the follower's
	// freshness as of the stamp (reads.go), so an idle stream of a
	// leader that does not answer round trips proves it anew every
	// heartbeat for as long as reads want it.
	var reported struct {
		durable, applied uint64
		at               time.Time
		window           int64 // reportWindow of the leader's time it answered
	}
	// report sends a progress report stamped now (echoed in
	// Append.read_stamp), marked read_waits when a read waits for a
	// round trip begun after the last stamp sent (the asker's race with
	// this report).
	report := func() error {
		p := core.Progress()
		pr := p.GetProgress()
		want := f.reads.want.Load()
		pr.ReadStamp = mono(time.Now())
		pr.ReadWaits = want != 0 && want >= f.reads.asked.Load()
		f.reads.asked.Store(max(f.reads.asked.Load(), pr.ReadStamp))
		if err := send(p); err != nil {
			return fmt.Errorf("replication: send progress: %w", err)
		}
		f.counts.reports.Add(1)
		reported.durable, reported.applied, reported.at = core.durable.LSN, core.applied, time.Now()
		return nil
	}
	// run steps one (merged) Append that arrived at at, then releases
	// what it made readable and reports progress.
	run := func(epoch uint64, a *peerpb.Append, at int64) error {
		if err := f.step(ctx, core, epoch, a); err != nil {
			return err
		}
		// The message's commit LSN and read stamp were recorded as it
		// arrived (receive, followerReads.arrived); what it applied
		// proves them now.
		f.reads.advanced(core.applied)
		f.releasePublished(core.applied)
		window := reportWindow(a.LeaderTimeUnixNano)
		if core.durable.LSN != reported.durable || core.applied != reported.applied || a.LeaseStamp != 0 ||
			window != reported.window || time.Since(reported.at) >= progressEvery*3/2 || f.reads.wantsReports() {
			if err := report(); err != nil {
				return err
			}
			reported.window = window
		}
		return nil
	}
	// deferred is what the leader sent with defer_sync and this follower
	// holds, not yet checked, persisted, applied or reported, so that one
	// fsync takes it and what follows (see syncHold). The hold ends at the
	// first Append that is not deferred, once it passes maxGatherBytes,
	// when a read waits on this follower, when the stream ends, and at the
	// latest hold.deadline.
	var deferred struct {
		a     *peerpb.Append
		epoch uint64
		at    int64 // the first held message's arrival (mono)
		timer *time.Timer
		fire  <-chan time.Time // the timer's channel while a hold runs
	}
	flushDeferred := func() error {
		if deferred.a == nil {
			return nil
		}
		a, epoch, at := deferred.a, deferred.epoch, deferred.at
		deferred.a, deferred.fire = nil, nil
		deferred.timer.Stop()
		return run(epoch, a, at)
	}
	defer func() {
		if deferred.timer != nil {
			deferred.timer.Stop()
		}
	}()
	// takeWaiting merges into what is held the messages that waited in
	// in while the hold ran, as they would have been merged had they woken
	// this goroutine on arrival; the first that cannot be merged is taken
	// next (held).
	takeWaiting := func() {
		if deferred.a != nil && held == nil {
			deferred.a, held = gather(in, deferred.epoch, deferred.a, merged)
		}
	}
	// drain: take messages from in even while a hold runs (an urgent
	// note came, until in is empty again).
	drain := false
	for {
		var r received
		if held != nil {
			r, held = *held, nil
		} else {
			// While a hold runs, messages the receiver marks mergeable
			// (deferred Appends with entries, heartbeats and commit LSNs
			// that defer) wait in in until the hold ends (gather takes
			// them then, as one), rather than wake this goroutine one by
			// one to be merged: anything else, or in filling up, comes
			// with an urgent note.
			from := in
			if deferred.a != nil && !drain {
				from = nil
			}
			select {
			case r = <-from:
				f.counts.wakes.Add(1)
				drain = drain && len(in) > 0
			case <-urgent:
				drain = true
				continue
			case m := <-f.pub.fwd:
				if err := send(&peerpb.FollowerMessage{Epoch: core.epoch, Body: &peerpb.FollowerMessage_Publish{Publish: &peerpb.Publish{Messages: []*peerpb.PubMessage{m}}}}); err != nil {
					return fmt.Errorf("replication: send publish: %w", err)
				}
				continue
			case <-deferred.fire:
				takeWaiting()
				if err := flushDeferred(); err != nil {
					return err
				}
				continue
			case <-f.reads.waiter:
				takeWaiting()
				if err := flushDeferred(); err != nil {
					return err
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if r.err != nil {
			// What is held was received whole from the leader: persisted
			// (and applied as far as it may be) before the stream ends,
			// unreported, as if the stream had broken after its fsync.
			if a := deferred.a; a != nil {
				deferred.a, deferred.fire = nil, nil
				if err := f.step(ctx, core, deferred.epoch, a); err != nil {
					return err
				}
			}
			return fmt.Errorf("replication: receive: %w", r.err)
		}
		f.counts.messages.Add(1)
		m := r.m
		if m.Epoch < core.epoch {
			return fmt.Errorf("%w: message from epoch %d, seen %d", ErrStaleEpoch, m.Epoch, core.epoch)
		}
		if m.Epoch > core.epoch {
			if err := db.ObserveEpoch(m.Epoch); err != nil {
				return err
			}
		}
		switch b := m.Body.(type) {
		case *peerpb.LeaderMessage_Append:
			if f.cfg.Buggify.FollowerApplyDelay > 0 {
				f.noteArrival(&r)
			}
			var a *peerpb.Append
			a, held = gather(in, m.Epoch, b.Append, merged)
			at := r.at
			if deferred.a != nil {
				if deferred.epoch == m.Epoch {
					a, at = mergeAppend(deferred.a, a), deferred.at
					deferred.a, deferred.fire = nil, nil
					deferred.timer.Stop()
				} else if err := flushDeferred(); err != nil {
					return err
				}
			}
			if f.holds(a) {
				deferred.a, deferred.epoch, deferred.at = a, m.Epoch, at
				wait := time.Duration(at + int64(f.cfg.SyncHold) - mono(time.Now()))
				if deferred.timer == nil {
					deferred.timer = time.NewTimer(wait)
				} else {
					deferred.timer.Reset(wait)
				}
				deferred.fire = deferred.timer.C
				continue
			}
			if err := run(m.Epoch, a, at); err != nil {
				return err
			}
		case *peerpb.LeaderMessage_Publish:
			f.receivedPublish(b.Publish, core.applied)
		case *peerpb.LeaderMessage_NeedSnapshot:
			return f.seed(ctx, w) // what is held goes with the data the seed replaces
		case *peerpb.LeaderMessage_Truncate:
			return f.truncate(ctx, w, b.Truncate) // what is held came before it: dropped
		default:
			return fmt.Errorf("replication: unexpected message %T", m.Body)
		}
	}
}

// holds reports whether the follower may hold a (deferred) rather than
// step it now: the leader said no one waits for it, it carries entries
// (a heartbeat alone costs no fsync), it is under maxGatherBytes, no read
// waits on this follower's progress, and holding is on (SyncHold).
func (f *Follower) holds(a *peerpb.Append) bool {
	if !a.DeferSync || len(a.Entries) == 0 || f.cfg.SyncHold <= 0 || f.reads.readWaits() {
		return false
	}
	size := 0
	for _, e := range a.Entries {
		size += len(e)
	}
	return size < maxGatherBytes
}

// received is one result of FollowerStream.Recv.
type received struct {
	m   *peerpb.LeaderMessage
	err error
	at  int64 // when it arrived, on the monotonic clock (mono)
}

// receive reads the stream ahead of the follower on its own goroutine, so
// that appends arriving while one is persisted can be merged (gather). The
// goroutine ends after the first error or when ctx ends, which also breaks
// a Recv in progress.
//
// heard is called on every message as it arrives, before it waits behind
// an fsync: "when did you last hear your leader" (the orchestrator's
// holistic check) must not say "long ago" because this node's disk is
// slow.
//
// An entry sent in parts is put together here: the follower sees it as an
// Append of the whole entry once its last part has arrived, and never a
// part of it; a part out of order ends the stream with errPart (corrupt),
// and a stream that ends between parts takes the partial entry with it.
//
// readAhead is how many messages it reads ahead: 16 leader batches (each
// at most MaxBatchBytes) normally; under the FollowerApplyDelay fault
// more, so that what arrives while a step waits out the delay is taken in
// the next step (gather), and the fault is a lag, not a cap of 16
// messages per delay on the follower's throughput.
//
// It also returns urgent, a note (never blocking, at most one pending)
// sent after each message that a sync hold may not just merge (anything
// but an Append marked defer_sync, an error) and whenever in is full: while
// a hold runs the stepping goroutine waits for the note, the hold's end or
// a read rather than for in, so the leader's messages during a hold (a
// busy async leader sends one per group commit) cost no wake-up each.
// arrived sees each whole message as it arrives and reports whether a
// read waits on it (its proof of freshness): such a message is urgent, so
// the read does not wait out a hold for the entries its proof names; and
// whether to drop it, a message that has nothing for the stepping
// goroutine (arrived took what it proves).
func receive(ctx context.Context, stream FollowerStream, heard func(), readAhead int, arrived func(*peerpb.LeaderMessage) (readWaits, drop bool)) (<-chan received, <-chan struct{}) {
	in := make(chan received, readAhead)
	urgent := make(chan struct{}, 1)
	go func() {
		var parts partAssembler
		for {
			m, err := stream.Recv()
			at := mono(time.Now())
			readWaits := false
			if err == nil {
				heard()
				if m, err = parts.take(m); m == nil && err == nil {
					continue // a part of an entry not whole yet
				}
				if err == nil {
					var drop bool
					if readWaits, drop = arrived(m); drop {
						continue
					}
				}
			}
			select {
			case in <- received{m, err, at}:
			case <-ctx.Done():
				return
			}
			if err != nil || readWaits || !m.GetAppend().GetDeferSync() || len(in) == cap(in) {
				select {
				case urgent <- struct{}{}:
				default:
				}
			}
			if err != nil {
				return
			}
		}
	}()
	return in, urgent
}

// progressEvery is how often a follower whose stream carries only
// heartbeats reports its progress: the leader's view of it (LastSeen) must
// stay well inside failover.SyncMemberTimeout (500 ms), after which a
// sync-set member is replaced, and FollowerTimeout. Reports that carry
// news (positions moved, an echo asked for) go at once.
//
// The idle reports answer the first heartbeat sent in each progressEvery
// window of the leader's clock (reportWindow), not progressEvery after
// the follower's last report: every follower then answers the same
// heartbeat, and their reports reach the leader together, one wake-up of
// an idle leader where each follower's own phase cost one each
// (bench/idle.sh). The windows hold a heartbeat each (heartbeats are at
// most 1.25 intervals apart, leaderCore.Beat), so a report goes at least
// every two windows; 1.5 progressEvery on the follower's own clock bounds
// the gap whatever the leader's clock does.
const progressEvery = 200 * time.Millisecond

// reportWindow numbers the progressEvery window of the leader's clock that
// t (Unix ns) falls in.
func reportWindow(t int64) int64 { return t / int64(progressEvery) }

// maxGatherBytes bounds the entries merged into one persisted batch.
const maxGatherBytes = 4 << 20

// gather merges into a the appends of the same epoch that have already
// arrived, so a follower that fell behind persists them with one fsync and
// reports once, instead of once per leader batch. It returns the merged
// append and the first message it took that cannot be merged, if any.
func gather(in <-chan received, epoch uint64, a *peerpb.Append, merged func(*received)) (*peerpb.Append, *received) {
	size := 0
	for _, e := range a.Entries {
		size += len(e)
	}
	for size < maxGatherBytes {
		var r received
		select {
		case r = <-in:
		default:
			return a, nil
		}
		next := r.m.GetAppend()
		if r.err != nil || next == nil || r.m.Epoch != epoch {
			return a, &r
		}
		for _, e := range next.Entries {
			size += len(e)
		}
		if merged != nil {
			merged(&r)
		}
		a = mergeAppend(a, next)
	}
	return a, nil
}

// mergeAppend is a followed by next (of the same epoch) as one Append. It
// may be deferred only if both were: one that was not wants its entries
// persisted and reported at once.
func mergeAppend(a, next *peerpb.Append) *peerpb.Append {
	return &peerpb.Append{
		Entries:            append(a.Entries, next.Entries...),
		CommitLsn:          max(a.CommitLsn, next.CommitLsn),
		LeaderLastLsn:      next.LeaderLastLsn,
		LeaderTimeUnixNano: next.LeaderTimeUnixNano,
		LeaseStamp:         max(a.LeaseStamp, next.LeaseStamp), // 0 on a heartbeat that wants no echo
		LeaseLapsed:        a.LeaseLapsed || next.LeaseLapsed,
		DeferSync:          a.DeferSync && next.DeferSync,
		// Each stamp is proved by its message's commit LSN, and so by
		// the larger one the merged Append carries.
		ReadStamp: max(a.ReadStamp, next.ReadStamp),
	}
}

// entryArrival: the entries through lsn arrived at at (mono).
type entryArrival struct {
	lsn uint64
	at  int64
}

// noteArrival records when the entries of an Append message arrived, for
// the FollowerApplyDelay fault (the stepping goroutine's; a message whose
// last entry does not decode is left out).
func (f *Follower) noteArrival(r *received) {
	es := r.m.GetAppend().GetEntries()
	if len(es) == 0 {
		return
	}
	_, lsn, err := logrec.PeekLSN(es[len(es)-1])
	if err != nil {
		return
	}
	if n := len(f.arrivals); n > 0 && f.arrivals[n-1].lsn >= lsn {
		f.arrivals = f.arrivals[:0] // a resend or a truncated log: start over
	}
	f.arrivals = append(f.arrivals, entryArrival{lsn: lsn, at: r.at})
}

// applyNotBefore is when (mono) entries through lsn may be applied under
// the FollowerApplyDelay fault: d after the newest of them arrived. The
// lag is d from each entry's arrival, not d on top of the time the entry
// waited for its commit LSN (sent after the leader's sync, a message
// later) and for the step before it, so a 50 ms fault is a lag of about
// 50 ms, not 100–150. It forgets the arrivals lsn covers.
func (f *Follower) applyNotBefore(lsn uint64, d time.Duration) int64 {
	i := 0
	for i < len(f.arrivals) && f.arrivals[i].lsn < lsn {
		i++
	}
	if i == len(f.arrivals) {
		// Not recorded: from now.
		f.arrivals = f.arrivals[:0]
		return mono(time.Now()) + int64(d)
	}
	at := f.arrivals[i].at
	if f.arrivals[i].lsn == lsn {
		i++
	}
	f.arrivals = append(f.arrivals[:0], f.arrivals[i:]...)
	return at + int64(d)
}

// step persists and applies one Append.
func (f *Follower) step(ctx context.Context, core *followerCore, epoch uint64, a *peerpb.Append) error {
	f.counts.steps.Add(1)
	rd, err := core.Step(epoch, a)
	if err != nil {
		return err
	}
	var ahead Ready // what was applied while its append ran
	if len(rd.Append) > 0 {
		// Committed entries are applied while the append runs (applyAhead),
		// unless under the FollowerApplyDelay fault, whose delay is counted
		// from the newest entry applied together, or on a storage that
		// cannot (AppliesAhead): then the committed tail before the fsync
		// (applyEarly) and the rest after it.
		var during func(appended <-chan struct{}) error
		if f.cfg.Buggify.FollowerApplyDelay > 0 || !f.cfg.DB.AppliesAhead() {
			if err := f.applyEarly(core, &rd); err != nil {
				return err
			}
		} else {
			during = func(appended <-chan struct{}) error {
				if err := f.applyAhead(core, &rd, &ahead); err != nil {
					return err
				}
				return f.applyAsCommitted(core, &rd, &ahead, appended)
			}
		}
		f.appendEnd.Store(rd.appendPos.LSN)
		f.appending.Store(true)
		t0 := time.Now()
		err := f.cfg.DB.AppendLogWhile(rd.Append, during)
		f.reads.times.appendNs.Add(int64(time.Since(t0)))
		f.reads.times.appends.Add(1)
		f.appending.Store(false)
		f.appendEnd.Store(0)
		if err != nil {
			return err
		}
		f.counts.appends.Add(1)
	}
	core.Persisted(rd)
	core.Applied(ahead) // after Persisted: it may hold entries of rd.Append
	d := f.cfg.Buggify.FollowerApplyDelay
	if len(rd.Apply) > 0 {
		if d > 0 {
			// A slow follower: lag that tests control. A role change
			// does not wait for it.
			if wait := time.Duration(f.applyNotBefore(rd.Apply[len(rd.Apply)-1].LSN, d) - mono(time.Now())); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				}
			}
		}
		if err := f.applyEntries(rd.Apply); err != nil {
			return err
		}
		core.Applied(rd)
	}
	lagLSN, lagSec := core.lag()
	f.mu.Lock()
	st := &f.status
	st.Epoch, st.Durable, st.Applied, st.Commit = core.epoch, core.durable.LSN, core.applied, core.commit
	st.LeaderLast, st.LagLSN, st.LagSeconds = core.leaderLast, lagLSN, lagSec
	st.LastContact = f.cfg.Now()
	if st.State != StateStreaming && core.durable.LSN >= core.leaderLast && core.applied >= core.commit {
		f.log.Info("follower state", "state", StateStreaming, "applied_lsn", core.applied)
		st.State = StateStreaming
	}
	f.mu.Unlock()
	return nil
}

// applyEarly applies, before rd.Append is persisted, the entries of
// rd.Apply that were durable before it (the pending tail this message
// commits), and wakes the reads waiting for them, so that they do not
// wait for the fsync of entries they do not need. Under a steady write
// load every message carries new entries and commits the ones before it
// (the leader sends entries before its own fsync and their commit LSN
// with a later message), so without it an entry was applied only after
// the fsync of the next message's entries: a follower read waiting for
// the leader's commit position (linearizable, a user's floor) waited two
// fsyncs instead of one. The crash order is unchanged: these entries are
// durable and committed. It leaves in rd.Apply what is left to apply
// after the fsync. When both parts are non-empty (a follower catching
// up) it costs a second apply, so it splits them only while a read
// waits; and never under the FollowerApplyDelay fault, whose delay is
// counted from the newest entry applied together.
func (f *Follower) applyEarly(core *followerCore, rd *Ready) error {
	n := 0
	for n < len(rd.Apply) && rd.Apply[n].LSN <= core.durable.LSN {
		n++
	}
	if n == 0 || f.cfg.Buggify.FollowerApplyDelay > 0 || (n < len(rd.Apply) && !f.reads.readWaits()) {
		return nil
	}
	early := Ready{Apply: rd.Apply[:n]}
	if err := f.applyEntries(early.Apply); err != nil {
		return err
	}
	core.Applied(early)
	rd.Apply = rd.Apply[n:]
	f.reads.advanced(core.applied)
	return nil
}

// plantApplyUncommitted is a planted bug for tests: applyAhead applies
// every entry of the append, committed or not
// (TestUncommittedEntriesWaitForTheirCommit must catch it).
var plantApplyUncommitted = false

// applyAhead applies rd.Apply, the entries the leader has said are
// committed (up to its commit LSN), from AppendLogWhile's during: while
// the fdatasync of this message's entries runs, not after it. Committed
// means durable on the leader (and on as many followers as the commit
// mode asks), so a read may see them before this follower has them on
// disk: a crash then loses only what the next stream sends again, and
// the storage's flush fence keeps applied <= durable on disk, so a
// restarted follower still comes back at or below what it served and
// replays (CaughtUp). What this follower reports durable is unchanged:
// only what its own fsync made so. Under a steady write load the
// leader's answer to a waiting read (its commit LSN) often names entries
// whose fsync runs on this follower now, or that arrived with the
// answer: the read then waited for that fsync (14% of linearizable
// probes at lag 0, ~2.2 ms each, in tandem bench reads). Applied as one
// batch: the durable tail this message commits with its own new
// entries. It records in ahead what it applied, for core.Applied once
// the append is durable (Persisted first: ahead may hold entries of
// rd.Append), and leaves rd.Apply empty.
func (f *Follower) applyAhead(core *followerCore, rd *Ready, ahead *Ready) error {
	apply := rd.Apply
	if plantApplyUncommitted && len(rd.decoded) > 0 {
		apply = append(append([]logrec.Entry(nil), core.pending...), rd.decoded...)
	}
	if len(apply) == 0 {
		return nil
	}
	ahead.Apply, rd.Apply = apply, nil
	if err := f.applyEntries(apply); err != nil {
		return err
	}
	f.reads.advanced(apply[len(apply)-1].LSN)
	return nil
}

// applyAsCommitted goes on applying, while the append of rd's entries
// runs, those a commit LSN arriving meanwhile commits (the stream's
// reader takes each message as it comes: arrivedCommits), while a read
// waits on this follower: under a steady write load the leader's answer
// to a waiting read (its commit LSN, which it reached with its own
// fsync of entries it sent before it) mostly arrives while this
// follower's fsync of those same entries runs, and the read waited for
// the rest of that fsync and the next step (need_log in RoundTripTimes:
// 14-17% of linearizable probes at lag 0, ~2 ms each). The commit LSN
// is this stream's leader's, of the stream's epoch, as the step that
// takes the message would find it; it applies only entries of this
// append or durable before it, each once, in order, after ahead.
func (f *Follower) applyAsCommitted(core *followerCore, rd *Ready, ahead *Ready, appended <-chan struct{}) error {
	commits := f.commits.Load()
	if commits == nil || plantApplyUncommitted {
		return nil
	}
	last := core.applied
	if n := len(ahead.Apply); n > 0 {
		last = ahead.Apply[n-1].LSN
	}
	end := rd.appendPos.LSN
	for last < end {
		select {
		case <-appended:
			return nil
		case <-commits.note:
		}
		c := min(commits.lsn.Load(), end)
		if c <= last || !f.reads.readWaits() {
			continue // the next step applies it, in its batch
		}
		var more []logrec.Entry
		for _, es := range [][]logrec.Entry{core.pending, rd.decoded} {
			for _, e := range es {
				if e.LSN > last && e.LSN <= c {
					more = append(more, e)
				}
			}
		}
		if len(more) == 0 || more[0].LSN != last+1 {
			return nil // not this append's: the step applies it
		}
		ahead.Apply = append(ahead.Apply, more...)
		if err := f.applyEntries(more); err != nil {
			return err
		}
		last = more[len(more)-1].LSN
		f.reads.advanced(last)
	}
	return nil
}

// applyEntries applies es to the data as one batch (less what the
// FollowerSkipEntry fault drops) and counts the apply: the one place a
// follower applies, whether after the fsync, before it (applyEarly) or
// while it runs (applyAhead, applyAsCommitted).
func (f *Follower) applyEntries(es []logrec.Entry) error {
	if f.cfg.Buggify.FollowerSkipEntry {
		es = f.skipSome(es)
	}
	if f.cfg.Buggify.FollowerSkipFunctions {
		es = skipFunctions(es)
	}
	if err := f.cfg.DB.Apply(es); err != nil {
		return err
	}
	f.counts.applies.Add(1)
	return nil
}

// skipFunctions drops the function libraries' ops (Buggify only).
func skipFunctions(entries []logrec.Entry) []logrec.Entry {
	out := make([]logrec.Entry, len(entries))
	for i, e := range entries {
		out[i] = e
		out[i].Ops = slices.DeleteFunc(slices.Clone(e.Ops), func(op logrec.Op) bool { return op.Kind == logrec.OpFunctions })
	}
	return out
}

// skipSome drops the operations of every 50th entry and every later
// operation on a key dropped before (Buggify only). Dropping keys for good
// keeps the replicas apart even when the workload writes them again, so
// the harness can always see it.
func (f *Follower) skipSome(entries []logrec.Entry) []logrec.Entry {
	if f.skipped == nil {
		f.skipped = map[string]bool{}
	}
	out := make([]logrec.Entry, len(entries))
	copy(out, entries)
	for i := range out {
		f.applyCount++
		if f.applyCount%50 == 0 {
			for _, op := range out[i].Ops {
				f.skipped[string(op.Key)] = true
			}
			out[i].Ops = nil
			continue
		}
		var kept []logrec.Op
		for _, op := range out[i].Ops {
			if !f.skipped[string(op.Key)] {
				kept = append(kept, op)
			}
		}
		out[i].Ops = kept
	}
	return out
}

// truncate drops a diverged log suffix: the entries after the point
// TruncatePoint computes from the leader's answer, which keeps every entry
// the follower shares with the leader; the next handshake checks again.
// Every dropped entry is first written to a rollback file for the
// operator; applied entries cannot be undone in place, so then the node is
// re-seeded. Nothing is dropped silently.
func (f *Follower) truncate(ctx context.Context, w *silenceWatch, t *peerpb.Truncate) error {
	db := f.cfg.DB
	after, err := TruncatePoint(db, t.GetAfterLsn(), t.GetAfterEpoch())
	if err != nil {
		return err
	}
	durable := db.Durable()
	// Every dropped entry is saved first, applied or not: the applied LSN
	// is written without an fsync, so after a kill -9 an entry that was
	// applied and acknowledged (by this node, as an async leader) can
	// look merely durable, and dropping it would lose it silently. With no
	// entry to drop the truncation still runs: it also drops epoch starts
	// past after (a leadership that wrote nothing).
	path := ""
	if durable.LSN > after {
		if path, err = f.writeRollback(after); err != nil {
			return fmt.Errorf("replication: save the diverged suffix before dropping it: %w", err)
		}
	}
	err = db.TruncateLogAfter(after)
	if err == nil {
		f.log.Warn("truncated diverged log suffix; its entries were saved for the operator", "after_lsn", after, "durable_lsn", durable.LSN, "durable_epoch", durable.Epoch,
			"leader_after_lsn", t.GetAfterLsn(), "leader_after_epoch", t.GetAfterEpoch(), "rollback_file", path)
		return nil
	}
	if !errors.Is(err, storage.ErrBelowApplied) {
		return err
	}
	f.log.Warn("applied writes the leader does not have were saved for the operator; re-seeding", "after_lsn", after, "rollback_file", path)
	return f.seed(ctx, w)
}

// writeRollback saves the log entries after after. Those at or before the
// log base are no longer in the log (only in the data the seed replaces):
// it says so in the log.
func (f *Follower) writeRollback(after uint64) (string, error) {
	db := f.cfg.DB
	if base := db.LogBase().LSN; after < base {
		f.log.Error("diverged applied entries precede the retained log and cannot be saved", "from_lsn", after+1, "to_lsn", base)
		after = base
	}
	raws, err := db.ReadLog(after+1, db.Durable().LSN, 1<<62)
	if err != nil {
		return "", err
	}
	dir := f.cfg.DataDir
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("rollback-%d.jsonl", time.Now().UnixNano()))
	file, err := os.Create(path)
	if err != nil {
		return "", err
	}
	enc := json.NewEncoder(file)
	for _, raw := range raws {
		e, err := logrec.Decode(raw)
		if err != nil {
			file.Close()
			return "", err
		}
		if err := enc.Encode(e); err != nil {
			file.Close()
			return "", err
		}
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return "", err
	}
	return path, file.Close()
}

// seed replaces the node's data with a snapshot of the leader's; w
// watches its receives for the leader's silence.
func (f *Follower) seed(ctx context.Context, w *silenceWatch) error {
	db := f.cfg.DB
	f.setState(StateSeeding)
	f.mu.Lock()
	f.status.SeedBytes, f.status.SeedTotal = 0, 0
	f.status.Seeds++
	f.mu.Unlock()
	in, err := f.cfg.Dial.Snapshot(ctx, &peerpb.SnapshotRequest{NodeId: f.cfg.NodeID, Epoch: db.Epoch(), RowFormat: rowFormatFunctions})
	if err != nil {
		return fmt.Errorf("replication: request snapshot: %w", err)
	}
	in = watchedSnapshot{in, w}
	first, err := in.Recv()
	if err != nil {
		return fmt.Errorf("replication: snapshot header: %w", err)
	}
	if first.Epoch < db.Epoch() {
		return fmt.Errorf("%w: snapshot from epoch %d, seen %d", ErrStaleEpoch, first.Epoch, db.Epoch())
	}
	hdr := first.GetHeader()
	if hdr == nil {
		return fmt.Errorf("replication: snapshot began with %T", first.Body)
	}
	pos := logrec.Position{Epoch: hdr.GetPosition().GetEpoch(), LSN: hdr.GetPosition().GetLsn()}
	f.log.Info("seeding from snapshot", "lsn", pos.LSN, "estimated_bytes", hdr.EstimatedBytes)
	f.mu.Lock()
	f.status.SeedTotal = hdr.EstimatedBytes
	f.mu.Unlock()
	if err := db.BeginIngest(); err != nil {
		return err
	}
	var keys uint64
	for {
		c, err := in.Recv()
		if err == io.EOF {
			return fmt.Errorf("replication: snapshot ended before done")
		}
		if err != nil {
			return fmt.Errorf("replication: snapshot: %w", err)
		}
		switch b := c.Body.(type) {
		case *peerpb.SnapshotChunk_Data:
			// A chunk that does not verify is corruption (snapshot.ErrCorrupt,
			// a frame.ErrCorrupt), not a broken stream: the seed ends here
			// without FinishIngest, the node stays seeding, and Run reports
			// it as refused data before the next seed starts from scratch.
			rows, err := snapshot.Decode(b.Data)
			if err != nil {
				return fmt.Errorf("replication: snapshot chunk %d bytes into the seed: %w", f.Status().SeedBytes, err)
			}
			if hdr.RowFormat < rowFormatKeyspace {
				// An older leader's rows: user keys of string rows.
				for i := range rows {
					rows[i].Key = keyspace.MetaKey(rows[i].Key)
				}
			}
			if err := db.IngestRows(rows); err != nil {
				return fmt.Errorf("replication: snapshot chunk: %w", err)
			}
			keys += uint64(len(rows))
			f.mu.Lock()
			f.status.SeedBytes += uint64(len(b.Data))
			f.mu.Unlock()
		case *peerpb.SnapshotChunk_Done:
			if b.Done.Keys != keys {
				return fmt.Errorf("replication: snapshot has %d keys, leader sent %d", keys, b.Done.Keys)
			}
			var epochs []logrec.Position
			for _, s := range hdr.EpochStarts {
				epochs = append(epochs, logrec.Position{Epoch: s.Epoch, LSN: s.Lsn})
			}
			if err := db.FinishIngest(pos, epochs); err != nil {
				return err
			}
			f.mu.Lock()
			f.status.Durable, f.status.Applied = pos.LSN, pos.LSN
			f.mu.Unlock()
			f.setState(StateCatchingUp)
			f.log.Info("seeded", "lsn", pos.LSN, "keys", keys)
			return nil
		default:
			return fmt.Errorf("replication: unexpected snapshot chunk %T", c.Body)
		}
	}
}

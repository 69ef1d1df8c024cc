package replication

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/snapshot"
	"github.com/tandemdb/tandem/internal/storage"
)

// tailBytes bounds the leader's in-memory cache of recent entries: enough
// for followers that keep up under load, small beside the data.
const tailBytes = 16 << 20

// Serve runs one follower's stream until it breaks, the follower is
// removed, or the leader stops. Three goroutines serve it: this one
// (handshake, then watching for the stream's end), a receiver that reads
// the hello and then progress reports (streamIn), and, once streaming, a
// sender (sendLoop) that sends what the core allows. This one touches
// storage (the handshake), and the leader waits for it before it stops;
// the sender only inside a registered read (readLog), so the leader never
// waits on its sends; the receiver touches only the core. Both end once
// the stream does, which it does when Serve returns.
//
// The steps: await the hello; decide (Decide) and answer it, which ends
// the stream unless the follower is to stream; join the core's follower
// table; then start the sender and wait for the stream to end.
func (l *Leader) Serve(ctx context.Context, stream LeaderStream) error {
	if !l.enter() {
		return ErrNotLeader
	}
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The handshake's answer goes through a sendOff; the stream's own
	// sends, on its sender goroutine (sendLoop).
	sends := newSendOff(l, ctx, stream.Send)
	defer sends.close()
	off := offStream{stream, sends}

	in := l.receive(ctx, stream)
	h, err := l.awaitHello(ctx, in)
	if err != nil {
		return err
	}
	// The log format gate learns what this member reads before anything
	// is sent to it (format.go).
	l.formats.saw(h.NodeId, helloFormat(h))
	log := l.log.With("peer", h.NodeId)
	d, err := l.handshake(h, log)
	if err != nil {
		return err
	}
	if streaming, err := l.answer(off, d); !streaming || err != nil {
		return err
	}
	sends.close() // its last send has returned: from now on only sendLoop sends
	session, out := l.join(h, d.LSN-1)
	defer l.leave(h.NodeId, session)
	in.start(session)
	var send LeaderStream = stream
	if h.TakesParts {
		send = partSender{stream, l.cfg.PartBytes} // large entries in parts (parts.go)
	}
	sent := make(chan error, 1)
	go func() { sent <- l.sendLoop(ctx, send, out, d.LSN, log) }()
	select {
	case err := <-sent:
		return err
	case <-out.closed:
		// The core disconnected this session: the follower was removed,
		// was silent for FollowerTimeout, or joined on a newer stream.
		log.Info("closing the follower's stream: removed, silent, or superseded by a newer stream", "session", session)
		return fmt.Errorf("replication: stream of follower %s closed by the leader (removed, silent, or superseded)", h.NodeId)
	case e := <-in.higher:
		l.observeEpoch(e, h.NodeId)
		return ErrStaleEpoch
	case err := <-in.err:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-l.ctx.Done():
		return ErrNotLeader
	}
}

// streamIn is the receiving half of a follower stream: a goroutine that
// reads the hello, waits until the stream has joined (start), then hands
// every progress report to the core until the stream ends or a message
// carries a higher epoch.
type streamIn struct {
	hello   chan *peerpb.FollowerMessage // capacity 1: the first message
	higher  chan uint64                  // capacity 1: a higher epoch seen
	err     chan error                   // capacity 1: why receiving ended
	joined  chan struct{}                // closed by start
	session uint64                       // set before joined is closed
}

// receive starts the stream's receiver.
func (l *Leader) receive(ctx context.Context, stream LeaderStream) *streamIn {
	in := &streamIn{
		hello:  make(chan *peerpb.FollowerMessage, 1),
		higher: make(chan uint64, 1),
		err:    make(chan error, 1),
		joined: make(chan struct{}),
	}
	go in.run(ctx, l, stream)
	return in
}

// start lets the receiver report progress on session.
func (in *streamIn) start(session uint64) {
	in.session = session
	close(in.joined)
}

func (in *streamIn) run(ctx context.Context, l *Leader, stream LeaderStream) {
	first, err := stream.Recv()
	if err != nil {
		in.err <- fmt.Errorf("replication: read hello: %w", err)
		return
	}
	in.hello <- first
	select {
	case <-in.joined:
	case <-ctx.Done():
		return
	}
	id := first.GetHello().GetNodeId()
	for {
		m, err := stream.Recv()
		if err != nil {
			in.err <- err
			return
		}
		if m.Epoch > l.epoch {
			in.higher <- m.Epoch
			return
		}
		if p := m.GetProgress(); p != nil {
			l.progress(id, in.session, p)
		}
		for _, pm := range m.GetPublish().GetMessages() {
			l.publish(pm.Channel, pm.Message, pm.Shard) // a PUBLISH or SPUBLISH the follower took
		}
	}
}

// awaitHello waits for the follower's first message, which must be a
// hello from an epoch no higher than the leader's (a higher one makes the
// leader step down).
func (l *Leader) awaitHello(ctx context.Context, in *streamIn) (*peerpb.Hello, error) {
	var first *peerpb.FollowerMessage
	select {
	case first = <-in.hello:
	case err := <-in.err:
		return nil, err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.ctx.Done():
		return nil, ErrNotLeader
	}
	h := first.GetHello()
	if h == nil {
		return nil, fmt.Errorf("replication: stream opened without hello")
	}
	if first.Epoch > l.epoch {
		l.observeEpoch(first.Epoch, h.NodeId)
		return nil, fmt.Errorf("%w: follower %s at epoch %d, leader at %d", ErrStaleEpoch, h.NodeId, first.Epoch, l.epoch)
	}
	return h, nil
}

// handshake decides, from the follower's durable position in its hello,
// what it must do (see Decide), over the leader's log as this leadership
// has sent it (sentLog).
func (l *Leader) handshake(h *peerpb.Hello, log *slog.Logger) (Decision, error) {
	pos := logrec.Position{Epoch: h.GetDurable().GetEpoch(), LSN: h.GetDurable().GetLsn()}
	l.mu.Lock()
	view := sentLog{DB: l.cfg.DB, epoch: l.epoch, sent: l.core.sendable()}
	l.mu.Unlock()
	d, err := Decide(view, l.cfg.DB.Applied(), pos)
	if err != nil {
		return Decision{}, err
	}
	log.Info("follower connected", "durable_lsn", pos.LSN, "durable_epoch", pos.Epoch, "action", d.Action.String(), "lsn", d.LSN, "after_epoch", d.Epoch)
	return d, nil
}

// sentLog is the leader's log for the handshake: the durable log, and after
// it the entries this leadership has handed out in an Append and may have
// sent (through sent), which are of its own epoch. A follower that
// reconnects holding entries the leader sent before its own fdatasync
// returned (send while syncing) is then streamed to from after them, not
// told to drop them: they are the leader's entries, and the leader stops
// if it cannot make them durable.
type sentLog struct {
	*storage.DB
	epoch uint64
	sent  uint64
}

func (v sentLog) Durable() logrec.Position {
	d := v.DB.Durable()
	if v.sent > d.LSN {
		return logrec.Position{Epoch: v.epoch, LSN: v.sent}
	}
	return d
}

func (v sentLog) EpochAt(lsn uint64) (uint64, error) {
	if lsn > v.DB.Durable().LSN && lsn <= v.sent {
		return v.epoch, nil
	}
	return v.DB.EpochAt(lsn)
}

// answer tells the follower the decision. Truncate and NeedSnapshot end
// the stream (the follower comes back after it); Start begins streaming,
// and only then is streaming true.
func (l *Leader) answer(stream LeaderStream, d Decision) (streaming bool, err error) {
	switch d.Action {
	case ActTruncate:
		return false, stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Truncate{Truncate: &peerpb.Truncate{AfterLsn: d.LSN, AfterEpoch: d.Epoch}}})
	case ActSnapshot:
		return false, l.sendNeedSnapshot(stream)
	}
	if err := stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Start{Start: &peerpb.Start{FromLsn: d.LSN, TakesPublish: true, TakesSpublish: true, AnswersReads: true}}}); err != nil {
		return false, err
	}
	return true, nil
}

// join records the follower in the core's table, durable through
// durable, and opens the stream's mailbox; it returns the session.
func (l *Leader) join(h *peerpb.Hello, durable uint64) (uint64, *streamOut) {
	out := &streamOut{wake: make(chan struct{}, 1), closed: make(chan struct{}), pubWake: make(chan struct{}, 1), syncWake: make(chan struct{}, 1), readWake: make(chan struct{}, 1),
		takesPub: h.TakesPublish, takesShard: h.TakesSpublish, takesSettings: h.TakesSettings}
	info := FollowerInfo{NodeID: h.NodeId, RESPAddr: h.RespAddr, HTTPAddr: h.HttpAddr}
	l.mu.Lock()
	defer l.mu.Unlock()
	session := l.core.FollowerJoined(info, durable, l.cfg.Now().UnixNano())
	l.streams[session] = out
	l.queueSettingsLocked(out) // first on the stream (settings.go)
	l.dispatchLocked()
	signal(l.followersChanged)
	return session, out
}

// leave closes the stream's mailbox and tells the core the session ended.
func (l *Leader) leave(id string, session uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.streams, session)
	l.core.FollowerLeft(id, session, l.cfg.Now().UnixNano())
	l.dispatchLocked()
	signal(l.followersChanged)
}

// sendLoop is a follower stream's sender: it sends, from next on, what
// the core allows the stream each time it wakes the mailbox, with
// stream.Send itself (no goroutine between it and gRPC: a hand-off fewer
// each way per message), until the stream fails, the follower fell behind
// the retained log (it is sent for a snapshot), or the stream's context
// or the leader ends. It runs on a goroutine of its own that Serve does
// not wait for, so that Serve, and with it Close, can give up on a send
// to a follower that stopped reading: once Serve returns the stream
// breaks and the blocked send returns. It touches storage only in
// readLog, registered with the leader (enter) for that read alone, so
// Close never waits on a send.
func (l *Leader) sendLoop(ctx context.Context, stream LeaderStream, out *streamOut, next uint64, log *slog.Logger) error {
	var taken uint64 // the last send of the core's taken (streamOut.seq)
	var sentCommit uint64
	for {
		out.parked.Store(true)
		select {
		case <-out.wake:
		case <-out.pubWake:
			if err := l.sendPublished(stream, out); err != nil {
				return err
			}
			continue
		case <-out.syncWake:
			// A WAIT began: a stamped heartbeat that does not defer ends
			// any hold, and the follower reports at once.
			l.mu.Lock()
			through, commitLSN, stamp := out.through, out.commit, out.commitStamp
			l.mu.Unlock()
			if err := l.sendAppend(stream, nil, commitLSN, stamp, through, false, false); err != nil {
				return err
			}
			continue
		case <-out.readWake:
			// A waiting read's answer (pairReadLocked): a heartbeat
			// that does not defer, stamped for an echo only while the
			// lease wants echoes, as any heartbeat (sendThrough). A
			// stamp the follower must echo costs a third message per
			// round trip, the follower's report after the answer,
			// which the read does not need: the answer's commit LSN
			// and read stamp prove it once applied.
			l.mu.Lock()
			through, commitLSN, stamp, took := out.through, out.commit, out.commitStamp, out.readTook
			out.readTook = 0
			l.mu.Unlock()
			if took != 0 {
				l.readAnswers.pickNs.Add(mono(time.Now()) - took)
			}
			unstamped := l.echoUntil.Load() <= mono(time.Now())
			if err := l.sendAppend(stream, nil, commitLSN, stamp, through, unstamped, false); err != nil {
				return err
			}
			// It may carry a commit no send of the core did (a held one,
			// CommitForRead): the next send with no news is a heartbeat.
			sentCommit = max(sentCommit, commitLSN)
			if took != 0 {
				l.readAnswers.sent.Add(1)
				l.readAnswers.sendNs.Add(mono(time.Now()) - took)
			}
			continue
		case <-ctx.Done(): // Serve returned
			return ctx.Err()
		case <-l.ctx.Done():
			return ErrNotLeader
		}
		out.parked.Store(false)
		l.mu.Lock()
		through, commitLSN, stamp, seq := out.through, out.commit, out.commitStamp, out.seq
		deferSync := l.core.DeferSync()
		l.mu.Unlock()
		if seq == taken {
			// Woken by a token left for a send taken already (the core
			// handed out two before this goroutine read the mailbox).
			continue
		}
		taken = seq
		var err error
		// Nothing new to send: a heartbeat.
		heartbeat := next > through && commitLSN == sentCommit
		next, err = l.sendThrough(stream, next, through, commitLSN, stamp, heartbeat, deferSync)
		sentCommit = commitLSN
		if errors.Is(err, storage.ErrCompacted) {
			log.Warn("follower fell behind the retained log; it will be re-seeded", "lsn", next)
			return l.sendNeedSnapshot(stream)
		}
		if err != nil {
			return err
		}
	}
}

// sendThrough sends the entries next..through in batches with the commit
// LSN, or one empty append if there are none (a heartbeat, when it carries
// no new commit LSN either), and returns the next LSN to send; deferSync
// marks them as not waited for (leaderCore.DeferSync).
// storage.ErrCompacted: next has left the log.
func (l *Leader) sendThrough(stream LeaderStream, next, through, commitLSN uint64, readStamp int64, heartbeat, deferSync bool) (uint64, error) {
	for sent := false; !sent || next <= through; sent = true {
		var raws [][]byte
		if next <= through {
			var err error
			if raws, err = l.readLog(next, through); err != nil {
				return next, err
			}
		}
		if err := l.sendAppend(stream, raws, commitLSN, readStamp, through, heartbeat && l.echoUntil.Load() <= mono(time.Now()), deferSync); err != nil {
			return next, err
		}
		next += uint64(len(raws))
		if l.ctx.Err() != nil {
			return next, ErrNotLeader
		}
	}
	return next, nil
}

// progress hands a follower's progress report to the core.
func (l *Leader) progress(id string, session uint64, p *peerpb.Progress) {
	var took int64 // mono: the question of a waiting read taken
	if p.ReadWaits {
		took = mono(time.Now())
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	if took != 0 {
		l.readAnswers.lockNs.Add(mono(time.Now()) - took)
	}
	l.handoffs.progress.Add(1)
	out := l.streams[session]
	var seq uint64
	if out != nil {
		out.readStamp = max(out.readStamp, p.ReadStamp)
		seq = out.seq
	}
	l.core.FollowerProgress(id, session, p.DurableLsn, p.AppliedLsn, p.LeaseStamp, l.cfg.Now().UnixNano())
	l.dispatchLocked()
	if out != nil && p.ReadWaits && p.ReadStamp != 0 && out.seq == seq {
		// No send took the stamp (dispatchReadyLocked pairs it with a
		// send's commit): answer on its own.
		if out.readTook == 0 {
			out.readTook = took
		}
		l.answerReadLocked(out, session)
	} else if out != nil && p.ReadWaits && p.ReadStamp != 0 {
		l.readAnswers.bySend.Add(1)
	}
}

// answerReadLocked answers a follower's report that a read waits for a
// round trip (Progress.read_waits, Follower.WaitRoundTrip): a heartbeat
// at once whose read_stamp is the report's, paired with the commit LSN,
// as dispatchReadyLocked pairs them (the commit is the core's now, after
// the stamp arrived, and at or past this leadership's start), so the
// follower need not wait for the next Append. It is a linearizable read's
// ReadIndex, so it is answered under the lease as ReadIndex is: it marks
// the lease wanted (an idle leader lets it lapse, and a heartbeat sent
// while it has lapsed proves nothing), and when the lease is not valid it
// waits for a confirmation on a goroutine of its own (one per stream at a
// time) and answers after. Under Leader.mu.
func (l *Leader) answerReadLocked(out *streamOut, session uint64) {
	if !l.cfg.Lease.Serving() {
		l.readAnswers.lease.Add(1)
		if out.leaseWait {
			return
		}
		out.leaseWait = true
		go func() {
			err := l.cfg.Lease.await(l.ctx, l.ctx.Done(), readBarrierWait)
			l.mu.Lock()
			defer l.mu.Unlock()
			out.leaseWait = false
			if err == nil && !l.stopped {
				l.pairReadLocked(out, session)
			}
		}()
		return
	}
	l.pairReadLocked(out, session)
}

// plantAnswerBelowStart is a planted bug for tests: the leader answers a
// waiting read before its commit has reached its start, with a commit
// that may miss writes an earlier leader acknowledged
// (TestRoundTripReadBelowStart must catch it).
var plantAnswerBelowStart = false

// plantAnswerAfterHold is a planted bug for tests: the rule before
// CommitForRead, a waiting read whose stream was not sent the core's
// commit (a hold keeps it for the next batch) is answered only by that
// batch (TestRoundTripReadDoesNotWaitForTheHold must catch it).
var plantAnswerAfterHold = false

// plantAnswerStaleCommit is a planted bug for tests: a held commit's
// read is answered at once but with the commit its stream was sent last,
// which misses the writes acknowledged since
// (TestRoundTripReadDoesNotWaitForTheHold must catch it).
var plantAnswerStaleCommit = false

func (l *Leader) pairReadLocked(out *streamOut, session uint64) {
	if l.core.commit < l.core.startLSN && !plantAnswerBelowStart {
		// This leadership is not readable yet: the send that brings
		// the commit to its start pairs the stamp.
		l.readAnswers.notReadable.Add(1)
		return
	}
	if out.commit != l.core.commit {
		// A hold keeps the commit back for the next batch (queueSends):
		// the answer carries it now. out.through stays: the entries go
		// with the batch as before.
		commit, ok := l.core.CommitForRead(session)
		if !ok || plantAnswerAfterHold {
			return
		}
		if !plantAnswerStaleCommit {
			out.commit = commit
		}
		l.readAnswers.held.Add(1)
	}
	l.readAnswers.atOnce.Add(1)
	out.commitStamp = out.readStamp
	signal(out.readWake)
}

// ConfirmedByFollowers returns the earliest send time, over the followers
// ids, of the latest message each has echoed back, and false if one of
// them is not known (never connected, removed, or silent for
// FollowerTimeout) or has echoed nothing to this leadership. Every one of
// them heard this leader at or after that time: none could have been
// promoted as silent before it (the orchestrator's FollowerSilence exceeds
// the fence delay). The echoes are the core's (leaderCore.ConfirmedBy).
func (l *Leader) ConfirmedByFollowers(ids []string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	oldest, ok := l.core.ConfirmedBy(ids)
	if !ok {
		return time.Time{}, false
	}
	return base.Add(time.Duration(oldest)), true
}

func (l *Leader) sendNeedSnapshot(stream LeaderStream) error {
	return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_NeedSnapshot{NeedSnapshot: &peerpb.NeedSnapshot{}}})
}

// readLog returns entries from lo to hi for a follower stream: from the
// in-memory tail of durable entries when it holds lo, else from the
// proposals in flight (an entry handed out in an Append is sent before it
// is durable: the core's entries), else from the log in Pebble.
func (l *Leader) readLog(lo, hi uint64) ([][]byte, error) {
	l.mu.Lock()
	raws, ok := l.tail.read(lo, hi, l.cfg.MaxBatchBytes)
	if !ok {
		raws, ok = l.core.entries(lo, hi, l.cfg.MaxBatchBytes)
	}
	l.mu.Unlock()
	if ok {
		return raws, nil
	}
	if !l.enter() {
		return nil, ErrNotLeader
	}
	defer l.wg.Done()
	return l.cfg.DB.ReadLog(lo, hi, l.cfg.MaxBatchBytes)
}

// sendAppend sends one Append. Every Append carries a lease stamp for the
// follower to echo, except a heartbeat while no echoes are wanted
// (unstamped): a follower reports after a heartbeat only when its
// positions moved, the heartbeat is stamped, or progressEvery passed
// (follower.go), so an idle stream costs the leader a send per heartbeat
// and a receive per progressEvery, not a receive per heartbeat.
// readStamp is the follower's stamp that commitLSN proves (streamOut).
func (l *Leader) sendAppend(stream LeaderStream, raws [][]byte, commitLSN uint64, readStamp int64, last uint64, unstamped, deferSync bool) error {
	var stamp int64
	if !unstamped {
		stamp = mono(time.Now())
	}
	return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
		Entries:            raws,
		CommitLsn:          commitLSN,
		LeaderLastLsn:      last,
		LeaderTimeUnixNano: l.cfg.Now().UnixNano(),
		LeaseStamp:         stamp,
		LeaseLapsed:        !l.cfg.Lease.Valid(),
		DeferSync:          deferSync,
		ReadStamp:          readStamp,
	}}})
}

// Beat lends the follower streams a wake-up the process has anyway (the
// node calls it on each orchestrator probe, every interval on a leader):
// idle streams due a heartbeat within half an interval get it now, and
// the ticker sleeps past their usual deadline (leaderCore.Beat). It
// changes nothing for a stream that carries entries.
//
// It never waits for mu: the probe's answer must not wait behind writes
// (a probe answered late makes the leader look slow or silent to the
// orchestrator; with a blocking lock here `bench/failover.sh` saw a false
// failover and later detections). A leader whose mu is held is busy, and
// its ticker still sends what is due.
func (l *Leader) Beat() {
	if !l.mu.TryLock() {
		return
	}
	l.core.Beat(l.cfg.Now().UnixNano())
	l.dispatchLocked()
	l.unlock()
}

// WantEchoes makes heartbeats carry lease stamps for the next d (also
// those already due), so that every follower echoes one at least once per
// heartbeat: the failsafe lease (ConfirmedByFollowers) needs echoes at
// most a fence delay old, and an idle stream otherwise echoes only every
// progressEvery. For as long, idle streams heartbeat every
// LeaderConfig.Heartbeat instead of every IdleHeartbeat.
func (l *Leader) WantEchoes(d time.Duration) {
	until := mono(time.Now()) + int64(d)
	for {
		cur := l.echoUntil.Load()
		if until <= cur || l.echoUntil.CompareAndSwap(cur, until) {
			break
		}
	}
	if l.cfg.IdleHeartbeat == l.cfg.Heartbeat {
		return
	}
	l.mu.Lock()
	if !l.fastBeat {
		l.fastBeat = true
		l.core.SetHeartbeat(int64(l.cfg.Heartbeat))
		l.dispatchLocked()
	}
	l.unlock()
}

// ServeSnapshot streams a consistent snapshot of the data to a follower.
// Retention is pinned at the applied LSN first, and the snapshot taken
// after, so its LSN is at or past the pin and the log the follower needs
// to catch up from it is kept (until it connects, or FollowerTimeout).
func (l *Leader) ServeSnapshot(req *peerpb.SnapshotRequest, out SnapshotSender) error {
	if !l.enter() {
		return ErrNotLeader
	}
	defer l.wg.Done()
	sends := newSendOff(l, context.Background(), out.Send)
	defer sends.close()
	out = sends
	if req.Epoch > l.epoch {
		l.observeEpoch(req.Epoch, req.NodeId)
		return fmt.Errorf("%w: follower %s at epoch %d, leader at %d", ErrStaleEpoch, req.NodeId, req.Epoch, l.epoch)
	}
	l.mu.Lock()
	l.core.PinSnapshot(req.NodeId, l.cfg.Now().UnixNano())
	l.mu.Unlock()
	snap, err := l.cfg.DB.NewSnapshot()
	if err != nil {
		return err
	}
	defer snap.Close()
	legacy := req.RowFormat < rowFormatKeyspace
	hdr := &peerpb.SnapshotHeader{
		Position:       &peerpb.Position{Epoch: snap.Position.Epoch, Lsn: snap.Position.LSN},
		EstimatedBytes: snap.EstimatedBytes,
		RowFormat:      min(req.RowFormat, rowFormatFunctions),
	}
	if legacy {
		hdr.RowFormat = 0
	}
	for _, s := range snap.Epochs {
		hdr.EpochStarts = append(hdr.EpochStarts, &peerpb.Position{Epoch: s.Epoch, Lsn: s.LSN})
	}
	l.log.Info("sending snapshot", "peer", req.NodeId, "lsn", snap.Position.LSN, "estimated_bytes", snap.EstimatedBytes)
	if err := out.Send(&peerpb.SnapshotChunk{Epoch: l.epoch, Body: &peerpb.SnapshotChunk_Header{Header: hdr}}); err != nil {
		return err
	}
	var enc snapshot.Encoder
	var keys, bytes uint64
	flush := func() error {
		if err := l.ctx.Err(); err != nil {
			return ErrNotLeader
		}
		if enc.Count() == 0 {
			return nil
		}
		keys += enc.Count()
		data := enc.Finish()
		bytes += uint64(len(data))
		return out.Send(&peerpb.SnapshotChunk{Epoch: l.epoch, Body: &peerpb.SnapshotChunk_Data{Data: data}})
	}
	err = snap.Each(func(key, stored []byte) error {
		if err := functionsRow(key, req.RowFormat); err != nil {
			return err
		}
		if legacy {
			var err error
			if key, err = legacyRow(key, stored); err != nil {
				return err
			}
		}
		enc.Add(key, stored)
		if enc.Len() >= l.cfg.ChunkBytes {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("replication: snapshot to %s: %w", req.NodeId, err)
	}
	l.log.Info("snapshot sent", "peer", req.NodeId, "keys", keys, "bytes", bytes)
	return out.Send(&peerpb.SnapshotChunk{Epoch: l.epoch, Body: &peerpb.SnapshotChunk_Done{Done: &peerpb.SnapshotDone{Keys: keys, Bytes: bytes}}})
}

// sendOff runs a stream's sends on a goroutine of their own, one message at
// a time, so that the leader's goroutines can give up on a send that blocks
// (a follower that stopped reading fills the stream's flow-control window)
// when the stream's context or the leader ends: Close must not wait for a
// follower. The goroutine touches only the stream and ends once the send
// in progress returns (the stream breaks when its handler returns).
type sendOff[M any] struct {
	l    *Leader
	ctx  context.Context
	in   chan M
	res  chan error // capacity 1: the result of the send in progress
	send func(M) error
	once sync.Once
}

func newSendOff[M any](l *Leader, ctx context.Context, send func(M) error) *sendOff[M] {
	s := &sendOff[M]{l: l, ctx: ctx, in: make(chan M), res: make(chan error, 1), send: send}
	go func() {
		for m := range s.in {
			s.res <- s.send(m)
		}
	}()
	return s
}

// Send sends m and returns its result, or gives up when the stream's
// context or the leader ends.
func (s *sendOff[M]) Send(m M) error {
	select {
	case s.in <- m:
		s.l.handoffs.streamSend.Add(2) // there, and the result back
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-s.l.ctx.Done():
		return ErrNotLeader
	}
	select {
	case err := <-s.res:
		return err
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-s.l.ctx.Done():
		return ErrNotLeader
	}
}

// close ends the goroutine once the send in progress, if any, returns.
// Nothing is sent after it.
func (s *sendOff[M]) close() { s.once.Do(func() { close(s.in) }) }

// offStream is a LeaderStream whose sends go through a sendOff.
type offStream struct {
	LeaderStream
	sends *sendOff[*peerpb.LeaderMessage]
}

func (o offStream) Send(m *peerpb.LeaderMessage) error { return o.sends.Send(m) }

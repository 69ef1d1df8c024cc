package replication

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemdb/tandem/internal/peerpb"
	"github.com/tandemdb/tandem/internal/snapshot"
	"github.com/tandemdb/tandem/internal/storage"
)

// tailBytes bounds the leader's in-memory cache of recent entries: enough
// for followers that keep up under load, small beside the data.
const tailBytes = 16 << 20

// Serve runs one follower's stream until it breaks, the follower is
// removed, or the leader stops. Two goroutines serve it: this one
// (handshake, then sending what the core allows) and a receiver that
// reads progress reports. Only this one touches storage, and the leader
// waits for it before it stops; the receiver touches only the core, and
// ends once the stream does.
func (l *Leader) Serve(ctx context.Context, stream LeaderStream) error {
	if !l.enter() {
		return ErrNotLeader
	}
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sends := newSendOff(l, ctx, stream.Send)
	defer sends.close()
	stream = offStream{stream, sends}

	hello := make(chan *peerpb.FollowerMessage, 1)
	higher := make(chan uint64, 1)
	recvErr := make(chan error, 1)
	var session uint64
	sessionSet := make(chan struct{})
	go func() {
		first, err := stream.Recv()
		if err != nil {
			recvErr <- fmt.Errorf("replication: read hello: %w", err)
			return
		}
		hello <- first
		select {
		case <-sessionSet:
		case <-ctx.Done():
			return
		}
		id := first.GetHello().GetNodeId()
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if m.Epoch > l.epoch {
				higher <- m.Epoch
				return
			}
			if p := m.GetProgress(); p != nil {
				l.progress(id, session, p)
			}
		}
	}()

	var first *peerpb.FollowerMessage
	select {
	case first = <-hello:
	case err := <-recvErr:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-l.ctx.Done():
		return ErrNotLeader
	}
	h := first.GetHello()
	if h == nil {
		return fmt.Errorf("replication: stream opened without hello")
	}
	if first.Epoch > l.epoch {
		l.observeEpoch(first.Epoch, h.NodeId)
		return fmt.Errorf("%w: follower %s at epoch %d, leader at %d", ErrStaleEpoch, h.NodeId, first.Epoch, l.epoch)
	}
	pos := storage.Position{Epoch: h.GetDurable().GetEpoch(), LSN: h.GetDurable().GetLsn()}
	d, err := Decide(l.cfg.DB, pos)
	if err != nil {
		return err
	}
	if d.Action == ActSnapshot && l.cfg.DB.Applied() == 0 {
		// A snapshot now would be empty at LSN 0 and the follower would be
		// sent for another one, forever; under quorum nothing commits
		// until a follower streams, so applied would stay 0. The log is
		// whole (retention never passes applied): replay it instead.
		d = Decision{Action: ActStream, LSN: 1}
		if pos.LSN > 0 {
			d = Decision{Action: ActTruncate} // diverged from its first entry
		}
	}
	log := l.log.With("peer", h.NodeId)
	log.Info("follower connected", "durable_lsn", pos.LSN, "durable_epoch", pos.Epoch, "action", d.Action.String(), "lsn", d.LSN, "after_epoch", d.Epoch)
	switch d.Action {
	case ActTruncate:
		return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Truncate{Truncate: &peerpb.Truncate{AfterLsn: d.LSN, AfterEpoch: d.Epoch}}})
	case ActSnapshot:
		return l.sendNeedSnapshot(stream)
	}
	if err := stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Start{Start: &peerpb.Start{FromLsn: d.LSN}}}); err != nil {
		return err
	}

	out := &streamOut{wake: make(chan struct{}, 1), closed: make(chan struct{})}
	info := FollowerInfo{NodeID: h.NodeId, RESPAddr: h.RespAddr, HTTPAddr: h.HttpAddr}
	l.mu.Lock()
	session = l.core.FollowerJoined(info, d.LSN-1, l.cfg.Now().UnixNano())
	l.streams[session] = out
	l.dispatchLocked()
	l.mu.Unlock()
	close(sessionSet)
	defer func() {
		l.mu.Lock()
		delete(l.streams, session)
		l.core.FollowerLeft(h.NodeId, session, l.cfg.Now().UnixNano())
		l.dispatchLocked()
		l.mu.Unlock()
	}()

	next := d.LSN
	for {
		select {
		case <-out.wake:
		case <-out.closed:
			log.Info("follower removed; closing its stream")
			return fmt.Errorf("replication: follower %s removed", h.NodeId)
		case e := <-higher:
			l.observeEpoch(e, h.NodeId)
			return ErrStaleEpoch
		case err := <-recvErr:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-l.ctx.Done():
			return ErrNotLeader
		}
		l.mu.Lock()
		through, commitLSN := out.through, out.commit
		l.mu.Unlock()
		// Send everything up to through in batches, or one heartbeat.
		for sent := false; !sent || next <= through; sent = true {
			var raws [][]byte
			if next <= through {
				raws, err = l.readLog(next, through)
				if errors.Is(err, storage.ErrCompacted) {
					log.Warn("follower fell behind the retained log; it will be re-seeded", "lsn", next)
					return l.sendNeedSnapshot(stream)
				}
				if err != nil {
					return err
				}
			}
			if err := l.sendAppend(stream, raws, commitLSN, through); err != nil {
				return err
			}
			next += uint64(len(raws))
			if l.ctx.Err() != nil {
				return ErrNotLeader
			}
		}
	}
}

// progress hands a follower's progress report to the core.
func (l *Leader) progress(id string, session uint64, p *peerpb.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return
	}
	l.core.FollowerProgress(id, session, p.DurableLsn, p.AppliedLsn, l.cfg.Now().UnixNano())
	l.dispatchLocked()
	if p.LeaseStamp > l.echo[id] {
		l.echo[id] = p.LeaseStamp
	}
}

// ConfirmedByFollowers returns the earliest send time, over the followers
// ids, of the latest message each has echoed back, and false if one of
// them has echoed nothing to this leadership. Every one of them heard this
// leader at or after that time: none could have been promoted as silent
// before it (the orchestrator's FollowerSilence exceeds the fence delay).
func (l *Leader) ConfirmedByFollowers(ids []string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(ids) == 0 {
		return time.Time{}, false
	}
	var oldest int64 = 1<<63 - 1
	for _, id := range ids {
		s, ok := l.echo[id]
		if !ok {
			return time.Time{}, false
		}
		oldest = min(oldest, s)
	}
	return base.Add(time.Duration(oldest)), true
}

func (l *Leader) sendNeedSnapshot(stream LeaderStream) error {
	return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_NeedSnapshot{NeedSnapshot: &peerpb.NeedSnapshot{}}})
}

// readLog returns durable entries from lo to hi for a follower stream, from
// the in-memory tail when it holds lo, else from the log in Pebble.
func (l *Leader) readLog(lo, hi uint64) ([][]byte, error) {
	l.mu.Lock()
	raws, ok := l.tail.read(lo, hi, l.cfg.MaxBatchBytes)
	l.mu.Unlock()
	if ok {
		return raws, nil
	}
	return l.cfg.DB.ReadLog(lo, hi, l.cfg.MaxBatchBytes)
}

func (l *Leader) sendAppend(stream LeaderStream, raws [][]byte, commitLSN, last uint64) error {
	return stream.Send(&peerpb.LeaderMessage{Epoch: l.epoch, Body: &peerpb.LeaderMessage_Append{Append: &peerpb.Append{
		Entries:            raws,
		CommitLsn:          commitLSN,
		LeaderLastLsn:      last,
		LeaderTimeUnixNano: l.cfg.Now().UnixNano(),
		LeaseStamp:         mono(time.Now()),
		LeaseLapsed:        !l.cfg.Lease.Valid(),
	}}})
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
	hdr := &peerpb.SnapshotHeader{
		Position:       &peerpb.Position{Epoch: snap.Position.Epoch, Lsn: snap.Position.LSN},
		EstimatedBytes: snap.EstimatedBytes,
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
func (s *sendOff[M]) close() { close(s.in) }

// offStream is a LeaderStream whose sends go through a sendOff.
type offStream struct {
	LeaderStream
	sends *sendOff[*peerpb.LeaderMessage]
}

func (o offStream) Send(m *peerpb.LeaderMessage) error { return o.sends.Send(m) }

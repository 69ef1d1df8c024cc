package replication

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/tandemdb/tandem/internal/peerpb"
)

// A follower's stream can go silent while its connection stays open: the
// leader closed it but the FIN was lost in a one-way partition, the
// leader's side stalled, a middlebox dropped the flow. Nothing then
// fails on the follower's side until TCP gives up (minutes), and it
// falls behind with no error. The leader sends something at least every
// 1.25 heartbeat intervals on an idle stream (leaderCore.Beat), so
// silence is detectable: a session's silenceWatch ends the stream once a
// receive has waited FollowerConfig.LeaderTimeout (ErrLeaderSilent), and
// Run connects again, on a new connection if the dialer can make one
// (Redialer). The leader's mirror rule is LeaderConfig.FollowerTimeout.

// Redialer is a Dialer that can replace the connection under its
// streams. After a stream went silent the follower asks for a new one
// before it connects again: gRPC carries every stream to a peer on one
// TCP connection, and a new stream on a dead one would be as silent as
// the last.
type Redialer interface {
	// Redial makes later streams use a new connection.
	Redial() error
}

// plantNoLeaderTimeout is a planted bug for tests: the follower waits on
// a silent stream for ever (TestSilentStreamReconnects must catch it).
var plantNoLeaderTimeout = false

// leaderSilences counts the streams this process's followers closed
// because their leader was silent for LeaderTimeout (LeaderSilences).
var leaderSilences atomic.Uint64

// LeaderSilences returns how many streams this process's followers have
// closed because they heard nothing from their leader for
// FollowerConfig.LeaderTimeout.
func LeaderSilences() uint64 { return leaderSilences.Load() }

// silenceWatch measures how long a session's receives wait: since is
// when the receive waiting now began (mono), 0 while none waits. Only a
// receive's wait counts, not the time the follower spends elsewhere
// (persisting, applying, ingesting a seed's chunk, or its reader blocked
// handing a message over to a busy stepping loop): a slow disk is not a
// silent leader.
type silenceWatch struct {
	since atomic.Int64
	// silent is how long the receive had waited when run ended the
	// stream (ns).
	silent atomic.Int64
}

// watchRecv runs one receive under w.
func watchRecv[M any](w *silenceWatch, recv func() (M, error)) (M, error) {
	now := mono(time.Now())
	if now == 0 {
		now = 1 // 0 means no receive waits
	}
	w.since.Store(now)
	m, err := recv()
	w.since.Store(0)
	return m, err
}

// run ends the session (cancel with ErrLeaderSilent) once a receive has
// waited timeout, and otherwise returns when ctx ends. It sleeps until the
// earliest time the receive waiting now could reach the timeout, so an
// idle stream costs it one wake-up per timeout, not one per message.
func (w *silenceWatch) run(ctx context.Context, timeout time.Duration, cancel context.CancelCauseFunc) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		now := mono(time.Now())
		since := w.since.Load()
		if since == 0 {
			// None waits: the next one to begin reaches the timeout a
			// full timeout after it begins, after now.
			t.Reset(timeout)
			continue
		}
		if waited := now - since; waited >= int64(timeout) {
			w.silent.Store(waited)
			cancel(ErrLeaderSilent)
			return
		}
		t.Reset(time.Duration(since + int64(timeout) - now))
	}
}

// watchedStream is a FollowerStream whose receives are watched.
type watchedStream struct {
	FollowerStream
	w *silenceWatch
}

func (s watchedStream) Recv() (*peerpb.LeaderMessage, error) {
	return watchRecv(s.w, s.FollowerStream.Recv)
}

// watchedSnapshot is a SnapshotReceiver whose receives are watched.
type watchedSnapshot struct {
	SnapshotReceiver
	w *silenceWatch
}

func (s watchedSnapshot) Recv() (*peerpb.SnapshotChunk, error) {
	return watchRecv(s.w, s.SnapshotReceiver.Recv)
}

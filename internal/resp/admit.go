package resp

import (
	"context"
	"runtime"
	"sync/atomic"
)

// Why connections are admitted a few at a time
//
// Every connection has a goroutine, and on a saturated server most of
// them are runnable at once: a read returned and the command waits for a
// processor. Go's scheduler serves its run queues in order, so everything
// else that must run — a gRPC reader and writer answering the
// orchestrator's heartbeat, the lease's confirmation, a follower stream's
// sender — waits behind every connection's parse and execute: under a bulk
// load a goroutine waited 3.9 ms on average to run, 72 ms at p99, and a
// heartbeat's answer takes four such waits. Redis runs one command at a
// time and answers its own pings between them.
//
// So with Config.MaxActive a server lets at most that many connections
// parse and execute at once (about GOMAXPROCS: more cannot run anyway);
// the others wait for a slot parked on a channel, outside the run queue,
// in the order they asked (a channel's senders are served in order). A
// connection takes its slot when a read returns bytes (guardConn.Read)
// and gives it back:
//
//   - before its next read or its next write to the socket: redcon
//     flushes a read's replies with one write, and a client that does not
//     read its replies blocks that write, which must not hold a slot;
//   - before it waits for something other connections may be needed for
//     (enterWait): a pipeline's writes waiting for their commit, a write
//     waiting for commit, WAIT, a blocking command, a transaction's EXEC.
//     A group commit gathers the writes of every connection that submits
//     while the log syncs, and a slot held across the wait would cut a
//     group to MaxActive connections;
//   - when a Backend call outlasts watchDelay (the sweeper that starts
//     the call's socket watch, watch.go): any other wait, e.g. a read
//     barrier on a lagging follower, so no slot is held for long by a
//     connection that does not run;
//   - when the connection closes.
//
// A connection that gave its slot back early runs on without one until
// its next read: the rest of its command is short (its replies into
// redcon's buffer). Only the connection's goroutine takes its slot; the
// give-back is a compare-and-swap, so the sweeper and Close may give it
// back too, exactly once.

// admission is the server's slots: a token in the channel for each slot
// taken. nil when admission is off.
type admission struct {
	slots chan struct{}
	// waits counts slots that were not free when asked for.
	waits atomic.Uint64
	// waiting is the number of connections waiting for a slot now.
	waiting atomic.Int64
}

func newAdmission(n int) *admission {
	if n <= 0 {
		return nil
	}
	return &admission{slots: make(chan struct{}, n)}
}

// AdmissionStats is what Server.Admission reports.
type AdmissionStats struct {
	// Slots is Config.MaxActive (0: admission off); Active the slots
	// taken now, Waiting the connections waiting for one.
	Slots, Active, Waiting int
	// Waits counts the slots not free when a connection asked.
	Waits uint64
}

// Admission reports the server's admission slots (Config.MaxActive).
func (s *Server) Admission() AdmissionStats {
	a := s.admit
	if a == nil {
		return AdmissionStats{}
	}
	return AdmissionStats{Slots: cap(a.slots), Active: len(a.slots), Waiting: int(a.waiting.Load()), Waits: a.waits.Load()}
}

// admit takes a slot for the connection unless it holds one; it waits
// while none is free, until the server closes. Only the connection's
// goroutine calls it.
func (g *guardConn) admit() {
	if g.srv == nil || g.srv.admit == nil || g.admitted.Load() {
		return
	}
	a := g.srv.admit
	select {
	case a.slots <- struct{}{}:
	default:
		a.waits.Add(1)
		a.waiting.Add(1)
		select {
		case a.slots <- struct{}{}:
		case <-g.srv.ctx.Done():
			// Closing: the connection runs on without a slot and is closed.
			a.waiting.Add(-1)
			return
		}
		a.waiting.Add(-1)
		// The give-back readied this goroutine in the giver's next-run
		// slot, which shares the giver's time slice: a chain of such
		// hand-offs from connection to connection kept the processor
		// from everything queued behind them (the committer, gRPC) for up
		// to a 10 ms slice, and halved SET -P16's throughput. A yield
		// puts it at the back of the run queue instead, where a read's
		// wake-up would have put it.
		g.admitted.Store(true)
		runtime.Gosched()
		return
	}
	g.admitted.Store(true)
}

// unadmit gives the connection's slot back, if it holds one.
func (g *guardConn) unadmit() {
	if g != nil && g.admitted.CompareAndSwap(true, false) {
		<-g.srv.admit.slots
	}
}

// enterWait is enter for a call that waits for others (a commit, WAIT, a
// blocking command): the connection gives its slot back first.
func (sess *Session) enterWait() context.Context {
	sess.g.unadmit()
	return sess.enter()
}

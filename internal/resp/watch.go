package resp

import (
	"context"
	"errors"
	"os"
	"time"
)

// Why a connection's socket is watched
//
// Redis frees a blocked client that disconnects. A tandem connection's
// goroutine runs its commands one at a time, and while one is in a Backend
// call (a write waiting for commit, a read waiting for the leader's read
// barrier, WAIT) nothing reads its socket, so nothing would notice that
// the client left: under quorum K with too few followers the goroutine,
// and what the write pins in the leader, would stay until the commit. So
// each Session has a context, and a Backend call that has not returned
// after watchDelay gets its socket watched: a goroutine reads it in the
// background and cancels the context on EOF or a reset.
//
// A call that returns sooner, as almost every write does, costs two atomic
// operations on its own session and nothing else: no timer, no goroutine,
// no system call. One sweeper goroutine per server looks every watchDelay
// for calls that were already running at its previous look, and starts
// their watches; while no call runs it looks less often, down to every
// watchIdlePeriod, and then parks until a call starts (enter wakes it:
// one atomic load more while it is not parked), so an idle server does
// not wake for it at all, and a call that starts on an idle server is
// watched after at most about watchIdlePeriod + watchDelay.
//
// What the watch reads (commands pipelined behind the blocked one) is
// framed and kept for redcon, in order, up to maxWatchHeld. A protocol
// error among it also ends the context: the connection is closing, and
// its commands before the bad one are still answered, but a Backend call
// among them sees the context canceled, as when the client left.

const (
	// watchDelay is how long a Backend call runs before its socket is
	// watched, and the sweeper's period while calls are running.
	watchDelay = 5 * time.Millisecond
	// watchIdlePeriod bounds how far the sweeper's period grows while no
	// call runs, so that an idle server wakes up rarely.
	watchIdlePeriod = 80 * time.Millisecond
	// maxWatchHeld bounds what a watch keeps of a client's input; past it
	// the watch ends and TCP flow control holds the client back, as it
	// would without a watch.
	maxWatchHeld = 64 << 10
)

// Session.call bits. Only the connection's goroutine sets and clears
// callActive and counts calls; the sweeper only sets callWatched, by
// compare-and-swap against a value it saw at its previous look, so it
// never marks a call that has since ended or a later one.
const (
	callActive  = 1 << 0 // a Backend call is running
	callWatched = 1 << 1 // the sweeper started a watch for it
	callStep    = 1 << 2 // one call, in the count above the flag bits
)

// enter marks the start of a Backend call for sess and returns the
// context to make it with. leave must follow when the call returns,
// before redcon reads from the connection again.
func (sess *Session) enter() context.Context {
	v := sess.call.Load() // neither flag is set between calls
	sess.call.Store(v + callStep | callActive)
	if srv := sess.srv; srv != nil && srv.sweepParked.Load() && srv.sweepParked.CompareAndSwap(true, false) {
		// After the store above: either the parking sweeper's last look
		// sees this call, or this load sees it parked.
		select {
		case srv.sweepWake <- struct{}{}:
		default:
		}
	}
	return sess.ctx
}

// leave marks the end of the call enter started and stops its watch if it
// has one.
func (sess *Session) leave() {
	v := sess.call.Load()
	if v&callWatched == 0 && sess.call.CompareAndSwap(v, v&^callActive) {
		return
	}
	// The sweeper set callWatched while holding watchMu, and set
	// watchStop before releasing it.
	sess.watchMu.Lock()
	stop := sess.watchStop
	sess.watchStop = nil
	sess.watchMu.Unlock()
	if stop != nil {
		stop()
	}
	sess.call.Store(v &^ (callActive | callWatched))
}

// sweep starts the watches of calls that outlast watchDelay, until Close.
func (s *Server) sweep() {
	defer close(s.swept)
	period := watchDelay
	t := time.NewTimer(period)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		active := false
		s.mu.Lock()
		for _, sess := range s.sessions {
			v := sess.call.Load()
			if v&callActive != 0 {
				active = true
				if v&callWatched == 0 && v == sess.seen {
					sess.startWatch(v)
				}
			}
			sess.seen = v
		}
		s.mu.Unlock()
		switch {
		case active:
			period = watchDelay
		case period < watchIdlePeriod:
			period = min(2*period, watchIdlePeriod)
		default:
			// Idle for a while: park until a call starts. The look
			// after parking catches a call that started before enter
			// could see the sweeper parked.
			s.sweepParked.Store(true)
			if !s.anyCallActive() {
				select {
				case <-s.ctx.Done():
					return
				case <-s.sweepWake:
				}
			} else if !s.sweepParked.CompareAndSwap(true, false) {
				<-s.sweepWake // enter unparked it and signals
			}
			period = watchDelay
		}
		t.Reset(period)
	}
}

// anyCallActive reports whether a Backend call is running on any session.
func (s *Server) anyCallActive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.call.Load()&callActive != 0 {
			return true
		}
	}
	return false
}

// watchNow starts watching the socket for the running call at once,
// unless the sweeper already did. Only the connection's goroutine calls
// it, inside the call.
func (sess *Session) watchNow() {
	if v := sess.call.Load(); v&callActive != 0 && v&callWatched == 0 {
		sess.startWatch(v)
	}
}

// startWatch starts watching the socket for the call whose state is v,
// unless it has ended since the sweeper saw it.
func (sess *Session) startWatch(v uint64) {
	if sess.g == nil {
		return
	}
	sess.watchMu.Lock()
	defer sess.watchMu.Unlock()
	if !sess.call.CompareAndSwap(v, v|callWatched) {
		return // the call ended
	}
	// The connection's goroutine does not touch the guardConn until
	// leave has stopped the watch: redcon reads and parses only between
	// handler calls.
	sess.watchStop = sess.g.watch(sess.cancel)
}

// watch reads the socket in the background, keeping what arrives for
// redcon, and calls gone if the client went away or broke the protocol.
// stop must be called before redcon reads again.
func (g *guardConn) watch(gone func()) (stop func()) {
	if g.err != nil || g.heldErr != nil {
		gone() // the client is already gone or broken
		return func() {}
	}
	if len(g.unfed) > 0 { // read before the socket's next bytes (bigarg.go)
		unfed := g.unfed
		g.unfed = nil
		if !g.keep(unfed) {
			gone()
			return func() {}
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for len(g.held) < maxWatchHeld {
			n, err := g.Conn.Read(buf)
			if n > 0 && !g.keep(buf[:n]) {
				gone()
				return
			}
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					g.heldErr = err
					gone()
				}
				return
			}
		}
	}()
	return func() {
		// Wake the background Read, then let redcon read normally.
		_ = g.Conn.SetReadDeadline(time.Now())
		<-done
		_ = g.Conn.SetReadDeadline(time.Time{})
	}
}

// keep frames data that arrived while a command blocked and appends it to
// held. It reports false on a protocol violation: the commands before it
// are kept, the rest dropped, and the next Read after them fails.
func (g *guardConn) keep(data []byte) bool {
	base := len(g.held)
	end, perr := g.f.feed(data)
	if end > 0 {
		g.heldEnd = base + end
	}
	if perr != nil {
		g.held = append(g.held, data[:end]...)
		g.err = perr
		return false
	}
	g.held = append(g.held, data...)
	return true
}

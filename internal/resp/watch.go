package resp

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/tidwall/redcon"
)

// maxWatchHeld bounds what watchClose keeps of a client's input while a
// command blocks; past it the watch ends and TCP flow control holds the
// client back, as it would without a watch.
const maxWatchHeld = 64 << 10

// watchClose returns a context for a command that may block indefinitely
// (WAIT with no timeout): it is canceled when the client goes away, as
// Redis frees a blocked client that disconnects, so the command does not
// pin a goroutine until the server stops. While the command blocks the
// socket is read in the background; what arrives (pipelined commands) is
// framed and kept for redcon in order. stop must be called before redcon
// reads again.
func (s *Server) watchClose(conn redcon.Conn) (ctx context.Context, stop func()) {
	g, ok := conn.NetConn().(*guardConn)
	if !ok {
		return s.ctx, func() {}
	}
	return g.watchClose(s.ctx)
}

func (g *guardConn) watchClose(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	if g.err != nil || g.heldErr != nil {
		cancel() // the client is already gone or broken
		return ctx, func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for len(g.held) < maxWatchHeld {
			n, err := g.Conn.Read(buf)
			if n > 0 && !g.keep(buf[:n]) {
				cancel()
				return
			}
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					g.heldErr = err
					cancel()
				}
				return
			}
		}
	}()
	return ctx, func() {
		// Wake the background Read, then let redcon read normally.
		_ = g.Conn.SetReadDeadline(time.Now())
		<-done
		_ = g.Conn.SetReadDeadline(time.Time{})
		cancel()
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

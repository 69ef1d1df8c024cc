package resp

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/tidwall/redcon"
)

// CLIENT UNBLOCK
//
// A Backend's blocking command (BLPOP and its kin) marks its connection
// blocked with BlockedCall for as long as it waits, and watches the
// channel it gets: CLIENT UNBLOCK id [TIMEOUT|ERROR] from any connection
// sends on it, and the command answers as if it timed out (TIMEOUT, the
// default) or with UnblockedByClient (ERROR). The Backend decides when
// it can still be unblocked (not once its pop is under way); the channel
// is the only coupling between the two.

// UnblockedByClient is a blocked command's reply to CLIENT UNBLOCK ...
// ERROR, Redis's text.
const UnblockedByClient = "UNBLOCKED client unblocked via CLIENT UNBLOCK"

type sessionKey struct{}

// blockState is the session's blocked call, if any.
type blockState struct {
	mu      sync.Mutex
	unblock chan bool // non-nil while a call is blocked; true: ERROR
}

// BlockedCall marks the connection of ctx (the context a Backend call
// got) blocked until done is called, and returns the channel on which
// CLIENT UNBLOCK asks it to end: true for ERROR, false for TIMEOUT. A
// context of no connection gets a nil channel (never ready).
//
// It also starts watching the connection's socket at once (watch.go),
// where other calls wait for the sweeper: a blocked call is expected to
// wait long, and a client that leaves it must stop counting as blocked
// (INFO blocked_clients) as soon as its close arrives, as in Redis. Left
// to the sweeper, one closed 5–85 ms after it blocked was still counted
// for that long, so a client that saw the count and sent CLIENT UNBLOCK
// for another call, not yet blocked, got 0 and left that call waiting
// for ever (Redis's "client unblock tests" hung in CI on it).
func BlockedCall(ctx context.Context) (unblocked <-chan bool, done func()) {
	sess, _ := ctx.Value(sessionKey{}).(*Session)
	if sess == nil {
		return nil, func() {}
	}
	sess.watchNow()
	sess.flushBuffered()
	ch := make(chan bool, 1)
	b := &sess.block
	b.mu.Lock()
	b.unblock = ch
	b.mu.Unlock()
	since := time.Now()
	return ch, func() {
		// Time blocked is no time served (stats.go, slowlog.go), as in
		// Redis.
		sess.blockedNs.Add(int64(time.Since(since)))
		b.mu.Lock()
		if b.unblock == ch {
			b.unblock = nil
		}
		b.mu.Unlock()
	}
}

// flushBuffered writes the replies redcon holds for the connection (those
// of the commands before the blocked one in the same read), as Redis
// writes a client's replies before it blocks: redcon writes them only
// after the last command of the read, which would keep them until the
// blocked call returns. A call that blocks runs on the connection's
// goroutine, redcon's writer's only user; a reply owed by the blocked
// call itself (owed.go) is of the one command of its read, so nothing is
// buffered before it and nothing is written here.
func (s *Session) flushBuffered() {
	if w := redcon.BaseWriter(s.conn); w != nil && len(w.Buffer()) > 0 {
		_ = w.Flush() // a failed write ends the connection, seen by the watch
	}
}

// unblock asks the session's blocked call, if any, to end; false: none
// is blocked (or one was already asked).
func (s *Session) unblock(withError bool) bool {
	b := &s.block
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.unblock == nil {
		return false
	}
	b.unblock <- withError // buffered, and sent at most once: unblock is cleared
	b.unblock = nil
	return true
}

// cmdClientUnblock is CLIENT UNBLOCK id [TIMEOUT|ERROR]: 1 if the client
// was blocked in a blocking command and is now asked to end it, else 0.
func cmdClientUnblock(s *Server, c redcon.Conn, args [][]byte) {
	if len(args) != 3 && len(args) != 4 {
		c.WriteError(errArity("client|unblock"))
		return
	}
	id, err := strconv.ParseUint(string(args[2]), 10, 64)
	if err != nil {
		c.WriteError(errNotInteger)
		return
	}
	withError := false
	if len(args) == 4 {
		switch {
		case eqFold(args[3], "timeout"):
		case eqFold(args[3], "error"):
			withError = true
		default:
			c.WriteError(errUnblockReason)
			return
		}
	}
	s.mu.Lock()
	target := s.sessions[id]
	s.mu.Unlock()
	if target != nil && target.unblock(withError) {
		c.WriteInt(1)
		return
	}
	c.WriteInt(0)
}

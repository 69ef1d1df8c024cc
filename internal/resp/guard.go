package resp

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Why a guard in front of redcon
//
// redcon's reader grows its buffer to whatever a client announces and
// sends: "$600000000" followed by data is buffered in full, and it has no
// cap on the number of arguments, on an inline line, or on a whole command.
// It also re-enters itself once per short read of an incomplete command, so
// a client that trickles a large command in small segments drives its stack
// deep. The guard sits between the socket and redcon and fixes both without
// forking redcon:
//
//   - It tracks RESP framing as bytes pass through (headers are parsed, bulk
//     bodies skipped by count) and refuses an over-limit header the moment
//     the header is complete, before any of its body is read, so nothing is
//     allocated for it.
//   - Its Read does not return until at least one command is complete or the
//     caller's buffer is full. redcon doubles its buffer when full, so a
//     command of n bytes takes O(log n) reads instead of O(n / segment).
//   - Its Read returns whole commands whenever one completed, holding back
//     the partial command after them, so redcon's buffer returns to its
//     4 KiB start after every read instead of doubling under a client that
//     streams a long pipeline (redcon never compacts it).
//
// On a violation the guard hands redcon the commands that completed before
// the bad header, then writes "-ERR Protocol error: ..." itself and fails
// the next Read; redcon then closes that connection only.

// Limits on what a client may send. Zero fields in Config take these.
const (
	// DefaultMaxBulkLen is Redis's default proto-max-bulk-len.
	DefaultMaxBulkLen = 512 << 20
	// DefaultMaxArgs bounds the arguments of one command. Redis allows up
	// to INT_MAX but bounds memory with its query buffer limit; 1M
	// arguments (DEL or MGET of a million keys) is ample.
	DefaultMaxArgs = 1 << 20
	// DefaultMaxCommandLen bounds the bytes of one command, like Redis's
	// default client-query-buffer-limit (1 GiB).
	DefaultMaxCommandLen = 1 << 30
	// maxInlineLen is Redis's PROTO_INLINE_MAX_SIZE.
	maxInlineLen = 64 << 10
	// maxNumLen is the most digits a header may carry: far more than any
	// limit, and few enough that the number cannot overflow an int64.
	maxNumLen = 18
)

type limits struct {
	maxBulk, maxArgs, maxCommand int64
}

// protocolError is a framing violation; its text follows "Protocol error: "
// as Redis words it.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "Protocol error: " + e.msg }

var (
	errBadMultibulkLen = &protocolError{"invalid multibulk length"}
	errBadBulkLen      = &protocolError{"invalid bulk length"}
	errInlineTooBig    = &protocolError{"too big inline request"}
	errCommandTooBig   = &protocolError{"command exceeds the query buffer limit"}
)

// Framer states.
const (
	fsStart      = iota // before the first byte of a command
	fsArrayLen          // in "*<n>", after '*'
	fsArrayLF           // after the array header's '\r'
	fsBulkStart         // expecting '$'
	fsBulkLen           // in "$<n>", after '$'
	fsBulkLF            // after the bulk header's '\r'
	fsBulkBody          // in a bulk's data
	fsBulkCR            // expecting the '\r' after the data
	fsBulkDataLF        // expecting the '\n' after the data
	fsInline            // in an inline command line
)

// framer follows RESP framing across reads. It mirrors redcon's reader:
// a command starting with '*' is a multibulk, anything else an inline line
// up to '\n'. It is at least as strict as redcon, so the two never disagree
// on where a valid command ends.
type framer struct {
	lim    limits
	state  uint8
	neg    bool  // the header number has a '-'
	digits int   // digits of the header number so far
	num    int64 // the header number so far
	args   int64 // bulks left in the current multibulk
	body   int64 // data bytes left in the current bulk
	cmdLen int64 // bytes of the current command so far
	done   int64 // commands completed, for tests
	// Inline state: whether the line has an argument for redcon (a byte
	// other than ' ', counting a '\r' only if not right before '\n'), and
	// whether the previous byte was a '\r'.
	inlineArgs, inlineCR bool
	// bigAt, when not 0, makes feed stop with errBigBulk after the header
	// of a bulk of at least that many bytes (bigarg.go), with hdrEnd the
	// offset just past it; startAt is the offset in the last feed's p
	// where the last command to start in it started (-1: none started).
	bigAt   int64
	hdrEnd  int
	startAt int
}

// feed scans p. It returns the offset just past the last command that
// completed in p (0 if none), or the first violation.
func (f *framer) feed(p []byte) (end int, err error) {
	// The current command's bytes so far are f.cmdLen (from earlier
	// feeds) plus p[start:i+1].
	start := 0
	f.startAt = -1
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch f.state {
		case fsStart:
			f.cmdLen, start = 0, i
			f.startAt = i
			if c == '*' {
				f.state = fsArrayLen
				f.startNum()
			} else {
				f.state = fsInline
				f.inlineArgs, f.inlineCR = false, false
				i-- // the byte is part of the line
				continue
			}
		case fsArrayLen, fsBulkLen:
			if c == '\r' {
				f.state++ // to fsArrayLF or fsBulkLF
			} else if !f.digit(c) {
				return end, f.headerErr()
			}
		case fsArrayLF:
			if c != '\n' || f.digits == 0 || f.neg || f.num <= 0 || f.num > f.lim.maxArgs {
				return end, errBadMultibulkLen
			}
			f.args = f.num
			f.state = fsBulkStart
		case fsBulkStart:
			if c != '$' {
				return end, &protocolError{"expected '$', got '" + string(c) + "'"}
			}
			f.state = fsBulkLen
			f.startNum()
		case fsBulkLF:
			if c != '\n' || f.digits == 0 || f.neg || f.num > f.lim.maxBulk {
				return end, errBadBulkLen
			}
			if f.cmdLen+int64(i+1-start)+f.num+2 > f.lim.maxCommand {
				return end, errCommandTooBig
			}
			f.body = f.num
			f.state = fsBulkBody
			if f.body == 0 {
				f.state = fsBulkCR
			}
			if f.bigAt > 0 && f.body >= f.bigAt {
				// The caller may take the command over (bigarg.go); if
				// not, feeding p[hdrEnd:] goes on where this stopped.
				f.hdrEnd = i + 1
				f.cmdLen += int64(i + 1 - start)
				return end, errBigBulk
			}
		case fsBulkBody:
			// Skip the data in one step; only its length matters here.
			n := min(f.body, int64(len(p)-i))
			f.body -= n
			i += int(n) - 1
			if f.body == 0 {
				f.state = fsBulkCR
			}
		case fsBulkCR:
			if c != '\r' {
				return end, errBadBulkLen
			}
			f.state = fsBulkDataLF
		case fsBulkDataLF:
			if c != '\n' {
				return end, errBadBulkLen
			}
			f.args--
			if f.args > 0 {
				f.state = fsBulkStart
			} else {
				f.state = fsStart
				end = i + 1
				f.done++
			}
		case fsInline:
			if c == '\n' {
				f.state = fsStart
				// A line with no arguments is no command: redcon skips it
				// and reads again, so it must not end a Read early.
				if f.inlineArgs {
					end = i + 1
					f.done++
				}
				continue
			}
			if f.inlineCR || (c != ' ' && c != '\r') {
				f.inlineArgs = true
			}
			f.inlineCR = c == '\r'
			if f.cmdLen+int64(i+1-start) > maxInlineLen {
				return end, errInlineTooBig
			}
		}
	}
	if f.state != fsStart {
		f.cmdLen += int64(len(p) - start)
	}
	return end, nil
}

func (f *framer) startNum() { f.neg, f.digits, f.num = false, 0, 0 }

// digit adds c to the header number; false means c cannot be part of it.
func (f *framer) digit(c byte) bool {
	if c == '-' && f.digits == 0 && !f.neg {
		f.neg = true
		return true
	}
	if c < '0' || c > '9' || f.digits == maxNumLen {
		return false
	}
	f.num = f.num*10 + int64(c-'0')
	f.digits++
	return true
}

func (f *framer) headerErr() error {
	if f.state == fsArrayLen {
		return errBadMultibulkLen
	}
	return errBadBulkLen
}

// guardListener wraps every accepted connection in a guardConn, tracked
// by srv until it closes.
type guardListener struct {
	net.Listener
	lim limits
	log *slog.Logger
	srv *Server
}

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	g := &guardConn{Conn: c, f: framer{lim: l.lim}, log: l.log, srv: l.srv, replyTimeout: l.srv.cfg.ReplyTimeout, bigTag: newBigTag()}
	if !l.srv.track(g) {
		c.Close()
		return nil, net.ErrClosed // redcon's accept loop ends on it
	}
	return g, nil
}

// guardConn is the connection redcon reads from and writes to.
type guardConn struct {
	net.Conn
	f   framer
	err error // the violation to report on the next Read
	log *slog.Logger
	// held is what was read from the socket and fed to the framer but not
	// yet given to redcon: the start of an incomplete command held back by
	// Read, or what arrived while a command blocked (watch). heldEnd
	// is the offset just past the last complete command in it (0: none),
	// heldErr a read error that came after it. heldBuf backs held.
	held, heldBuf []byte
	heldEnd       int
	heldErr       error
	// srv tracks the connection until Close (nil in tests that make a
	// guardConn by hand); replyTimeout is Config.ReplyTimeout.
	srv          *Server
	replyTimeout time.Duration
	closeOnce    sync.Once
	// owed, when not nil, is signalled once the reply a write path's
	// goroutine owes the connection is written (owed.go); set and cleared
	// by the connection's goroutine only.
	owed chan struct{}
	// paid is the channel owe hands out for every owed reply (owed.go).
	paid chan struct{}
	// tail, when not nil, is an owed reply that goes after the bytes of
	// redcon's next flush (owed.go); set and cleared by the connection's
	// goroutine only.
	tail *owedTail
	// tailMem is the owedTail that oweAfterFlush hands out, the
	// connection's one, reused: at most one reply is owed at a time.
	tailMem owedTail
	// owedW and owedBuf are the write and the buffer of the one owed
	// reply (owed.go), used by whichever goroutine writes it.
	owedW   owedWrite
	owedBuf replyBuf
	// big holds the commands with a large argument the guard read itself
	// (bigarg.go), for the connection's goroutine to take in order in
	// place of their stand-ins; bigTag is the stand-in's one argument
	// (nil: the guard reads no command itself).
	big    [][][]byte
	bigTag []byte
	// unfed is what readBig read past its command, not yet framed: Read
	// takes it before the socket.
	unfed []byte
}

// Write bounds each write by the reply timeout, if there is one, and
// closes the connection when one fails: for a connection detached from
// redcon (a subscriber), that ends the reader that would otherwise keep
// it, and its subscriptions, alive.
func (g *guardConn) Write(p []byte) (int, error) {
	if t := g.tail; t != nil {
		// An owed reply that follows these bytes (owed.go).
		g.tail = nil
		return t.flushed(p)
	}
	if len(p) == 0 {
		return 0, nil // redcon flushes after every read, replies or not
	}
	g.payOwed() // an owed reply goes first (owed.go)
	return g.write(p)
}

// write is Write without waiting for an owed reply.
func (g *guardConn) write(p []byte) (int, error) {
	if g.replyTimeout <= 0 {
		return g.Conn.Write(p)
	}
	if err := g.Conn.SetWriteDeadline(time.Now().Add(g.replyTimeout)); err != nil {
		return 0, err
	}
	n, err := g.Conn.Write(p)
	if err != nil {
		g.log.Debug("resp: write failed; closing the connection", "remote", g.RemoteAddr().String(), "err", err)
		g.Close()
	}
	return n, err
}

// Close closes the connection and stops tracking it.
func (g *guardConn) Close() error {
	err := g.Conn.Close()
	g.closeOnce.Do(func() {
		if g.srv != nil {
			g.srv.untrack(g)
		}
	})
	return err
}

// errClientClosed is returned to redcon after a protocol error reply.
var errClientClosed = errors.New("resp: connection closed after protocol error")

func (g *guardConn) Read(p []byte) (int, error) {
	// Held bytes come first: whole commands at once, then a partial one
	// that the socket's next bytes continue.
	if g.heldEnd > 0 {
		n := copy(p, g.held[:g.heldEnd])
		g.held, g.heldEnd = g.held[n:], g.heldEnd-n
		return n, nil
	}
	if g.err != nil {
		return 0, g.reject()
	}
	// cmdStart: where in p the command being read starts, if it does
	// (held bytes start at a command), else -1: redcon has its start.
	cmdStart := -1
	if len(g.held) > 0 || g.f.state == fsStart {
		cmdStart = 0
	}
	total := copy(p, g.held)
	g.held = g.held[total:]
	if len(g.held) > 0 {
		return total, nil // p is full and holds no complete command
	}
	if g.heldErr != nil {
		err := g.heldErr
		g.heldErr = nil
		return total, err
	}
	lastEnd := 0
	for total < len(p) {
		n, err := g.readConn(p[total:])
		if n > 0 {
			end, perr := g.feedBig(p, total, n, &cmdStart)
			if end > 0 {
				lastEnd = total + end
			}
			if perr == errBigTaken {
				return g.afterBig(p, lastEnd)
			}
			if perr != nil {
				g.err = perr
				if lastEnd > 0 {
					// Let redcon serve the commands before the bad one; the
					// error follows on the next Read, after their replies.
					return lastEnd, nil
				}
				return 0, g.reject()
			}
			total += n
		}
		if err != nil {
			return total, err
		}
		if lastEnd > 0 {
			// Hand redcon whole commands only and keep the partial one
			// that follows for the next Read. redcon never compacts its
			// buffer: it doubles it whenever a read leaves a partial
			// command at the end, and shrinks it back only once it has
			// consumed everything, so a client streaming a long pipeline
			// would otherwise grow it without bound.
			g.heldBuf = append(g.heldBuf[:0], p[lastEnd:total]...)
			g.held = g.heldBuf
			return lastEnd, nil
		}
	}
	return total, nil
}

// reject writes the protocol error reply and fails the read.
func (g *guardConn) reject() error {
	perr := g.err
	g.err = errClientClosed
	if perr == errClientClosed {
		return errClientClosed
	}
	g.log.Debug("resp: protocol error, closing connection", "remote", g.RemoteAddr().String(), "err", perr)
	// Bounded: a client that does not read must not pin this goroutine.
	_ = g.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = g.Conn.Write([]byte("-" + protocolErrorText(perr) + "\r\n"))
	return errClientClosed
}

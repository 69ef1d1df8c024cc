package resp

import (
	"io"

	"github.com/tidwall/redcon"
)

// CLIENT REPLY ON|OFF|SKIP
//
// OFF silences the replies to every command after it, SKIP to the next
// one only, ON restores them (and is answered OK; OFF and SKIP are not
// answered). Silencing is the layer's: serveOne hands the command a conn
// that drops what it writes, so no front end needs to know. While a
// connection's replies are not ON its commands are never started ahead
// in a pipeline (their replies would be written later, outside serveOne).
// Pub/sub traffic is not a reply and is never silenced, as in Redis 7:
// messages go out through the subscriber's own writer, and (un)subscribe
// confirmations through replyConn's unwrapping (writeSubReply).

// reply modes (Session.reply).
const (
	replyOn = iota
	replyOff
	replySkip // the next command's reply only
)

// silentConn drops every reply written to it.
type silentConn struct{ redcon.Conn }

func (silentConn) WriteError(string)              {}
func (silentConn) WriteString(string)             {}
func (silentConn) WriteBulk([]byte)               {}
func (silentConn) WriteBulkString(string)         {}
func (silentConn) WriteInt(int)                   {}
func (silentConn) WriteInt64(int64)               {}
func (silentConn) WriteUint64(uint64)             {}
func (silentConn) WriteArray(int)                 {}
func (silentConn) WriteNull()                     {}
func (silentConn) WriteRaw([]byte)                {}
func (silentConn) WriteAny(any)                   {}
func (silentConn) WriteBulkFrom(int64, io.Reader) {}

// replyConn is the conn that carries pub/sub confirmations, which CLIENT
// REPLY does not silence.
func replyConn(c redcon.Conn) redcon.Conn {
	if s, ok := c.(silentConn); ok {
		return s.Conn
	}
	return c
}

// silenced returns the conn a command's reply goes to under the
// session's reply mode, and moves SKIP on: it silences one command.
func (sess *Session) silenced(conn redcon.Conn, args [][]byte) redcon.Conn {
	if sess.reply == replyOn {
		return conn
	}
	if isClientReply(args) {
		return conn // sets the mode itself
	}
	if sess.reply == replySkip {
		sess.reply = replyOn
	}
	return silentConn{conn}
}

func isClientReply(args [][]byte) bool {
	return len(args) >= 2 && eqFold(args[0], "client") && eqFold(args[1], "reply")
}

// cmdClientReply is CLIENT REPLY ON|OFF|SKIP.
func cmdClientReply(c redcon.Conn, sess *Session, args [][]byte) {
	if len(args) != 3 {
		c.WriteError(errArity("client|reply"))
		return
	}
	switch {
	case eqFold(args[2], "on"):
		sess.reply = replyOn
		c.WriteString("OK")
	case eqFold(args[2], "off"):
		sess.reply = replyOff
	case eqFold(args[2], "skip"):
		if sess.reply == replyOn {
			sess.reply = replySkip
		}
	default:
		c.WriteError(errSyntax)
	}
}

package resp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/resp/replies"
)

// The error table: every error reply the package sends is one of these
// texts or is built by one of the functions below, and starts with an
// upper-case code word. Where Redis has a text for the case it is Redis's,
// byte for byte: clients match on them (redis-py raises ReadOnlyError on
// READONLY, go-redis retries LOADING, READONLY, MASTERDOWN and TRYAGAIN,
// Sentinel-aware clients rediscover the master on READONLY), and tests in
// this package and in commands check them.

// Replies for the Backend's sentinels: declared, with what each says about
// the command (applied or not), in package replies, which clients match
// them with.
const (
	replyReadOnly         = replies.ReadOnly
	replyLoading          = replies.Loading
	replyNotLeader        = replies.NotLeader
	replyFenced           = replies.Fenced
	replyFencedNote       = "tandem: this node is fenced"
	replyNoReplicas       = replies.NoReplicas
	replyOverloaded       = replies.Overloaded
	replyBusy             = replies.Busy
	replyBusyFunction     = replies.BusyFunction
	replyLeadershipLost   = replies.LeadershipLost
	replyReadElsewhere    = replies.ReadElsewhere
	replyPositionLost     = replies.PositionLost
	replyPositionLostTail = "; TANDEM.TOKEN RESET drops the session's positions"
)

// errBadToken answers TANDEM.TOKEN with a token it cannot parse.
func errBadToken(tok []byte, why error) string {
	return "ERR tandem: malformed token '" + string(trunc(tok, 64)) + "' (" + why.Error() + "); want t1:<epoch>:<lsn> as TANDEM.TOKEN answers it"
}

// Fixed replies for failures that are not the client's fault. None of
// them carries a Go error's text: that goes to the log.
const (
	replyShuttingDown = replies.ShuttingDown
	replyConnClosed   = "ERR internal error: connection closed"
	// replyInternal is followed by an incident id that the log line of
	// the failure carries too.
	replyInternal = "ERR internal error; see the server log, incident "
)

// Replies of the server commands (admin.go), Redis's texts.
const (
	errNotInteger        = "ERR value is not an integer or out of range"
	errSyntax            = "ERR syntax error"
	errDBIndex           = "ERR DB index is out of range"
	errWrongPass         = "WRONGPASS invalid username-password pair or user is disabled."
	errAuthNoPassword    = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errProtoNotInteger   = "ERR Protocol version is not an integer or out of range"
	errNoProto           = "NOPROTO unsupported protocol version"
	errBadClientName     = "ERR Client names cannot contain spaces, newlines or special characters."
	errTimeoutNotInteger = "ERR timeout is not an integer or out of range"
	errTimeoutNegative   = "ERR timeout is negative"
	errBadMasterPort     = "ERR Invalid master port"
	errNoConfigFile      = "ERR The server is running without a config file"
)

// errArity is Redis's reply to a command, or a "command|subcommand", with
// the wrong number of arguments.
func errArity(cmd string) string {
	return "ERR wrong number of arguments for '" + cmd + "' command"
}

// errUnknownSubcommand is Redis's reply to CMD <sub> for an unknown sub;
// cmd is upper case, as Redis prints it.
func errUnknownSubcommand(sub []byte, cmd string) string {
	return "ERR unknown subcommand '" + string(trunc(sub, 128)) + "'. Try " + cmd + " HELP."
}

// errHelloOption is HELLO's reply to an option it does not know.
func errHelloOption(opt []byte) string {
	return "ERR Syntax error in HELLO option '" + string(opt) + "'"
}

// errUnrecognizedOption is CLIENT SETINFO's reply to an attribute it does
// not know.
func errUnrecognizedOption(opt []byte) string {
	return "ERR Unrecognized option '" + string(opt) + "'"
}

// errBadLibInfo is CLIENT SETINFO's reply to a lib-name or lib-ver value
// with spaces or special characters; attr is lower case.
func errBadLibInfo(attr string) string {
	return "ERR " + attr + " cannot contain spaces, newlines or special characters."
}

// errConfigSet is CONFIG SET's reply to a parameter tandem cannot set
// (all but the hash encoding thresholds).
func errConfigSet(param []byte) string {
	return "ERR Unknown option or number of arguments for CONFIG SET - '" + string(trunc(param, 128)) + "'"
}

// errUnblockReason is CLIENT UNBLOCK's reply to a reason it does not know.
const errUnblockReason = "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR"

// errConfigSetShared is CONFIG SET's reply on a node that does not lead
// to a change of a setting the cluster shares (SettingsBackend): READONLY,
// as a write sent to a replica is answered, so that clients that follow
// it go to the leader.
func errConfigSetShared(name string) string {
	return "READONLY You can't change '" + name + "' on a replica: it is the cluster's setting, kept by the leader. CONFIG SET it on the leader."
}

// errConfigSetNotify is CONFIG SET's reply to a notify-keyspace-events
// value with a character that names no class.
const errConfigSetNotify = "ERR CONFIG SET failed (possibly related to argument 'notify-keyspace-events') - Invalid event class character. Use 'Ag$lshzxeKEtmd'."

// errConfigSetInteger is CONFIG SET's reply to a value that is not a
// non-negative integer for an integer parameter (name, lower case).
func errConfigSetInteger(name string) string {
	return "ERR CONFIG SET failed (possibly related to argument '" + name + "') - argument couldn't be parsed into an integer"
}

// errorText turns an error from a command or the Backend into the text of
// an error reply. It is the one place where errors become Redis replies:
//
//	ErrReadOnly              READONLY You can't write against a read only replica.
//	ErrLoading               LOADING Redis is loading the dataset in memory
//	ErrNotLeader             READONLY ... (tandem: this node is not the leader)
//	ErrFenced                MASTERDOWN Link with MASTER is down and replica-serve-stale-data
//	                         is set to 'no'. (tandem: this node is fenced[: <reason>])
//	ErrNoReplicas            NOREPLICAS Not enough good replicas to write.
//	ErrOverloaded            TRYAGAIN tandem: too many writes waiting for commit; retry
//	ErrBusy                  BUSY Redis is busy running a script. You can only call SCRIPT KILL ...
//	ErrBusyFunction          BUSY ... You can only call FUNCTION KILL or SHUTDOWN NOSAVE. (a function runs)
//	ErrLeadershipLost        UNCERTAIN tandem: the leader stopped before this write committed; ...
//	ErrReadElsewhere         TRYAGAIN tandem: read elsewhere: <reason>
//	ErrPositionLost          ERR tandem: the session's position is not in this cluster's history
//	                         (lost in a failover ..., or never written): <detail>; TANDEM.TOKEN RESET ...
//	*tooFewReplicasError     NOREPLICAS tandem: the write is committed ... only g of the n replicas ...
//	*commands.ArityError     ERR wrong number of arguments for '<cmd>' command
//	*commands.Error          ERR <text>  (syntax error, not an integer...)
//	canceled by Close        ERR internal error: server shutting down
//	canceled, client gone    ERR internal error: connection closed
//	anything else            ERR internal error; see the server log, incident <id>
//	                         (the error, client id, command and id logged at Error)
//
// The reason after ErrFenced is the text that a wrapping error adds before
// it ("lease lost: resp: fenced" gives ": lease lost"). A failed role
// change (REPLICAOF) is worded by adminErrorText instead.
func (s *Server) errorText(err error, sess *Session, cmd string) string {
	var arity *commands.ArityError
	var floor *tooFewReplicasError
	switch {
	case errors.As(err, &floor):
		return floor.Error()
	case errors.Is(err, ErrReadOnly):
		return replyReadOnly
	case errors.Is(err, ErrLoading):
		return replyLoading
	case errors.Is(err, ErrNotLeader):
		return replyNotLeader
	case errors.Is(err, ErrFenced):
		return fencedText(err)
	case errors.Is(err, ErrNoReplicas):
		return replyNoReplicas
	case errors.Is(err, ErrOverloaded):
		return replyOverloaded
	case errors.Is(err, ErrBusyFunction):
		return replyBusyFunction
	case errors.Is(err, ErrBusy):
		return replyBusy
	case errors.Is(err, ErrLeadershipLost):
		return replyLeadershipLost
	case errors.Is(err, ErrReadElsewhere):
		return replyReadElsewhere + reasonOf(err, ErrReadElsewhere, "this node cannot serve the session's read policy now")
	case errors.Is(err, ErrPositionLost):
		return replyPositionLost + reasonOf(err, ErrPositionLost, "lost") + replyPositionLostTail
	case errors.As(err, &arity):
		return errArity(arity.Name)
	case commands.IsInputError(err):
		return "ERR " + err.Error()
	case errors.Is(err, context.Canceled) && s.ctx.Err() != nil:
		// Close canceled the call: expected, and the write may or may not
		// commit, as with any error after submission.
		s.log.Debug("resp: command canceled by shutdown", "client", sess.id, "cmd", cmd)
		return replyShuttingDown
	case errors.Is(err, context.Canceled):
		// The client went away while its command waited; nobody reads
		// this reply.
		s.log.Debug("resp: command canceled, client gone", "client", sess.id, "cmd", cmd)
		return replyConnClosed
	}
	incident := fmt.Sprintf("%08x", rand.Uint32())
	s.log.Error("resp: command failed", "client", sess.id, "cmd", cmd, "incident", incident, "err", err)
	return replyInternal + incident
}

// adminErrorText words a failed role change: the reason (an unreachable
// host, say) is the operator's to read, not an internal error.
func (s *Server) adminErrorText(err error, sess *Session, cmd string) string {
	s.log.Warn("resp: role change failed", "client", sess.id, "cmd", cmd, "err", err)
	return "ERR " + oneLine(err.Error())
}

// protocolErrorText is the reply to a framing violation, as Redis words
// it ("ERR Protocol error: invalid bulk length"), before the connection
// is closed.
func protocolErrorText(perr error) string { return "ERR " + perr.Error() }

// fencedText is the MASTERDOWN reply, with the reason a wrapping error
// gives, if any.
func fencedText(err error) string {
	note := replyFencedNote
	if reason, ok := strings.CutSuffix(err.Error(), ": "+ErrFenced.Error()); ok && reason != "" {
		note += ": " + oneLine(reason)
	}
	return replyFenced + " (" + note + ")"
}

// reasonOf is the text a wrapping error adds around the sentinel:
// "why: sentinel" gives "why"; def when there is none.
func reasonOf(err, sentinel error, def string) string {
	why, ok := strings.CutSuffix(err.Error(), ": "+sentinel.Error())
	if !ok || why == "" {
		return def
	}
	return oneLine(why)
}

// oneLine replaces the line breaks in an error's text, which would end the
// reply early, with spaces.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", " ", "\r", " ", "\n", " ").Replace(s)
}

// unknownCommand is Redis 7's reply to an unknown command: the name and
// then the arguments quoted, each cut so that the list stays within 128
// bytes (the trailing space is Redis's too).
func unknownCommand(args [][]byte) string {
	b := make([]byte, 0, 64)
	b = append(b, "ERR unknown command '"...)
	b = append(b, trunc(args[0], 128)...)
	b = append(b, "', with args beginning with: "...)
	listed := 0
	for _, a := range args[1:] {
		if listed >= 128 {
			break
		}
		part := trunc(a, 128-listed)
		b = append(b, '\'')
		b = append(b, part...)
		b = append(b, '\'', ' ')
		listed += len(part) + 3
	}
	return string(b)
}

func trunc(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

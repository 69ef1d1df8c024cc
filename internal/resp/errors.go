package resp

import (
	"context"
	"errors"
	"strings"

	"github.com/tandemdb/tandem/internal/commands"
)

// Error replies for the Backend's sentinels. READONLY and LOADING are
// Redis's own texts, which clients recognise: redis-py raises
// ReadOnlyError, go-redis retries LOADING and READONLY, Sentinel-aware
// clients rediscover the master on READONLY.
const (
	replyReadOnly = "READONLY You can't write against a read only replica."
	replyLoading  = "LOADING Redis is loading the dataset in memory"
	// replyNotLeader answers a write on a node that is between roles or
	// fenced (lost its lease). It is a READONLY error on purpose: the
	// client's remedy is the same as on a replica (find the leader and
	// retry), and the write was not applied. The tail tells an operator
	// which case it was.
	replyNotLeader = "READONLY You can't write against a read only replica. (tandem: this node is not the leader)"
)

// errorText turns an error from a command or the Backend into the text of
// an error reply. It is the one place where errors become Redis replies,
// and every text it returns starts with an upper-case code word:
//
//	ErrReadOnly              READONLY You can't write against a read only replica.
//	ErrLoading               LOADING Redis is loading the dataset in memory
//	ErrNotLeader             READONLY ... (tandem: this node is not the leader)
//	*commands.ArityError     ERR wrong number of arguments for '<cmd>' command
//	*commands.Error          ERR <text>  (syntax error, not an integer...)
//	canceled by Close        ERR internal error: server shutting down
//	anything else            ERR internal error: <err>, logged at Error
func (s *Server) errorText(err error, sess *Session, cmd string) string {
	switch {
	case errors.Is(err, ErrReadOnly):
		return replyReadOnly
	case errors.Is(err, ErrLoading):
		return replyLoading
	case errors.Is(err, ErrNotLeader):
		return replyNotLeader
	case errors.Is(err, ErrFenced):
		// The Backend wraps ErrFenced as "resp: fenced: <reason>".
		return "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'. (tandem: this node is fenced" + strings.TrimPrefix(err.Error(), ErrFenced.Error()) + ")"
	case errors.Is(err, ErrNoReplicas):
		return "NOREPLICAS Not enough good replicas to write."
	case errors.Is(err, ErrOverloaded):
		return "TRYAGAIN tandem: too many writes waiting for commit; retry"
	case commands.IsInputError(err):
		return "ERR " + err.Error()
	case errors.Is(err, context.Canceled) && s.ctx.Err() != nil:
		// Close canceled the call: expected, and the write may or may not
		// commit, as with any error after submission.
		s.log.Debug("resp: command canceled by shutdown", "client", sess.id, "cmd", cmd)
		return "ERR internal error: server shutting down"
	case errors.Is(err, context.Canceled):
		// The client went away while its command waited; nobody reads
		// this reply.
		s.log.Debug("resp: command canceled, client gone", "client", sess.id, "cmd", cmd)
		return "ERR internal error: connection closed"
	}
	s.log.Error("resp: command failed", "client", sess.id, "cmd", cmd, "err", err)
	return "ERR internal error: " + err.Error()
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

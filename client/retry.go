package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemdb/tandem/internal/resp/replies"
)

// Retry is what may be done after an error (see the package comment).
type Retry int

const (
	// NoRetry: the error is the command's answer, or the caller gave up.
	NoRetry Retry = iota
	// RetryIdempotent: the command may have been applied; only an
	// idempotent command may be sent again.
	RetryIdempotent
	// RetryAny: the command was certainly not applied; any command may be
	// sent again.
	RetryAny
)

func (r Retry) String() string {
	switch r {
	case NoRetry:
		return "no retry"
	case RetryIdempotent:
		return "retry if idempotent"
	case RetryAny:
		return "retry any"
	}
	return fmt.Sprintf("Retry(%d)", int(r))
}

// ErrNoLeader: no leader was known, or none could be reached, within
// Options.FailoverTimeout. Every DialError is one (errors.Is).
var ErrNoLeader = errors.New("client: no reachable leader")

// errStale: a connection to a node that is no longer the leader refused to
// start a request.
var errStale = errors.New("client: connection to a former leader")

// DialError is a failure to connect to the leader: nothing was sent.
type DialError struct {
	Addr string // the last address tried ("" if no leader was known)
	Err  error
}

func (e *DialError) Error() string {
	if e.Addr == "" || e.Err == ErrNoLeader {
		return ErrNoLeader.Error()
	}
	return ErrNoLeader.Error() + " (last tried " + e.Addr + ": " + e.Err.Error() + ")"
}

func (e *DialError) Unwrap() []error { return []error{ErrNoLeader, e.Err} }

// notSentError: a write on a connection failed before any byte of the
// request left: the server cannot have seen it.
type notSentError struct{ err error }

func (e *notSentError) Error() string { return "client: request not sent: " + e.err.Error() }
func (e *notSentError) Unwrap() error { return e.err }

// Classify says what may be done after err (the table in the package
// comment).
func Classify(err error) Retry {
	var dialErr *DialError
	var notSent *notSentError
	var rerr redis.Error
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return NoRetry
	case errors.As(err, &dialErr), errors.As(err, &notSent), errors.Is(err, errStale),
		errors.Is(err, ErrNoLeader), errors.Is(err, redis.ErrPoolTimeout):
		return RetryAny
	case errors.As(err, &rerr):
		return classifyReply(rerr.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, redis.ErrClosed):
		return NoRetry
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return RetryAny
	}
	var nerr net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNABORTED),
		errors.As(err, &nerr), errors.As(err, &opErr):
		return RetryIdempotent
	}
	return NoRetry
}

// classifyReply sorts an error reply by the server's table of replies
// (internal/resp/replies, the one declaration of what each says).
func classifyReply(msg string) Retry {
	switch replies.Match(msg) {
	case replies.NotApplied:
		return RetryAny
	case replies.MaybeApplied:
		return RetryIdempotent
	}
	return NoRetry
}

// IsIdempotent reports whether running the command twice in a row leaves
// the same data and gives the same reply as running it once (the allow-list
// in the package comment). args are a go-redis command's Args().
func IsIdempotent(args []any) bool {
	if len(args) == 0 {
		return false
	}
	name := strings.ToLower(str(args[0]))
	if idempotent[name] {
		return true
	}
	switch name {
	case "set":
		// SET key value [EX s | PX ms | EXAT t | PXAT t]: an expiry is
		// the only option allowed, and it takes a value.
		opts := args[min(3, len(args)):]
		for i := 0; i < len(opts); i++ {
			switch strings.ToLower(str(opts[i])) {
			case "ex", "px", "exat", "pxat":
				i++ // its value
			default:
				return false // NX, XX, GET, KEEPTTL or unknown
			}
		}
		return len(args) >= 3
	case "getex":
		switch len(args) {
		case 2:
			return true
		case 3:
			return strings.EqualFold(str(args[2]), "persist")
		}
	}
	return false
}

var idempotent = map[string]bool{
	"get": true, "mget": true, "exists": true, "strlen": true, "getrange": true, "substr": true,
	"ttl": true, "pttl": true, "expiretime": true, "pexpiretime": true, "type": true,
	"scan": true, "keys": true, "dbsize": true, "ping": true, "echo": true, "info": true,
	"role": true, "time": true, "command": true,
	"setex": true, "psetex": true, "mset": true, "flushdb": true, "flushall": true,
	// A connection's session state (Session sends them around commands):
	// setting it again to the same value changes nothing.
	"tandem.token": true, "tandem.readpolicy": true, "tandem.user": true,
}

func str(a any) string {
	switch v := a.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	}
	return fmt.Sprint(a)
}

// mayRetry applies the policy to one command and its error.
func (c *Client) mayRetry(cmd redis.Cmder, err error) bool {
	switch Classify(err) {
	case RetryAny:
		return true
	case RetryIdempotent:
		return c.idempotent(cmd.Args())
	}
	return false
}

func (c *Client) idempotent(args []any) bool {
	if c.opt.Idempotent != nil {
		return c.opt.Idempotent(args)
	}
	return IsIdempotent(args)
}

// nested reports whether ctx is that of a command the hook already
// retries. go-redis sets a new connection up (HELLO, CLIENT SETINFO) inside
// the command that needed it, through the hooks, on that one connection: a
// retry there would send again on the same connection, which, dialed to a
// leader that has since changed, refuses every attempt until the deadline
// (CI failed TestFollowsLeaderByRole so). Failing at once lets the outer
// command retry, on a new connection to the new leader.
func nested(ctx context.Context) bool {
	_, ok := ctx.Value(deadlineKey{}).(time.Time)
	return ok
}

// hook carries out the retry policy around go-redis's processing.
type hook struct{ c *Client }

func (h hook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if nested(ctx) {
			return next(ctx, cmd)
		}
		r := h.c.newRetrier()
		ctx = r.within(ctx)
		for {
			seen := h.c.view.leader()
			err := next(ctx, cmd)
			if err == nil || ctx.Err() != nil || !h.c.mayRetry(cmd, err) {
				return err
			}
			if !r.pause(ctx, h.c, seen) {
				return err
			}
			cmd.SetErr(nil)
		}
	}
}

func (h hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if nested(ctx) {
			return next(ctx, cmds)
		}
		r := h.c.newRetrier()
		ctx = r.within(ctx)
		todo := cmds
		for len(todo) > 0 {
			seen := h.c.view.leader()
			err := next(ctx, todo)
			if ctx.Err() != nil {
				break
			}
			var again []redis.Cmder
			if isTx(todo) {
				again = h.c.retryTx(todo, err)
			} else {
				again = h.c.retrySuffix(todo)
			}
			if len(again) == 0 || !r.pause(ctx, h.c, seen) {
				break
			}
			for _, cmd := range again {
				cmd.SetErr(nil)
			}
			todo = again
		}
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil {
				return err
			}
		}
		return nil
	}
}

// retrySuffix returns the commands of a pipeline to send again: from the
// first whose error is retryable on, if every one of them may be retried;
// else none.
func (c *Client) retrySuffix(cmds []redis.Cmder) []redis.Cmder {
	first := -1
	for i, cmd := range cmds {
		if Classify(cmd.Err()) != NoRetry {
			first = i
			break
		}
	}
	if first < 0 {
		return nil
	}
	for _, cmd := range cmds[first:] {
		if Classify(cmd.Err()) != RetryAny && !c.idempotent(cmd.Args()) {
			return nil
		}
	}
	return cmds[first:]
}

func isTx(cmds []redis.Cmder) bool {
	return len(cmds) >= 2 && strings.EqualFold(cmds[0].Name(), "multi") && strings.EqualFold(cmds[len(cmds)-1].Name(), "exec")
}

// retryTx returns the whole MULTI/EXEC pipeline if it may be sent again:
// every error in it proves nothing ran, or it is idempotent throughout.
func (c *Client) retryTx(cmds []redis.Cmder, err error) []redis.Cmder {
	worst := RetryAny
	failed := false
	for _, cmd := range cmds {
		if e := cmd.Err(); e != nil {
			failed = true
			worst = min(worst, Classify(e))
		}
	}
	if !failed && err != nil {
		failed, worst = true, Classify(err)
	}
	if !failed || worst == NoRetry {
		return nil
	}
	if worst == RetryIdempotent {
		for _, cmd := range cmds[1 : len(cmds)-1] {
			if !c.idempotent(cmd.Args()) {
				return nil
			}
		}
	}
	return cmds
}

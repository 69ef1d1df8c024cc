// Package commands turns Redis data commands into replies and row-form log
// operations. It does no I/O: a command reads through a View and, if it
// writes, returns the operations the leader must log. The caller decides
// where the View comes from (the committed data on any node, or on the
// leader the committed data overlaid with its uncommitted writes) and what
// to do with the operations.
//
// # What it promises
//
//   - Redis 7 semantics for the commands in the table (Lookup): strings,
//     hashes and sets, down to the error texts and the edge cases of
//     option parsing.
//   - Row form: every operation carries the resulting value and absolute
//     expiry of its key, never the command. A command that touches one key
//     several times yields at most one operation per key, holding its final
//     state, so replaying the operations in order gives what the command
//     computed.
//   - Time comes only from Ctx.NowMs: the same View, arguments and NowMs
//     give the same reply and operations on every node.
//   - Exec trusts the arity: call Check first.
package commands

import (
	"errors"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// Value is a live string value and its absolute expiry. It is declared in
// package keyspace, below storage, so that storage can implement View
// without importing commands.
type Value = keyspace.Value

// View is the keyspace a command reads (see keyspace.View).
// Implementations hide expired keys: Get never returns a key whose
// ExpireAtMs is at or before Ctx.NowMs.
type View = keyspace.View

// KeyCounter is a View that knows how many keys it holds without a scan:
// storage's committed view, from the counts it keeps on apply. Like
// Redis's, the count includes keys whose expiry passed but whose deletion
// is not applied yet. DBSIZE uses it when the view has it.
type KeyCounter interface {
	KeyCount() int64
}

// TombstoneCounter is a View that knows about how many rows of a
// collection were deleted one by one, each leaving a tombstone that reads
// over the collection step over until Pebble compacts it: the leader's
// view (its overlay's keyspace.Hints). SPOP rewrites a small set under a
// new version when its tombstones outnumber its members.
type TombstoneCounter interface {
	SubDeleted(key []byte, version uint64) uint64
}

// ListPopper is a View that reads a list's elements for its pops through
// runs it keeps between commands: the leader's view (its overlay's
// keyspace.Hints.ListPop). ListPop is Sub of the element at index i of
// the list (key, version), popped from its tail end (tail) or its head
// end: a run of pops from one end reads its elements ahead in one
// iteration instead of a point read each.
type ListPopper interface {
	ListPop(key []byte, version, i uint64, tail bool) ([]byte, bool, error)
}

// SampleKeeper is a View that keeps a set's members drawn ahead between
// commands: the leader's view (its overlay's keyspace.Hints), where SPOP
// runs. SPOP draws members of a mid-sized set in one pass and hands them
// out over the next pops (setrand.go, "Drawn ahead").
type SampleKeeper interface {
	SetSample(key []byte) *keyspace.Sample
}

// Ctx is what a command may know besides its arguments.
type Ctx struct {
	NowMs int64 // the deciding node's clock, Unix milliseconds
	// Cursors holds SCAN cursors; nil disables SCAN continuation (SCAN 0
	// then returns every matching key at once, with cursor 0).
	Cursors *CursorTable
	// Scripts runs EVAL and its kin (scripts.go); nil refuses them.
	Scripts Scripter
	// Blocked says a blocking command's pop is run again for a client
	// that blocked: a source key of another type is passed over as if it
	// were absent (the client stays blocked), as Redis serves a blocked
	// client only from a key of the type it waits for.
	Blocked bool
	// MaxReplyBytes bounds the command's reply (replysize.go); 0 means
	// the process's max-reply-bytes (SetMaxReplyBytes). A transaction
	// gives each command what the replies before it left.
	MaxReplyBytes int64
}

// Flags classify a command.
type Flags uint8

const (
	// FlagWrite: the command may produce operations; only a leader runs it.
	FlagWrite Flags = 1 << iota
	// FlagRead: the command reads data; a follower that is loading refuses it.
	FlagRead
)

// Result is what a command produced.
type Result struct {
	Reply Reply
	// Ops are the row-form operations to log, in order. Empty for reads and
	// for writes that changed nothing (SET NX on an existing key).
	Ops []logrec.Op
	// Publish are messages to publish once the entry of Ops is applied:
	// the write's keyspace notifications (notify.go). Their bytes are
	// their own (never the arguments'): the leader keeps them until then.
	Publish []Message
	// ShapeOnly, on a result without Ops, says that the reply depends,
	// of the metadata rows the command read, only on each key's type,
	// version and expiry (whether it is there, and which collection it
	// is), not on its size, and of the sub-key rows only on those it read
	// one by one (View.Sub): an SADD of members already there, an SREM
	// of none. The leader then answers it once those are committed,
	// though writes that changed only the size of its key, or other
	// members, are in flight (package replication's overlayView).
	ShapeOnly bool
}

// Spec describes one command.
type Spec struct {
	Name  string // lower case, as Redis reports it in errors
	Arity int    // Redis convention: >0 exact, <0 at least -Arity (name included)
	Flags Flags
	// FirstKey, LastKey and KeyStep locate the key arguments the way
	// COMMAND INFO reports them: positions in args (0 is the name),
	// LastKey -1 means the last argument (-2 the one before it, BLPOP's),
	// all zero means no keys.
	FirstKey, LastKey, KeyStep int
	// Exec runs the command. args[0] is the command name. It returns an
	// *Error (or *ArityError) for bad input; anything else is an internal
	// error from the View.
	Exec func(ctx *Ctx, v View, args [][]byte) (Result, error)
	// Block is set for a blocking command (BLPOP...): it returns the keys
	// the command waits on and its timeout, or the input error Exec would
	// give. Exec is then the non-blocking form (what the command does
	// inside MULTI or a script); blocking.go says how a caller waits.
	Block func(args [][]byte) (BlockArgs, error)
}

// Error is an error caused by the client's input. The resp package replies
// "ERR " followed by its text. Every error a command returns for bad input
// is an *Error or an *ArityError; callers tell input errors from internal
// ones with IsInputError.
type Error struct {
	msg  string
	base *Error // the sentinel this error is an instance of, if any
}

func (e *Error) Error() string { return e.msg }

// Is reports whether target is the sentinel e instantiates, so that
// errors.Is(err, ErrInvalidExpire) holds for "invalid expire time in 'set'
// command" as well.
func (e *Error) Is(target error) bool { return e.base != nil && target == e.base }

func newError(msg string) *Error { return &Error{msg: msg} }

// InputError is an *Error with text msg, for callers outside this package
// that refuse a command for what it asks (the replication leader refuses an
// op its followers cannot read yet).
func InputError(msg string) error { return newError(msg) }

// Errors a command returns for bad input. Their texts are Redis's, without
// the "ERR " the resp package adds.
var (
	ErrSyntax     = newError("syntax error")
	ErrNotInteger = newError("value is not an integer or out of range")
	ErrNotFloat   = newError("value is not a valid float")
	ErrOverflow   = newError("increment or decrement would overflow")
	// ErrDecrOverflow: DECRBY with the most negative integer, whose
	// negation does not exist.
	ErrDecrOverflow = newError("decrement would overflow")
	// ErrNaN: INCRBYFLOAT would store NaN or an infinity.
	ErrNaN = newError("increment would produce NaN or Infinity")
	// ErrInvalidExpire is the sentinel behind "invalid expire time in
	// '<cmd>' command"; commands return an instance naming themselves.
	ErrInvalidExpire = newError("invalid expire time")
	ErrInvalidCursor = newError("invalid cursor")
	// ErrTooLarge: APPEND or SETRANGE would make a value longer than
	// MaxValueLen.
	ErrTooLarge = newError("string exceeds maximum allowed size (proto-max-bulk-len)")
	// ErrOffsetRange: SETRANGE with a negative offset.
	ErrOffsetRange = newError("offset is out of range")
)

// invalidExpire is ErrInvalidExpire as Redis words it for command name.
func invalidExpire(name string) error {
	return &Error{msg: "invalid expire time in '" + name + "' command", base: ErrInvalidExpire}
}

// ArityError is returned (by Check) when a command gets the wrong number of
// arguments.
type ArityError struct{ Name string }

func (e *ArityError) Error() string {
	return "wrong number of arguments for '" + e.Name + "' command"
}

// IsInputError reports whether err was caused by the client's input (an
// *Error or *ArityError anywhere in its chain), as opposed to an internal
// failure such as a storage error.
func IsInputError(err error) bool {
	var e *Error
	var a *ArityError
	return errors.As(err, &e) || errors.As(err, &a)
}

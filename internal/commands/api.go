// Package commands turns Redis data commands into replies and row-form log
// operations. It does no I/O: a command reads through a View and, if it
// writes, returns the operations the leader must log. The caller decides
// where the View comes from (the committed data on any node, or on the
// leader the committed data overlaid with its uncommitted writes) and what
// to do with the operations.
package commands

import (
	"errors"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Value is a live string value and its absolute expiry.
type Value struct {
	Data       []byte
	ExpireAtMs int64 // absolute Unix milliseconds; 0 means no expiry
}

// View is the keyspace a command reads. Implementations hide expired keys:
// Get never returns a key whose ExpireAtMs is at or before Ctx.NowMs.
type View interface {
	// Get returns the live value of key. The returned slices may alias
	// storage and are valid only until the command returns.
	Get(key []byte) (Value, bool, error)
	// Scan calls fn for live keys >= start in ascending order until fn
	// returns false. The key slice is valid only during the call.
	Scan(start []byte, fn func(key []byte, v Value) bool) error
}

// Ctx is what a command may know besides its arguments.
type Ctx struct {
	NowMs int64 // the deciding node's clock, Unix milliseconds
	// Cursors holds SCAN cursors; nil disables SCAN continuation.
	Cursors *CursorTable
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
}

// Spec describes one command.
type Spec struct {
	Name  string // lower case, as Redis reports it in errors
	Arity int    // Redis convention: >0 exact, <0 at least -Arity (name included)
	Flags Flags
	// Exec runs the command. args[0] is the command name. It returns an error
	// from the sentinel set below for bad arguments; anything else is an
	// internal error from the View.
	Exec func(ctx *Ctx, v View, args [][]byte) (Result, error)
}

// Errors a command returns for bad input. The resp package maps each to its
// Redis text in one table.
var (
	ErrSyntax        = errors.New("syntax error")
	ErrNotInteger    = errors.New("value is not an integer or out of range")
	ErrOverflow      = errors.New("increment or decrement would overflow")
	ErrInvalidExpire = errors.New("invalid expire time")
	ErrInvalidCursor = errors.New("invalid cursor")
)

// ArityError is returned (by Check) when a command gets the wrong number of
// arguments.
type ArityError struct{ Name string }

func (e *ArityError) Error() string {
	return "wrong number of arguments for '" + e.Name + "' command"
}

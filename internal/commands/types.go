package commands

import (
	"errors"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// WrongType is Redis's reply to a command on a key of another type.
const WrongType = ErrorReply("WRONGTYPE Operation against a key holding the wrong kind of value")

// errWrongType is returned by the type-checking reads below; every
// command's Exec turns it into the WrongType reply (see wrapWrongType).
var errWrongType = errors.New("commands: wrong type")

// wrapWrongType answers WrongType for a command that met a key of another
// type, with no ops: the command changed nothing.
func wrapWrongType(exec func(*Ctx, View, [][]byte) (Result, error)) func(*Ctx, View, [][]byte) (Result, error) {
	return func(ctx *Ctx, v View, args [][]byte) (Result, error) {
		r, err := exec(ctx, v, args)
		if err != nil && errors.Is(err, errWrongType) {
			return Result{Reply: WrongType}, nil
		}
		return r, err
	}
}

// getTyped reads key, refusing a live key of another type than t.
func getTyped(v View, key []byte, t keyspace.Type) (Value, bool, error) {
	val, ok, err := v.Get(key)
	if err != nil || !ok {
		return Value{}, false, err
	}
	if val.Type != t {
		return Value{}, false, errWrongType
	}
	return val, true, nil
}

// stat reads key's metadata without a long string's value when the view
// can (keyspace.Statter), else as Get: for commands that need only a key's
// type, expiry or length (keyspace.StrLen), never its Data.
func stat(v View, key []byte) (Value, bool, error) {
	if s, ok := v.(keyspace.Statter); ok {
		return s.Stat(key)
	}
	return v.Get(key)
}

// getString reads key as a string (errWrongType for another type).
func getString(v View, key []byte) (Value, bool, error) {
	return getTyped(v, key, keyspace.TypeString)
}

// newVersion is the version of a collection the command creates: the
// view's NewVersion, the LSN of the entry being built (0 on a view that
// builds none: a bug in the caller).
func newVersion(v View) (uint64, error) {
	ver := v.NewVersion()
	if ver == 0 {
		return 0, errNoVersion
	}
	return ver, nil
}

// collectionForWrite reads key as a collection of type typ for a write:
// the live one, or a new empty one at the view's new version.
func collectionForWrite(t *txn, key []byte, typ keyspace.Type) (c Value, existed bool, err error) {
	c, existed, err = getTyped(t.view(), key, typ)
	if err != nil || existed {
		return c, existed, err
	}
	ver, err := newVersion(t.v)
	if err != nil {
		return Value{}, false, err
	}
	return Value{Type: typ, Version: ver}, false, nil
}

package keyspace

import (
	"fmt"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Writer takes row writes. Storage's batch, the leader's overlay and a
// command's transaction (Layer) implement it. The values Apply passes are
// rows it built for the call or the op's own Value, so a Writer may keep
// them as long as the op's bytes are not modified (the leader's entries
// own theirs; a command's args outlive its transaction). The row keys it
// passes it built for the call (in the arena or an allocation of their
// own) and no one writes again, so a Writer may keep them too, without a
// copy (Layer's map and storage's touched rows key on them).
type Writer interface {
	Set(k, v []byte)
	Delete(k []byte)
	// DeleteRange deletes every row in [lo, hi).
	DeleteRange(lo, hi []byte)
}

// StringWriter is a Writer that takes a long string's value apart from its
// row: Apply calls SetString for a put of a string longer than
// ChunkThreshold instead of building its metadata row (a copy of the
// value), so that storage can write it in chunks (chunk.go) straight from
// the op. Its meaning is the Set of that row.
type StringWriter interface {
	Writer
	SetString(key, value []byte, expireAtMs int64)
}

// Apply is the one meaning of a log op in rows: what storage writes to
// Pebble, the leader's overlay and a transaction hold in memory. Each row
// it builds is one allocation of its final size (a SET's row is built on
// every node, and twice on the leader: overlay and storage). It is ApplyIn
// without an arena.
func Apply(w Writer, op *logrec.Op) error { return ApplyIn(w, op, nil) }

// ApplyIn is Apply building the row keys and rows in a (nil: one
// allocation each; see Arena for when a Writer may use one).
func ApplyIn(w Writer, op *logrec.Op, a *Arena) error {
	switch op.Kind {
	case logrec.OpPut:
		if sw, ok := w.(StringWriter); ok && len(op.Value) > ChunkThreshold {
			sw.SetString(op.Key, op.Value, op.ExpireAtMs)
			return nil
		}
		w.Set(a.MetaKey(op.Key), AppendMetaRow(a.take(8+len(op.Value)), Value{Type: TypeString, Data: op.Value, ExpireAtMs: op.ExpireAtMs}))
	case logrec.OpDelete:
		w.Delete(a.MetaKey(op.Key))
	case logrec.OpMeta:
		if !Type(op.Type).IsCollection() {
			return fmt.Errorf("keyspace: meta op of type %d: %w", op.Type, logrec.ErrCorrupt)
		}
		w.Set(a.MetaKey(op.Key), AppendMetaRow(a.take(typedLen), Value{Type: Type(op.Type), ExpireAtMs: op.ExpireAtMs, Version: op.Version, Size: op.Size}))
	case logrec.OpSubPut:
		w.Set(a.SubKey(op.Key, op.Version, op.Sub), op.Value)
	case logrec.OpSubDel:
		w.Delete(a.SubKey(op.Key, op.Version, op.Sub))
	case logrec.OpDrop:
		w.Delete(a.MetaKey(op.Key))
		lo, hi := SubSpan(op.Key, op.Version)
		w.DeleteRange(lo, hi)
	case logrec.OpFlushAll:
		// Not the function libraries: they are not keys (functions.go).
		w.DeleteRange(MetaLower, MetaUpper)
		w.DeleteRange(SubLower, SubUpper)
	case logrec.OpFunctions:
		if _, err := DecodeLibraries(op.Value); err != nil {
			return err
		}
		if len(op.Value) == 0 {
			w.Delete(FunctionsKey)
		} else {
			w.Set(FunctionsKey, op.Value)
		}
	default:
		return fmt.Errorf("keyspace: op kind %v: %w", op.Kind, logrec.ErrCorrupt)
	}
	return nil
}

// DeleteOp is the op that deletes key, whose metadata is v: a drop of its
// version for a collection (its sub-key rows go with it), a delete for a
// string.
// (A chunked string reads as an ordinary string, Version 0: its chunks are
// storage's, which clears them.)
func DeleteOp(key []byte, v Value) logrec.Op {
	if v.Type == TypeString {
		return logrec.Op{Kind: logrec.OpDelete, Key: key}
	}
	return logrec.Op{Kind: logrec.OpDrop, Key: key, Version: v.Version}
}

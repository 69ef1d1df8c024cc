package keyspace

import "github.com/tandemdb/tandem/internal/logrec"

// Arena hands out the row keys and rows ApplyIn builds, carved from a few
// large buffers instead of one allocation each: a Writer that keeps them
// only for a short while (storage's Apply, until its batch is committed
// and the row cache has copied what it keeps) saves an allocation or two
// per op, on every node. A Writer that keeps rows long (the leader's
// overlay and hints) gives each entry an arena of its own, sized exactly
// (NewArena(RowBytes summed)): an arena's buffer lives as long as any row
// in it, so a shared one would pin every entry's rows to the last.
//
// Invariant: a slice handed out is never written again by the arena (each
// has its capacity capped at its length, and a new buffer is started
// when one is full, never grown in place), so it stays valid and unchanged
// as long as its holder keeps it, like a slice of its own allocation.
//
// The zero Arena is ready to use; a nil *Arena allocates every slice on
// its own. An Arena is not safe for concurrent use.
type Arena struct {
	buf []byte
	// next is the size of the next buffer.
	next int
}

const (
	arenaMin = 4 << 10
	arenaMax = 64 << 10
)

// NewArena returns an arena whose first buffer holds size bytes (at most
// 64 KiB): what the caller will build, RowBytes summed over its ops, so
// that an arena that lives as long as its rows (the overlay's, one per
// entry) holds no more than they need.
func NewArena(size int) *Arena {
	return &Arena{buf: make([]byte, 0, min(max(size, 0), arenaMax)), next: arenaMin}
}

// RowBytes is how many bytes of row keys and rows ApplyIn builds for op in
// an arena (the rows a Writer takes apart, a long string's value, a
// drop's span, are not built there).
func RowBytes(op *logrec.Op) int {
	switch op.Kind {
	case logrec.OpPut:
		if len(op.Value) > ChunkThreshold {
			return 1 + len(op.Key) // a StringWriter's; else the row is its own
		}
		return 1 + len(op.Key) + 8 + len(op.Value)
	case logrec.OpDelete, logrec.OpDrop:
		return 1 + len(op.Key)
	case logrec.OpMeta:
		return 1 + len(op.Key) + typedLen
	case logrec.OpSubPut, logrec.OpSubDel:
		return 13 + len(op.Key) + len(op.Sub)
	}
	return 0
}

// take returns an empty slice with room for exactly n bytes: appending up
// to n bytes to it writes into the arena, past n it reallocates.
func (a *Arena) take(n int) []byte {
	if a == nil {
		return make([]byte, 0, n)
	}
	if n > cap(a.buf)-len(a.buf) {
		if n > arenaMax/4 {
			return make([]byte, 0, n) // large: an allocation of its own
		}
		size := max(a.next, arenaMin)
		a.next = min(2*size, arenaMax)
		a.buf = make([]byte, 0, size)
	}
	s := len(a.buf)
	a.buf = a.buf[:s+n]
	return a.buf[s : s : s+n]
}

// MetaKey is MetaKey(key) in the arena.
func (a *Arena) MetaKey(key []byte) []byte {
	return AppendMetaKey(a.take(1+len(key)), key)
}

// SubKey is SubKey(key, version, sub) in the arena.
func (a *Arena) SubKey(key []byte, version uint64, sub []byte) []byte {
	return append(AppendSubPrefix(a.take(13+len(key)+len(sub)), key, version), sub...)
}

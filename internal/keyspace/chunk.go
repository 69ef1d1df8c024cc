package keyspace

import (
	"encoding/binary"
	"fmt"
)

// # Large strings
//
// A string is a metadata row holding its value inline (the format strings
// always had), except that storage may keep a long one as chunks: a
// metadata row of the collection shape with type TypeString (a "chunked
// string row": 0x80|TypeString, expireAtMs, version, size = the value's
// length in bytes) and the value cut into sub-key rows of (key, version)
// at ChunkSub(i), ChunkBytes each (the last one shorter):
//
//	'd' key                      -> 0x81 | expireAtMs | version | size
//	's' keyLen key version i(4) -> value[i*ChunkBytes : (i+1)*ChunkBytes]
//
// Why: Pebble keeps a batch, its WAL record, a memtable or flushable
// batch, a flush's block and its compressed copy of a row whole, so a
// 64 MB value in one row cost about five times its size in memory while
// it was written; in chunks no Pebble buffer holds more than a few of
// them. The log and every layer above storage (commands, the leader's
// overlay, a transaction's Layer) still see one string row: the chunked
// form is how storage keeps it, and Reader puts it back together
// (GetAny, Scan), so every string command reads a chunked string as the
// string it is. A chunked string's Value as Reader returns it is an
// ordinary string (Data whole, Version 0).
//
// The chunks live in the version's sub-key span, so everything that
// keeps a collection's rows keeps them too: a snapshot or digest sends or
// hashes them as the live rows of the version the metadata names, Sweep
// removes them once no metadata names their version (a string written
// over a chunked one leaves them, as SET over a hash leaves its fields),
// and a drop of the version takes them with one range tombstone. The
// version is storage's to choose; it must be one no collection of the
// key can have had and no later one can get while these rows are live
// (storage uses the LSN of the entry that writes the value, and clears
// that version's span before another row for the key is written in the
// same entry).

// ChunkBytes is the length of every chunk of a chunked string but the
// last. Part of the row format: a reader finds chunk i at ChunkSub(i).
const ChunkBytes = 256 << 10

// ChunkThreshold: storage keeps strings longer than this in chunks. Not
// part of the format (a reader takes either form): it only trades a few
// more rows for smaller ones.
const ChunkThreshold = 1 << 20

// ChunkSub is the sub-key of chunk i.
func ChunkSub(i uint32) []byte { return binary.BigEndian.AppendUint32(nil, i) }

// Chunks is how many chunks a value of size bytes is cut into.
func Chunks(size uint64) uint64 { return (size + ChunkBytes - 1) / ChunkBytes }

// AppendChunkedRow appends the metadata row of a string of size bytes
// kept in chunks of (key, version), expiring at expireAtMs.
func AppendChunkedRow(dst []byte, expireAtMs int64, version, size uint64) []byte {
	dst = append(dst, typedFlag|byte(TypeString))
	dst = binary.BigEndian.AppendUint64(dst, uint64(expireAtMs))
	dst = binary.BigEndian.AppendUint64(dst, version)
	return binary.BigEndian.AppendUint64(dst, size)
}

// IsChunkedRow reports whether a metadata row is a chunked string's.
func IsChunkedRow(row []byte) bool {
	return len(row) == typedLen && row[0] == typedFlag|byte(TypeString)
}

// StringValue is the inline value of a metadata row holding a string's
// value inline, and its expiry: ok is false for any other row (a
// collection's, a chunked string's), which storage writes as it is.
func StringValue(row []byte) (value []byte, expireAtMs int64, ok bool) {
	if len(row) < 8 || row[0] >= typedFlag {
		return nil, 0, false
	}
	return row[8:], int64(binary.BigEndian.Uint64(row)), true
}

// assemble reads the chunks of a chunked string v (as DecodeMetaRow
// returns it: Version and Size set, no Data) into one buffer of its exact
// size, and returns it as an ordinary string Value. A chunk missing or of
// the wrong length is ErrCorrupt: the metadata row and its chunks are
// written together (storage's apply commits the chunks first).
func assemble(r Rows, key []byte, v Value) (Value, error) {
	data := make([]byte, 0, v.Size)
	lo, hi := SubSpan(key, v.Version)
	n := len(lo)
	var bad error
	err := r.Iter(lo, hi, func(k, row []byte) bool {
		sub := k[n:]
		want := uint64(len(data)) / ChunkBytes
		if len(sub) != 4 || uint64(binary.BigEndian.Uint32(sub)) != want || uint64(len(data))%ChunkBytes != 0 {
			bad = fmt.Errorf("%w: chunk %x of key %q, %d of %d bytes read", ErrCorrupt, sub, key, len(data), v.Size)
			return false
		}
		if uint64(len(row)) != min(ChunkBytes, v.Size-uint64(len(data))) {
			bad = fmt.Errorf("%w: chunk %d of key %q is %d bytes", ErrCorrupt, want, key, len(row))
			return false
		}
		data = append(data, row...)
		return uint64(len(data)) < v.Size
	})
	if err != nil {
		return Value{}, err
	}
	if bad != nil {
		return Value{}, bad
	}
	if uint64(len(data)) != v.Size {
		return Value{}, fmt.Errorf("%w: key %q: %d of %d bytes in chunks", ErrCorrupt, key, len(data), v.Size)
	}
	return Value{Type: TypeString, Data: data, ExpireAtMs: v.ExpireAtMs}, nil
}

// chunked reports whether v, as DecodeMetaRow returned it, is a chunked
// string's metadata.
func chunked(v Value) bool { return v.Type == TypeString && v.Version != 0 }

package storage

import (
	"encoding/binary"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// List blocks in the row cache (keyspace's listblock.go): LRANGE reads a
// list's elements 32 at a time, one row cache lookup per block, instead of
// one per element.
//
// A block is cached in the row cache itself, under its block key (a
// sub-key row key of the list's version, in the version's group), beside
// the element rows it was made from, and under the same promise: never
// stale. It is made only from element rows the row cache holds (no Pebble
// read: a block missing a row is not made, and the reader reads the rows
// as before, which fills the cache for the next read), under the token
// its Get miss returned, taken before the element rows are read; and
// every writer of an element row drops the block of its index after it
// has put or dropped the row (Apply, IngestRows: dropListBlock), so a
// block made from a row a write replaced is not filled, and a cached one
// goes. A drop of the version drops its blocks with its rows (one group);
// FLUSHALL and a seed's BeginIngest clear both. The blocks share the row
// cache's budget and eviction: nothing else to size.

var _ keyspace.ListBlockRows = dbRows{}

// ListBlock implements keyspace.ListBlockRows.
func (r dbRows) ListBlock(prefix []byte, head, tail, idx uint64) (keyspace.ListBlock, bool) {
	lo, hi := keyspace.ListBlockSpan(idx, head, tail)
	if idx < lo || idx >= hi {
		return keyspace.ListBlock{}, false
	}
	n := len(prefix)
	bk := binary.BigEndian.AppendUint64(prefix, idx>>keyspace.ListBlockShift)
	bk = append(bk, keyspace.ListBlockMark)
	raw, ok, token := r.d.rows.Get(bk)
	if ok {
		// A cached block holds the list's whole span of it: every write of
		// an index in it dropped it. Checked all the same, as cheap.
		if b, ok := keyspace.ParseListBlock(raw); ok && b.First == lo && b.Len() == int(hi-lo) {
			return b, true
		}
	}
	// Make it from the element rows the cache holds (their keys in a
	// buffer of their own: bk is Fill's key below).
	var vals [1 << keyspace.ListBlockShift][]byte
	ek := make([]byte, n, n+8)
	copy(ek, prefix[:n])
	size := 0
	for i := lo; i < hi; i++ {
		ek = binary.BigEndian.AppendUint64(ek[:n], i)
		row, ok, _ := r.d.rows.Get(ek)
		if !ok || row == nil {
			return keyspace.ListBlock{}, false
		}
		vals[i-lo] = row
		size += len(row)
	}
	enc := keyspace.ListBlockLen(int(hi-lo), size)
	if !r.d.rows.Cacheable(len(bk), enc) {
		return keyspace.ListBlock{}, false
	}
	row := keyspace.AppendListBlock(make([]byte, 0, enc), lo, vals[:hi-lo])
	r.d.rows.Fill(bk, row, token)
	b, _ := keyspace.ParseListBlock(row)
	return b, true
}

// dropListBlock drops from the row cache the list block that holds the
// row at row key k, if k can be a list element's (an 8-byte sub-key), after
// the row's write or delete is readable and its row cache entry updated.
// buf is scratch for the block's key; the grown buffer is returned.
func (d *DB) dropListBlock(buf, k []byte) []byte {
	bk, ok := keyspace.ListBlockKeyOf(buf[:0], k)
	if ok {
		d.rows.Invalidate(bk)
	}
	return bk
}

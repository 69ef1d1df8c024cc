package keyspace

import (
	"encoding/binary"
)

// List blocks: a list's elements held in memory in runs, for reads of
// many elements (LRANGE).
//
// A list's elements are at consecutive indexes (see "Lists"), so a read of
// n elements by point reads costs n lookups in a row cache: n hashes, n
// locks, n probes of a table that mostly misses the CPU's caches (under
// redis-benchmark's LRANGE_100 they were the leader's largest cost). A
// block is the elements at the indexes [b<<ListBlockShift,
// (b+1)<<ListBlockShift) of one list version that the list holds when it
// is made, packed in one row (AppendListBlock): one lookup answers up to
// 1<<ListBlockShift elements.
//
// A block is kept under ListBlockKey, a sub-key row key of the list's
// version with a 9-byte sub-key, so a cache that groups rows by
// collection version drops it with them. No stored row has that key: a
// list's rows are at 8-byte sub-keys (elements) and the empty one (the
// head row), and a (key, version) holds the rows of one type at a time (a
// version is the LSN of the entry that made the collection, and its rows
// go, by a range delete of the version, before another collection of the
// key can be made in that entry), so a hash field or set member of 9
// bytes never shares a version with the list whose block has its key.
//
// Whoever holds blocks must drop a block whenever a row at one of its
// indexes is written or deleted (ListBlockKeyOf gives the block of an
// element's row key), and with the list version's rows.

// ListBlockShift: a block holds the elements of 1<<ListBlockShift
// consecutive indexes (32: LRANGE 0 99 reads 4 or 5 blocks; a block of
// 100-byte elements is 3.4 KB, cacheable in a row cache of a few MiB).
const ListBlockShift = 5

const ListBlockMark = 0xb1 // the 9th byte of a block's sub-key

// ListBlockKey appends to dst the key of the block holding index idx of
// (key, version)'s elements.
func ListBlockKey(dst, key []byte, version, idx uint64) []byte {
	dst = AppendSubPrefix(dst, key, version)
	dst = binary.BigEndian.AppendUint64(dst, idx>>ListBlockShift)
	return append(dst, ListBlockMark)
}

// ListBlockKeyOf appends to dst the key of the block that holds the row at
// row key k, when k is a sub-key row key with an 8-byte sub-key (a list
// element's; a hash field, set member or sorted-set row of 8 bytes gives
// a block no list has, which costs nothing to drop). ok is false for any
// other key.
func ListBlockKeyOf(dst, k []byte) ([]byte, bool) {
	if len(k) < 13+8 || k[0] != PrefixSub {
		return dst, false
	}
	n := binary.BigEndian.Uint32(k[1:5])
	if uint64(len(k)) != 13+uint64(n)+8 {
		return dst, false
	}
	idx := binary.BigEndian.Uint64(k[len(k)-8:])
	dst = append(dst, k[:len(k)-8]...)
	dst = binary.BigEndian.AppendUint64(dst, idx>>ListBlockShift)
	return append(dst, ListBlockMark), true
}

// ListBlockSpan is the part of block b's indexes that a list whose
// elements are at [head, tail) holds: [lo, hi), empty when lo >= hi.
func ListBlockSpan(idx, head, tail uint64) (lo, hi uint64) {
	lo = idx >> ListBlockShift << ListBlockShift
	hi = lo + 1<<ListBlockShift
	if hi < lo { // the last block of the index space
		hi = ^uint64(0)
	}
	return max(lo, head), min(hi, tail)
}

// ListBlock is a decoded block: the values of the elements at the
// consecutive indexes [First, First+n).
//
// Encoding (AppendListBlock): First (8 bytes), n (1 byte), n+1 offsets
// (4 bytes each, little-endian) into the values, then the values one
// after another.
type ListBlock struct {
	First uint64
	n     int
	raw   []byte // the offsets and values
}

// Len is the number of elements the block holds.
func (b ListBlock) Len() int { return b.n }

// Covers reports whether the block holds index idx.
func (b ListBlock) Covers(idx uint64) bool {
	return idx >= b.First && idx-b.First < uint64(b.n)
}

// Elem returns the value at index First+i, 0 <= i < Len(). The slice is
// the block's own (capped at its length: an append copies it).
func (b ListBlock) Elem(i int) []byte {
	o := b.raw[4*i:]
	lo := int(binary.LittleEndian.Uint32(o))
	hi := int(binary.LittleEndian.Uint32(o[4:]))
	vals := b.raw[4*(b.n+1):]
	return vals[lo:hi:hi]
}

// ListBlockLen is the size of the encoding of n elements of vb bytes in
// all.
func ListBlockLen(n, vb int) int { return 9 + 4*(n+1) + vb }

// AppendListBlock appends the encoding of the block of vals at the
// indexes [first, first+len(vals)), 1 <= len(vals) <= 1<<ListBlockShift.
func AppendListBlock(dst []byte, first uint64, vals [][]byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, first)
	dst = append(dst, byte(len(vals)))
	off := 0
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	for _, v := range vals {
		off += len(v)
		dst = binary.LittleEndian.AppendUint32(dst, uint32(off))
	}
	for _, v := range vals {
		dst = append(dst, v...)
	}
	return dst
}

// ParseListBlock decodes a block's encoding; ok is false when it does not
// parse.
func ParseListBlock(row []byte) (ListBlock, bool) {
	if len(row) < 9 {
		return ListBlock{}, false
	}
	b := ListBlock{First: binary.BigEndian.Uint64(row), n: int(row[8]), raw: row[9:]}
	if b.n == 0 || b.n > 1<<ListBlockShift || len(b.raw) < 4*(b.n+1) {
		return ListBlock{}, false
	}
	if int(binary.LittleEndian.Uint32(b.raw[4*b.n:])) != len(b.raw)-4*(b.n+1) {
		return ListBlock{}, false
	}
	return b, true
}

// ListBlockRows is Rows that hold lists' elements in blocks as well
// (storage's committed rows, through their row cache).
type ListBlockRows interface {
	// ListBlock returns the block of a list version's elements that
	// holds index idx, for a list whose elements are at [head, tail)
	// (every index there has its row): every index of that block the
	// list has (ListBlockSpan), from memory, made from the element rows
	// held in memory when the block is not held, never from a store
	// read. ok is false when it cannot be had so: the caller reads the
	// rows. prefix is the version's sub-key prefix (AppendSubPrefix) with
	// room for 9 bytes more, which ListBlock may write past its length.
	ListBlock(prefix []byte, head, tail, idx uint64) (b ListBlock, ok bool)
}

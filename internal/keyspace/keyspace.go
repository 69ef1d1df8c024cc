// Package keyspace is the keyspace engine: the one owner of how keys and
// typed values are laid out in rows, and of the keyspace's semantics (one
// lookup, one expiry rule, one Apply). Storage keeps its rows, the leader's
// overlay keeps uncommitted ones, and a command's transaction keeps its own
// writes, all in this package's encoding, and all read through Reader.
//
// # Layout (after Apache Kvrocks)
//
// Every key has one metadata row; a collection (hashes and lists today;
// sets and sorted sets to come) has one more row per field, member or
// element:
//
//	'd' key                              -> metadata row (see below)
//	's' keyLen(4, BE) key version(8, BE) sub -> the sub-key's value
//
// Within a collection's span, a sorted set keeps two families of
// sub-keys, told apart by their first byte (zset.go): member rows
// ('m' member -> score) and score-index rows ('i' score member -> empty,
// with an order-preserving score encoding), so a range by score seeks in
// the index and a score lookup reads one row.
//
// A string's value sits inline in its metadata row, which is the format
// strings always had, so data dirs written before typed values read
// unchanged:
//
//	string:     expireAtMs (8, BE, 0 = none; first byte < 0x80) | value
//	collection: 0x80|type (1) | expireAtMs (8, BE) | version (8, BE) | size (8, BE)
//
// except that storage keeps a string longer than ChunkThreshold in chunk
// rows, named by a metadata row of the collection shape with type
// TypeString; Reader puts it back together, so nothing above storage sees
// the difference (chunk.go).
//
// # Versions
//
// A collection's sub-key rows carry its version, and only the rows of the
// version in its metadata row are live. A collection gets a new version
// when it is created: the LSN of the log entry that creates it, which is
// larger than every version any earlier entry gave that key, on every node
// (LSNs only grow along a node's applied history). So DEL or EXPIRE of a
// big hash is O(1): DEL writes a drop op, which deletes the metadata row
// and the old version's sub-key rows with one range tombstone; Pebble
// reclaims the space in its background compactions. Rows of an old
// version can never be read again (nothing reads a version its metadata
// does not name, and no later entry writes one), so the order in which the
// space comes back does not matter.
//
// # Lists
//
// A list's elements are sub-key rows keyed by an 8-byte big-endian index,
// and one more sub-key row, at the empty sub-key (which sorts before every
// index), holds the index of the first element, the head:
//
//	sub ""          -> head (8, BE)
//	sub index(8, BE) -> element, for head <= index < head+size
//
// A new list's head is ListStartIndex (1<<63), so both ends can grow.
// The tail is head+size, with size from the metadata row, so a push or pop
// at either end is O(1) rows: the element, the metadata row (its size),
// and the head row only for a change at the head end; LINDEX is one point
// read and LRANGE one seek and a scan of the rows it returns.
//
// The head lives in a sub-key row rather than in the metadata row so that
// the metadata row, the log's meta op (logrec format v2) and snapshot rows
// keep one shape for every type: nothing that reads or moves rows (DUMP,
// RENAME's row copy, snapshots, digests, Sweep) needs to know about lists,
// and the head row goes with the list's version like any element. The
// price is one more point read per list command and one more row written
// per change at the head end.
//
// # Expiry
//
// A key is expired once its expireAtMs is not 0 and at or before the
// reader's clock (Expired). Readers hide expired keys; they go from the
// data when the leader logs their deletion.
package keyspace

import "fmt"

// Type is a key's value type. Its numbers are part of the row and log
// formats and must not change.
type Type uint8

const (
	TypeString Type = 1
	TypeHash   Type = 2
	TypeSet    Type = 3
	TypeZSet   Type = 4
	TypeList   Type = 5
)

// IsCollection reports whether t is a known collection type: one with a
// typed metadata row and sub-key rows.
func (t Type) IsCollection() bool { return t >= TypeHash && t <= TypeList }

// String is the name TYPE answers.
func (t Type) String() string {
	switch t {
	case TypeString:
		return "string"
	case TypeHash:
		return "hash"
	case TypeSet:
		return "set"
	case TypeZSet:
		return "zset"
	case TypeList:
		return "list"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Value is a key's metadata as a command reads it: a string's value, or a
// collection's version and size.
type Value struct {
	Type       Type
	Data       []byte // a string's value
	ExpireAtMs int64  // absolute Unix milliseconds; 0 means no expiry
	Version    uint64 // a collection's version: its sub-key rows carry it
	Size       uint64 // a collection's number of sub-keys
}

// IsString reports whether v is a string.
func (v Value) IsString() bool { return v.Type == TypeString }

// Expired is the one expiry rule: a key with expiry expireAtMs is gone for
// a reader whose clock reads nowMs.
func Expired(expireAtMs, nowMs int64) bool { return expireAtMs != 0 && expireAtMs <= nowMs }

// View is the keyspace a command reads at one instant. Implementations
// hide expired keys: Get never returns a key Expired at Now. Reader is the
// implementation; storage's and the leader's views are Readers over their
// rows.
type View interface {
	// Get returns the live metadata of key. Replies and operations may
	// keep the returned Data after the command returns, so an
	// implementation must never modify it afterwards.
	Get(key []byte) (Value, bool, error)
	// Scan calls fn for live keys >= start in ascending order until fn
	// returns false. The key slice is valid only during the call.
	Scan(start []byte, fn func(key []byte, v Value) bool) error
	// Sub returns the value of sub-key sub of (key, version). The caller
	// must have read key's live metadata (a Get) to know the version.
	// The caller may keep the returned value (as Rows.Get's).
	Sub(key []byte, version uint64, sub []byte) ([]byte, bool, error)
	// SubScan calls fn for the sub-keys >= start of (key, version) in
	// ascending order until fn returns false. The slices are valid only
	// during the call.
	SubScan(key []byte, version uint64, start []byte, fn func(sub, val []byte) bool) error
	// SubScanReverse calls fn for the sub-keys < end of (key, version)
	// (all of them when end is nil) in descending order until fn returns
	// false: a read from the high end that costs the rows it returns. The
	// slices are valid only during the call.
	SubScanReverse(key []byte, version uint64, end []byte, fn func(sub, val []byte) bool) error
	// Rows is the rows under the view, for a transaction to layer its
	// writes over (NewLayer).
	Rows() Rows
	// Now is the view's clock, Unix milliseconds.
	Now() int64
	// NewVersion is the version a collection created by the command
	// reading this view gets: the LSN of the entry the leader is building.
	// It is 0 on a view no write is sequenced against.
	NewVersion() uint64
}

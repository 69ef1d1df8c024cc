package keyspace

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/frame"
)

// ErrCorrupt marks a stored row that cannot be what this package wrote. It
// is a frame.ErrCorrupt.
var ErrCorrupt = frame.NewCorruption("keyspace: corrupt row")

// Row key prefixes, part of the on-disk format. Storage keeps its own rows
// (expiry index, metadata) under other prefixes.
const (
	PrefixMeta = 'd'
	PrefixSub  = 's'
)

// The key spans of the keyspace's rows: [MetaLower, MetaUpper) and
// [SubLower, SubUpper). Everything that moves data (snapshots, digests,
// FLUSHALL) covers both.
var (
	MetaLower = []byte{PrefixMeta}
	MetaUpper = []byte{PrefixMeta + 1}
	SubLower  = []byte{PrefixSub}
	SubUpper  = []byte{PrefixSub + 1}
)

const (
	typedFlag = 0x80
	typedLen  = 1 + 8 + 8 + 8
	// maxSubKeyLen: a key's length is stored in 4 bytes.
	maxKeyLen = 1<<32 - 1
)

// AppendMetaKey appends the metadata row key of key to dst.
func AppendMetaKey(dst, key []byte) []byte {
	return append(append(dst, PrefixMeta), key...)
}

// MetaKey is the metadata row key of key.
func MetaKey(key []byte) []byte { return AppendMetaKey(make([]byte, 0, 1+len(key)), key) }

// AppendSubPrefix appends the prefix every sub-key row of (key, version)
// starts with.
func AppendSubPrefix(dst, key []byte, version uint64) []byte {
	if len(key) > maxKeyLen {
		panic("keyspace: key longer than 4 GiB")
	}
	dst = append(dst, PrefixSub)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(key)))
	dst = append(dst, key...)
	return binary.BigEndian.AppendUint64(dst, version)
}

// SubKey is the row key of sub-key sub of (key, version).
func SubKey(key []byte, version uint64, sub []byte) []byte {
	return append(AppendSubPrefix(make([]byte, 0, 13+len(key)+len(sub)), key, version), sub...)
}

// SubSpan is the span [lo, hi) of every sub-key row of (key, version).
// Both bounds share one allocation, each capped at its length, so that
// an append to either copies it and never writes over the other.
func SubSpan(key []byte, version uint64) (lo, hi []byte) {
	return subSpan(key, version, 0)
}

// subSpan is SubSpan with room for extra more bytes after lo (a start
// sub-key): lo's capacity is its length plus extra, hi's its length.
func subSpan(key []byte, version uint64, extra int) (lo, hi []byte) {
	n := subPrefixLen(key)
	buf := make([]byte, 0, 2*n+extra)
	lo = AppendSubPrefix(buf, key, version)
	lo = lo[: n : n+extra]
	hi = buf[n+extra : n+extra : 2*n+extra]
	if version == ^uint64(0) {
		// The prefix with version+1 would wrap: the next key length's.
		return lo, binary.BigEndian.AppendUint32(append(hi, PrefixSub), uint32(len(key))+1)
	}
	return lo, AppendSubPrefix(hi, key, version+1)
}

// subPrefixLen is the length of (key, version)'s sub-key prefix.
func subPrefixLen(key []byte) int { return 1 + 4 + len(key) + 8 }

// ParseSubKey splits a sub-key row key.
func ParseSubKey(k []byte) (key []byte, version uint64, sub []byte, err error) {
	if len(k) < 13 || k[0] != PrefixSub {
		return nil, 0, nil, fmt.Errorf("%w: sub-key row key of %d bytes", ErrCorrupt, len(k))
	}
	n := binary.BigEndian.Uint32(k[1:5])
	if uint64(len(k)) < 13+uint64(n) {
		return nil, 0, nil, fmt.Errorf("%w: sub-key row key of %d bytes names a key of %d", ErrCorrupt, len(k), n)
	}
	key = k[5 : 5+n]
	version = binary.BigEndian.Uint64(k[5+n : 13+n])
	return key, version, k[13+n:], nil
}

// AppendMetaRow appends the metadata row of v to dst.
func AppendMetaRow(dst []byte, v Value) []byte {
	if v.Type == TypeString {
		// A negative expiry is as expired as 1 ms; clamping keeps the
		// first byte below typedFlag.
		at := v.ExpireAtMs
		if at < 0 {
			at = 1
		}
		dst = binary.BigEndian.AppendUint64(dst, uint64(at))
		return append(dst, v.Data...)
	}
	dst = append(dst, typedFlag|byte(v.Type))
	dst = binary.BigEndian.AppendUint64(dst, uint64(v.ExpireAtMs))
	dst = binary.BigEndian.AppendUint64(dst, v.Version)
	return binary.BigEndian.AppendUint64(dst, v.Size)
}

// MetaRowLen is the length of v's metadata row.
func MetaRowLen(v Value) int {
	if v.Type == TypeString {
		return 8 + len(v.Data)
	}
	return typedLen
}

// errShort is wrapped by DecodeMetaRow for a row too short to hold an
// expiry: callers report it with their own context.
var errShort = errors.New("metadata row too short")

// DecodeMetaRow parses a metadata row. A string's Data aliases row. A
// chunked string's row (chunk.go) decodes to a TypeString Value with its
// Version and Size and no Data: Reader puts its value together.
func DecodeMetaRow(row []byte) (Value, error) {
	if len(row) < 8 {
		return Value{}, fmt.Errorf("%w: %w: %d bytes", ErrCorrupt, errShort, len(row))
	}
	if row[0] < typedFlag {
		return Value{Type: TypeString, ExpireAtMs: int64(binary.BigEndian.Uint64(row)), Data: row[8:]}, nil
	}
	t := Type(row[0] &^ typedFlag)
	if !(t.IsCollection() || t == TypeString) || len(row) != typedLen {
		return Value{}, fmt.Errorf("%w: metadata row of type %d, %d bytes", ErrCorrupt, t, len(row))
	}
	return Value{
		Type:       t,
		ExpireAtMs: int64(binary.BigEndian.Uint64(row[1:])),
		Version:    binary.BigEndian.Uint64(row[9:]),
		Size:       binary.BigEndian.Uint64(row[17:]),
	}, nil
}

// RowExpiry is the expiry of a metadata row, for storage's expiry index.
func RowExpiry(row []byte) (int64, error) {
	v, err := DecodeMetaRow(row)
	return v.ExpireAtMs, err
}

// ValidRow checks a row from outside (a snapshot chunk) before it is
// stored: its key is in the keyspace's spans and its value parses.
func ValidRow(k, v []byte) error {
	switch {
	case len(k) > 0 && k[0] == PrefixMeta:
		_, err := DecodeMetaRow(v)
		return err
	case len(k) > 0 && k[0] == PrefixSub:
		_, _, _, err := ParseSubKey(k)
		return err
	case string(k) == string(FunctionsKey) && len(v) > 0:
		_, err := DecodeLibraries(v)
		return err
	}
	return fmt.Errorf("%w: row key %q outside the keyspace", ErrCorrupt, k)
}

package keyspace

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// # Function libraries (Redis 7's FUNCTION LOAD)
//
// The libraries live beside the keyspace, not in it: one row at
// FunctionsKey, outside the spans of metadata and sub-key rows, so that
// no key command (KEYS, SCAN, DBSIZE, FLUSHALL's ranges) meets it, while
// everything that moves a node's data (the log's OpFunctions, snapshots,
// digests) carries it. The row holds the whole set, written again by
// every FUNCTION LOAD, DELETE, FLUSH or RESTORE (one op, the set's new
// state: row form); no row is no library. Its encoding, part of the
// on-disk and wire format:
//
//	version uint8   1 (librariesVersion)
//	count   uvarint
//	library* name, code: each a uvarint length and the bytes, in ascending
//	         name order, names distinct
//
// The code is a library's source as FUNCTION LOAD was given it: what it
// registers (its functions, their flags) is read by running it (package
// script), on every node that serves FCALL.

// PrefixFunctions is the first byte of the function libraries' row.
const PrefixFunctions = 'f'

// FunctionsKey is the row key of the function libraries.
var FunctionsKey = []byte{PrefixFunctions}

const librariesVersion = 1

// Library is one function library: its name and its code.
type Library struct {
	Name string
	Code string
}

// EncodeLibraries is the row of libs (sorted by name here; names must be
// distinct). No library encodes to nil: the row is deleted.
func EncodeLibraries(libs []Library) []byte {
	if len(libs) == 0 {
		return nil
	}
	sorted := append([]Library(nil), libs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	n := 1 + binary.MaxVarintLen64
	for _, l := range sorted {
		n += 2*binary.MaxVarintLen64 + len(l.Name) + len(l.Code)
	}
	out := make([]byte, 0, n)
	out = append(out, librariesVersion)
	out = binary.AppendUvarint(out, uint64(len(sorted)))
	for _, l := range sorted {
		out = binary.AppendUvarint(out, uint64(len(l.Name)))
		out = append(out, l.Name...)
		out = binary.AppendUvarint(out, uint64(len(l.Code)))
		out = append(out, l.Code...)
	}
	return out
}

// DecodeLibraries parses a libraries row (nil or empty: none). A row this
// package did not write is ErrCorrupt.
func DecodeLibraries(row []byte) ([]Library, error) {
	if len(row) == 0 {
		return nil, nil
	}
	bad := func(why string) ([]Library, error) {
		return nil, fmt.Errorf("%w: function libraries row: %s", ErrCorrupt, why)
	}
	if row[0] != librariesVersion {
		return bad(fmt.Sprintf("version %d", row[0]))
	}
	p := row[1:]
	count, n := binary.Uvarint(p)
	if n <= 0 || count > uint64(len(p)) {
		return bad("count")
	}
	p = p[n:]
	field := func() (string, bool) {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return "", false
		}
		s := string(p[n : n+int(l)])
		p = p[n+int(l):]
		return s, true
	}
	libs := make([]Library, 0, count)
	for i := uint64(0); i < count; i++ {
		name, ok1 := field()
		code, ok2 := field()
		if !ok1 || !ok2 {
			return bad("truncated library")
		}
		if i > 0 && name <= libs[i-1].Name {
			return bad("names out of order")
		}
		libs = append(libs, Library{Name: name, Code: code})
	}
	if len(p) != 0 {
		return bad("trailing bytes")
	}
	return libs, nil
}

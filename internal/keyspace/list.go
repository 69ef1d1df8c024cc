package keyspace

import (
	"encoding/binary"
	"fmt"
)

// A list's layout (see the package comment, "Lists"): element rows keyed by
// an 8-byte big-endian index, and one head row, at the empty sub-key,
// holding the index of the first element.

// ListStartIndex is the index a new list's first element gets: the middle
// of the index space, so that either end can grow 2^63 times.
const ListStartIndex = uint64(1) << 63

// ListHeadSub is the sub-key of a list's head row. It is empty, so it
// sorts before every element's 8-byte index.
var ListHeadSub = []byte{}

// ListIndexSub is the sub-key of the list element at index i.
func ListIndexSub(i uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), i) }

// ListHeadRow is the value of a list's head row: the index of its first
// element.
func ListHeadRow(head uint64) []byte { return ListIndexSub(head) }

// DecodeListHead parses a list's head row.
func DecodeListHead(row []byte) (uint64, error) {
	if len(row) != 8 {
		return 0, fmt.Errorf("%w: list head row of %d bytes", ErrCorrupt, len(row))
	}
	return binary.BigEndian.Uint64(row), nil
}

package keyspace

import (
	"bytes"
	"errors"
	"testing"
)

// TestListLayout: the head row sorts before every element row of its
// version and inside the version's span (so a drop takes it), element rows
// sort by index on both sides of ListStartIndex, and a damaged head row is
// ErrCorrupt.
func TestListLayout(t *testing.T) {
	key := []byte("l")
	lo, hi := SubSpan(key, 7)
	head := SubKey(key, 7, ListHeadSub)
	if bytes.Compare(head, lo) < 0 || bytes.Compare(head, hi) >= 0 {
		t.Fatalf("head row %x outside the version's span [%x, %x)", head, lo, hi)
	}
	prev := head
	for _, i := range []uint64{0, 1, ListStartIndex - 2, ListStartIndex - 1, ListStartIndex, ListStartIndex + 1, ^uint64(0)} {
		k := SubKey(key, 7, ListIndexSub(i))
		if bytes.Compare(prev, k) >= 0 || bytes.Compare(k, hi) >= 0 {
			t.Fatalf("element row of index %#x (%x) not after %x and before %x", i, k, prev, hi)
		}
		prev = k
	}
	if got, err := DecodeListHead(ListHeadRow(ListStartIndex)); err != nil || got != ListStartIndex {
		t.Fatalf("DecodeListHead = %#x, %v", got, err)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, make([]byte, 9)} {
		if _, err := DecodeListHead(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeListHead(%x) = %v, want ErrCorrupt", bad, err)
		}
	}
}

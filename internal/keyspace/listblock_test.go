package keyspace

import (
	"bytes"
	"fmt"
	"testing"
)

// TestListBlockKeys: the block an element's row key names
// (ListBlockKeyOf, the writers' drop) is the block a reader looks up for
// its index (ListBlockKey), at every index of a block and across block
// edges; a key that is no element's (a head row, a longer or shorter
// sub-key, a metadata row) names none; a block's key is in its version's
// sub-key span (so a drop of the version takes it).
func TestListBlockKeys(t *testing.T) {
	for _, key := range [][]byte{[]byte("l"), []byte(""), bytes.Repeat([]byte("k"), 300)} {
		lo, hi := SubSpan(key, 7)
		for _, i := range []uint64{0, 1, 31, 32, 33, 1<<63 - 1, 1 << 63, 1<<63 + 31, ^uint64(0)} {
			want := ListBlockKey(nil, key, 7, i)
			got, ok := ListBlockKeyOf(nil, SubKey(key, 7, ListIndexSub(i)))
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("key %.8q index %d: block of the row %x (%v), reader's %x", key, i, got, ok, want)
			}
			if bytes.Compare(want, lo) < 0 || bytes.Compare(want, hi) >= 0 {
				t.Fatalf("block key %x outside the version's span", want)
			}
			same := ListBlockKey(nil, key, 7, i>>ListBlockShift<<ListBlockShift)
			if !bytes.Equal(same, want) {
				t.Fatalf("index %d and its block's first index have different blocks", i)
			}
			if i&(1<<ListBlockShift-1) == 1<<ListBlockShift-1 && i != ^uint64(0) {
				if next := ListBlockKey(nil, key, 7, i+1); bytes.Equal(next, want) {
					t.Fatalf("index %d and %d share a block", i, i+1)
				}
			}
		}
		for _, k := range [][]byte{SubKey(key, 7, ListHeadSub), SubKey(key, 7, []byte("1234567")), SubKey(key, 7, []byte("123456789")), MetaKey(key)} {
			if b, ok := ListBlockKeyOf(nil, k); ok {
				t.Fatalf("row key %x names block %x", k, b)
			}
		}
	}
}

// TestListBlockEncoding: a block decodes to the values it was made of,
// empty values included, and a damaged encoding does not parse.
func TestListBlockEncoding(t *testing.T) {
	for _, n := range []int{1, 2, 31, 32} {
		vals := make([][]byte, n)
		size := 0
		for i := range vals {
			vals[i] = []byte(fmt.Sprintf("%0*d", i%5*7, i))
			size += len(vals[i])
		}
		enc := AppendListBlock(nil, 100, vals)
		if len(enc) != ListBlockLen(n, size) {
			t.Fatalf("n %d: %d bytes, ListBlockLen says %d", n, len(enc), ListBlockLen(n, size))
		}
		b, ok := ParseListBlock(enc)
		if !ok || b.First != 100 || b.Len() != n {
			t.Fatalf("n %d: parsed %v first %d len %d", n, ok, b.First, b.Len())
		}
		for i := range vals {
			if got := b.Elem(i); !bytes.Equal(got, vals[i]) || cap(got) != len(got) {
				t.Fatalf("n %d: element %d = %q (cap %d), want %q", n, i, got, cap(got), vals[i])
			}
		}
		if !b.Covers(100) || !b.Covers(100+uint64(n)-1) || b.Covers(99) || b.Covers(100+uint64(n)) {
			t.Fatalf("n %d: Covers wrong", n)
		}
		for _, bad := range [][]byte{enc[:len(enc)-1], enc[:8], append(append([]byte{}, enc...), 0)} {
			if _, ok := ParseListBlock(bad); ok {
				t.Fatalf("n %d: a damaged block of %d bytes parsed", n, len(bad))
			}
		}
	}
}

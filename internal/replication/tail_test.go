package replication

import (
	"fmt"
	"testing"
)

func TestTailCache(t *testing.T) {
	tc := tailCache{maxBytes: 10}
	if _, ok := tc.read(1, 1, 100); ok {
		t.Fatal("empty cache answered")
	}
	for lsn := uint64(1); lsn <= 6; lsn++ {
		tc.add(lsn, []byte(fmt.Sprintf("e%d", lsn)), int64(lsn)) // 2 bytes each
	}
	// 6 entries of 2 bytes exceed 10: the oldest one is dropped.
	if tc.first != 2 || len(tc.entries) != 5 || tc.bytes != 10 {
		t.Fatalf("cache first=%d len=%d bytes=%d, want 2, 5, 10", tc.first, len(tc.entries), tc.bytes)
	}
	if _, ok := tc.read(1, 6, 100); ok {
		t.Error("read of an evicted lsn answered from the cache")
	}
	got, ok := tc.read(3, 6, 100)
	if !ok || fmt.Sprint(bytesToStrings(got)) != "[e3 e4 e5 e6]" {
		t.Errorf("read(3,6) = %q, %v", got, ok)
	}
	got, _ = tc.read(3, 4, 100)
	if fmt.Sprint(bytesToStrings(got)) != "[e3 e4]" {
		t.Errorf("read(3,4) = %q, want up to hi", got)
	}
	got, _ = tc.read(2, 6, 5)
	if fmt.Sprint(bytesToStrings(got)) != "[e2 e3]" {
		t.Errorf("read with 5 bytes = %q, want 2 entries", got)
	}
	got, _ = tc.read(2, 6, 1)
	if len(got) != 1 {
		t.Errorf("read with 1 byte = %q, want at least one entry", got)
	}
	if _, ok := tc.read(7, 9, 100); ok {
		t.Error("read past the last cached lsn answered")
	}
	// A gap restarts the cache.
	tc.add(10, []byte("xx"), 10)
	if tc.first != 10 || len(tc.entries) != 1 {
		t.Fatalf("after a gap first=%d len=%d", tc.first, len(tc.entries))
	}
	// One entry larger than the bound is still kept.
	tc.add(11, make([]byte, 50), 11)
	if tc.first != 11 || len(tc.entries) != 1 {
		t.Fatalf("oversized entry: first=%d len=%d", tc.first, len(tc.entries))
	}
}

func bytesToStrings(bs [][]byte) []string {
	var out []string
	for _, b := range bs {
		out = append(out, string(b))
	}
	return out
}

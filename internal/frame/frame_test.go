package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
)

var errTest = NewCorruption("test: corrupt record")

// TestLayout pins the frozen layout: a little-endian CRC32C (Castagnoli)
// of the body, then the body.
func TestLayout(t *testing.T) {
	body := []byte("hello, frame")
	f := append(Begin([]byte("prefix")), body...)
	Seal(f[len("prefix"):])
	f = f[len("prefix"):]
	want := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	if got := binary.LittleEndian.Uint32(f); got != want {
		t.Fatalf("header %08x, want crc32c %08x", got, want)
	}
	// A known vector: CRC32C("123456789") = e3069283.
	if got := Checksum([]byte("123456789")); got != 0xe3069283 {
		t.Errorf("Checksum(123456789) = %08x, want e3069283", got)
	}
	got, err := Open(f, errTest)
	if err != nil || string(got) != string(body) {
		t.Fatalf("Open = %q, %v", got, err)
	}
}

// TestOpenRejects: every flipped bit and every short frame is a corruption
// of the caller's kind.
func TestOpenRejects(t *testing.T) {
	f := append(Begin(nil), "body"...)
	Seal(f)
	for i := range len(f) * 8 {
		b := append([]byte(nil), f...)
		b[i/8] ^= 1 << (i % 8)
		if _, err := Open(b, errTest); !errors.Is(err, errTest) || !IsCorruption(err) {
			t.Errorf("bit %d: Open error %v, want errTest and a corruption", i, err)
		}
	}
	for n := range HeaderLen + 1 {
		if _, err := Open(f[:n], errTest); !errors.Is(err, errTest) {
			t.Errorf("%d bytes: Open error %v, want errTest", n, err)
		}
	}
}

func TestCorruptionMarker(t *testing.T) {
	other := NewCorruption("other: corrupt")
	wrapped := fmt.Errorf("layer: read: %w", errTest)
	switch {
	case !errors.Is(wrapped, ErrCorrupt) || !IsCorruption(wrapped):
		t.Error("a wrapped sentinel is not a corruption")
	case !errors.Is(wrapped, errTest):
		t.Error("a wrapped sentinel lost its identity")
	case errors.Is(wrapped, other):
		t.Error("two sentinels are the same")
	case IsCorruption(errors.New("test: corrupt record")) || IsCorruption(nil):
		t.Error("a plain error is a corruption")
	case errTest.Error() != "test: corrupt record" || wrapped.Error() != "layer: read: test: corrupt record":
		t.Errorf("texts %q, %q", errTest, wrapped)
	}
}

package snapshot

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"testing"
)

func encode(rows []Row) []byte {
	var e Encoder
	for _, r := range rows {
		e.Add(r.Key, r.Value)
	}
	return bytes.Clone(e.Finish())
}

func rowsEqual(a, b []Row) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte{0xab}, 300<<10)
	tests := []struct {
		name string
		rows []Row
	}{
		{"empty chunk", nil},
		{"one row", []Row{{Key: []byte("k"), Value: []byte("v")}}},
		{"empty key and value", []Row{{}}},
		{"several rows", []Row{
			{Key: []byte("a"), Value: []byte("\x00\x00\x00\x00\x00\x00\x00\x00one")},
			{Key: []byte("b"), Value: nil},
			{Key: []byte("c"), Value: []byte("three")},
		}},
		{"big value", []Row{{Key: []byte("big"), Value: big}}},
	}
	for _, tt := range tests {
		raw := encode(tt.rows)
		got, err := Decode(raw)
		if err != nil {
			t.Errorf("%s: Decode: %v", tt.name, err)
			continue
		}
		if !rowsEqual(got, tt.rows) {
			t.Errorf("%s: Decode(encode(rows)) = %q, want %q", tt.name, got, tt.rows)
		}
		if again := encode(got); !bytes.Equal(again, raw) {
			t.Errorf("%s: re-encoding differs", tt.name)
		}
	}
}

// TestEncoderReuse checks that Finish resets the encoder and that Len and
// Count describe the chunk being built.
func TestEncoderReuse(t *testing.T) {
	var e Encoder
	e.Add([]byte("ab"), []byte("cde"))
	if e.Count() != 1 || e.Len() != 1+2+1+3 {
		t.Fatalf("Count, Len = %d, %d; want 1, 7", e.Count(), e.Len())
	}
	first := bytes.Clone(e.Finish())
	if e.Count() != 0 || e.Len() != 0 {
		t.Fatalf("after Finish: Count, Len = %d, %d; want 0, 0", e.Count(), e.Len())
	}
	e.Add([]byte("x"), []byte("y"))
	e.Add([]byte("z"), nil)
	second, err := Decode(e.Finish())
	if err != nil {
		t.Fatal(err)
	}
	want := []Row{{Key: []byte("x"), Value: []byte("y")}, {Key: []byte("z")}}
	if !rowsEqual(second, want) {
		t.Fatalf("second chunk = %q, want %q", second, want)
	}
	rows, err := Decode(first)
	if err != nil || !rowsEqual(rows, []Row{{Key: []byte("ab"), Value: []byte("cde")}}) {
		t.Fatalf("first chunk = %q, %v", rows, err)
	}
}

func TestBitFlips(t *testing.T) {
	raw := encode([]Row{{Key: []byte("key"), Value: []byte("value")}, {Key: []byte("k2"), Value: []byte{0, 1}}})
	for i := 0; i < len(raw)*8; i++ {
		b := bytes.Clone(raw)
		b[i/8] ^= 1 << (i % 8)
		if got, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("bit %d: Decode = %q, %v; want ErrCorrupt", i, got, err)
		}
	}
	for n := 0; n < len(raw); n++ {
		if _, err := Decode(raw[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("length %d of %d: Decode error %v, want ErrCorrupt", n, len(raw), err)
		}
	}
}

func withCRC(b []byte) []byte {
	if len(b) >= 4 {
		binary.LittleEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	}
	return b
}

func TestMalformedWithValidChecksum(t *testing.T) {
	body := func(parts ...[]byte) []byte {
		return withCRC(bytes.Join(append([][]byte{{0, 0, 0, 0}}, parts...), nil))
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	tests := []struct {
		name string
		raw  []byte
	}{
		{"bad count", body(bytes.Repeat([]byte{0xff}, 11))},
		{"count beyond body", body(uv(3), uv(0), uv(0))},
		{"huge count", body(uv(math.MaxUint64))},
		{"key beyond body", body(uv(1), uv(5), []byte("k"), uv(0))},
		{"value beyond body", body(uv(1), uv(1), []byte("k"), uv(1<<62))},
		{"missing value", body(uv(1), uv(1), []byte("k"))},
		{"trailing bytes", body(uv(1), uv(0), uv(0), []byte{0})},
		{"non-minimal count", body([]byte{0x81, 0x00}, uv(0), uv(0))},
		{"non-minimal key length", body(uv(1), []byte{0x81, 0x00}, []byte("k"), uv(0))},
	}
	for _, tt := range tests {
		if got, err := Decode(tt.raw); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode = %q, %v; want ErrCorrupt", tt.name, got, err)
		}
	}
}

// FuzzSnapshotChunk: arbitrary bytes never panic, and a chunk that decodes is
// the canonical encoding of its rows. The input is also tried with its
// checksum fixed so that the fuzzer reaches the parser.
func FuzzSnapshotChunk(f *testing.F) {
	f.Add(encode(nil))
	f.Add(encode([]Row{{Key: []byte("k"), Value: []byte("v")}, {}}))
	f.Add([]byte{0, 0, 0, 0, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, b := range [][]byte{data, withCRC(bytes.Clone(data))} {
			rows, err := Decode(b)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Decode error %v does not wrap ErrCorrupt", err)
				}
				continue
			}
			if again := encode(rows); !bytes.Equal(again, b) {
				t.Fatalf("Decode(%x) = %q re-encodes to %x", b, rows, again)
			}
		}
	})
}

package keyspace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

func TestMetaRowRoundTrip(t *testing.T) {
	for _, v := range []Value{
		{Type: TypeString, Data: []byte{}},
		{Type: TypeString, Data: []byte("v"), ExpireAtMs: 1700000000000},
		{Type: TypeString, Data: []byte{0xff, 0x80}, ExpireAtMs: 1<<56 - 1},
		{Type: TypeHash, Version: 7, Size: 3},
		{Type: TypeHash, ExpireAtMs: math.MaxInt64, Version: math.MaxUint64, Size: math.MaxUint64},
	} {
		row := AppendMetaRow(nil, v)
		if len(row) != MetaRowLen(v) {
			t.Errorf("%+v: row of %d bytes, MetaRowLen %d", v, len(row), MetaRowLen(v))
		}
		got, err := DecodeMetaRow(row)
		if err != nil || got.Type != v.Type || !bytes.Equal(got.Data, v.Data) || got.ExpireAtMs != v.ExpireAtMs || got.Version != v.Version || got.Size != v.Size {
			t.Errorf("DecodeMetaRow(AppendMetaRow(%+v)) = %+v, %v", v, got, err)
		}
	}
}

// TestLegacyStringRows: rows written before typed values (expiry | value)
// read as strings, byte for byte the same as strings are written now.
func TestLegacyStringRows(t *testing.T) {
	old := binary.BigEndian.AppendUint64(nil, 1700000000000)
	old = append(old, "hello"...)
	v, err := DecodeMetaRow(old)
	if err != nil || v.Type != TypeString || string(v.Data) != "hello" || v.ExpireAtMs != 1700000000000 {
		t.Fatalf("legacy row = %+v, %v", v, err)
	}
	if got := AppendMetaRow(nil, v); !bytes.Equal(got, old) {
		t.Fatalf("a string's row is %x, the legacy row %x", got, old)
	}
	// A negative expiry (never written by a command) is kept a string.
	if v, err := DecodeMetaRow(AppendMetaRow(nil, Value{Type: TypeString, ExpireAtMs: -5})); err != nil || v.Type != TypeString || !Expired(v.ExpireAtMs, 2) {
		t.Fatalf("negative expiry: %+v, %v", v, err)
	}
}

func TestBadMetaRows(t *testing.T) {
	for _, row := range [][]byte{
		nil, []byte("short"),
		append([]byte{0x80 | byte(TypeHash)}, make([]byte, 10)...),       // too short
		append([]byte{0x80 | 9}, make([]byte, typedLen-1)...),            // unknown type
		append([]byte{0x80 | byte(TypeHash)}, make([]byte, typedLen)...), // too long
	} {
		if _, err := DecodeMetaRow(row); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeMetaRow(%x) = %v, want ErrCorrupt", row, err)
		}
	}
}

// TestSubSpan: a span holds exactly the rows of its (key, version):
// neither a longer key with the same prefix, nor the next version.
func TestSubSpan(t *testing.T) {
	in := func(k []byte, lo, hi []byte) bool { return bytes.Compare(k, lo) >= 0 && bytes.Compare(k, hi) < 0 }
	for _, ver := range []uint64{0, 1, 1 << 40, math.MaxUint64} {
		lo, hi := SubSpan([]byte("ab"), ver)
		if !in(SubKey([]byte("ab"), ver, nil), lo, hi) || !in(SubKey([]byte("ab"), ver, []byte{0xff, 0xff}), lo, hi) {
			t.Errorf("version %d: own rows outside the span", ver)
		}
		others := [][]byte{
			SubKey([]byte("abc"), ver, nil), SubKey([]byte("a"), ver, []byte("b")),
			SubKey([]byte("ab"), ver-1, []byte{0xff}), SubKey([]byte("ab"), ver+1, nil),
		}
		for _, o := range others {
			if in(o, lo, hi) {
				key, v, sub, _ := ParseSubKey(o)
				if string(key) == "ab" && v == ver {
					continue // ver±1 wrapped onto ver
				}
				t.Errorf("version %d: row (%q, %d, %q) inside the span", ver, key, v, sub)
			}
		}
		key, v, sub, err := ParseSubKey(SubKey([]byte("ab"), ver, []byte("f")))
		if err != nil || string(key) != "ab" || v != ver || string(sub) != "f" {
			t.Errorf("ParseSubKey = %q %d %q %v", key, v, sub, err)
		}
	}
}

// FuzzRows: arbitrary bytes never panic the row decoders, a metadata row
// that decodes re-encodes to itself, and a sub-key row key that parses
// is rebuilt from its parts.
func FuzzRows(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x01v"))
	f.Add(AppendMetaRow(nil, Value{Type: TypeHash, Version: 3, Size: 2}))
	f.Add(SubKey([]byte("k"), 9, []byte("f")))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := DecodeMetaRow(b); err == nil {
			if got := AppendMetaRow(nil, v); !bytes.Equal(got, b) {
				t.Fatalf("row %x decodes to %+v, which encodes to %x", b, v, got)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("DecodeMetaRow error %v is not ErrCorrupt", err)
		}
		if key, ver, sub, err := ParseSubKey(b); err == nil {
			if got := SubKey(key, ver, sub); !bytes.Equal(got, b) {
				t.Fatalf("sub-key row key %x parses to (%q, %d, %q), which encodes to %x", b, key, ver, sub, got)
			}
		}
		_ = ValidRow(b, b)
	})
}

// TestSubSpanOneAllocation: SubSpan's bounds are one allocation (a pop
// or a scan builds one per read: it was six), and an append to either
// bound leaves the other as it was (they share it).
func TestSubSpanOneAllocation(t *testing.T) {
	key := []byte("mylist")
	if n := testing.AllocsPerRun(100, func() { SubSpan(key, 7) }); n != 1 {
		t.Errorf("SubSpan: %v allocations, want 1", n)
	}
	for _, ver := range []uint64{7, math.MaxUint64} {
		lo, hi := SubSpan(key, ver)
		wantLo, wantHi := bytes.Clone(lo), bytes.Clone(hi)
		_ = append(lo, 0xff, 0xff, 0xff)
		_ = append(hi, 0xff, 0xff, 0xff)
		if !bytes.Equal(lo, wantLo) || !bytes.Equal(hi, wantHi) {
			t.Errorf("version %d: an append to one bound changed the other", ver)
		}
	}
	r := Reader{R: Empty{}}
	fn := func(_, _ []byte) bool { return true }
	start := []byte{'i', 1, 2, 3}
	// The bounds and the callback handed to Rows (it was 7 and 8).
	if n := testing.AllocsPerRun(100, func() { _ = r.SubScan(key, 7, start, fn) }); n != 2 {
		t.Errorf("SubScan: %v allocations, want 2", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = r.SubScanReverse(key, 7, start, fn) }); n != 2 {
		t.Errorf("SubScanReverse: %v allocations, want 2", n)
	}
}

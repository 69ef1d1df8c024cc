package logrec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<14) // 256 KiB
	tests := []struct {
		name string
		e    Entry
	}{
		{"zero entry", Entry{}},
		{"no ops", Entry{Epoch: 3, LSN: 17, TimeNs: 1700000000123456789}},
		{"one put", Entry{Epoch: 1, LSN: 1, TimeNs: 5, Ops: []Op{{Kind: OpPut, Key: []byte("k"), Value: []byte("v")}}}},
		{"put with expiry", Entry{Epoch: 2, LSN: 9, Ops: []Op{{Kind: OpPut, Key: []byte("k"), Value: []byte("v"), ExpireAtMs: 1700000000000}}}},
		{"negative expiry and time", Entry{Epoch: 2, LSN: 9, TimeNs: -1, Ops: []Op{{Kind: OpPut, Key: []byte("k"), ExpireAtMs: -42}}}},
		{"delete", Entry{Epoch: 1, LSN: 2, Ops: []Op{{Kind: OpDelete, Key: []byte("gone")}}}},
		{"empty key and value", Entry{Epoch: 1, LSN: 3, Ops: []Op{{Kind: OpPut}, {Kind: OpDelete}}}},
		{"mixed ops", Entry{Epoch: 7, LSN: 1 << 40, TimeNs: 1, Ops: []Op{
			{Kind: OpPut, Key: []byte("a"), Value: []byte("1")},
			{Kind: OpDelete, Key: []byte("b")},
			{Kind: OpPut, Key: []byte("c"), Value: []byte("3"), ExpireAtMs: 99},
		}}},
		{"big value", Entry{Epoch: 1, LSN: 4, Ops: []Op{{Kind: OpPut, Key: []byte("big"), Value: big}}}},
		{"every v2 kind", v2Entry()},
		{"puts with every prior", v3Entry()},
		{"extreme numbers", Entry{Epoch: math.MaxUint64, LSN: math.MaxUint64, TimeNs: math.MinInt64, Ops: []Op{
			{Kind: OpPut, Key: []byte{0, 0xff}, Value: []byte{0}, ExpireAtMs: math.MaxInt64},
		}}},
	}
	for _, tt := range tests {
		raw := Encode(&tt.e)
		if n := Size(&tt.e); n != len(raw) {
			t.Errorf("%s: Size = %d, encoding is %d bytes", tt.name, n, len(raw))
		}
		got, err := Decode(raw)
		if err != nil {
			t.Errorf("%s: Decode: %v", tt.name, err)
			continue
		}
		if !entriesEqual(got, tt.e) {
			t.Errorf("%s: Decode(Encode(e)) = %+v, want %+v", tt.name, got, tt.e)
		}
		if again := Encode(&got); !bytes.Equal(again, raw) {
			t.Errorf("%s: re-encoding differs", tt.name)
		}
		// Append must extend dst without touching what is already there.
		prefix := []byte("prefix")
		appended := Append(bytes.Clone(prefix), &tt.e)
		if !bytes.Equal(appended[:len(prefix)], prefix) || !bytes.Equal(appended[len(prefix):], raw) {
			t.Errorf("%s: Append does not equal prefix + Encode", tt.name)
		}
		epoch, lsn, err := PeekLSN(raw)
		if err != nil || epoch != tt.e.Epoch || lsn != tt.e.LSN {
			t.Errorf("%s: PeekLSN = %d, %d, %v; want %d, %d", tt.name, epoch, lsn, err, tt.e.Epoch, tt.e.LSN)
		}
		if err := checkEncodeOwned(tt.e); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// EncodeOwned leaves of each op only what its kind encodes, as a decoder
// would: a field set on an op whose kind does not carry it (a Sub on a
// put, a Value on a drop) must not survive, nor keep pointing at the
// caller's bytes.
func TestEncodeOwnedDropsWhatIsNotEncoded(t *testing.T) {
	junk := func(k OpKind, p Prior) Op {
		return Op{Kind: k, Key: []byte("k"), Value: []byte("v"), ExpireAtMs: 5, Type: 2, Version: 7, Size: 9, Sub: []byte("s"), Prior: p}
	}
	e := Entry{Epoch: 1, LSN: 2, Ops: []Op{
		junk(OpPut, PriorUnknown), junk(OpPut, PriorPlain), junk(OpDelete, PriorPlain), junk(OpMeta, PriorPlain),
		junk(OpSubPut, PriorPlain), junk(OpSubDel, PriorPlain), junk(OpDrop, PriorPlain), junk(OpFlushAll, PriorPlain),
	}}
	if err := checkEncodeOwned(e); err != nil {
		t.Fatal(err)
	}
}

// checkEncodeOwned runs EncodeOwned on a deep copy of e: its bytes must
// be Encode's, its ops DecodeVerified's exactly (reflect.DeepEqual:
// empty slices as a decoder makes them, unencoded fields zero), and none
// of its ops may still point at the copy's byte slices, which it then
// scribbles over.
func checkEncodeOwned(e Entry) error {
	in := e
	in.Ops = make([]Op, len(e.Ops))
	var scribble [][]byte
	clone := func(b []byte) []byte {
		if b == nil {
			return nil
		}
		c := bytes.Clone(b)
		scribble = append(scribble, c)
		return c
	}
	for i, op := range e.Ops {
		op.Key, op.Value, op.Sub = clone(op.Key), clone(op.Value), clone(op.Sub)
		in.Ops[i] = op
	}
	raw := EncodeOwned(&in)
	if want := Encode(&e); !bytes.Equal(raw, want) {
		return fmt.Errorf("EncodeOwned's bytes differ from Encode's")
	}
	want, err := DecodeVerified(raw)
	if err != nil {
		return fmt.Errorf("DecodeVerified(EncodeOwned): %w", err)
	}
	for _, b := range scribble {
		for i := range b {
			b[i] ^= 0x5a
		}
	}
	if len(in.Ops) == 0 && len(want.Ops) == 0 {
		in.Ops, want.Ops = nil, nil
	}
	if !reflect.DeepEqual(in, want) {
		return fmt.Errorf("EncodeOwned left %+v, DecodeVerified makes %+v", in, want)
	}
	return nil
}

// entriesEqual compares entries treating nil and empty slices as equal.
func entriesEqual(a, b Entry) bool {
	if a.Epoch != b.Epoch || a.LSN != b.LSN || a.TimeNs != b.TimeNs || len(a.Ops) != len(b.Ops) {
		return false
	}
	for i := range a.Ops {
		x, y := a.Ops[i], b.Ops[i]
		if x.Kind != y.Kind || !bytes.Equal(x.Key, y.Key) || !bytes.Equal(x.Value, y.Value) || x.ExpireAtMs != y.ExpireAtMs ||
			x.Type != y.Type || x.Version != y.Version || x.Size != y.Size || !bytes.Equal(x.Sub, y.Sub) || x.Prior != y.Prior {
			return false
		}
	}
	return true
}

// v2Entry has one op of every kind.
func v2Entry() Entry {
	return Entry{Epoch: 5, LSN: 77, TimeNs: 99, Ops: []Op{
		{Kind: OpPut, Key: []byte("s"), Value: []byte("v"), ExpireAtMs: 10},
		{Kind: OpDelete, Key: []byte("d")},
		{Kind: OpMeta, Key: []byte("h"), Type: 2, ExpireAtMs: 20, Version: 77, Size: 3},
		{Kind: OpSubPut, Key: []byte("h"), Version: 77, Sub: []byte("f"), Value: []byte("x")},
		{Kind: OpSubDel, Key: []byte("h"), Version: 77, Sub: []byte("g")},
		{Kind: OpDrop, Key: []byte("old"), Version: 12},
		{Kind: OpFlushAll},
	}}
}

// v3Entry has puts with every Prior, and one without, among v1 and v2 ops.
func v3Entry() Entry {
	return Entry{Epoch: 6, LSN: 78, TimeNs: 100, Ops: []Op{
		{Kind: OpPut, Key: []byte("n"), Value: []byte("v"), Prior: PriorNone},
		{Kind: OpPut, Key: []byte("p"), Value: []byte("w"), ExpireAtMs: 10, Prior: PriorPlain},
		{Kind: OpPut, Key: []byte("e"), Value: []byte{}, Prior: PriorExpiring},
		{Kind: OpPut, Key: []byte("u"), Value: []byte("x")},
		{Kind: OpDelete, Key: []byte("d")},
		{Kind: OpSubDel, Key: []byte("h"), Version: 77, Sub: []byte("g")},
	}}
}

func smallEntry() Entry {
	return Entry{Epoch: 2, LSN: 300, TimeNs: 1234567, Ops: []Op{
		{Kind: OpPut, Key: []byte("key"), Value: []byte("val"), ExpireAtMs: 1000},
		{Kind: OpDelete, Key: []byte("x")},
	}}
}

// TestBitFlips flips every bit of a small entry: each must be an error
// wrapping ErrCorrupt, never a different entry.
func TestBitFlips(t *testing.T) {
	e := smallEntry()
	raw := Encode(&e)
	for i := 0; i < len(raw)*8; i++ {
		b := bytes.Clone(raw)
		b[i/8] ^= 1 << (i % 8)
		if got, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("bit %d: Decode = %+v, %v; want ErrCorrupt", i, got, err)
		}
		if _, _, err := PeekLSN(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("bit %d: PeekLSN error %v, want ErrCorrupt", i, err)
		}
	}
}

func TestTruncation(t *testing.T) {
	e := smallEntry()
	raw := Encode(&e)
	for n := 0; n < len(raw); n++ {
		if _, err := Decode(raw[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("length %d of %d: Decode error %v, want ErrCorrupt", n, len(raw), err)
		}
		if _, _, err := PeekLSN(raw[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("length %d of %d: PeekLSN error %v, want ErrCorrupt", n, len(raw), err)
		}
	}
	// Trailing bytes are rejected as well, even with a matching checksum.
	long := withCRC(append(bytes.Clone(raw), 0))
	if _, err := Decode(long); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: Decode error %v, want ErrCorrupt", err)
	}
}

// withCRC returns b with its checksum field recomputed, so that a test can
// reach the parser behind the checksum.
func withCRC(b []byte) []byte {
	if len(b) < 4 {
		return b
	}
	binary.LittleEndian.PutUint32(b, crc32.Checksum(b[4:], castagnoli))
	return b
}

// TestMalformedWithValidChecksum builds bodies that checksum correctly but do
// not parse (or are not the canonical encoding): each must be ErrCorrupt.
func TestMalformedWithValidChecksum(t *testing.T) {
	body := func(parts ...[]byte) []byte {
		return withCRC(bytes.Join(append([][]byte{{0, 0, 0, 0}}, parts...), nil))
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	tests := []struct {
		name string
		raw  []byte
	}{
		{"version 0", body([]byte{0}, uv(1), uv(1), []byte{0}, uv(0))},
		{"version 2 with only v1 ops", body([]byte{2}, uv(1), uv(1), []byte{0}, uv(0))},
		{"v2 kind in a v1 entry", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(1), []byte{6}, uv(1), []byte("k"), uv(1))},
		{"v2 op kind 0", body([]byte{2}, uv(1), uv(1), []byte{0}, uv(1), []byte{0})},
		{"v2 sub beyond body", body([]byte{2}, uv(1), uv(1), []byte{0}, uv(1), []byte{5}, uv(1), []byte("k"), uv(1), uv(9))},
		{"version 3 with only v2 ops", body([]byte{3}, uv(1), uv(1), []byte{0}, uv(1), []byte{7})},
		{"v3 put with prior 0", body([]byte{3}, uv(1), uv(1), []byte{0}, uv(1), []byte{8}, uv(1), []byte("k"), []byte{0}, []byte{0}, uv(0))},
		{"v3 put with prior 4", body([]byte{3}, uv(1), uv(1), []byte{0}, uv(1), []byte{8}, uv(1), []byte("k"), []byte{4}, []byte{0}, uv(0))},
		{"v3 put truncated at its prior", body([]byte{3}, uv(1), uv(1), []byte{0}, uv(1), []byte{8}, uv(1), []byte("k"))},
		{"missing op count", body([]byte{1}, uv(1), uv(1), []byte{0})},
		{"op count beyond body", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(5), []byte{2, 0})},
		{"huge op count", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(math.MaxUint64))},
		{"unknown op kind", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(1), []byte{3, 0})},
		{"op kind 0", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(1), []byte{0, 0})},
		{"key beyond body", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(1), []byte{2}, uv(10), []byte("k"))},
		{"value beyond body", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(1), []byte{1}, uv(1), []byte("k"), []byte{0}, uv(1<<40))},
		{"uvarint overflow", body([]byte{1}, bytes.Repeat([]byte{0xff}, 11))},
		{"non-minimal epoch", body([]byte{1}, []byte{0x81, 0x00}, uv(1), []byte{0}, uv(0))},
		{"non-minimal lsn", body([]byte{1}, uv(1), []byte{0x80, 0x80, 0x00}, []byte{0}, uv(0))},
		{"non-minimal time", body([]byte{1}, uv(1), uv(1), []byte{0x80, 0x00}, uv(0))},
		{"non-minimal op count", body([]byte{1}, uv(1), uv(1), []byte{0}, []byte{0x80, 0x00})},
		{"non-minimal key length", body([]byte{1}, uv(1), uv(1), []byte{0}, uv(1), []byte{2}, []byte{0x81, 0x00}, []byte("k"))},
	}
	for _, tt := range tests {
		if got, err := Decode(tt.raw); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Decode = %+v, %v; want ErrCorrupt", tt.name, got, err)
		}
	}
	// PeekLSN reads only up to the LSN, but must reject a bad prefix.
	for _, tt := range tests {
		switch tt.name {
		case "version 0", "uvarint overflow", "non-minimal epoch", "non-minimal lsn":
			if _, _, err := PeekLSN(tt.raw); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: PeekLSN error %v, want ErrCorrupt", tt.name, err)
			}
		}
	}
}

// TestUnsupported: an intact entry of a newer format, or a v2 entry with a
// kind v2 does not define, is an *UnsupportedError, never ErrCorrupt and
// never a misread entry.
func TestUnsupported(t *testing.T) {
	body := func(parts ...[]byte) []byte {
		return withCRC(bytes.Join(append([][]byte{{0, 0, 0, 0}}, parts...), nil))
	}
	uv := func(v uint64) []byte { return binary.AppendUvarint(nil, v) }
	tests := []struct {
		name          string
		raw           []byte
		version, kind uint8
		peekFails     bool
	}{
		{"version 5", body([]byte{5}, uv(1), uv(1), []byte{0}, uv(0)), 5, 0, true},
		{"version 255", body([]byte{255}, []byte("anything at all")), 255, 0, true},
		{"v2 kind 8", body([]byte{2}, uv(1), uv(1), []byte{0}, uv(1), []byte{8}, uv(1), []byte("k")), 2, 8, false},
		{"v2 kind 200 after a good op", body([]byte{2}, uv(1), uv(1), []byte{0}, uv(2), []byte{7}, []byte{200}), 2, 200, false},
		{"v3 kind 9", body([]byte{3}, uv(1), uv(1), []byte{0}, uv(1), []byte{9}, uv(1), []byte("k")), 3, 9, false},
		{"v4 kind 10", body([]byte{4}, uv(1), uv(1), []byte{0}, uv(1), []byte{10}, uv(1), []byte("k")), 4, 10, false},
	}
	for _, tt := range tests {
		for name, dec := range map[string]func([]byte) (Entry, error){"Decode": Decode, "DecodeVerified": DecodeVerified} {
			_, err := dec(tt.raw)
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !errors.Is(err, ErrUnsupported) || errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: %s error %v, want an *UnsupportedError", tt.name, name, err)
				continue
			}
			if ue.Version != tt.version || uint8(ue.Kind) != tt.kind {
				t.Errorf("%s: %s = %+v, want version %d kind %d", tt.name, name, ue, tt.version, tt.kind)
			}
		}
		_, _, err := PeekLSN(tt.raw)
		if tt.peekFails != (err != nil) || (err != nil && !errors.Is(err, ErrUnsupported)) {
			t.Errorf("%s: PeekLSN error %v", tt.name, err)
		}
	}
}

func TestMinFormat(t *testing.T) {
	for _, tt := range []struct {
		ops  []Op
		want uint8
	}{
		{nil, 1},
		{[]Op{{Kind: OpPut}, {Kind: OpDelete}}, 1},
		{[]Op{{Kind: OpPut}, {Kind: OpSubPut}}, 2},
		{[]Op{{Kind: OpFlushAll}}, 2},
		{[]Op{{Kind: OpPut, Prior: PriorNone}}, 3},
		{[]Op{{Kind: OpSubPut}, {Kind: OpPut, Prior: PriorExpiring}}, 3},
		{[]Op{{Kind: OpDelete, Prior: PriorPlain}}, 1},
		{[]Op{{Kind: OpFunctions}}, 4},
		{[]Op{{Kind: OpPut, Prior: PriorNone}, {Kind: OpFunctions}}, 4},
		{[]Op{{Kind: 99}}, MaxFormat + 1},
	} {
		if got := MinFormat(tt.ops); got != tt.want {
			t.Errorf("MinFormat(%v) = %d, want %d", tt.ops, got, tt.want)
		}
		if tt.want <= MaxFormat {
			e := Entry{Ops: tt.ops}
			if raw := Encode(&e); raw[4] != tt.want {
				t.Errorf("Encode(%v) writes version %d, want %d", tt.ops, raw[4], tt.want)
			}
		}
	}
}

func TestOpKindString(t *testing.T) {
	for k, want := range map[OpKind]string{OpPut: "put", OpDelete: "delete", OpMeta: "meta", OpSubPut: "subput", OpSubDel: "subdel", OpDrop: "drop", OpFlushAll: "flushall", OpFunctions: "functions", 10: "OpKind(10)"} {
		if got := k.String(); got != want {
			t.Errorf("OpKind(%d).String() = %q, want %q", uint8(k), got, want)
		}
	}
}

// FuzzDecodeEntry: arbitrary bytes never panic, and whatever decodes is the
// canonical encoding of what it decodes to. The input is tried as is and
// with its checksum fixed, so that the fuzzer explores the parser rather
// than the checksum.
func FuzzDecodeEntry(f *testing.F) {
	e := smallEntry()
	f.Add(Encode(&e))
	f.Add(Encode(&Entry{}))
	f.Add(Encode(&Entry{Epoch: 1, LSN: 1, Ops: []Op{{Kind: OpDelete, Key: []byte("a")}}}))
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 1})
	v2 := v2Entry()
	f.Add(Encode(&v2))
	v3 := v3Entry()
	f.Add(Encode(&v3))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, b := range [][]byte{data, withCRC(bytes.Clone(data))} {
			e, err := Decode(b)
			epoch, lsn, perr := PeekLSN(b)
			if err != nil {
				if errors.Is(err, ErrCorrupt) == errors.Is(err, ErrUnsupported) {
					t.Fatalf("Decode error %v is not exactly one of ErrCorrupt, ErrUnsupported", err)
				}
				continue
			}
			if again := Encode(&e); !bytes.Equal(again, b) {
				t.Fatalf("Decode(%x) = %+v re-encodes to %x", b, e, again)
			}
			if perr != nil || epoch != e.Epoch || lsn != e.LSN {
				t.Fatalf("PeekLSN = %d, %d, %v; Decode gave %d, %d", epoch, lsn, perr, e.Epoch, e.LSN)
			}
		}
	})
}

// FuzzRoundTrip builds an entry from fuzz inputs: encoding then decoding
// gives it back, and flipping any one byte makes Decode fail.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint64(1), int64(0), []byte("k"), []byte("v"), int64(0), uint8(3), uint16(0))
	f.Add(uint64(math.MaxUint64), uint64(1<<63), int64(-1), []byte{}, []byte{}, int64(-5), uint8(0), uint16(7))
	f.Fuzz(func(t *testing.T, epoch, lsn uint64, timeNs int64, key, value []byte, expire int64, nops uint8, flip uint16) {
		in := Entry{Epoch: epoch, LSN: lsn, TimeNs: timeNs}
		for i := 0; i < int(nops%16); i++ {
			var op Op
			switch i % 8 {
			case 0:
				op = Op{Kind: OpPut, Key: key, Value: value, ExpireAtMs: expire}
			case 1:
				op = Op{Kind: OpDelete, Key: value}
			case 2:
				op = Op{Kind: OpMeta, Key: key, Type: uint8(lsn), ExpireAtMs: expire, Version: epoch, Size: lsn}
			case 3:
				op = Op{Kind: OpSubPut, Key: key, Version: lsn, Sub: value, Value: key}
			case 4:
				op = Op{Kind: OpSubDel, Key: value, Version: epoch, Sub: key}
			case 5:
				op = Op{Kind: OpDrop, Key: key, Version: lsn}
			case 6:
				op = Op{Kind: OpFlushAll}
			case 7:
				op = Op{Kind: OpPut, Key: value, Value: key, ExpireAtMs: expire, Prior: Prior(1 + int(nops>>4)%3)}
			}
			in.Ops = append(in.Ops, op)
		}
		raw := Encode(&in)
		if n := Size(&in); n != len(raw) {
			t.Fatalf("Size = %d, encoding is %d bytes", n, len(raw))
		}
		out, err := Decode(raw)
		if err != nil {
			t.Fatalf("Decode(Encode(%+v)): %v", in, err)
		}
		if !entriesEqual(in, out) {
			t.Fatalf("round trip: got %+v, want %+v", out, in)
		}
		if !reflect.DeepEqual(Encode(&out), raw) {
			t.Fatal("re-encoding differs")
		}
		if err := checkEncodeOwned(in); err != nil {
			t.Fatal(err)
		}
		b := bytes.Clone(raw)
		b[int(flip)%len(b)] ^= byte(flip>>8) | 1
		if got, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("flipped byte %d: Decode = %+v, %v; want ErrCorrupt", int(flip)%len(b), got, err)
		}
	})
}

// DecodeVerified and PeekLSNVerified parse what Decode and PeekLSN do, skip
// only the checksum, and still refuse malformed bytes.
func TestDecodeVerified(t *testing.T) {
	e := Entry{Epoch: 3, LSN: 9, TimeNs: 42, Ops: []Op{{Kind: OpPut, Key: []byte("k"), Value: []byte("v"), ExpireAtMs: 7}, {Kind: OpDelete, Key: []byte("d")}}}
	raw := Encode(&e)
	want, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeVerified(raw)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("DecodeVerified = %+v, %v; want %+v", got, err, want)
	}
	if ep, lsn, err := PeekLSNVerified(raw); err != nil || ep != 3 || lsn != 9 {
		t.Fatalf("PeekLSNVerified = %d, %d, %v", ep, lsn, err)
	}
	// The checksum is not looked at: a damaged one still parses.
	bad := bytes.Clone(raw)
	bad[0] ^= 0xff
	if _, err := DecodeVerified(bad); err != nil {
		t.Fatalf("DecodeVerified with a damaged checksum: %v", err)
	}
	// Malformed bodies are still refused.
	for _, b := range [][]byte{raw[:3], raw[:len(raw)-1], append(bytes.Clone(raw), 0)} {
		if _, err := DecodeVerified(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("DecodeVerified(%d bytes) = %v, want ErrCorrupt", len(b), err)
		}
	}
	if _, _, err := PeekLSNVerified(raw[:4]); !errors.Is(err, ErrCorrupt) {
		t.Errorf("PeekLSNVerified of a header alone = %v, want ErrCorrupt", err)
	}
}

// TestDecodeIn: entries decoded one after another into one OpArena are
// the entries Decode gives, each entry's ops stay its own (an append to
// one entry's ops leaves the next one's alone), a damaged entry is an
// error as with Decode, and entries of one op each share an array: 32 of
// them decode in one allocation, not 32.
func TestDecodeIn(t *testing.T) {
	es := []Entry{
		{Epoch: 1, LSN: 1, Ops: []Op{{Kind: OpPut, Key: []byte("a"), Value: []byte("1")}}},
		{Epoch: 1, LSN: 2},
		v2Entry(), v3Entry(),
		{Epoch: 1, LSN: 5, Ops: []Op{{Kind: OpDelete, Key: []byte("b")}, {Kind: OpPut, Key: []byte("c"), Value: []byte("3"), ExpireAtMs: 9}}},
		{Epoch: 1, LSN: 6, Ops: []Op{{Kind: OpPut, Key: []byte("d")}}},
	}
	var arena OpArena
	got := make([]Entry, len(es))
	for i := range es {
		var err error
		if got[i], err = DecodeIn(Encode(&es[i]), &arena, len(es)-i); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if want, _ := Decode(Encode(&es[i])); !entriesEqual(got[i], want) {
			t.Fatalf("entry %d: DecodeIn = %+v, Decode = %+v", i, got[i], want)
		}
	}
	for i := range got {
		_ = append(got[i].Ops, Op{Kind: OpDelete, Key: []byte("appended")})
	}
	for i := range got {
		if !entriesEqual(got[i], es[i]) {
			t.Fatalf("entry %d changed after appends to the others' ops: %+v", i, got[i])
		}
	}
	raw := Encode(&es[0])
	raw[len(raw)-1] ^= 1
	if _, err := DecodeIn(raw, &arena, 1); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a damaged entry: %v", err)
	}
	raws := make([][]byte, 32)
	for i := range raws {
		raws[i] = Encode(&Entry{Epoch: 1, LSN: uint64(i + 1), Ops: []Op{{Kind: OpPut, Key: []byte("k"), Value: []byte("v")}}})
	}
	allocs := testing.AllocsPerRun(50, func() {
		var a OpArena
		for i, r := range raws {
			if _, err := DecodeIn(r, &a, len(raws)-i); err != nil {
				t.Fatal(err)
			}
		}
	})
	if allocs > 1 {
		t.Fatalf("32 entries of one op each decoded in %.0f allocations", allocs)
	}
}

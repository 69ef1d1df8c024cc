package logrec

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"
)

// TestGolden pins the frozen wire format: these bytes were produced by the
// encoder before it moved onto package frame, and must never change.
func TestGolden(t *testing.T) {
	tests := []struct {
		e   Entry
		hex string
	}{
		{Entry{}, "9919637d0100000000"},
		{Entry{Epoch: 3, LSN: 17, TimeNs: 1700000000123456789}, "69f64f09010311aab4aed8c7bfce972f00"},
		{Entry{Epoch: 7, LSN: 1 << 40, TimeNs: -1, Ops: []Op{
			{Kind: OpPut, Key: []byte("a"), Value: []byte("1")},
			{Kind: OpDelete, Key: []byte("b")},
			{Kind: OpPut, Key: []byte("c"), Value: []byte("3"), ExpireAtMs: 1700000000000},
		}}, "77542bf10107808080808020010301016100013102016201016380a0abfef9620133"},
		{Entry{Epoch: math.MaxUint64, LSN: math.MaxUint64, TimeNs: math.MinInt64, Ops: []Op{
			{Kind: OpPut, Key: []byte{0, 0xff}, Value: []byte{0}, ExpireAtMs: math.MaxInt64},
		}}, "ced9204c01ffffffffffffffffff01ffffffffffffffffff01ffffffffffffffffff0101010200fffeffffffffffffffff010100"},
		// Format v2 (typed values): pinned when v2 was introduced.
		{v2Entry(), "4d27bb5402054dc6010701017314017602016403016802284d030401684d016601780501684d016706036f6c640c07"},
		{Entry{Epoch: 1, LSN: 2, Ops: []Op{{Kind: OpFlushAll}}}, "f86cb8cc020102000107"},
		{Entry{Epoch: 9, LSN: 1 << 35, TimeNs: 1, Ops: []Op{
			{Kind: OpMeta, Key: []byte{0xff}, Type: 255, ExpireAtMs: math.MaxInt64, Version: math.MaxUint64, Size: 1 << 32},
			{Kind: OpSubPut, Key: []byte{}, Version: 0, Sub: []byte{}, Value: []byte{}},
		}}, "39ea477d020980808080800102020301fffffeffffffffffffffff01ffffffffffffffffff0180808080100400000000"},
		// Format v3 (a put's prior row): pinned when v3 was introduced.
		{v3Entry(), "12af521603064ec8010608016e01000176080170021401770801650300000101750001780201640501684d0167"},
		// Format v4 (the function libraries): pinned when v4 was introduced.
		{Entry{Epoch: 2, LSN: 5, Ops: []Op{{Kind: OpFunctions, Key: []byte{}, Value: []byte("L")}, {Kind: OpFunctions, Key: []byte{}, Value: []byte{}}}}, "fc97041a04020500020900014c090000"},
	}
	for i, tt := range tests {
		want, _ := hex.DecodeString(tt.hex)
		if got := Encode(&tt.e); !bytes.Equal(got, want) {
			t.Errorf("%d: Encode = %x, want %s", i, got, tt.hex)
		}
		if got, err := Decode(want); err != nil || !entriesEqual(got, tt.e) {
			t.Errorf("%d: Decode(golden) = %+v, %v; want %+v", i, got, err, tt.e)
		}
	}
}

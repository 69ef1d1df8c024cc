package snapshot

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// TestGolden pins the frozen wire format: these bytes were produced by the
// encoder before it moved onto package frame, and must never change.
func TestGolden(t *testing.T) {
	tests := []struct {
		rows []Row
		hex  string
	}{
		{nil, "51537d5200"},
		{[]Row{{Key: []byte("k"), Value: []byte("v")}}, "c81de31001016b0176"},
		{[]Row{
			{Key: []byte("a"), Value: []byte("\x00\x00\x00\x00\x00\x00\x00\x00one")},
			{Key: []byte("b"), Value: nil},
			{Key: nil, Value: []byte("three")},
		}, "6fd3cb450301610b00000000000000006f6e6501620000057468726565"},
	}
	for i, tt := range tests {
		want, _ := hex.DecodeString(tt.hex)
		if got := encode(tt.rows); !bytes.Equal(got, want) {
			t.Errorf("%d: encode = %x, want %s", i, got, tt.hex)
		}
		if got, err := Decode(want); err != nil || !rowsEqual(got, tt.rows) {
			t.Errorf("%d: Decode(golden) = %q, %v; want %q", i, got, err, tt.rows)
		}
	}
}

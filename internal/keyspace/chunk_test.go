package keyspace

import (
	"bytes"
	"errors"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// chunkedRows writes value as storage keeps a long string: a chunked
// string row and its chunks at version.
func chunkedRows(w Writer, key string, value []byte, version uint64, exp int64) {
	w.Set(MetaKey([]byte(key)), AppendChunkedRow(nil, exp, version, uint64(len(value))))
	for i := uint64(0); i < Chunks(uint64(len(value))); i++ {
		end := min(uint64(len(value)), (i+1)*ChunkBytes)
		w.Set(SubKey([]byte(key), version, ChunkSub(uint32(i))), value[i*ChunkBytes:end])
	}
}

func TestChunkedStringReads(t *testing.T) {
	value := bytes.Repeat([]byte("0123456789"), (3*ChunkBytes+77)/10)
	l := NewLayer(Empty{})
	chunkedRows(l, "big", value, 9, 5000)
	l.Set(MetaKey([]byte("small")), AppendMetaRow(nil, Value{Type: TypeString, Data: []byte("v")}))
	r := Reader{R: l, NowMs: 1}
	v, ok, err := r.Get([]byte("big"))
	if err != nil || !ok || !bytes.Equal(v.Data, value) || v.ExpireAtMs != 5000 || v.Version != 0 || v.Type != TypeString {
		t.Fatalf("Get: %d bytes, %+v, %v, %v", len(v.Data), v.Type, ok, err)
	}
	if cap(v.Data) != len(value) {
		t.Errorf("assembled into %d bytes for %d", cap(v.Data), len(value))
	}
	var keys []string
	if err := r.Scan(nil, func(k []byte, v Value) bool {
		if string(k) == "big" && !bytes.Equal(v.Data, value) {
			t.Errorf("Scan: big is %d bytes", len(v.Data))
		}
		keys = append(keys, string(k))
		return true
	}); err != nil || len(keys) != 2 {
		t.Fatalf("Scan: %v, %v", keys, err)
	}
	if _, ok, _ := (Reader{R: l, NowMs: 5000}).Get([]byte("big")); ok {
		t.Error("expired chunked string read")
	}
	// A chunk missing, short, or an extra row before the last: corrupt.
	for _, damage := range []func(w Writer){
		func(w Writer) { w.Delete(SubKey([]byte("big"), 9, ChunkSub(1))) },
		func(w Writer) { w.Set(SubKey([]byte("big"), 9, ChunkSub(3)), []byte("x")) },
		func(w Writer) { w.Set(SubKey([]byte("big"), 9, []byte{0, 0, 0, 1, 0}), []byte("x")) },
	} {
		d := NewLayer(l)
		damage(d)
		if _, _, err := (Reader{R: d, NowMs: 1}).Get([]byte("big")); !errors.Is(err, ErrCorrupt) {
			t.Errorf("damaged: %v, want ErrCorrupt", err)
		}
	}
}

// TestLayerSetString: a long string put through Apply reads back from a
// Layer exactly as the row Set would have stored, by Get and by Iter.
func TestLayerSetString(t *testing.T) {
	value := bytes.Repeat([]byte("v"), ChunkThreshold+1)
	op := logrec.Op{Kind: logrec.OpPut, Key: []byte("k"), Value: value, ExpireAtMs: 77}
	want := AppendMetaRow(nil, Value{Type: TypeString, Data: value, ExpireAtMs: 77})
	l := NewLayer(Empty{})
	if err := Apply(l, &op); err != nil {
		t.Fatal(err)
	}
	if p := l.points[string(MetaKey([]byte("k")))]; p == nil || !p.str {
		t.Fatal("the layer did not keep the value as it is")
	}
	got, ok, err := l.Get(MetaKey([]byte("k")))
	if err != nil || !ok || !bytes.Equal(got, want) {
		t.Fatalf("Get: %d bytes, %v, %v", len(got), ok, err)
	}
	n := 0
	if err := l.Iter(MetaLower, MetaUpper, func(k, v []byte) bool {
		n++
		if !bytes.Equal(v, want) {
			t.Errorf("Iter: %d bytes", len(v))
		}
		return true
	}); err != nil || n != 1 {
		t.Fatalf("Iter: %d rows, %v", n, err)
	}
}

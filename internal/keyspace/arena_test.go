package keyspace

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

// rowsOf records what a Writer is given, keeping the slices themselves
// (not copies), as storage's Apply keeps them until its batch commits.
type rowsOf struct{ keys, rows [][]byte }

func (r *rowsOf) Set(k, v []byte)          { r.keys = append(r.keys, k); r.rows = append(r.rows, v) }
func (r *rowsOf) Delete(k []byte)          { r.keys = append(r.keys, k); r.rows = append(r.rows, nil) }
func (r *rowsOf) DeleteRange(lo, _ []byte) { r.keys = append(r.keys, lo); r.rows = append(r.rows, nil) }

// TestArenaRowsAsApply: the rows ApplyIn builds in an arena are those
// Apply builds on their own, and stay so while later ops are applied and
// while a holder appends to one (each slice's capacity ends with it):
// the promise storage's Apply keeps slices on (and keys its touched map
// on without a copy).
func TestArenaRowsAsApply(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	var ops []logrec.Op
	for i := range 3000 {
		key := bytes.Repeat([]byte{byte('a' + i%26)}, 1+rnd.IntN(40))
		switch i % 6 {
		case 0:
			ops = append(ops, logrec.Op{Kind: logrec.OpPut, Key: key, Value: bytes.Repeat([]byte("v"), rnd.IntN(300)), ExpireAtMs: int64(i)})
		case 1:
			ops = append(ops, logrec.Op{Kind: logrec.OpDelete, Key: key})
		case 2:
			ops = append(ops, logrec.Op{Kind: logrec.OpMeta, Key: key, Type: uint8(TypeSet), Version: uint64(i), Size: uint64(i)})
		case 3:
			ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: key, Version: uint64(i), Sub: fmt.Appendf(nil, "m%d", i), Value: []byte("x")})
		case 4:
			ops = append(ops, logrec.Op{Kind: logrec.OpSubDel, Key: key, Version: uint64(i), Sub: fmt.Appendf(nil, "m%d", i)})
		case 5:
			// Larger than a quarter of the biggest buffer: its own allocation.
			ops = append(ops, logrec.Op{Kind: logrec.OpPut, Key: key, Value: bytes.Repeat([]byte("w"), arenaMax/4+1)})
		}
	}
	var want, got rowsOf
	a := NewArena(0)
	for i := range ops {
		if err := Apply(&want, &ops[i]); err != nil {
			t.Fatal(err)
		}
		if err := ApplyIn(&got, &ops[i], a); err != nil {
			t.Fatal(err)
		}
		// A holder appending to what it was given must not write into
		// the arena's next slice.
		k := got.keys[len(got.keys)-1]
		_ = append(k, 0xee, 0xee, 0xee, 0xee)
	}
	for i := range want.keys {
		if !bytes.Equal(got.keys[i], want.keys[i]) || !bytes.Equal(got.rows[i], want.rows[i]) {
			t.Fatalf("op %d (%v): arena row %x = %x, want %x = %x", i, ops[i].Kind, got.keys[i], got.rows[i], want.keys[i], want.rows[i])
		}
		if cap(got.keys[i]) != len(got.keys[i]) {
			t.Fatalf("op %d: key of capacity %d past its length %d", i, cap(got.keys[i]), len(got.keys[i]))
		}
	}
	var nilArena *Arena
	if k := nilArena.MetaKey([]byte("k")); !bytes.Equal(k, MetaKey([]byte("k"))) {
		t.Fatalf("nil arena: %x", k)
	}
}

package node

import (
	"reflect"
	"testing"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// TestExpireExec: the expiry loop's delete drops an expired collection's
// version (its rows go with it) and deletes an expired string; a key no
// longer expired, or gone, is left alone.
func TestExpireExec(t *testing.T) {
	rows := keyspace.NewLayer(keyspace.Empty{})
	for _, op := range []logrec.Op{
		{Kind: logrec.OpMeta, Key: []byte("h"), Type: uint8(keyspace.TypeHash), Version: 4, Size: 1, ExpireAtMs: 100},
		{Kind: logrec.OpSubPut, Key: []byte("h"), Version: 4, Sub: []byte("f"), Value: []byte("v")},
		{Kind: logrec.OpPut, Key: []byte("s"), Value: []byte("x"), ExpireAtMs: 100},
		{Kind: logrec.OpPut, Key: []byte("later"), Value: []byte("x"), ExpireAtMs: 900},
	} {
		if err := keyspace.Apply(rows, &op); err != nil {
			t.Fatal(err)
		}
	}
	v := keyspace.Reader{R: rows, NowMs: 500, LSN: 9}
	res, err := expireExec([][]byte{[]byte("h"), []byte("s"), []byte("later"), []byte("gone")})(v, 500)
	if err != nil {
		t.Fatal(err)
	}
	want := []logrec.Op{{Kind: logrec.OpDrop, Key: []byte("h"), Version: 4}, {Kind: logrec.OpDelete, Key: []byte("s")}}
	if !reflect.DeepEqual(res.Ops, want) {
		t.Fatalf("ops %+v, want %+v", res.Ops, want)
	}
}

package node

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
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

// TestExpiryLoopSleepsUntilDue: an idle leader's expiry loop has no round
// due before its next sweep pass (it does not poll ten times a second); a
// key written with a TTL makes a round due by its expiry, wakes the loop
// (storage's ExpiryWritten) and is deleted through the log soon after,
// though the loop had gone to sleep for seconds.
func TestExpiryLoopSleepsUntilDue(t *testing.T) {
	n := testNode(t, "n1", nil)
	ctx := context.Background()
	c := newClient(t, n)
	testutil.Eventually(t, "the first sweep pass to end", 5*time.Second, func() (bool, string) {
		d := n.expiryDue(time.Now())
		return d > time.Second, fmt.Sprintf("next round due in %v", d)
	})
	if err := c.Set(ctx, "k", "v", 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	if d := n.expiryDue(time.Now()); d > 300*time.Millisecond {
		t.Errorf("a key expiring in 300 ms written: next round due in %v", d)
	}
	testutil.Eventually(t, "the expired key deleted", 3*time.Second, func() (bool, string) {
		keys := n.db.KeyCounts().Keys
		return keys == 0, fmt.Sprintf("%d keys", keys)
	})
	// The round after the delete finds the index empty, and the loop
	// sleeps again.
	testutil.Eventually(t, "the loop to sleep again", time.Second, func() (bool, string) {
		d := n.expiryDue(time.Now())
		return d > time.Second, fmt.Sprintf("next round due in %v", d)
	})
}

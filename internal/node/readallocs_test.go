package node

import (
	"context"
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/resp"
)

// TestLeaderReadAllocs: a GET on the leader, with no floor and with the
// session's read-your-writes floor (its own last write, of this
// leadership: every read of a connection that wrote), allocates only what
// the command itself needs: its Ctx and view (one allocation), the row
// key and the reply.
// The floor is checked without a context, a timer or a copy of the epoch
// history, and the read lock and the read's position cost no allocation.
// At af0b126 it made 6 and 12: the Ctx and view apart, a history copy
// for the position and a method value for the unlock (1 each), and for
// the floor WaitApplied's context, timer and three history copies.
func TestLeaderReadAllocs(t *testing.T) {
	n := testNode(t, "l", nil)
	ctx := context.Background()
	c := newClient(t, n)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	b := backend{n}
	spec, _ := commands.Lookup([]byte("get"))
	args := [][]byte{[]byte("get"), []byte("k")}
	floor := resp.Position(n.db.AppliedPosition())
	if floor.LSN == 0 || floor.Epoch == 0 {
		t.Fatalf("applied position %+v after a write", floor)
	}
	for _, tc := range []struct {
		name string
		req  resp.ReadRequest
	}{
		{"no floor", resp.ReadRequest{}},
		{"own write's floor", resp.ReadRequest{Policy: resp.Policy{Kind: resp.PolicyRYW}, Floor: floor}},
	} {
		var err error
		var reply commands.Reply
		allocs := testing.AllocsPerRun(200, func() {
			reply, _, err = b.ReadAt(ctx, spec, args, tc.req)
		})
		if err != nil || reply == nil {
			t.Fatalf("%s: GET: %v, %v", tc.name, reply, err)
		}
		if allocs > 3 {
			t.Errorf("%s: a GET on the leader makes %.0f allocations, want at most 3", tc.name, allocs)
		}
	}
}

package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// waitBlocked waits until k clients are blocked on n.
func waitBlocked(t *testing.T, n *Node, k int64) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		got, changed := n.blocked.blockedChanged()
		if got == k {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d clients blocked, want %d", got, k)
		}
	}
}

// bg runs a command on its own client and returns its result later.
func bg(t *testing.T, n *Node, args ...any) <-chan *redis.Cmd {
	t.Helper()
	c := newClient(t, n)
	out := make(chan *redis.Cmd, 1)
	go func() { out <- c.Do(context.Background(), args...) }()
	return out
}

func result(t *testing.T, ch <-chan *redis.Cmd) *redis.Cmd {
	t.Helper()
	select {
	case cmd := <-ch:
		return cmd
	case <-time.After(10 * time.Second):
		t.Fatal("no reply in 10 s")
	}
	return nil
}

// TestBlockingWrongTypeDestination: two clients BRPOPLPUSH from one list,
// the first into a key of another type: one push answers the first
// WRONGTYPE and passes the element to the second (Redis's "BRPOPLPUSH
// with multiple blocked clients").
func TestBlockingWrongTypeDestination(t *testing.T) {
	n := testNode(t, "n1", nil)
	c := newClient(t, n)
	mustDo(t, c, "SET", "t1", "nolist")
	r1 := bg(t, n, "BRPOPLPUSH", "bl", "t1", "0")
	waitBlocked(t, n, 1)
	r2 := bg(t, n, "BRPOPLPUSH", "bl", "t2", "0")
	waitBlocked(t, n, 2)
	mustDo(t, c, "LPUSH", "bl", "foo")
	if err := result(t, r1).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGTYPE") {
		t.Fatalf("first BRPOPLPUSH: %v, want WRONGTYPE", err)
	}
	if v, err := result(t, r2).Text(); err != nil || v != "foo" {
		t.Fatalf("second BRPOPLPUSH = %q, %v", v, err)
	}
	if got := c.LRange(context.Background(), "t2", 0, -1).Val(); len(got) != 1 || got[0] != "foo" {
		t.Fatalf("t2 = %v", got)
	}
	_ = errors.New
}

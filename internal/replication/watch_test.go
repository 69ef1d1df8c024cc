package replication

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/keyspace"
)

// txOutcome runs a transaction of one SET under ws and reports whether it
// ran.
func txOutcome(t *testing.T, l *testLeader, ws ...*Watch) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	p, err := l.StartTx(ctx, ws, cmdExec("set", "tx", "ran"))
	if errors.Is(err, ErrWatchChanged) {
		return false
	}
	if err != nil {
		t.Fatalf("StartTx: %v", err)
	}
	if _, _, err := p.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	return true
}

func watch(t *testing.T, l *testLeader, keys ...string) *Watch {
	t.Helper()
	bs := make([][]byte, len(keys))
	for i, k := range keys {
		bs[i] = []byte(k)
	}
	w, err := l.Watch(context.Background(), bs)
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	t.Cleanup(w.Release)
	return w
}

// TestWatchRules checks Redis 7.0's WATCH rules (unit/multi) on the
// leader: which changes between WATCH and EXEC refuse the transaction.
func TestWatchRules(t *testing.T) {
	var nowMs atomic.Int64
	nowMs.Store(1_000_000)
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) {
		c.Now = func() time.Time { return time.UnixMilli(nowMs.Load()) }
	})
	do := func(args ...string) { propose(t, l, cmdExec(args...)) }
	cases := []struct {
		name   string
		before []string // a command before the watch
		change func()
		runs   bool
	}{
		{"untouched", []string{"set", "x", "1"}, func() {}, true},
		{"set", []string{"set", "x", "1"}, func() { do("set", "x", "2") }, false},
		{"same value", []string{"set", "x", "1"}, func() { do("set", "x", "1") }, false},
		{"other key", []string{"set", "x", "1"}, func() { do("set", "y", "2") }, true},
		{"del", []string{"set", "x", "1"}, func() { do("del", "x") }, false},
		{"del of absent key logs nothing", []string{"del", "x"}, func() { do("del", "x") }, true},
		{"expire", []string{"set", "x", "1"}, func() { do("expire", "x", "10") }, false},
		{"hash field", []string{"hset", "x", "a", "1"}, func() { do("hset", "x", "b", "2") }, false},
		{"flushall of live key", []string{"set", "x", "1"}, func() { do("flushall") }, false},
		{"flushall of absent key", []string{"del", "x"}, func() { do("flushall") }, true},
		{"created", []string{"del", "x"}, func() { do("set", "x", "1") }, false},
		{"expired after watch", []string{"set", "x", "1", "px", "100"}, func() { nowMs.Add(200) }, false},
		{"expired after watch and reaped", []string{"set", "x", "1", "px", "100"}, func() {
			nowMs.Add(200)
			propose(t, l, expireTestExec("x"))
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			do("del", "x", "y")
			do(tc.before...)
			w := watch(t, l, "x")
			tc.change()
			if got := txOutcome(t, l, w); got != tc.runs {
				t.Fatalf("transaction ran %v, want %v", got, tc.runs)
			}
		})
	}

	t.Run("stale at watch", func(t *testing.T) {
		// Expired but not reaped when watched: reaping it, or a FLUSHALL,
		// is no change (Redis: "WATCH stale keys should not fail EXEC").
		for _, change := range []func(){
			func() {},
			func() { propose(t, l, expireTestExec("x")) },
			func() { do("flushall") },
			func() { do("del", "x") },
		} {
			do("set", "x", "1", "px", "100")
			nowMs.Add(200)
			w := watch(t, l, "x")
			change()
			if !txOutcome(t, l, w) {
				t.Fatal("a change to a key stale at WATCH refused the transaction")
			}
		}
	})

	t.Run("watched twice, released once", func(t *testing.T) {
		do("set", "x", "1")
		w1 := watch(t, l, "x")
		w2 := watch(t, l, "x")
		w1.Release()
		w1.Release()
		do("set", "x", "2")
		if txOutcome(t, l, w2) {
			t.Fatal("the remaining watch missed a change")
		}
		if txOutcome(t, l, w1) {
			t.Fatal("a released watch let a transaction run")
		}
	})

	t.Run("a transaction's own write", func(t *testing.T) {
		// The transaction's entry touches x after its check: the next
		// transaction under the same watch (not released) is refused.
		w := watch(t, l, "tx")
		if !txOutcome(t, l, w) || txOutcome(t, l, w) {
			t.Fatal("a transaction's own write is not a touch")
		}
	})
}

// TestWatchOtherLeadership: a Watch made under one leadership never lets
// a transaction run under another.
func TestWatchOtherLeadership(t *testing.T) {
	l1 := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	l2 := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	w := watch(t, l1, "x")
	if txOutcome(t, l2, w) {
		t.Fatal("a watch of another leadership let a transaction run")
	}
}

// expireTestExec deletes key if it is expired, as the node's expiry loop
// does: the delete of a key that is not live.
func expireTestExec(key string) ExecFunc {
	return func(v commands.View, nowMs int64) (commands.Result, error) {
		var res commands.Result
		val, ok, err := keyspace.Reader{R: v.Rows(), NowMs: nowMs}.GetAny([]byte(key))
		if err != nil {
			return res, err
		}
		if ok && keyspace.Expired(val.ExpireAtMs, nowMs) {
			res.Ops = append(res.Ops, keyspace.DeleteOp([]byte(key), val))
		}
		res.Reply = commands.Int(len(res.Ops))
		return res, nil
	}
}

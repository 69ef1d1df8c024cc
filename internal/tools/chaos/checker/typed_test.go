package checker

import (
	"testing"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Builders of the typed workload's operations; times as in checker_test.

func add(kind history.Kind, key, v string, call, ret int64) history.Op {
	return history.Op{Client: 0, Key: key, Kind: kind, Value: v, Outcome: history.OK, Node: 1, Call: call, Return: ret}
}

func read(kind history.Kind, key string, call, ret int64, items ...string) history.Op {
	return history.Op{Client: 1, Key: key, Kind: kind, Items: items, Outcome: history.OK, Node: 1, Call: call, Return: ret}
}

func TestSets(t *testing.T) {
	sadd := func(v string, call, ret int64) history.Op { return add(history.SAdd, "s:0", v, call, ret) }
	smembers := func(call, ret int64, items ...string) history.Op {
		return read(history.SRead, "s:0", call, ret, items...)
	}
	tests := []struct {
		name   string
		ops    []history.Op
		strict bool
		want   []ViolationKind
	}{
		{"correct", []history.Op{sadd("a", 0, 10), smembers(5, 8), smembers(11, 12, "a"), sadd("b", 13, 20), smembers(14, 15, "a", "b"),
			unknown(sadd("c", 21, 22)), smembers(23, 24, "a", "b"), final(smembers(100, 101, "a", "b", "c"))}, true, nil},
		{"unknown add seen, then kept", []history.Op{unknown(sadd("a", 0, 1)), smembers(5, 6, "a"), final(smembers(10, 11, "a"))}, true, nil},
		{"acknowledged member missing", []history.Op{sadd("a", 0, 10), smembers(11, 12), final(smembers(20, 21, "a"))}, true, []ViolationKind{MissingElement}},
		{"member seen, then gone", []history.Op{unknown(sadd("a", 0, 1)), smembers(5, 6, "a"), smembers(7, 8), final(smembers(20, 21, "a"))}, true, []ViolationKind{MissingElement}},
		{"lost at the end", []history.Op{sadd("a", 0, 10), final(smembers(20, 21))}, true, []ViolationKind{MissingElement}},
		{"never added", []history.Op{sadd("a", 0, 10), smembers(11, 12, "a", "z"), final(smembers(20, 21, "a"))}, true, []ViolationKind{NeverWritten}},
		{"added only after the read", []history.Op{smembers(1, 2, "a"), sadd("a", 5, 10), final(smembers(20, 21, "a"))}, true, []ViolationKind{NeverWritten}},
		{"failed add read", []history.Op{failed(sadd("a", 0, 1)), smembers(5, 6, "a"), final(smembers(20, 21, "a"))}, true, []ViolationKind{NeverWritten, NeverWritten}},
		{"no final read", []history.Op{sadd("a", 0, 10)}, true, []ViolationKind{Unverified}},
		{"async: loss allowed", []history.Op{sadd("a", 0, 10), smembers(11, 12), final(smembers(20, 21))}, false, nil},
		{"async: invention still caught", []history.Op{smembers(11, 12, "z"), final(smembers(20, 21))}, false, []ViolationKind{NeverWritten}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantKinds(t, Sets(tc.ops, tc.strict), tc.want...)
		})
	}
}

func TestLists(t *testing.T) {
	rpush := func(v string, call, ret int64) history.Op { return add(history.RPush, "l:0", v, call, ret) }
	lrange := func(call, ret int64, items ...string) history.Op {
		return read(history.LRead, "l:0", call, ret, items...)
	}
	tests := []struct {
		name string
		ops  []history.Op
		want []ViolationKind
	}{
		{"correct", []history.Op{rpush("a", 0, 10), rpush("b", 5, 12), lrange(6, 7, "b"), lrange(13, 14, "b", "a"), rpush("c", 15, 20),
			final(lrange(30, 31, "b", "a", "c"))}, nil},
		{"concurrent pushes in either order", []history.Op{rpush("a", 0, 10), rpush("b", 1, 11), final(lrange(30, 31, "b", "a"))}, nil},
		{"pushes against real time", []history.Op{rpush("a", 0, 10), rpush("b", 11, 12), final(lrange(30, 31, "b", "a"))}, []ViolationKind{ListOrder}},
		{"reads disagree on order", []history.Op{rpush("a", 0, 10), rpush("b", 1, 11), lrange(12, 13, "a", "b"), final(lrange(30, 31, "b", "a"))}, []ViolationKind{ListOrder}},
		{"element twice", []history.Op{rpush("a", 0, 10), final(lrange(30, 31, "a", "a"))}, []ViolationKind{ListOrder}},
		{"acknowledged push missing", []history.Op{rpush("a", 0, 10), rpush("b", 11, 12), lrange(13, 14, "a"), final(lrange(30, 31, "a", "b"))}, []ViolationKind{MissingElement}},
		{"lost at the end", []history.Op{rpush("a", 0, 10), rpush("b", 11, 12), lrange(13, 14, "a", "b"), final(lrange(30, 31, "a"))}, []ViolationKind{MissingElement}},
		{"never pushed", []history.Op{rpush("a", 0, 10), final(lrange(30, 31, "a", "x"))}, []ViolationKind{NeverWritten}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantKinds(t, Lists(tc.ops, true), tc.want...)
		})
	}
	// The loss at the end counts as lost writes.
	vs := Lists([]history.Op{rpush("a", 0, 10), rpush("b", 11, 12), final(lrange(30, 31, "a"))}, true)
	if len(vs) != 1 || vs[0].Lost != 1 || vs[0].At != 11 {
		t.Fatalf("final read missing one push: %+v, want Lost 1 at 11", vs)
	}
}

func TestTransfers(t *testing.T) {
	open := history.Op{Client: 9, Key: "accounts", Kind: history.Accounts, N: 300, Outcome: history.OK, Node: 1, Call: 0, Return: 1}
	transfer := func(call, ret int64) history.Op {
		return history.Op{Key: "accounts", Kind: history.Transfer, Value: "a:0->a:1", N: 5, Outcome: history.OK, Node: 1, Call: call, Return: ret}
	}
	bal := func(node int, call int64, items ...string) history.Op {
		o := read(history.Balances, "accounts", call, call+1, items...)
		o.Node, o.Follower = node, node != 1
		return o
	}
	finals := func(items ...string) []history.Op {
		return []history.Op{final(bal(1, 50, items...)), final(bal(2, 52, items...)), final(bal(3, 54, items...))}
	}
	tests := []struct {
		name string
		ops  []history.Op
		want []ViolationKind
	}{
		{"correct", append([]history.Op{open, transfer(2, 5), bal(1, 6, "95", "105", "100"), bal(2, 3, "100", "100", "100")}, finals("95", "105", "100")...), nil},
		{"absent account is 0", append([]history.Op{open, bal(2, 3, "100", "", "200")}, finals("100", "100", "100")...), nil},
		{"follower before the opening", append([]history.Op{open, bal(2, 3, "", "", "")}, finals("100", "100", "100")...), nil},
		{"one account missing", append([]history.Op{open, bal(2, 3, "100", "", "100")}, finals("100", "100", "100")...), []ViolationKind{SumChanged}},
		{"leader without the accounts", append([]history.Op{open, bal(1, 3, "", "", "")}, finals("100", "100", "100")...), []ViolationKind{SumChanged}},
		{"every account gone at the end", append([]history.Op{open}, finals("", "", "")...), []ViolationKind{SumChanged, SumChanged, SumChanged}},
		{"half a transfer seen", append([]history.Op{open, transfer(2, 5), bal(2, 3, "95", "100", "100")}, finals("95", "105", "100")...), []ViolationKind{SumChanged}},
		{"half a transfer kept on every node", append([]history.Op{open, transfer(2, 5)}, finals("95", "100", "100")...), []ViolationKind{SumChanged, SumChanged, SumChanged}},
		{"not a number", append([]history.Op{open, bal(1, 3, "x", "100", "100")}, finals("100", "100", "100")...), []ViolationKind{SumChanged}},
		{"a node never read", []history.Op{open, final(bal(1, 50, "100", "100", "100")), unknown(final(bal(2, 52)))}, []ViolationKind{Unverified}},
		{"no final reads", []history.Op{open, transfer(2, 5)}, []ViolationKind{Unverified}},
		{"never opened", []history.Op{unknown(open)}, []ViolationKind{Unverified}},
		{"no transfers", []history.Op{w(0, "r:0", "a", 0, 1)}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantKinds(t, Transfers(tc.ops), tc.want...)
		})
	}
}

func TestQueue(t *testing.T) {
	lpush := func(v string, call, ret int64) history.Op { return add(history.Enqueue, "q", v, call, ret) }
	rpop := func(v string, call, ret int64) history.Op {
		return history.Op{Client: 2, Key: "q", Kind: history.Dequeue, Found: v != "", Result: v, Outcome: history.OK, Node: 1, Call: call, Return: ret}
	}
	queue := func(items ...string) history.Op { return final(read(history.QueueRead, "q", 100, 101, items...)) }
	tests := []struct {
		name   string
		ops    []history.Op
		strict bool
		want   []ViolationKind
	}{
		{"correct", []history.Op{rpop("", 0, 1), lpush("a", 2, 3), lpush("b", 4, 5), rpop("a", 6, 7), unknown(lpush("c", 8, 9)), queue("b")}, true, nil},
		{"unknown push popped", []history.Op{unknown(lpush("a", 0, 1)), rpop("a", 6, 7), queue()}, true, nil},
		{"popped twice", []history.Op{lpush("a", 0, 1), rpop("a", 2, 3), rpop("a", 4, 5), queue()}, true, []ViolationKind{DuplicatePop}},
		{"popped and still queued", []history.Op{lpush("a", 0, 1), rpop("a", 2, 3), queue("a")}, true, []ViolationKind{DuplicatePop}},
		{"queued twice", []history.Op{lpush("a", 0, 1), queue("a", "a")}, true, []ViolationKind{DuplicatePop}},
		{"lost", []history.Op{lpush("a", 0, 1), lpush("b", 2, 3), rpop("b", 4, 5), queue()}, true, []ViolationKind{LostJob}},
		{"lost, or taken by a pop of unknown outcome", []history.Op{lpush("a", 0, 1), unknown(rpop("", 4, 5)), queue()}, true, nil},
		{"lost, and the only pop that could have taken it failed (UNBLOCKED)", []history.Op{lpush("a", 0, 1), failed(rpop("", 4, 5)), queue()}, true, []ViolationKind{LostJob}},
		{"more lost than unknown pops", []history.Op{lpush("a", 0, 1), lpush("b", 0, 1), unknown(rpop("", 4, 5)), queue()}, true, []ViolationKind{LostJob}},
		{"popped a job never pushed", []history.Op{rpop("z", 0, 1), queue()}, true, []ViolationKind{NeverWritten}},
		{"failed push queued", []history.Op{failed(lpush("a", 0, 1)), queue("a")}, true, []ViolationKind{NeverWritten}},
		{"no final read", []history.Op{lpush("a", 0, 1)}, true, []ViolationKind{Unverified}},
		{"async: loss and duplicates allowed", []history.Op{lpush("a", 0, 1), lpush("b", 2, 3), rpop("b", 4, 5), rpop("b", 6, 7), queue()}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantKinds(t, Queue(tc.ops, tc.strict), tc.want...)
		})
	}
	vs := Queue([]history.Op{lpush("a", 0, 1), lpush("b", 2, 3), unknown(rpop("", 4, 5)), lpush("c", 6, 7), queue()}, true)
	if len(vs) != 1 || vs[0].Lost != 2 || vs[0].At != 6 {
		t.Fatalf("three jobs lost, one unknown pop: %+v, want Lost 2 at 6", vs)
	}
}

// TestTypedLeavesRegistersAlone: the typed checks look only at the typed
// kinds, and a history with hash fields ("h:N/fM" Write and Read) is a
// register history to the register checks.
func TestTypedLeavesRegistersAlone(t *testing.T) {
	ops := []history.Op{w(0, "h:0/f1", "a", 0, 10), r(1, "h:0/f1", "a", 11, 12), final(r(1, "h:0/f1", "a", 20, 21)), w(0, "r:0", "x", 0, 1)}
	if vs := Typed(ops, true); len(vs) != 0 {
		t.Fatalf("typed checks reported on registers: %v", vs)
	}
	if vs := Linearizable(ops, 0, ""); len(vs) != 0 {
		t.Fatalf("hash field history: %v", vs)
	}
	stale := append(ops, r(1, "h:0/f1", "", 30, 31))
	wantKinds(t, Linearizable(stale, 0, ""), NotLinearizable)
}

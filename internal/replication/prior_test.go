package replication

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/storage"
)

// TestPriorsKeepKeyCounts: the leader says each put's prior row
// (logrec.Op.Prior) from its overlay and its row cache, and every node
// applies the put without reading that row. Pipelines of random writes
// over a few keys (overwrites, expiries, some already due, deletes,
// collections replaced by strings, a key written twice in one entry,
// FLUSHALL) keep each write's prior in the overlay when it is sequenced;
// a follower seeded mid-way applies the entries after its snapshot. Every
// database is opened with CheckPriors (openDB), so a wrong prior fails
// the Apply that meets it; and the key counts of every node must be its
// rows' and the leader's.
func TestPriorsKeepKeyCounts(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	f1 := newFollowerNode(t, "f1", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() string { return fmt.Sprintf("k%d", rng.IntN(12)) }
	var args func() []string
	cmd := func() ExecFunc {
		switch n := rng.IntN(100); {
		case n < 5:
			// One entry writes a key twice, then another key after a
			// FLUSHALL (as a MULTI would).
			k, k2, exp := key(), key(), int64(rng.IntN(2))*1e13
			return func(commands.View, int64) (commands.Result, error) {
				ops := []logrec.Op{{Kind: logrec.OpPut, Key: []byte(k), Value: []byte("1"), ExpireAtMs: exp}, {Kind: logrec.OpPut, Key: []byte(k), Value: []byte("2")}}
				if rng.IntN(4) == 0 {
					ops = append(ops, logrec.Op{Kind: logrec.OpFlushAll}, logrec.Op{Kind: logrec.OpPut, Key: []byte(k2), Value: []byte("3")})
				}
				return commands.Result{Reply: commands.OK, Ops: ops}, nil
			}
		case n < 8:
			// An entry of more ops than setPriors looks back through
			// (linearOps): a set of the keys written.
			var ops []logrec.Op
			for range linearOps + 8 {
				op := logrec.Op{Kind: logrec.OpPut, Key: []byte(key()), Value: []byte("m"), ExpireAtMs: int64(rng.IntN(2)) * 1e13}
				if rng.IntN(5) == 0 {
					op = logrec.Op{Kind: logrec.OpDelete, Key: op.Key}
				}
				ops = append(ops, op)
			}
			return func(commands.View, int64) (commands.Result, error) {
				return commands.Result{Reply: commands.OK, Ops: ops}, nil
			}
		}
		return cmdExec(args()...)
	}
	args = func() []string {
		switch n := rng.IntN(100); {
		case n < 40:
			return []string{"set", key(), "v"}
		case n < 50:
			return []string{"set", key(), "v", "ex", "100"}
		case n < 55:
			return []string{"set", key(), "v", "px", "1"} // due at once: its row stays until deleted
		case n < 62:
			return []string{"del", key()}
		case n < 68:
			return []string{"hset", key(), "f", "v"}
		case n < 74:
			return []string{"expire", key(), "100"}
		case n < 78:
			return []string{"persist", key()}
		case n < 84:
			k := key()
			return []string{"mset", k, "1", key(), "2", k, "3"} // k twice in one entry
		case n < 88:
			return []string{"incr", key()}
		case n < 92:
			return []string{"setnx", key(), "v"}
		case n < 96:
			return []string{"getset", key(), "v"}
		case n < 99:
			return []string{"append", key(), "x"}
		}
		return []string{"flushall"}
	}
	var f2 *testFollower
	for round := 0; round < 40; round++ {
		if round == 20 {
			f2 = newFollowerNode(t, "f2", vfs.NewMem(), l.dialer) // seeded from a snapshot
		}
		var pend []*Pending
		for range 25 {
			p, err := l.Start(context.Background(), cmd())
			if err != nil {
				t.Fatal(err)
			}
			pend = append(pend, p)
		}
		for _, p := range pend {
			if _, _, err := p.Wait(context.Background()); err != nil && !commands.IsInputError(err) {
				t.Fatal(err) // an input error is INCR's of "v", answered by Wait
			}
		}
		// After each round (a FLUSHALL would hide an earlier drift).
		fs := []*testFollower{f1}
		if f2 != nil {
			fs = append(fs, f2)
		}
		waitConverged(t, l, fs...)
		want := l.db.KeyCounts()
		for _, n := range append([]*testFollower{{id: "leader", db: l.db}}, fs...) {
			rows, err := n.db.CountKeys()
			if err != nil {
				t.Fatal(err)
			}
			if got := n.db.KeyCounts(); got != rows || got != want {
				t.Fatalf("round %d: %s: key counts %+v, its rows %+v, the leader's counts %+v", round, n.id, got, rows, want)
			}
		}
	}

	// A run of SETs of keys the leader's row cache holds (the first of
	// the four rounds writes them all: a key gone in a FLUSHALL is still
	// in the key filter, and may be read once): no node reads a row for
	// the last three.
	var before map[*storage.DB]int64
	for round := range 4 {
		if round == 1 {
			waitConverged(t, l, f1, f2)
			before = map[*storage.DB]int64{l.db: l.db.PriorReads(), f1.db: f1.db.PriorReads(), f2.db: f2.db.PriorReads()}
		}
		var pend []*Pending
		for i := range 12 {
			p, err := l.Start(context.Background(), cmdExec("set", fmt.Sprintf("k%d", i), "w"))
			if err != nil {
				t.Fatal(err)
			}
			pend = append(pend, p)
		}
		for _, p := range pend {
			if _, _, err := p.Wait(context.Background()); err != nil && !commands.IsInputError(err) {
				t.Fatal(err) // an input error is INCR's of "v", answered by Wait
			}
		}
	}
	waitConverged(t, l, f1, f2)
	for db, n := range before {
		if got := db.PriorReads() - n; got != 0 {
			t.Errorf("%d reads of an old row for 36 SETs, want 0", got)
		}
	}
}

// A leader whose members do not all read format 3 writes no Prior: its
// entries stay readable by every member (format 1 for SETs).
func TestNoPriorsUnlessEveryMemberReadsThem(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	propose(t, l, cmdExec("set", "a", "1"))
	l.MemberFormat("old", logrec.FormatV2)
	p, err := l.Start(context.Background(), cmdExec("set", "a", "2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.p.entry.Ops[0].Prior; got != logrec.PriorUnknown || p.p.raw[frame.HeaderLen] != logrec.FormatV1 {
		t.Errorf("with a member of format 2: prior %d, entry format %d; want none, 1", got, p.p.raw[frame.HeaderLen])
	}
	l.MemberFormat("old", logrec.FormatV3)
	p, err = l.Start(context.Background(), cmdExec("set", "a", "3"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := p.p.entry.Ops[0].Prior; got != logrec.PriorPlain || p.p.raw[frame.HeaderLen] != logrec.FormatV3 {
		t.Errorf("once every member reads format 3: prior %d, entry format %d; want %d, 3", got, p.p.raw[frame.HeaderLen], logrec.PriorPlain)
	}
}

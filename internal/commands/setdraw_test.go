package commands

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// keeperView is a memView that keeps samples as the leader's view does:
// a keyspace.Hints that every command's writes pass through.
type keeperView struct {
	*memView
	h *keyspace.Hints
}

func newKeeper(v *memView) keeperView {
	return keeperView{memView: v, h: keyspace.NewHints(keyspace.Empty{})}
}

func (k keeperView) SetSample(key []byte) *keyspace.Sample { return k.h.Sample(key) }

// do runs a command and applies its writes to the rows and the hints.
func (k keeperView) do(t *testing.T, args ...string) Reply {
	t.Helper()
	res, err := run(&Ctx{NowMs: k.now}, k, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if err := k.h.ApplyOps(res.Ops); err != nil {
		t.Fatal(err)
	}
	k.apply(res.Ops)
	return res.Reply
}

func drawnSet(t *testing.T, n int) keeperView {
	t.Helper()
	k := newKeeper(newMem(1000))
	args := []string{"SADD", "s"}
	for i := range n {
		args = append(args, fmt.Sprintf("m%05d", i))
	}
	k.do(t, args...)
	return k
}

// TestSPopDrawnAheadUniform: the first member a fresh draw hands out is
// uniform over the set (chi-square over 20 buckets of the members in
// order: 19 on average for a uniform pick; a draw that favoured the rows
// read first or last would be in the thousands).
func TestSPopDrawnAheadUniform(t *testing.T) {
	for _, n := range []int{200, 2000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { testSPopDrawnAheadUniform(t, n) })
	}
}

func testSPopDrawnAheadUniform(t *testing.T, n int) {
	const rounds = 2000
	k := drawnSet(t, n)
	s, _, _ := k.Get([]byte("s"))
	r := rand.New(rand.NewPCG(9, 9))
	buckets := make([]float64, 20)
	for range rounds {
		k.h = keyspace.NewHints(keyspace.Empty{}) // no sample kept: draw
		ms, ok, err := popDrawn(k, []byte("s"), s, 1, r.Uint64N)
		if err != nil || !ok || len(ms) != 1 {
			t.Fatalf("popDrawn = %q, %v, %v", ms, ok, err)
		}
		var i int
		fmt.Sscanf(string(ms[0]), "m%d", &i)
		buckets[i*len(buckets)/n]++
	}
	var chi float64
	e := float64(rounds) / float64(len(buckets))
	for _, b := range buckets {
		chi += (b - e) * (b - e) / e
	}
	if chi > 50 {
		t.Fatalf("chi-square %.1f over 20 buckets, want < 50: %v", chi, buckets)
	}
}

// TestSPopDrawnAhead: SPOP on a view that keeps samples draws a set of
// more than drawMinSize members ahead (a small one too: a pass by rank
// per pop read half its rows and the tombstones of the pops before) and
// pops from the draw; a member removed since the draw never comes up, a
// member added empties the draw (so it can come up), the credit makes
// pops walk (or pass by rank) after that, and draining the set pops
// every member exactly once.
func TestSPopDrawnAhead(t *testing.T) {
	for _, n := range []int{200, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) { testSPopDrawnAhead(t, n) })
	}
}

func testSPopDrawnAhead(t *testing.T, n int) {
	k := drawnSet(t, n)
	sm := k.SetSample([]byte("s"))
	popped := map[string]bool{}
	pop := func() string {
		t.Helper()
		b, ok := k.do(t, "SPOP", "s").(Bulk)
		if !ok {
			t.Fatalf("SPOP gave no member")
		}
		if popped[string(b)] {
			t.Fatalf("%s popped twice", b)
		}
		popped[string(b)] = true
		return string(b)
	}
	pop()
	if len(sm.Members) == 0 {
		t.Fatalf("SPOP of a set of %d drew nothing ahead", n)
	}
	drawn := len(sm.Members)
	next := string(sm.Members[0])
	k.do(t, "SREM", "s", next)
	if len(sm.Members) != drawn {
		t.Fatalf("SREM changed the draw: %d members, was %d", len(sm.Members), drawn)
	}
	popped[next] = true // gone; a pop of it fails the test
	pop()
	if got := len(sm.Members); got != drawn-2 {
		t.Fatalf("the pop after an SREM of the next drawn member left %d drawn, want %d", got, drawn-2)
	}
	k.do(t, "SADD", "s", "new")
	if len(sm.Members) != 0 {
		t.Fatalf("SADD left %d members drawn", len(sm.Members))
	}
	pop() // walks: the credit does not allow another draw yet
	if len(sm.Members) != 0 {
		t.Fatalf("a draw right after one was emptied (credit %d)", sm.Credit)
	}
	for {
		if r := k.do(t, "SCARD", "s"); r == Int(0) {
			break
		}
		pop()
	}
	if want := n + 1; len(popped) != want {
		t.Fatalf("%d members popped or removed, want %d", len(popped), want)
	}
	if !popped["new"] {
		t.Fatal("the member added after the draw never came up")
	}
}

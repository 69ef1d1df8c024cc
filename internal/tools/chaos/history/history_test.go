package history

import (
	"path/filepath"
	"reflect"
	"sync"
	"testing"
)

func TestRecorderConcurrentAndSorted(t *testing.T) {
	r := NewRecorder()
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			for i := range 100 {
				call := r.Now()
				r.Add(Op{Client: c, Key: "k", Kind: Write, Value: string(rune('a' + i%26)), Outcome: OK, Call: call, Return: r.Now()})
			}
		})
	}
	wg.Wait()
	h := r.History(7)
	if len(h.Ops) != 800 {
		t.Fatalf("got %d ops, want 800", len(h.Ops))
	}
	for i := 1; i < len(h.Ops); i++ {
		if h.Ops[i].Call < h.Ops[i-1].Call {
			t.Fatalf("ops not sorted by call at %d", i)
		}
		if h.Ops[i].Return < h.Ops[i].Call {
			t.Fatalf("op %d returns before its call", i)
		}
	}
}

func TestFaultEvents(t *testing.T) {
	r := NewRecorder()
	i := r.AddFault(FaultEvent{Kind: "kill-leader", Name: "kill n1", Inject: r.Now()})
	r.Healed(i, 42, nil)
	h := r.History(1)
	if len(h.Faults) != 1 || h.Faults[0].Heal != 42 || h.Faults[0].HealErr != "" {
		t.Fatalf("faults = %+v", h.Faults)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	h := History{
		Seed: 99,
		Ops: []Op{
			{Client: 1, Key: "r:1", Kind: Write, Value: "1.1", Outcome: OK, Node: 1, Call: 1, Return: 2},
			{Client: 2, Key: "r:1", Kind: Read, Found: true, Result: "1.1", Outcome: OK, Node: 2, Follower: true, Call: 3, Return: 4},
			{Client: 3, Key: "c:1", Kind: Incr, N: 5, Outcome: Unknown, Err: "i/o timeout", Node: 1, Call: 5, Return: 6},
			{Client: 4, Key: "c:1", Kind: Read, Outcome: OK, Node: 1, Final: true, Call: 7, Return: 8},
		},
		Faults: []FaultEvent{{Kind: "pause", Name: "pause n2", Inject: 1, Heal: 5, HealErr: "boom"}},
	}
	path := filepath.Join(t.TempDir(), "h.json")
	if err := h.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, h)
	}
}

func TestIsCounter(t *testing.T) {
	if IsCounter([]Op{{Kind: Read}, {Kind: Write}}) {
		t.Fatal("register taken for a counter")
	}
	if !IsCounter([]Op{{Kind: Read}, {Kind: Incr}}) {
		t.Fatal("counter not recognised")
	}
}

package failover

import (
	"errors"
	"slices"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
)

func node(id string, epoch, lsn uint64, prio int) Node {
	return Node{ID: id, Durable: logrec.Position{Epoch: epoch, LSN: lsn}, Priority: prio, Reachable: true, Eligible: true}
}

func TestChoose(t *testing.T) {
	unreachable := func(n Node) Node { n.Reachable = false; return n }
	ineligible := func(n Node) Node { n.Eligible = false; return n }
	preferred := func(n Node) Node { n.Preferred = true; return n }
	tests := []struct {
		name      string
		nodes     []Node
		want      Choice
		wantErr   error
		wantOrder []string
	}{
		{"most advanced LSN wins", []Node{node("a", 2, 10, 50), node("b", 2, 12, 50), node("c", 2, 11, 50)},
			Choice{Candidate: "b"}, nil, []string{"b", "c", "a"}},
		{"a later epoch beats a longer log of an older one", []Node{node("a", 2, 50, 50), node("b", 3, 12, 50)},
			Choice{Candidate: "b"}, nil, []string{"b", "a"}},
		{"ties go to the higher priority, then the lower id", []Node{node("c", 2, 10, 50), node("b", 2, 10, 90), node("a", 2, 10, 50)},
			Choice{Candidate: "b"}, nil, []string{"b", "a", "c"}},
		{"priority 0 is never promoted; the next catches up from it", []Node{node("a", 2, 20, 0), node("b", 2, 15, 10)},
			Choice{Candidate: "b", CatchUpFrom: "a"}, nil, []string{"b"}},
		{"an ineligible node ahead is caught up from", []Node{ineligible(node("a", 2, 20, 50)), node("b", 2, 15, 50), node("c", 2, 12, 50)},
			Choice{Candidate: "b", CatchUpFrom: "a"}, nil, []string{"b", "c"}},
		{"unreachable nodes are not chosen nor caught up from", []Node{unreachable(node("a", 2, 99, 50)), node("b", 2, 15, 50)},
			Choice{Candidate: "b"}, nil, []string{"b"}},
		{"the preferred zone breaks a tie of position and priority", []Node{node("a", 2, 10, 50), preferred(node("c", 2, 10, 50)), node("b", 2, 10, 50)},
			Choice{Candidate: "c"}, nil, []string{"c", "a", "b"}},
		{"the preferred zone never outranks durability", []Node{preferred(node("a", 2, 10, 100)), node("b", 2, 11, 100), preferred(node("c", 2, 9, 100))},
			Choice{Candidate: "b"}, nil, []string{"b", "a", "c"}},
		{"the preferred zone never outranks a later epoch", []Node{preferred(node("a", 2, 90, 100)), node("b", 3, 1, 100)},
			Choice{Candidate: "b"}, nil, []string{"b", "a"}},
		{"priority outranks the preferred zone", []Node{preferred(node("a", 2, 10, 50)), node("b", 2, 10, 90)},
			Choice{Candidate: "b"}, nil, []string{"b", "a"}},
		{"a preferred node with priority 0 is never promoted", []Node{preferred(node("a", 2, 10, 0)), node("b", 2, 10, 50)},
			Choice{Candidate: "b"}, nil, []string{"b"}},
		{"a preferred node not eligible (outside the sync set) is not chosen", []Node{ineligible(preferred(node("a", 2, 10, 100))), node("b", 2, 10, 100)},
			Choice{Candidate: "b"}, nil, []string{"b"}},
		{"an unreachable preferred node is not chosen", []Node{unreachable(preferred(node("a", 2, 10, 100))), node("b", 2, 10, 100)},
			Choice{Candidate: "b"}, nil, []string{"b"}},
		{"nobody can be promoted", []Node{unreachable(node("a", 2, 9, 50)), node("b", 2, 9, 0), ineligible(node("c", 2, 9, 50))},
			Choice{}, ErrNoCandidate, []string{}},
		{"no nodes", nil, Choice{}, ErrNoCandidate, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Choose(tt.nodes)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("Choose = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
			if order := Sorted(tt.nodes); !slices.Equal(order, tt.wantOrder) {
				t.Errorf("Sorted = %v, want %v", order, tt.wantOrder)
			}
			if err == nil && Sorted(tt.nodes)[0] != got.Candidate {
				t.Errorf("Sorted's first %s is not Choose's %s", Sorted(tt.nodes)[0], got.Candidate)
			}
		})
	}
}

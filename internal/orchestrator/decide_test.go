package orchestrator

import (
	"errors"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
)

// TestCalm: the decide loop slows down only while nothing is amiss, and
// then only until the oldest last answer becomes late; every sign the
// rule acts on (a late, refused, suspected, not leading or not answering
// node, no topology) makes it evaluate every 10 ms again.
func TestCalm(t *testing.T) {
	now := time.Unix(1000, 0)
	interval := 100 * time.Millisecond
	healthy := func() failover.View {
		v := failover.View{Now: now, HaveTopo: true, Topo: coord.Topology{Epoch: 2, Leader: "n1"}}
		for _, id := range []string{"n1", "n2", "n3"} {
			v.Nodes = append(v.Nodes, failover.NodeView{ID: id, Fresh: true, LastBeat: now.Add(-interval)})
		}
		return v
	}
	if d, ok := calmFor(healthy(), interval, nil); !ok || d != interval/2 {
		t.Fatalf("a healthy cluster whose last answers are an interval old: calm %v for %v, want calm for half an interval", ok, d)
	}
	v := healthy()
	v.Nodes[1].LastBeat = now.Add(-interval * 5 / 4)
	if d, ok := calmFor(v, interval, nil); !ok || d != interval/4 {
		t.Errorf("one last answer 1.25 intervals old: calm %v for %v, want calm for a quarter interval (until it is late)", ok, d)
	}
	v = healthy()
	for i := range v.Nodes {
		v.Nodes[i].LastBeat = now
	}
	if d, ok := calmFor(v, interval, nil); !ok || d != interval {
		t.Errorf("every answer just in: calm %v for %v, want calm for an interval (the cap)", ok, d)
	}
	for name, spoil := range map[string]func(v *failover.View){
		"no topology":      func(v *failover.View) { v.HaveTopo = false },
		"no leader":        func(v *failover.View) { v.Topo.Leader = "" },
		"topology garbled": func(v *failover.View) { v.TopoErr = errors.New("garbled") },
		"late answer":      func(v *failover.View) { v.Nodes[0].LastBeat = now.Add(-interval*3/2 - time.Millisecond) },
		"not fresh":        func(v *failover.View) { v.Nodes[1].Fresh = false },
		"suspect":          func(v *failover.View) { v.Nodes[0].Suspect = true },
		"refused":          func(v *failover.View) { v.Nodes[2].Refused = 1 },
		"not leading":      func(v *failover.View) { v.Nodes[0].NotLead = now },
		"not answering":    func(v *failover.View) { v.Nodes[0].NotAnswering = now },
	} {
		v := healthy()
		spoil(&v)
		if _, ok := calmFor(v, interval, nil); ok {
			t.Errorf("%s: calm, want amiss", name)
		}
	}
}

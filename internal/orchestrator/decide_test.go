package orchestrator

import (
	"errors"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/coord"
	"github.com/tandemdb/tandem/internal/failover"
)

// TestCalm: the decide loop slows down only while nothing is amiss; every
// sign the rule acts on (a late, refused, suspected, not leading or not
// answering node, no topology) makes it evaluate every 10 ms again.
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
	if !calm(healthy(), interval) {
		t.Fatal("a healthy cluster is not calm")
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
		if calm(v, interval) {
			t.Errorf("%s: calm, want amiss", name)
		}
	}
}

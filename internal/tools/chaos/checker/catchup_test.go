package checker

import (
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// TestCatchUps: a follower still behind once the whole bound passed after
// a heal is a violation; one behind when a later fault cut the wait short
// is only counted, and so is a heal after which no leader was known.
func TestCatchUps(t *testing.T) {
	within := int64(10 * time.Second)
	h := history.History{
		Faults: []history.FaultEvent{
			{Kind: "blackhole-stream", Name: "black-hole backward n2->n1", Inject: 1, Heal: 2},
			{Kind: "partition", Name: "cut n3->n1", Inject: 3, Heal: 4},
			{Kind: "kill-leader", Name: "kill n1", Inject: 5, Heal: 6},
			{Kind: "partition", Name: "cut n2->n1", Inject: 7, Heal: 8},
		},
		CatchUps: []history.CatchUp{
			{Fault: 0, Leader: 1, Target: 100, Within: within, Took: map[int]int64{3: int64(time.Second)}, Behind: map[int]uint64{2: 40}},
			{Fault: 1, Leader: 1, Target: 200, Within: within, Took: map[int]int64{2: int64(3 * time.Second)}, Behind: map[int]uint64{3: 150}, Cut: true},
			{Fault: 2, Within: within, Cut: true},
			{Fault: 3, Leader: 3, Target: 300, Within: within, Took: map[int]int64{1: int64(2 * time.Second), 2: int64(time.Second)}},
		},
	}
	st, vs := CatchUps(h)
	if len(vs) != 1 || vs[0].Kind != FollowerBehind || vs[0].Node != 2 || vs[0].At != 2 {
		t.Fatalf("violations %v, want one follower-behind of n2 at the first heal", vs)
	}
	want := CatchUpStats{Measured: 3, Cut: 1, Slowest: 3 * time.Second, Within: 10 * time.Second}
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

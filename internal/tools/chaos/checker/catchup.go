package checker

import (
	"fmt"
	"slices"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// CatchUpStats sums up the followers' catch-ups after healed faults.
type CatchUpStats struct {
	// Measured counts the heals after which a leader was known and its
	// applied LSN read; Cut those of them whose wait a later fault cut
	// short before every follower had caught up.
	Measured int `json:"measured"`
	Cut      int `json:"cut"`
	// Slowest is the longest any follower took, over the catch-ups
	// measured; Within the bound they were given.
	Slowest time.Duration `json:"slowest"`
	Within  time.Duration `json:"within"`
}

// CatchUps checks that after every healed fault every follower applied,
// within the bound the harness gave it (history.CatchUp.Within), what
// the leader had applied when the fault was healed: a follower still
// behind when the whole bound had passed is FollowerBehind. A wait that
// a later fault cut short proves nothing about the followers still
// behind (that fault may hold them back) and is only counted.
func CatchUps(h history.History) (CatchUpStats, []Violation) {
	var st CatchUpStats
	var vs []Violation
	for _, c := range h.CatchUps {
		if c.Leader == 0 {
			continue
		}
		st.Measured++
		st.Within = max(st.Within, time.Duration(c.Within))
		for _, took := range c.Took {
			st.Slowest = max(st.Slowest, time.Duration(took))
		}
		if len(c.Behind) == 0 {
			continue
		}
		if c.Cut {
			st.Cut++
			continue
		}
		name, heal := fmt.Sprint("fault ", c.Fault), int64(0)
		if c.Fault >= 0 && c.Fault < len(h.Faults) {
			name, heal = h.Faults[c.Fault].Name, h.Faults[c.Fault].Heal
		}
		nodes := make([]int, 0, len(c.Behind))
		for n := range c.Behind {
			nodes = append(nodes, n)
		}
		slices.Sort(nodes)
		for _, n := range nodes {
			vs = append(vs, Violation{Kind: FollowerBehind, Node: n, At: heal,
				Detail: fmt.Sprintf("applied LSN %d, %v after %s was healed: the leader (n%d) had applied %d at the heal", c.Behind[n], time.Duration(c.Within), name, c.Leader, c.Target)})
		}
	}
	return st, vs
}

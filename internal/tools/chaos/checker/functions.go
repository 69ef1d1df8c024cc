package checker

import (
	"fmt"
	"strings"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// FunctionLost: an FCALL found no function on the node that took it,
// though the library was loaded and durable on every node before the run
// began (workload.LoadFunctions): the node lost it, or never applied it.
const FunctionLost ViolationKind = "function-lost"

// functionNotFound is the start of FCALL's error for an unknown function
// (workload.FunctionNotFound; the checker does not import the workload).
const functionNotFound = "ERR Function not found"

// Functions reports the FCALLs that found no function, one violation per
// node, with how many and the first one's time.
func Functions(ops []history.Op) []Violation {
	type lost struct {
		n     int
		first history.Op
	}
	byNode := map[int]*lost{}
	var nodes []int
	for _, o := range ops {
		if !strings.HasPrefix(o.Err, functionNotFound) {
			continue
		}
		l := byNode[o.Node]
		if l == nil {
			l = &lost{first: o}
			byNode[o.Node] = l
			nodes = append(nodes, o.Node)
		}
		l.n++
	}
	var vs []Violation
	for _, n := range nodes {
		l := byNode[n]
		vs = append(vs, Violation{Kind: FunctionLost, Key: l.first.Key, Node: n, At: l.first.Call,
			Detail: fmt.Sprintf("%d FCALLs found no function (the library was loaded on every node before the run): %s", l.n, l.first.Err)})
	}
	return vs
}

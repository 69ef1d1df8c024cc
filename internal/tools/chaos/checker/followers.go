package checker

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// FollowerReads checks the reads marked Follower, per node and key:
//
//   - never written: a register read returns a value that no acknowledged
//     or unknown write wrote, or whose write was invoked only after the
//     read returned; a counter read returns more than the number of INCRs
//     invoked before the read returned.
//   - monotonic: if read r1 returned before read r2 was invoked on the
//     same node, r2 must not show an older state. For registers, "older"
//     uses only what the history proves: r2's write certainly took effect
//     before r1's (it was acknowledged before r1's write was invoked), or
//     r2 shows the key absent after r1 saw a value (the workload never
//     deletes). For counters, r2's value must not be smaller.
//
// Stale reads are allowed: followers are asynchronous.
func FollowerReads(ops []history.Op) []Violation {
	byKey := history.ByKey(ops)
	var vs []Violation
	for _, key := range sortedKeys(byKey) {
		kops := byKey[key]
		counter := history.IsCounter(kops)
		writes := writesByValue(kops)
		perNode := map[int][]history.Op{}
		for _, o := range kops {
			// A read through the proxy names no node (Node 0): the proxy
			// may have sent two of them to different followers.
			if o.Follower && o.Node > 0 && o.Kind == history.Read && o.Outcome == history.OK {
				perNode[o.Node] = append(perNode[o.Node], o)
			}
		}
		for node := 1; len(perNode) > 0; node++ {
			reads, ok := perNode[node]
			if !ok {
				continue
			}
			delete(perNode, node)
			slices.SortStableFunc(reads, func(a, b history.Op) int { return cmp.Compare(a.Call, b.Call) })
			if counter {
				vs = append(vs, counterFollower(key, node, kops, reads)...)
			} else {
				vs = append(vs, registerFollower(key, node, writes, reads)...)
			}
		}
	}
	return vs
}

func registerFollower(key string, node int, writes map[string]history.Op, reads []history.Op) []Violation {
	var vs []Violation
	for _, r := range reads {
		if !r.Found {
			continue
		}
		w, ok := writes[r.Result]
		switch {
		case !ok || w.Outcome == history.Failed:
			vs = append(vs, Violation{Kind: NeverWritten, Key: key, Node: node, At: r.Call, Detail: "read a value never written: " + r.String()})
		case w.Call > r.Return:
			vs = append(vs, Violation{Kind: NeverWritten, Key: key, Node: node, At: r.Call, Detail: fmt.Sprintf("read a value before it was written: %s, written by %s", r, w)})
		}
	}
	// older reports whether the state r2 shows is certainly older than r1's.
	older := func(i, j int) bool {
		r1, r2 := reads[i], reads[j]
		if !r1.Found {
			return false
		}
		if !r2.Found {
			return true
		}
		w1, ok1 := writes[r1.Result]
		w2, ok2 := writes[r2.Result]
		return ok1 && ok2 && before(w2, w1)
	}
	return append(vs, monotonic(key, node, reads, older)...)
}

func counterFollower(key string, node int, ops, reads []history.Op) []Violation {
	var vs []Violation
	values := make(map[int]int64, len(reads)) // index in reads -> value
	for i, r := range reads {
		n, err := counterValue(r)
		if err != nil {
			vs = append(vs, Violation{Kind: NeverWritten, Key: key, Node: node, At: r.Call, Detail: err.Error()})
			continue
		}
		values[i] = n
		var sent int64
		for _, o := range ops {
			if o.Kind == history.Incr && o.Outcome != history.Failed && o.Call < r.Return {
				sent++
			}
		}
		if n > sent {
			vs = append(vs, Violation{Kind: NeverWritten, Key: key, Node: node, At: r.Call, Detail: fmt.Sprintf(
				"read %d but only %d INCRs had been sent: %s", n, sent, r)})
		}
	}
	older := func(i, j int) bool {
		v1, ok1 := values[i]
		v2, ok2 := values[j]
		return ok1 && ok2 && v2 < v1
	}
	return append(vs, monotonic(key, node, reads, older)...)
}

// monotonic reports the first pair of reads (reads[i] returned before
// reads[j] was invoked) where older(i, j), and how many such pairs there
// are, so that one regression does not flood the report. reads must be
// sorted by Call.
func monotonic(key string, node int, reads []history.Op, older func(i, j int) bool) []Violation {
	var first string
	var at int64
	count := 0
	for i, r1 := range reads {
		for j := i + 1; j < len(reads); j++ {
			r2 := reads[j]
			if r1.Return < r2.Call && older(i, j) {
				if count == 0 {
					first = fmt.Sprintf("%s, then %s", r1, r2)
					at = r2.Call
				}
				count++
			}
		}
	}
	if count == 0 {
		return nil
	}
	return []Violation{{Kind: NonMonotonicRead, Key: key, Node: node, At: at, Detail: fmt.Sprintf(
		"went backwards (%d pairs), first: %s", count, first)}}
}

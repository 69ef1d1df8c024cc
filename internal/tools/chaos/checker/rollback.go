package checker

import (
	"fmt"
	"strconv"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// RolledBack is one write found in a node's rollback file
// (DataDir/rollback-*.jsonl): an applied entry the node had to give up
// when it rejoined a new leader that never had it.
type RolledBack struct {
	Node  int    `json:"node"`
	File  string `json:"file"`
	Epoch uint64 `json:"epoch"`
	LSN   uint64 `json:"lsn"`
	Key   string `json:"key"`
	// Value is what the entry set the key to (a counter's new value, in
	// decimal, for an INCR).
	Value string `json:"value"`
}

// ObservedRollbacks is the set of keys with a rolled-back write that some
// client saw: an acknowledged SET of the value, or an operation that
// returned it (a read, an INCR's result). Such a key's history shows a
// value that later vanished, which no linearizable register or counter
// does, so async mode leaves it out of the linearizability and
// follower-read checks (Vanished judges its losses). A rolled-back write
// nobody saw is like a write of unknown outcome that never took effect:
// the checks need not skip its key.
func ObservedRollbacks(ops []history.Op, rb []RolledBack) map[string]bool {
	values := map[string]map[string]bool{}
	for _, r := range rb {
		if values[r.Key] == nil {
			values[r.Key] = map[string]bool{}
		}
		values[r.Key][r.Value] = true
	}
	m := map[string]bool{}
	for _, o := range ops {
		vs := values[o.Key]
		if vs == nil || o.Outcome != history.OK {
			continue
		}
		switch {
		case o.Kind == history.Write && vs[o.Value],
			o.Kind == history.Read && o.Found && vs[o.Result],
			o.Kind == history.Incr && vs[strconv.FormatInt(o.N, 10)]:
			m[o.Key] = true
		}
	}
	return m
}

// Vanished checks, for async mode, that every lost acknowledged write is
// in some node's rollback file: async acknowledges before followers have a
// write, so a failover may lose it, but the old leader must then save it
// for the operator (DESIGN.md §6: nothing is dropped silently).
//
//   - A register's lost SET is found when a rollback file sets the key to
//     its (unique) value.
//   - A counter's loss is N increments that the final value lacks, but not
//     which ones. It is accounted for when at least N of the acknowledged
//     INCRs have their result among the key's rolled-back values (the
//     rolled-back entry of INCR -> 17 sets the key to "17").
//
// It returns how many lost writes were found rolled back and a LostWrite
// for each key whose losses are not all accounted for. In the sync and
// quorum modes nothing may be lost at all: use Durability's violations
// there, not this.
func Vanished(losses []Loss, rb []RolledBack) (found int, vs []Violation) {
	values := map[string]map[string]bool{}
	for _, r := range rb {
		if values[r.Key] == nil {
			values[r.Key] = map[string]bool{}
		}
		values[r.Key][r.Value] = true
	}
	for _, l := range losses {
		saved := values[l.Key]
		if l.Writes != nil {
			var missing []history.Op
			for _, w := range l.Writes {
				if saved[w.Value] {
					found++
				} else {
					missing = append(missing, w)
				}
			}
			if len(missing) > 0 {
				last := missing[len(missing)-1]
				vs = append(vs, Violation{Kind: LostWrite, Key: l.Key, At: last.Call, Lost: len(missing), Detail: fmt.Sprintf(
					"%s; %d of them in no rollback file, the last %s", l.Detail, len(missing), last)})
			}
			continue
		}
		inFile := 0
		for _, o := range l.Incrs {
			if saved[strconv.FormatInt(o.N, 10)] {
				inFile++
			}
		}
		if inFile >= l.N {
			found += l.N
			continue
		}
		found += inFile
		vs = append(vs, Violation{Kind: LostWrite, Key: l.Key, At: l.At, Lost: l.N - inFile, Detail: fmt.Sprintf(
			"%s; only %d acknowledged INCR results are in a rollback file", l.Detail, inFile)})
	}
	return found, vs
}

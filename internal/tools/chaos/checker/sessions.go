package checker

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// The violation kinds of sessions under read policies (Sessions).
const (
	// ReadYourWrites: a session read a key older than its own
	// acknowledged write of it (ryw, monotonic, linearizable).
	ReadYourWrites ViolationKind = "read-your-writes"
	// SessionNonMonotonic: a session read a key older than it had
	// already read it (monotonic, linearizable).
	SessionNonMonotonic ViolationKind = "session-non-monotonic"
	// BeyondBound: a bounded read missed a write acknowledged more than
	// the bound before the read began (bounded <ms>).
	BeyondBound ViolationKind = "beyond-bound"
)

// PolicyStats is one read policy's line in the report: its sessions'
// reads and what each check found. A count the policy does not promise
// to keep at 0 (Promised says which) is shown, not a violation: under
// any, stale reads are expected, and the count shows the checks bite.
type PolicyStats struct {
	Policy   string `json:"policy"`
	Sessions int    `json:"sessions"`
	Reads    int    `json:"reads"` // OK reads
	// FollowerReads are the OK reads a follower served; ProxyReads those
	// sent through the proxy (which node served them is not recorded).
	FollowerReads int `json:"follower_reads"`
	ProxyReads    int `json:"proxy_reads"`
	RYW           int `json:"read_your_writes"`
	NonMonotonic  int `json:"non_monotonic"`
	BeyondBound   int `json:"beyond_bound"`
	// Promised lists the checks whose count must be 0 ("ryw",
	// "monotonic", "bound"; linearizable reads are in Linearizable's
	// porcupine check besides).
	Promised []string `json:"promised"`
}

// promises says which session checks a policy's count must keep at 0.
func promises(policy string) []string {
	switch strings.Fields(policy + " x")[0] {
	case "ryw", "read-your-writes":
		return []string{"ryw"}
	case "monotonic", "linearizable":
		// A monotonic session's floor is its token, which its writes
		// raise too, so it reads its writes as well.
		return []string{"ryw", "monotonic"}
	case "bounded":
		return []string{"bound"}
	}
	return nil
}

// boundOf is bounded's staleness in nanoseconds, 0 for other policies.
func boundOf(policy string) int64 {
	f := strings.Fields(policy)
	if len(f) != 2 || f[0] != "bounded" {
		return 0
	}
	ms, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || ms <= 0 {
		return 0
	}
	return ms * 1e6
}

// Sessions checks the operations of sessions under read policies (ops
// with a Policy), per session and key, using only what the history
// proves (as FollowerReads does: "older" means the value read was
// certainly overwritten by the write it is compared with; for counters a
// smaller count):
//
//   - read-your-writes: a read must not be older than the session's own
//     last acknowledged write of the key (for a counter, below the value
//     its own last INCR returned).
//   - monotonic: a read must not be older than the session's previous
//     read of the key.
//   - bounded <ms>: a read must reflect every write of the key (by any
//     client) acknowledged more than ms before the read was invoked. The
//     node measures staleness on the leader's clock from the commit; the
//     history has no leader-time, so the write's acknowledgement (after
//     its commit) stands for it: the check can miss a read that is a
//     little beyond the bound, never blame one within it. All processes
//     share one machine's clock.
//
// Every policy's counts are reported; only those the policy promises
// (PolicyStats.Promised) become Violations. Linearizable reads are also
// part of their key's linearizability check (Linearizable).
func Sessions(ops []history.Op) ([]PolicyStats, []Violation) {
	stats := map[string]*PolicyStats{}
	var order []string
	sessions := map[int][]history.Op{}
	var clients []int
	for _, o := range ops {
		if o.Policy == "" || o.Final {
			continue
		}
		if _, ok := sessions[o.Client]; !ok {
			clients = append(clients, o.Client)
		}
		sessions[o.Client] = append(sessions[o.Client], o)
		if stats[o.Policy] == nil {
			stats[o.Policy] = &PolicyStats{Policy: o.Policy, Promised: promises(o.Policy)}
			order = append(order, o.Policy)
		}
	}
	byKey := history.ByKey(ops)
	writes := map[string]map[string]history.Op{}
	for k, kops := range byKey {
		writes[k] = writesByValue(kops)
	}
	slices.Sort(clients)
	var vs []Violation
	// Per policy and kind, the first violation in detail and a count.
	type firstOf struct {
		v Violation
		n int
	}
	found := map[[2]string]*firstOf{}
	var foundOrder [][2]string
	note := func(st *PolicyStats, kind ViolationKind, check string, v Violation) {
		switch check {
		case "ryw":
			st.RYW++
		case "monotonic":
			st.NonMonotonic++
		case "bound":
			st.BeyondBound++
		}
		if !slices.Contains(st.Promised, check) {
			return
		}
		k := [2]string{st.Policy, string(kind)}
		if f := found[k]; f != nil {
			f.n++
			return
		}
		v.Kind = kind
		found[k] = &firstOf{v: v, n: 1}
		foundOrder = append(foundOrder, k)
	}
	for _, c := range clients {
		sops := sessions[c]
		slices.SortStableFunc(sops, func(a, b history.Op) int { return cmp.Compare(a.Call, b.Call) })
		st := stats[sops[0].Policy]
		st.Sessions++
		bound := boundOf(st.Policy)
		lastWrite := map[string]history.Op{} // the session's last OK write or INCR of each key
		lastRead := map[string]history.Op{}  // its last OK read of each key
		for _, o := range sops {
			if o.Outcome != history.OK {
				continue
			}
			if o.Kind != history.Read {
				lastWrite[o.Key] = o
				continue
			}
			st.Reads++
			switch {
			case o.Proxy:
				st.ProxyReads++
			case o.Follower:
				st.FollowerReads++
			}
			counter := history.IsCounter(byKey[o.Key])
			w := writes[o.Key]
			if lw, ok := lastWrite[o.Key]; ok && olderThanWrite(o, lw, w, counter) {
				note(st, ReadYourWrites, "ryw", Violation{Key: o.Key, Node: o.Node, At: o.Call, Detail: fmt.Sprintf(
					"%s: read %s after its own acknowledged %s", st.Policy, o, lw)})
			}
			if lr, ok := lastRead[o.Key]; ok && olderThanRead(o, lr, w, counter) {
				note(st, SessionNonMonotonic, "monotonic", Violation{Key: o.Key, Node: o.Node, At: o.Call, Detail: fmt.Sprintf(
					"%s: read %s after it had read %s", st.Policy, o, lr)})
			}
			if bound > 0 {
				if bw, ok := missedBefore(o, o.Call-bound, byKey[o.Key], w, counter); ok {
					note(st, BeyondBound, "bound", Violation{Key: o.Key, Node: o.Node, At: o.Call, Detail: fmt.Sprintf(
						"%s: read %s misses %s, acknowledged %v before the read began", st.Policy, o, bw, msDur(o.Call-bw.Return))})
				}
			}
			lastRead[o.Key] = o
		}
	}
	for _, k := range foundOrder {
		f := found[k]
		v := f.v
		v.Detail = fmt.Sprintf("%d reads, first: %s", f.n, v.Detail)
		vs = append(vs, v)
	}
	out := make([]PolicyStats, 0, len(order))
	for _, p := range order {
		out = append(out, *stats[p])
	}
	return out, vs
}

func msDur(ns int64) string { return strconv.FormatFloat(float64(ns)/1e6, 'f', 1, 64) + "ms" }

// olderThanWrite reports whether read r certainly shows a state older
// than write (or INCR) w of the same key.
func olderThanWrite(r, w history.Op, writes map[string]history.Op, counter bool) bool {
	if counter {
		n, err := counterValue(r)
		return err == nil && n < w.N
	}
	if !r.Found {
		return true // nothing is ever deleted
	}
	w2, ok := writes[r.Result]
	return ok && before(w2, w)
}

// olderThanRead reports whether read r2 certainly shows a state older
// than read r1 of the same key.
func olderThanRead(r2, r1 history.Op, writes map[string]history.Op, counter bool) bool {
	if counter {
		n1, err1 := counterValue(r1)
		n2, err2 := counterValue(r2)
		return err1 == nil && err2 == nil && n2 < n1
	}
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

// missedBefore finds a write of r's key acknowledged before t that r
// certainly does not reflect.
func missedBefore(r history.Op, t int64, kops []history.Op, writes map[string]history.Op, counter bool) (history.Op, bool) {
	var worst history.Op
	found := false
	for _, w := range kops {
		if w.Kind == history.Read || w.Outcome != history.OK || w.Return >= t {
			continue
		}
		if olderThanWrite(r, w, writes, counter) && (!found || w.Return > worst.Return) {
			worst, found = w, true
		}
	}
	return worst, found
}

package checker

import (
	"testing"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

func pol(p string, ops ...history.Op) []history.Op {
	for i := range ops {
		ops[i].Policy = p
	}
	return ops
}

func byPolicy(stats []PolicyStats) map[string]PolicyStats {
	m := map[string]PolicyStats{}
	for _, s := range stats {
		m[s.Policy] = s
	}
	return m
}

func countKinds(vs []Violation) map[ViolationKind]int {
	m := map[ViolationKind]int{}
	for _, v := range vs {
		m[v.Kind]++
	}
	return m
}

// A session that reads a key older than its own acknowledged write: a
// violation under ryw, only a count under any.
func TestSessionsReadYourWrites(t *testing.T) {
	for _, p := range []string{"ryw", "monotonic", "linearizable", "any"} {
		ops := []history.Op{w(0, "r:0", "a", 0, 1)}
		ops = append(ops, pol(p,
			w(5, "r:0", "b", 10, 11),
			follower(2, r(5, "r:0", "a", 20, 21)), // older than its own b
			inc(5, "c:0", 3, 30, 31),
			follower(2, r(5, "c:0", "2", 40, 41)), // below its own INCR's 3
			follower(2, r(5, "c:0", "3", 50, 51)), // fine
		)...)
		stats, vs := Sessions(ops)
		st := byPolicy(stats)[p]
		if st.RYW != 2 || st.Reads != 3 || st.FollowerReads != 3 || st.Sessions != 1 {
			t.Errorf("%s: stats %+v, want 2 ryw violations in 3 follower reads", p, st)
		}
		want := 1 // one Violation per kind and policy, with the count
		if p == "any" {
			want = 0
		}
		if countKinds(vs)[ReadYourWrites] != want {
			t.Errorf("%s: violations %v, want %d read-your-writes", p, vs, want)
		}
	}
}

// Reads that go backwards within a session, on two different followers.
func TestSessionsMonotonic(t *testing.T) {
	for _, p := range []string{"monotonic", "linearizable", "ryw"} {
		ops := []history.Op{w(0, "r:0", "a", 0, 1), w(1, "r:0", "b", 2, 3)}
		ops = append(ops, pol(p,
			follower(2, r(5, "r:0", "b", 10, 11)),
			follower(3, r(5, "r:0", "a", 20, 21)), // a was overwritten by b before b was read
			follower(3, r(5, "r:0", "", 30, 31)),  // absent after a value
		)...)
		stats, vs := Sessions(ops)
		if st := byPolicy(stats)[p]; st.NonMonotonic != 2 || st.RYW != 0 {
			t.Errorf("%s: stats %+v, want 2 non-monotonic reads", p, st)
		}
		want := 1
		if p == "ryw" {
			want = 0 // ryw does not promise monotonic reads
		}
		if countKinds(vs)[SessionNonMonotonic] != want {
			t.Errorf("%s: violations %v, want %d", p, vs, want)
		}
	}
}

// A bounded read must reflect writes acknowledged more than the bound
// before it began; a write acknowledged within the bound may be missed.
func TestSessionsBounded(t *testing.T) {
	const ms = int64(1e6)
	ops := []history.Op{
		w(0, "r:0", "a", 0, 1*ms),
		w(0, "r:0", "b", 2*ms, 3*ms),
		inc(1, "c:0", 1, 0, 1*ms),
		inc(1, "c:0", 2, 2*ms, 90*ms),
	}
	ops = append(ops, pol("bounded 50",
		follower(2, r(5, "r:0", "a", 40*ms, 41*ms)),   // b acknowledged 37 ms before: within
		follower(2, r(5, "r:0", "a", 60*ms, 61*ms)),   // b acknowledged 57 ms before: beyond
		follower(2, r(5, "c:0", "1", 100*ms, 101*ms)), // the second INCR 10 ms before: within
		follower(2, r(5, "c:0", "0", 100*ms, 101*ms)), // the first 99 ms before: beyond
	)...)
	stats, vs := Sessions(ops)
	if st := byPolicy(stats)["bounded 50"]; st.BeyondBound != 2 || st.RYW != 0 {
		t.Errorf("stats %+v, want 2 reads beyond the bound", st)
	}
	if countKinds(vs)[BeyondBound] != 1 {
		t.Errorf("violations %v, want one beyond-bound (2 reads)", vs)
	}
}

// A clean history: writes of unknown outcome and failed reads prove nothing.
func TestSessionsClean(t *testing.T) {
	ops := pol("monotonic",
		w(5, "r:0", "a", 0, 1),
		unknown(w(5, "r:0", "b", 2, 3)),
		failed(follower(2, r(5, "r:0", "", 4, 5))),
		follower(2, r(5, "r:0", "a", 6, 7)),
		follower(2, r(5, "r:0", "b", 8, 9)),
		follower(2, r(5, "r:0", "b", 10, 11)),
	)
	stats, vs := Sessions(ops)
	if len(vs) != 0 {
		t.Fatalf("clean session history: %v", vs)
	}
	if st := byPolicy(stats)["monotonic"]; st.Reads != 3 {
		t.Errorf("stats %+v, want 3 reads", st)
	}
}

// Linearizable sessions' follower reads are in porcupine's history; other
// follower reads are not.
func TestLinearizableFollowerReadsChecked(t *testing.T) {
	ops := []history.Op{w(0, "r:0", "a", 0, 1), w(0, "r:0", "b", 2, 3)}
	stale := follower(2, r(5, "r:0", "a", 10, 11))
	for _, p := range []string{"linearizable", "ryw"} {
		o := stale
		o.Policy = p
		_, pops, err := Operations(append(ops, o))
		if err != nil {
			t.Fatal(err)
		}
		want := 2
		if p == "linearizable" {
			want = 3
		}
		if len(pops) != want {
			t.Errorf("%s: %d porcupine operations, want %d", p, len(pops), want)
		}
	}
	if vs := Linearizable(append(ops, pol("linearizable", stale)...), 0, ""); len(vs) != 1 || vs[0].Kind != NotLinearizable {
		t.Errorf("a stale linearizable follower read: %v, want not-linearizable", vs)
	}
}

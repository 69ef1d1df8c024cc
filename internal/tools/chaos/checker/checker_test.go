package checker

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Builders for hand-written histories. Times are plain integers; only their
// order matters.

func w(c int, key, v string, call, ret int64) history.Op {
	return history.Op{Client: c, Key: key, Kind: history.Write, Value: v, Outcome: history.OK, Node: 1, Call: call, Return: ret}
}

func r(c int, key, v string, call, ret int64) history.Op {
	return history.Op{Client: c, Key: key, Kind: history.Read, Found: v != "", Result: v, Outcome: history.OK, Node: 1, Call: call, Return: ret}
}

func inc(c int, key string, n, call, ret int64) history.Op {
	return history.Op{Client: c, Key: key, Kind: history.Incr, N: n, Outcome: history.OK, Node: 1, Call: call, Return: ret}
}

func unknown(o history.Op) history.Op {
	o.Outcome, o.Err, o.N = history.Unknown, "i/o timeout", 0
	o.Found, o.Result = false, ""
	return o
}

func failed(o history.Op) history.Op {
	o.Outcome, o.Err = history.Failed, "READONLY"
	return o
}

func follower(node int, o history.Op) history.Op {
	o.Node, o.Follower = node, true
	return o
}

func final(o history.Op) history.Op {
	o.Final = true
	return o
}

func kinds(vs []Violation) []ViolationKind {
	var ks []ViolationKind
	for _, v := range vs {
		ks = append(ks, v.Kind)
	}
	return ks
}

func wantKinds(t *testing.T, vs []Violation, want ...ViolationKind) {
	t.Helper()
	got := kinds(vs)
	if len(got) != len(want) {
		t.Fatalf("violations %v, want kinds %v", vs, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("violations %v, want kinds %v", vs, want)
		}
	}
	for _, v := range vs {
		t.Logf("reported: %s", v)
	}
}

func TestLinearizable(t *testing.T) {
	tests := []struct {
		name string
		ops  []history.Op
		bad  bool
	}{
		{"empty key reads nil", []history.Op{r(0, "k", "", 0, 1)}, false},
		{"sequential", []history.Op{w(0, "k", "a", 0, 10), r(1, "k", "a", 20, 30), w(0, "k", "b", 40, 50), r(1, "k", "b", 60, 70)}, false},
		{"concurrent write may be seen either way", []history.Op{
			w(0, "k", "a", 0, 10), w(1, "k", "b", 20, 50), r(2, "k", "a", 25, 30), r(2, "k", "b", 35, 40), r(3, "k", "b", 60, 70)}, false},
		{"stale read", []history.Op{w(0, "k", "a", 0, 10), w(0, "k", "b", 20, 30), r(1, "k", "a", 40, 50)}, true},
		{"read nil after acknowledged write", []history.Op{w(0, "k", "a", 0, 10), r(1, "k", "", 20, 30)}, true},
		{"unknown write seen later", []history.Op{unknown(w(0, "k", "a", 0, 10)), r(1, "k", "", 20, 30), r(1, "k", "a", 100, 110)}, false},
		{"unknown write never seen", []history.Op{w(0, "k", "a", 0, 10), unknown(w(0, "k", "b", 20, 30)), r(1, "k", "a", 40, 50)}, false},
		{"unknown write cannot be undone", []history.Op{
			w(0, "k", "a", 0, 10), unknown(w(0, "k", "b", 20, 30)), r(1, "k", "b", 40, 50), r(1, "k", "a", 60, 70)}, true},
		{"failed write seen", []history.Op{w(0, "k", "a", 0, 10), failed(w(0, "k", "b", 20, 30)), r(1, "k", "b", 40, 50)}, true},
		{"unknown read ignored", []history.Op{w(0, "k", "a", 0, 10), unknown(r(1, "k", "zzz", 20, 30))}, false},
		{"stale follower read ignored", []history.Op{w(0, "k", "a", 0, 10), w(0, "k", "b", 20, 30), follower(2, r(1, "k", "a", 40, 50))}, false},
		{"counter sequential", []history.Op{inc(0, "c", 1, 0, 10), inc(1, "c", 2, 20, 30), r(2, "c", "2", 40, 50)}, false},
		{"counter concurrent results swapped", []history.Op{inc(0, "c", 2, 0, 30), inc(1, "c", 1, 10, 20)}, false},
		{"counter duplicate result", []history.Op{inc(0, "c", 1, 0, 10), inc(1, "c", 1, 20, 30)}, true},
		{"counter unknown incr seen", []history.Op{inc(0, "c", 1, 0, 10), unknown(inc(1, "c", 0, 20, 30)), r(2, "c", "2", 40, 50), inc(0, "c", 3, 60, 70)}, false},
		{"counter stale read", []history.Op{inc(0, "c", 1, 0, 10), inc(0, "c", 2, 20, 30), r(1, "c", "1", 40, 50)}, true},
		{"counter read nil after incr", []history.Op{inc(0, "c", 1, 0, 10), r(1, "c", "", 40, 50)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			vs := Linearizable(tt.ops, 10*time.Second, dir)
			if !tt.bad {
				wantKinds(t, vs)
				return
			}
			wantKinds(t, vs, NotLinearizable)
			b, err := os.ReadFile(vs[0].File)
			if err != nil {
				t.Fatalf("visualisation: %v", err)
			}
			if !strings.Contains(string(b), "<html") {
				t.Fatalf("visualisation is not HTML: %.100s", b)
			}
		})
	}
}

func TestLinearizableManyKeysOneBad(t *testing.T) {
	var ops []history.Op
	for k := range 50 {
		key := "r:" + strconv.Itoa(k)
		ops = append(ops, w(0, key, "a"+key, int64(k*100), int64(k*100+10)), r(1, key, "a"+key, int64(k*100+20), int64(k*100+30)))
	}
	ops = append(ops, w(0, "r:7", "late", 10000, 10010), r(1, "r:7", "ar:7", 10020, 10030))
	vs := Linearizable(ops, 10*time.Second, "")
	wantKinds(t, vs, NotLinearizable)
	if vs[0].Key != "r:7" || vs[0].File != "" {
		t.Fatalf("violation %+v, want key r:7 and no file", vs[0])
	}
}

func TestLinearizableMixedKinds(t *testing.T) {
	vs := Linearizable([]history.Op{w(0, "k", "a", 0, 1), inc(0, "k", 1, 2, 3)}, time.Second, "")
	wantKinds(t, vs, NotLinearizable)
}

func TestDurability(t *testing.T) {
	tests := []struct {
		name string
		ops  []history.Op
		want []ViolationKind
		lost int
	}{
		{"register last write kept", []history.Op{w(0, "k", "a", 0, 10), w(0, "k", "b", 20, 30), final(r(9, "k", "b", 100, 110))}, nil, 0},
		{"register lost acknowledged write", []history.Op{w(0, "k", "a", 0, 10), w(0, "k", "b", 20, 30), w(0, "k", "c", 40, 50), final(r(9, "k", "a", 100, 110))}, []ViolationKind{LostWrite}, 2},
		{"register lost everything", []history.Op{w(0, "k", "a", 0, 10), final(r(9, "k", "", 100, 110))}, []ViolationKind{LostWrite}, 1},
		{"register concurrent writes either wins", []history.Op{w(0, "k", "a", 0, 30), w(1, "k", "b", 10, 20), final(r(9, "k", "a", 100, 110))}, nil, 0},
		{"register unknown later write may win", []history.Op{w(0, "k", "a", 0, 10), unknown(w(0, "k", "b", 20, 30)), final(r(9, "k", "b", 100, 110))}, nil, 0},
		{"register unknown write may be lost", []history.Op{w(0, "k", "a", 0, 10), unknown(w(0, "k", "b", 20, 30)), final(r(9, "k", "a", 100, 110))}, nil, 0},
		{"register unknown write then lost ack", []history.Op{unknown(w(0, "k", "a", 0, 10)), w(0, "k", "b", 20, 30), final(r(9, "k", "a", 100, 110))}, nil, 0},
		{"register final never written", []history.Op{w(0, "k", "a", 0, 10), final(r(9, "k", "zzz", 100, 110))}, []ViolationKind{NeverWritten}, 0},
		{"register final from failed write", []history.Op{w(0, "k", "a", 0, 10), failed(w(0, "k", "b", 20, 30)), final(r(9, "k", "b", 100, 110))}, []ViolationKind{NeverWritten}, 0},
		{"register no final read", []history.Op{w(0, "k", "a", 0, 10)}, []ViolationKind{Unverified}, 0},
		{"register only failed writes, no final read", []history.Op{failed(w(0, "k", "a", 0, 10))}, nil, 0},
		{"counter all kept", []history.Op{inc(0, "c", 1, 0, 10), inc(0, "c", 2, 20, 30), final(r(9, "c", "2", 100, 110))}, nil, 0},
		{"counter lost increments", []history.Op{inc(0, "c", 1, 0, 10), inc(0, "c", 2, 20, 30), inc(0, "c", 3, 40, 50), final(r(9, "c", "1", 100, 110))}, []ViolationKind{LostWrite}, 2},
		{"counter lost below largest result", []history.Op{unknown(inc(0, "c", 0, 0, 10)), unknown(inc(0, "c", 0, 0, 10)), inc(1, "c", 3, 20, 30), final(r(9, "c", "2", 100, 110))}, []ViolationKind{LostWrite}, 1},
		{"counter unknown increments may count", []history.Op{inc(0, "c", 1, 0, 10), unknown(inc(0, "c", 0, 20, 30)), final(r(9, "c", "2", 100, 110))}, nil, 0},
		{"counter phantom increments", []history.Op{inc(0, "c", 1, 0, 10), failed(inc(0, "c", 0, 20, 30)), final(r(9, "c", "2", 100, 110))}, []ViolationKind{NeverWritten}, 0},
		{"counter absent after incr", []history.Op{inc(0, "c", 1, 0, 10), final(r(9, "c", "", 100, 110))}, []ViolationKind{LostWrite}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, lost := Durability(tt.ops)
			wantKinds(t, vs, tt.want...)
			if lost != tt.lost {
				t.Fatalf("lost = %d, want %d", lost, tt.lost)
			}
		})
	}
}

func TestFollowerReads(t *testing.T) {
	base := []history.Op{w(0, "k", "a", 0, 10), w(0, "k", "b", 20, 30), w(0, "k", "c", 40, 50)}
	ctr := []history.Op{inc(0, "c", 1, 0, 10), inc(0, "c", 2, 20, 30), inc(0, "c", 3, 40, 50)}
	with := func(b []history.Op, more ...history.Op) []history.Op {
		return append(append([]history.Op(nil), b...), more...)
	}
	tests := []struct {
		name string
		ops  []history.Op
		want []ViolationKind
	}{
		{"stale but monotonic", with(base, follower(2, r(1, "k", "", 60, 61)), follower(2, r(1, "k", "a", 62, 63)), follower(2, r(1, "k", "a", 64, 65)), follower(2, r(1, "k", "c", 66, 67))), nil},
		{"backwards on one follower", with(base, follower(2, r(1, "k", "b", 60, 61)), follower(2, r(1, "k", "a", 62, 63))), []ViolationKind{NonMonotonicRead}},
		{"value then nil", with(base, follower(2, r(1, "k", "a", 60, 61)), follower(2, r(1, "k", "", 62, 63))), []ViolationKind{NonMonotonicRead}},
		{"different followers may differ", with(base, follower(2, r(1, "k", "b", 60, 61)), follower(3, r(1, "k", "a", 62, 63))), nil},
		{"overlapping reads may differ", with(base, follower(2, r(1, "k", "b", 60, 70)), follower(2, r(2, "k", "a", 65, 75))), nil},
		{"concurrent writes have no order", []history.Op{w(0, "k", "a", 0, 30), w(1, "k", "b", 10, 20), follower(2, r(2, "k", "a", 40, 41)), follower(2, r(2, "k", "b", 42, 43))}, nil},
		{"unsorted input is sorted", with(base, follower(2, r(1, "k", "a", 62, 63)), follower(2, r(1, "k", "b", 60, 61))), []ViolationKind{NonMonotonicRead}},
		{"leader reads are not judged here", with(base, r(1, "k", "b", 60, 61), r(1, "k", "a", 62, 63)), nil},
		{"never written", with(base, follower(2, r(1, "k", "zzz", 60, 61))), []ViolationKind{NeverWritten}},
		{"from failed write", with(base, failed(w(0, "k", "x", 55, 56)), follower(2, r(1, "k", "x", 60, 61))), []ViolationKind{NeverWritten}},
		{"read before written", with(base, follower(2, r(1, "k", "d", 60, 61)), w(0, "k", "d", 70, 80)), []ViolationKind{NeverWritten}},
		{"unknown write may be seen", with(base, unknown(w(0, "k", "d", 52, 53)), follower(2, r(1, "k", "d", 60, 61))), nil},
		{"counter monotonic", with(ctr, follower(2, r(1, "c", "", 60, 61)), follower(2, r(1, "c", "1", 62, 63)), follower(2, r(1, "c", "3", 64, 65))), nil},
		{"counter backwards", with(ctr, follower(2, r(1, "c", "3", 60, 61)), follower(2, r(1, "c", "2", 62, 63))), []ViolationKind{NonMonotonicRead}},
		{"counter too high", with(ctr, follower(2, r(1, "c", "4", 60, 61))), []ViolationKind{NeverWritten}},
		{"counter ahead of sent", with(ctr, follower(2, r(1, "c", "2", 5, 15))), []ViolationKind{NeverWritten}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantKinds(t, FollowerReads(tt.ops), tt.want...)
		})
	}
}

func TestReplicas(t *testing.T) {
	ok := []Digest{{Node: 1, Applied: 9, Sum: "aa"}, {Node: 2, Applied: 9, Sum: "aa"}, {Node: 3, Applied: 9, Sum: "aa"}}
	if !Converged(ok) {
		t.Fatal("not converged")
	}
	wantKinds(t, Replicas(ok))
	diverged := []Digest{{Node: 1, Applied: 9, Sum: "aa"}, {Node: 2, Applied: 9, Sum: "bb"}, {Node: 3, Applied: 9, Sum: "aa"}}
	vs := Replicas(diverged)
	wantKinds(t, vs, ReplicaDiverged)
	if vs[0].Node != 2 {
		t.Fatalf("blamed n%d, want n2", vs[0].Node)
	}
	behind := []Digest{{Node: 1, Applied: 9, Sum: "aa"}, {Node: 2, Applied: 7, Sum: "cc"}}
	if Converged(behind) {
		t.Fatal("converged with different lsns")
	}
	wantKinds(t, Replicas(behind), ReplicasNotConverged)
	down := []Digest{{Node: 1, Applied: 9, Sum: "aa"}, {Node: 2, Err: "connection refused"}}
	if Converged(down) {
		t.Fatal("converged with a node down")
	}
	wantKinds(t, Replicas(down), ReplicasNotConverged)
	if Converged(nil) {
		t.Fatal("converged with no nodes")
	}
}

func TestRecoveries(t *testing.T) {
	h := history.History{
		Ops: []history.Op{
			w(0, "k", "a", 0, 10),
			failed(w(0, "k", "b", 100, 101)),
			unknown(w(1, "k", "c", 105, 200)),
			w(0, "k", "d", 120, 150),
			inc(2, "c", 1, 130, 140),
			failed(w(0, "k", "e", 310, 311)),
		},
		Faults: []history.FaultEvent{
			{Kind: "kill-leader", Name: "kill n1", Inject: 50, Heal: 100},
			{Kind: "kill-leader", Name: "kill n1", Inject: 250, Heal: 300},
			{Kind: "pause", Name: "pause n2", Inject: 400, Heal: 500},
			{Kind: "pause", Name: "pause n3", Inject: 600},
		},
	}
	rs, vs := Recoveries(h)
	wantKinds(t, vs, NotRecovered)
	if len(rs) != 2 || !rs[0].Recovered || rs[0].Time != 40 || rs[1].Recovered {
		t.Fatalf("recoveries = %+v, want 40ns then not recovered", rs)
	}
	if m, n := Median(rs, "kill-leader"); m != 40 || n != 1 {
		t.Fatalf("median = %v over %d", m, n)
	}
	odd := []Recovery{{Kind: "x", Time: 3, Recovered: true}, {Kind: "x", Time: 1, Recovered: true}, {Kind: "x", Time: 2, Recovered: true}}
	if m, _ := Median(odd, "x"); m != 2 {
		t.Fatalf("median of 1,2,3 = %v", m)
	}
	even := append(odd, Recovery{Kind: "x", Time: 10, Recovered: true}, Recovery{Kind: "y", Time: 99, Recovered: true})
	if m, n := Median(even, "x"); m != 2 || n != 4 {
		t.Fatalf("median of 1,2,3,10 = %v over %d", m, n)
	}
}

package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

func TestOneLeaderPerEpoch(t *testing.T) {
	tests := []struct {
		name string
		ls   []Leadership
		want []ViolationKind
	}{
		{"none", nil, nil},
		{"one per epoch", []Leadership{{Node: 1, Epoch: 1, At: 1}, {Node: 2, Epoch: 2, At: 5}, {Node: 1, Epoch: 3, At: 9}}, nil},
		// A leader restarted by kill -9 takes a new epoch.
		{"same node leads again at a new epoch", []Leadership{{Node: 1, Epoch: 1, At: 1}, {Node: 1, Epoch: 2, At: 7}}, nil},
		{"planted: same node resumes its epoch", []Leadership{{Node: 1, Epoch: 1, At: 1}, {Node: 1, Epoch: 1, At: 7}, {Node: 1, Epoch: 1, At: 9}}, []ViolationKind{TwoLeaders}},
		{"planted: two nodes lead epoch 2", []Leadership{{Node: 1, Epoch: 1, At: 1}, {Node: 2, Epoch: 2, At: 5}, {Node: 3, Epoch: 2, At: 6}}, []ViolationKind{TwoLeaders}},
		// Reported once per (epoch, node), whatever the log order.
		{"planted: repeated, out of order", []Leadership{{Node: 3, Epoch: 4, At: 9}, {Node: 2, Epoch: 4, At: 5}, {Node: 3, Epoch: 4, At: 12}, {Node: 1, Epoch: 4, At: 13}}, []ViolationKind{TwoLeaders, TwoLeaders}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs := OneLeaderPerEpoch(tt.ls)
			wantKinds(t, vs, tt.want...)
		})
	}
	vs := OneLeaderPerEpoch([]Leadership{{Node: 2, Epoch: 4, At: 5}, {Node: 3, Epoch: 4, At: 9}})
	if len(vs) != 1 || vs[0].Node != 3 || vs[0].At != 9 || !strings.Contains(vs[0].Detail, "n2") {
		t.Fatalf("violation names the wrong leader: %v", vs)
	}
}

const sec = int64(time.Second)

func TestFailovers(t *testing.T) {
	// Writes acknowledged every 100 ms except between 10.0 s and 11.5 s.
	var ops []history.Op
	for at := int64(0); at < 20*sec; at += sec / 10 {
		if at > 10*sec && at < 11*sec+sec/2 {
			continue
		}
		ops = append(ops, w(0, "r:0", "v"+time.Duration(at).String(), at-sec/100, at))
	}
	faults := []history.FaultEvent{
		{Kind: "kill-leader", Name: "kill n1", Inject: 10 * sec, Heal: 12 * sec, Suspects: []int{1}},
		{Kind: "cut-orchestrator-leader", Name: "cut o1->n2", Inject: 13 * sec, Heal: 14 * sec},
		{Kind: "pause", Name: "pause n2", Inject: 15 * sec, InjectErr: "no such process", Suspects: []int{2}},
		{Kind: "cut-leader-etcd", Name: "cut n3->etcd", Inject: 16 * sec, Suspects: []int{3}}, // never healed
	}
	h := history.History{Ops: ops, Faults: faults}
	fo := func(at int64, from, to int) Change {
		return Change{At: at, Kind: "failover", From: from, To: to, OldEpoch: 1, NewEpoch: 2, Reason: "leader suspected"}
	}
	tests := []struct {
		name    string
		c       Change
		cause   string
		unavail time.Duration
	}{
		{"during the kill", fo(10*sec+sec/10, 1, 2), "kill n1", 1500 * time.Millisecond},
		{"just after the kill's heal", fo(12*sec+sec/2, 1, 2), "kill n1", 100 * time.Millisecond},
		{"planted: long after the kill's heal", fo(15*sec+sec/20, 1, 2), "", 100 * time.Millisecond},
		{"planted: during the orchestrator cut", fo(13*sec+sec/2, 2, 1), "", 100 * time.Millisecond},
		{"planted: a pause that never happened", fo(15*sec+sec/2, 2, 1), "", 100 * time.Millisecond},
		{"planted: before the kill", fo(9*sec, 1, 2), "", 100 * time.Millisecond},
		{"planted: the wrong node", fo(10*sec+sec/2, 2, 3), "", 1500 * time.Millisecond},
		{"during an etcd cut never healed", fo(19*sec+sec/2, 3, 1), "cut n3->etcd", 100 * time.Millisecond},
		{"no write after it", fo(30*sec, 3, 1), "cut n3->etcd", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, vs := Failovers(h, []Change{tt.c}, FailoverWindow)
			if len(fs) != 1 {
				t.Fatalf("failovers %+v", fs)
			}
			f := fs[0]
			if f.Cause != tt.cause || f.False != (tt.cause == "") {
				t.Fatalf("cause %q false %v, want %q", f.Cause, f.False, tt.cause)
			}
			if tt.cause == "" {
				wantKinds(t, vs, FalseFailover)
				if vs[0].At != tt.c.At || vs[0].Node != tt.c.From {
					t.Fatalf("violation %+v", vs[0])
				}
			} else {
				wantKinds(t, vs)
			}
			if d := f.Unavailable - tt.unavail; d < -time.Millisecond || d > time.Millisecond {
				t.Fatalf("unavailable %v, want %v", f.Unavailable, tt.unavail)
			}
		})
	}
	// Other changes are not failovers.
	fs, vs := Failovers(h, []Change{{At: 1, Kind: "bootstrap", To: 1, NewEpoch: 1}, {At: 2, Kind: "switchover", From: 1, To: 2}}, FailoverWindow)
	if len(fs) != 0 || len(vs) != 0 {
		t.Fatalf("non-failovers judged: %+v %v", fs, vs)
	}
}

func TestVanished(t *testing.T) {
	ops := []history.Op{
		// r:0's two later writes are lost; only b is in a rollback file.
		w(0, "r:0", "a", 0, 10), w(0, "r:0", "b", 20, 30), w(0, "r:0", "c", 40, 50), final(r(9, "r:0", "a", 100, 110)),
		// c:0 lost two of three acknowledged INCRs (final 1).
		inc(1, "c:0", 1, 0, 10), inc(1, "c:0", 2, 20, 30), inc(1, "c:0", 3, 40, 50), final(r(9, "c:0", "1", 100, 110)),
		// r:1 lost nothing.
		w(2, "r:1", "x", 0, 10), final(r(9, "r:1", "x", 100, 110)),
	}
	vs, losses := DurabilityLosses(ops)
	wantKinds(t, vs)
	if len(losses) != 2 {
		t.Fatalf("losses %+v", losses)
	}
	tests := []struct {
		name  string
		rb    []RolledBack
		found int
		want  []ViolationKind
		lost  []int
	}{
		{"all in rollback files", []RolledBack{{Node: 1, Key: "r:0", Value: "b"}, {Node: 1, Key: "r:0", Value: "c"}, {Node: 2, Key: "c:0", Value: "2"}, {Node: 2, Key: "c:0", Value: "3"}}, 4, nil, nil},
		{"planted: none saved", nil, 0, []ViolationKind{LostWrite, LostWrite}, []int{2, 2}},
		{"planted: one register write vanished", []RolledBack{{Node: 1, Key: "r:0", Value: "b"}, {Node: 2, Key: "c:0", Value: "2"}, {Node: 2, Key: "c:0", Value: "3"}}, 3, []ViolationKind{LostWrite}, []int{1}},
		// A rolled-back value of another key does not count.
		{"planted: value under another key", []RolledBack{{Node: 1, Key: "r:1", Value: "b"}, {Node: 1, Key: "r:0", Value: "c"}, {Node: 2, Key: "c:0", Value: "2"}, {Node: 2, Key: "c:0", Value: "9"}}, 2, []ViolationKind{LostWrite, LostWrite}, []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			found, vs := Vanished(losses, tt.rb)
			if found != tt.found {
				t.Fatalf("found %d rolled back, want %d", found, tt.found)
			}
			wantKinds(t, vs, tt.want...)
			for i, v := range vs {
				if v.Lost != tt.lost[i] || v.At == 0 {
					t.Fatalf("violation %d: %+v, want %d lost", i, v, tt.lost[i])
				}
			}
		})
	}
}

// A failover that hands out an acknowledged INCR's result again lost that
// INCR, even when INCRs of unknown outcome keep the final count up.
func TestCounterDuplicateResultIsLost(t *testing.T) {
	ops := []history.Op{
		inc(0, "c:0", 1, 0, 10), inc(0, "c:0", 2, 20, 30),
		unknown(inc(1, "c:0", 0, 25, 90)), unknown(inc(2, "c:0", 0, 26, 91)),
		inc(0, "c:0", 2, 40, 50), // the new leader's INCR -> 2 again
		final(r(9, "c:0", "4", 100, 110)),
	}
	vs, losses := DurabilityLosses(ops)
	wantKinds(t, vs)
	if len(losses) != 1 || losses[0].N != 1 || losses[0].At != 20 {
		t.Fatalf("losses %+v, want one INCR lost", losses)
	}
	if found, vs := Vanished(losses, []RolledBack{{Node: 1, Key: "c:0", Value: "2"}}); found != 1 || len(vs) != 0 {
		t.Fatalf("rolled back INCR -> 2: found %d, %v", found, vs)
	}
	_, vs = Vanished(losses, nil)
	wantKinds(t, vs, LostWrite)
}

func TestObservedRollbacks(t *testing.T) {
	ops := []history.Op{
		w(0, "r:0", "a", 0, 10), unknown(w(0, "r:1", "b", 0, 10)), r(1, "r:2", "c", 20, 30), inc(0, "c:0", 5, 0, 10), unknown(inc(0, "c:1", 0, 0, 10)),
	}
	rb := []RolledBack{{Key: "r:0", Value: "a"}, {Key: "r:1", Value: "b"}, {Key: "r:2", Value: "c"}, {Key: "c:0", Value: "5"}, {Key: "c:1", Value: "1"}}
	got := ObservedRollbacks(ops, rb)
	want := map[string]bool{"r:0": true, "r:2": true, "c:0": true}
	if len(got) != len(want) {
		t.Fatalf("observed %v, want %v", got, want)
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("observed %v, want %v", got, want)
		}
	}
}

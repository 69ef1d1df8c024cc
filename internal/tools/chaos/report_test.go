package chaos

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/tools/chaos/checker"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

func op(kind history.Kind, key, v string, call, ret int64) history.Op {
	o := history.Op{Key: key, Kind: kind, Outcome: history.OK, Node: 1, Call: call, Return: ret}
	switch kind {
	case history.Write:
		o.Value = v
	case history.Read:
		o.Found, o.Result = v != "", v
	}
	return o
}

func TestCheckCleanHistory(t *testing.T) {
	h := history.History{
		Seed: 5,
		Ops: []history.Op{
			op(history.Write, "r:0", "a", 0, 10),
			{Key: "r:0", Kind: history.Write, Value: "b", Outcome: history.Unknown, Node: 1, Call: 150, Return: 160},
			op(history.Write, "r:0", "c", 200, 210),
			op(history.Read, "r:0", "c", 220, 230),
			{Key: "r:0", Kind: history.Read, Found: true, Result: "a", Outcome: history.OK, Node: 2, Follower: true, Call: 240, Return: 250},
			{Key: "r:0", Kind: history.Read, Found: true, Result: "c", Outcome: history.OK, Final: true, Node: 1, Call: 400, Return: 410},
		},
		Faults: []history.FaultEvent{{Kind: "kill-leader", Name: "kill n1", Inject: 100, Heal: 180}},
	}
	ds := []checker.Digest{{Node: 1, Applied: 3, Sum: "x"}, {Node: 2, Applied: 3, Sum: "x"}}
	r := Check(h, ds, Facts{}, 10*time.Second, t.TempDir())
	if r.Violated() {
		t.Fatalf("violations in a clean history: %v", r.Violations)
	}
	if r.Ops != 5 || r.OK != 4 || r.Unknown != 1 || r.FollowerReads != 1 {
		t.Fatalf("counts %+v", r)
	}
	// The span before the fault, then the fault.
	if len(r.Faults) != 2 || r.Faults[1].Recovered != 1 || r.Faults[1].MedianRecovery != 30 {
		t.Fatalf("faults %+v", r.Faults)
	}
	var buf bytes.Buffer
	r.Print(&buf)
	for _, want := range []string{"seed: 5", "kill-leader", "violations: none", "lost: 0", "converged at applied lsn 3"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}

// TestCheckReportsEveryKind feeds one history with one violation of each
// kind and expects each to be reported, and the report to say how to
// replay.
func TestCheckReportsEveryKind(t *testing.T) {
	h := history.History{
		Seed: 77,
		Ops: []history.Op{
			// Stale leader read and, at the end, a lost acknowledged write.
			op(history.Write, "r:0", "a", 0, 10),
			op(history.Write, "r:0", "b", 20, 30),
			op(history.Read, "r:0", "a", 40, 50),
			{Key: "r:0", Kind: history.Read, Found: true, Result: "a", Outcome: history.OK, Final: true, Node: 1, Call: 900, Return: 910},
			// A follower going backwards, then showing a value never written.
			{Key: "r:0", Kind: history.Read, Found: true, Result: "b", Outcome: history.OK, Node: 2, Follower: true, Call: 60, Return: 70},
			{Key: "r:0", Kind: history.Read, Found: true, Result: "a", Outcome: history.OK, Node: 2, Follower: true, Call: 80, Return: 90},
			{Key: "r:0", Kind: history.Read, Found: true, Result: "zz", Outcome: history.OK, Node: 3, Follower: true, Call: 80, Return: 90},
			// Writes fail after the heal and never succeed again.
			{Key: "r:1", Kind: history.Write, Value: "q", Outcome: history.Failed, Node: 1, Call: 600, Return: 610},
			{Key: "r:1", Kind: history.Read, Outcome: history.OK, Final: true, Node: 1, Call: 900, Return: 910},
		},
		Faults: []history.FaultEvent{{Kind: "pause", Name: "pause n1", Inject: 100, Heal: 500}},
	}
	ds := []checker.Digest{{Node: 1, Applied: 3, Sum: "x"}, {Node: 2, Applied: 3, Sum: "y"}}
	dir := t.TempDir()
	r := Check(h, ds, Facts{}, 10*time.Second, dir)
	by := r.ByKind()
	for _, k := range []checker.ViolationKind{checker.NotLinearizable, checker.LostWrite, checker.NonMonotonicRead, checker.NeverWritten, checker.ReplicaDiverged, checker.NotRecovered} {
		if by[k] == 0 {
			t.Errorf("no %s reported; got %v", k, r.Violations)
		}
	}
	if r.LostWrites != 1 {
		t.Errorf("lost writes = %d, want 1", r.LostWrites)
	}
	if _, err := os.Stat(filepath.Join(dir, "r_0.html")); err != nil {
		t.Errorf("no visualisation for r:0: %v", err)
	}
	var buf bytes.Buffer
	r.Print(&buf)
	for _, want := range []string{"seed: 77", "replay with --seed 77", "acknowledged writes lost: 1", "not-linearizable=1"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	t.Logf("report:\n%s", buf.String())
}

func TestCheckHealFailureIsViolation(t *testing.T) {
	h := history.History{Faults: []history.FaultEvent{{Kind: "kill-follower", Name: "kill n2", Inject: 1, Heal: 2, HealErr: "not answering PING"}}}
	r := Check(h, nil, Facts{}, time.Second, "")
	if r.ByKind()[checker.NotRecovered] != 1 || r.Faults[0].HealErrors != 1 {
		t.Fatalf("report %+v", r)
	}
}

// TestCheckAttributesToFaults checks that operations, violations and lost
// writes are counted under the fault that was the latest injected when the
// operation showing them was invoked.
func TestCheckAttributesToFaults(t *testing.T) {
	h := history.History{
		Ops: []history.Op{
			op(history.Write, "r:0", "a", 10, 20),
			op(history.Write, "r:0", "b", 120, 130),
			{Key: "r:0", Kind: history.Read, Found: true, Result: "zz", Outcome: history.OK, Node: 2, Follower: true, Call: 200, Return: 210},
			op(history.Write, "r:0", "c", 320, 330),
			{Key: "r:0", Kind: history.Read, Found: true, Result: "b", Outcome: history.OK, Final: true, Node: 1, Call: 900, Return: 910},
		},
		Faults: []history.FaultEvent{
			{Kind: "pause", Name: "pause n2", Inject: 100, Heal: 150},
			{Kind: "kill-leader", Name: "kill n1", Inject: 300, Heal: 350},
		},
	}
	r := Check(h, nil, Facts{}, 10*time.Second, "")
	got := map[string][3]int{}
	for _, f := range r.Faults {
		got[f.Kind] = [3]int{f.Ops, f.Violations, f.LostWrites}
	}
	want := map[string][3]int{noFault: {1, 0, 0}, "pause": {2, 1, 0}, "kill-leader": {1, 1, 1}}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: ops, violations, lost = %v, want %v (all: %+v)", k, got[k], w, r.Faults)
		}
	}
	if r.Faults[0].Kind != noFault {
		t.Errorf("first row %q, want the span before any fault", r.Faults[0].Kind)
	}
}

// TestCheckTypedHistory: Check runs the typed checks beside the register
// ones, keeps the typed operations out of the register checks, counts
// them, and a lost set element, a half transfer and a job popped twice
// are violations (and the lost element a lost write).
func TestCheckTypedHistory(t *testing.T) {
	items := func(o history.Op, it ...string) history.Op { o.Items = it; return o }
	fin := func(o history.Op) history.Op { o.Final = true; return o }
	open := history.Op{Key: "accounts", Kind: history.Accounts, N: 200, Outcome: history.OK, Node: 1, Call: 0, Return: 1}
	sadd := op(history.SAdd, "s:0", "", 2, 3)
	sadd.Value = "m1"
	push := op(history.Enqueue, "q", "", 4, 5)
	push.Value = "j1"
	pop := op(history.Dequeue, "q", "", 6, 7)
	pop.Found, pop.Result = true, "j1"
	clean := []history.Op{open, sadd, push, pop,
		op(history.Write, "h:0/f0", "v", 2, 3), fin(op(history.Read, "h:0/f0", "v", 100, 101)),
		op(history.Transfer, "accounts", "", 8, 9),
		items(op(history.Balances, "accounts", "", 10, 11), "150", "50"),
		fin(items(op(history.SRead, "s:0", "", 100, 101), "m1")),
		fin(items(op(history.QueueRead, "q", "", 100, 101))),
		fin(items(op(history.Balances, "accounts", "", 102, 103), "150", "50")),
	}
	r := Check(history.History{Seed: 1, Ops: clean}, nil, Facts{Mode: "semisync"}, 10*time.Second, "")
	if r.Violated() {
		t.Fatalf("violations in a clean typed history: %v", r.Violations)
	}
	if r.Typed[history.SAdd] != 1 || r.Typed[history.Balances] != 2 || r.Typed[history.Dequeue] != 1 {
		t.Fatalf("typed counts %v", r.Typed)
	}
	var buf bytes.Buffer
	r.Print(&buf)
	if !strings.Contains(buf.String(), "sets 1 SADD, 1 SMEMBERS") {
		t.Errorf("report lacks the typed line:\n%s", buf.String())
	}

	bad := []history.Op{open, sadd, push, pop, op(history.Transfer, "accounts", "", 8, 9),
		items(op(history.Balances, "accounts", "", 10, 11), "150", "100"),
		fin(items(op(history.SRead, "s:0", "", 100, 101))),
		fin(items(op(history.QueueRead, "q", "", 100, 101), "j1")),
		fin(items(op(history.Balances, "accounts", "", 102, 103), "150", "50")),
	}
	r = Check(history.History{Seed: 1, Ops: bad}, nil, Facts{Mode: "semisync"}, 10*time.Second, "")
	by := r.ByKind()
	if by[checker.MissingElement] != 1 || by[checker.SumChanged] != 1 || by[checker.DuplicatePop] != 1 || len(r.Violations) != 3 {
		t.Fatalf("violations %v", r.Violations)
	}
	if r.LostWrites != 1 {
		t.Fatalf("lost writes %d, want the set's element", r.LostWrites)
	}
	// Async mode: an acknowledged write may be rolled back; the sum must
	// hold all the same.
	r = Check(history.History{Seed: 1, Ops: bad}, nil, Facts{Mode: "async"}, 10*time.Second, "")
	if by := r.ByKind(); by[checker.SumChanged] != 1 || len(r.Violations) != 1 {
		t.Fatalf("async: violations %v", r.Violations)
	}
}

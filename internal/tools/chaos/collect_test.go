package chaos

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/tools/chaos/checker"
	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// Lines as internal/node logs them (slog's text handler).
const nodeLog = `time=2026-12-01T13:49:24.870Z level=INFO msg=serving node=n3 resp=127.0.0.1:30115
time=2026-12-01T13:49:24.935Z level=INFO msg=leading node=n3 role=leader epoch=1 durable_lsn=0 applied_lsn=0
time=2026-12-01T13:49:24.935Z level=INFO msg="role: leader" node=n3 epoch=1
time=2026-12-01T13:49:37.507Z level=INFO msg="role: follower" node=n3 leader_resp=127.0.0.1:22584
time=2026-12-01T13:49:41.5Z level=INFO msg="role: leader" node=n3 epoch=4
`

func TestParseLeaderships(t *testing.T) {
	start, _ := time.Parse(time.RFC3339Nano, "2026-12-01T13:49:24Z")
	h := history.History{Start: start}
	ls, err := parseLeaderships(3, []byte(nodeLog), h)
	if err != nil {
		t.Fatal(err)
	}
	want := []checker.Leadership{{Node: 3, Epoch: 1, At: int64(935 * time.Millisecond)}, {Node: 3, Epoch: 4, At: int64(17500 * time.Millisecond)}}
	if len(ls) != len(want) || ls[0] != want[0] || ls[1] != want[1] {
		t.Fatalf("leaderships %+v, want %+v", ls, want)
	}
	// A line the parser cannot read is an error, never silently skipped.
	_, err = parseLeaderships(3, []byte(`time=2026-12-01T13:49:24.935Z level=INFO msg="role: leader" node=n3`+"\n"), h)
	if err == nil {
		t.Fatal("a role: leader line without an epoch was accepted")
	}
}

func TestParseRollback(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range []logrec.Entry{
		{Epoch: 1, LSN: 526, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("r:3"), Value: []byte("4.17")}}},
		{Epoch: 1, LSN: 527, Ops: []logrec.Op{{Kind: logrec.OpPut, Key: []byte("c:0"), Value: []byte("12")}, {Kind: logrec.OpDelete, Key: []byte("x")}}},
	} {
		if err := enc.Encode(e); err != nil { // as writeRollback does
			t.Fatal(err)
		}
	}
	rb, err := parseRollback(2, "/d/n2/rollback-1.jsonl", &buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []checker.RolledBack{{Node: 2, File: "rollback-1.jsonl", Epoch: 1, LSN: 526, Key: "r:3", Value: "4.17"}, {Node: 2, File: "rollback-1.jsonl", Epoch: 1, LSN: 527, Key: "c:0", Value: "12"}}
	if len(rb) != 2 || rb[0] != want[0] || rb[1] != want[1] {
		t.Fatalf("rolled back %+v, want %+v", rb, want)
	}
	if _, err := parseRollback(2, "f", strings.NewReader("{not json\n")); err == nil {
		t.Fatal("a damaged rollback file was accepted")
	}
}

// Check fails a run whose facts show two leaders in one epoch or a false
// failover, and one under the control plane whose logs show no leader.
func TestCheckFailsOnPlantedFacts(t *testing.T) {
	var ops []history.Op
	for i := range 20 {
		at := int64(i) * int64(100*time.Millisecond)
		ops = append(ops, history.Op{Key: "c:0", Kind: history.Incr, N: int64(i + 1), Outcome: history.OK, Node: 1, Call: at, Return: at + 1})
	}
	ops = append(ops, history.Op{Key: "c:0", Kind: history.Read, Found: true, Result: "20", Outcome: history.OK, Final: true, Node: 1, Call: int64(3 * time.Second), Return: int64(3*time.Second) + 1})
	h := history.History{Ops: ops, Faults: []history.FaultEvent{{Kind: "cut-orchestrator-leader", Name: "cut o1->n1", Inject: int64(time.Second), Heal: int64(2 * time.Second)}}}
	clean := Facts{ControlPlane: true, Leaderships: []checker.Leadership{{Node: 1, Epoch: 1}}}
	if r := Check(h, nil, clean, time.Second, ""); r.Violated() {
		t.Fatalf("clean facts: %v", r.Violations)
	}
	tests := []struct {
		name  string
		facts Facts
		kind  checker.ViolationKind
	}{
		{"two leaders", Facts{ControlPlane: true, Leaderships: []checker.Leadership{{Node: 1, Epoch: 1}, {Node: 2, Epoch: 1, At: 5}}}, checker.TwoLeaders},
		{"false failover", Facts{ControlPlane: true, Leaderships: clean.Leaderships,
			Changes: []checker.Change{{At: int64(1500 * time.Millisecond), Kind: "failover", From: 1, To: 2, OldEpoch: 1, NewEpoch: 2}}}, checker.FalseFailover},
		{"no leader in the logs", Facts{ControlPlane: true}, checker.Unverified},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(h, nil, tt.facts, time.Second, "")
			if !r.Violated() || r.ByKind()[tt.kind] != 1 {
				t.Fatalf("violations %v, want one %s", r.Violations, tt.kind)
			}
			var out bytes.Buffer
			r.Print(&out)
			t.Logf("%s", out.String())
			if tt.kind == checker.FalseFailover && (r.FalseFailovers != 1 || !strings.Contains(out.String(), "FALSE")) {
				t.Fatalf("report does not show the false failover:\n%s", out.String())
			}
		})
	}
}

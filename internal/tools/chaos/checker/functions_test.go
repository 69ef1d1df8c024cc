package checker

import (
	"testing"

	"github.com/tandemdb/tandem/internal/tools/chaos/history"
)

// An FCALL that found no function is a violation, one per node; other
// failures of the same operations are not.
func TestFunctions(t *testing.T) {
	ops := []history.Op{
		{Kind: history.Incr, Key: "c:1", Node: 1, Outcome: history.OK, N: 1},
		{Kind: history.Incr, Key: "c:1", Node: 2, Outcome: history.Failed, Err: "READONLY You can't write against a read only replica.", Call: 5},
		{Kind: history.Incr, Key: "c:2", Node: 3, Outcome: history.Failed, Err: "ERR Function not found", Call: 7},
		{Kind: history.Incr, Key: "c:1", Node: 3, Outcome: history.Failed, Err: "ERR Function not found", Call: 9},
	}
	vs := Functions(ops)
	if len(vs) != 1 || vs[0].Kind != FunctionLost || vs[0].Node != 3 || vs[0].Key != "c:2" || vs[0].At != 7 {
		t.Fatalf("violations %v, want one function-lost on n3 from c:2 at 7", vs)
	}
	if vs := Functions(ops[:2]); len(vs) != 0 {
		t.Fatalf("violations %v without a missing function", vs)
	}
}

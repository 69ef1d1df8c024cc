package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/commands"
	"github.com/tandemdb/tandem/internal/commit"
	"github.com/tandemdb/tandem/internal/logrec"
)

// TestEntryTooLarge: a write whose log entry would pass MaxEntryBytes,
// by one large value or by many small ops, is refused before it is
// sequenced with an input error naming the bound: nothing is logged, no
// LSN is used, and the leader goes on taking writes. The bound is an
// upper bound on the encoding, never below it.
func TestEntryTooLarge(t *testing.T) {
	const limit = 4096
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, func(c *LeaderConfig) { c.MaxEntryBytes = limit })
	first := propose(t, l, putExec("a", "1"))
	many := func(n, size int) ExecFunc {
		return func(commands.View, int64) (commands.Result, error) {
			var ops []logrec.Op
			for i := range n {
				ops = append(ops, logrec.Op{Kind: logrec.OpSubPut, Key: []byte("s"), Version: 7, Sub: []byte(fmt.Sprint(i)), Value: []byte(strings.Repeat("v", size))})
			}
			return commands.Result{Reply: commands.Int(n), Ops: ops}, nil
		}
	}
	for name, exec := range map[string]ExecFunc{
		"one value":    putExec("big", strings.Repeat("x", limit)),
		"many ops":     many(200, 1),
		"many values":  many(10, 500),
		"a huge value": putExec("huge", strings.Repeat("x", 1<<20)),
	} {
		_, err := l.Start(context.Background(), exec)
		if !errors.Is(err, ErrEntryTooLarge) || !commands.IsInputError(err) {
			t.Fatalf("%s: %v, want ErrEntryTooLarge as an input error", name, err)
		}
		if !strings.Contains(err.Error(), "(4096 bytes)") {
			t.Errorf("%s: %q does not name the bound", name, err)
		}
	}
	if d := l.db.Durable().LSN; d != first {
		t.Fatalf("durable LSN %d after refused writes, want %d", d, first)
	}
	if lsn := propose(t, l, many(10, 100)); lsn != first+1 {
		t.Fatalf("next write got LSN %d, want %d", lsn, first+1)
	}
	raws, err := l.db.ReadLog(first, first+2, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(raws) != 2 {
		t.Fatalf("log holds %d entries from %d", len(raws), first)
	}
	for _, raw := range raws {
		e, err := logrec.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(raw)) > entryBound(e.Ops) {
			t.Errorf("entry %d: %d bytes, bound %d", e.LSN, len(raw), entryBound(e.Ops))
		}
	}
}

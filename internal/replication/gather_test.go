package replication

import (
	"errors"
	"testing"

	"github.com/tandemdb/tandem/internal/peerpb"
)

func appendMsg(epoch, commit, last uint64, entries ...string) received {
	a := &peerpb.Append{CommitLsn: commit, LeaderLastLsn: last}
	for _, e := range entries {
		a.Entries = append(a.Entries, []byte(e))
	}
	return received{m: &peerpb.LeaderMessage{Epoch: epoch, Body: &peerpb.LeaderMessage_Append{Append: a}}}
}

func TestGatherMergesAppendsAlreadyReceived(t *testing.T) {
	in := make(chan received, 8)
	first := appendMsg(2, 1, 2, "e1", "e2")
	in <- appendMsg(2, 3, 3, "e3")
	in <- appendMsg(2, 2, 4, "e4") // a lower commit never moves it back
	in <- appendMsg(3, 4, 5, "e5") // a new epoch is not merged
	in <- appendMsg(3, 5, 6, "e6")
	a, held := gather(in, 2, first.m.GetAppend())
	if len(a.Entries) != 4 || string(a.Entries[3]) != "e4" {
		t.Fatalf("merged %q, want e1..e4", a.Entries)
	}
	if a.CommitLsn != 3 || a.LeaderLastLsn != 4 {
		t.Errorf("commit %d last %d, want 3 and 4", a.CommitLsn, a.LeaderLastLsn)
	}
	if held == nil || held.m.Epoch != 3 {
		t.Fatalf("held = %+v, want the epoch 3 append", held)
	}
	if len(in) != 1 {
		t.Errorf("%d messages left, want 1 (gather stops at the first it cannot merge)", len(in))
	}

	// An error or another kind of message stops the merge and is handed back.
	in <- received{err: errors.New("broken")}
	a, held = gather(in, 3, held.m.GetAppend())
	if len(a.Entries) != 2 || held == nil || held.m != nil {
		t.Fatalf("merged %q held %+v; want e5, e6 then the error", a.Entries, held)
	}
	// Nothing waiting: the append is returned as it is.
	one := appendMsg(3, 5, 7, "e7")
	a, held = gather(make(chan received), 3, one.m.GetAppend())
	if a != one.m.GetAppend() || held != nil {
		t.Fatal("gather changed a lone append")
	}
}

package replication

import (
	"errors"
	"testing"

	"github.com/tandemdb/tandem/internal/logrec"
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
	a, held := gather(in, 2, first.m.GetAppend(), nil)
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
	a, held = gather(in, 3, held.m.GetAppend(), nil)
	if len(a.Entries) != 2 || held == nil || held.m != nil {
		t.Fatalf("merged %q held %+v; want e5, e6 then the error", a.Entries, held)
	}
	// Nothing waiting: the append is returned as it is.
	one := appendMsg(3, 5, 7, "e7")
	a, held = gather(make(chan received), 3, one.m.GetAppend(), nil)
	if a != one.m.GetAppend() || held != nil {
		t.Fatal("gather changed a lone append")
	}
}

// TestApplyDelayCountsFromArrival: under the FollowerApplyDelay fault an
// entry may be applied d after the message that carried it arrived, not d
// after the step that applies it began (which, with the commit LSN a
// message later and a step per delay, made a 50 ms fault a lag of 100 ms
// and more, growing without bound past 16 messages per delay).
func TestApplyDelayCountsFromArrival(t *testing.T) {
	f := &Follower{}
	msg := func(at int64, lsns ...uint64) *received {
		r := appendMsg(1, 0, 0)
		a := r.m.GetAppend()
		for _, lsn := range lsns {
			a.Entries = append(a.Entries, logrec.Encode(&logrec.Entry{Epoch: 1, LSN: lsn}))
		}
		r.at = at
		return &r
	}
	const d = 50
	f.noteArrival(msg(0, 1, 2, 3))
	f.noteArrival(msg(20, 4, 5))
	f.noteArrival(msg(40)) // a commit-only message: nothing arrived
	if got := f.applyNotBefore(2, d); got != 0+d {
		t.Errorf("entries through 2 (arrived at 0): not before %d, want %d", got, d)
	}
	if got := f.applyNotBefore(5, d); got != 20+d {
		t.Errorf("entries through 5 (arrived at 20): not before %d, want %d", got, 20+d)
	}
	if len(f.arrivals) != 0 {
		t.Errorf("arrivals left after applying all: %v", f.arrivals)
	}
	// A resend from a lower LSN (a new stream) starts over.
	f.noteArrival(msg(60, 6, 7))
	f.noteArrival(msg(70, 6))
	if got := f.applyNotBefore(6, d); got != 70+d {
		t.Errorf("after a resend, entry 6: not before %d, want %d", got, 70+d)
	}
}

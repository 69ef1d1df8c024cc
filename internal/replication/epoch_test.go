package replication

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestBeginEpochNeverReuses: every leadership gets an epoch above every
// one the node has seen, the start is durable before the leadership's
// first entry (a crash right after BeginEpoch, with no entry written,
// still knows the epoch is taken), and an epoch the control plane hands
// out that the node has seen is refused. The planted fault resumes the
// last epoch instead.
func TestBeginEpochNeverReuses(t *testing.T) {
	fs := vfs.NewCrashableMem()
	db := openDB(t, fs)
	for _, want := range []uint64{1, 2} {
		if e, err := BeginEpoch(db, 0, Buggify{}); err != nil || e != want {
			t.Fatalf("static BeginEpoch = %d, %v; want %d", e, err, want)
		}
	}
	if EpochFree(db, 2, Buggify{}) {
		t.Error("EpochFree(2) after leading epoch 2")
	}
	if _, err := BeginEpoch(db, 2, Buggify{}); !errors.Is(err, ErrEpochUsed) {
		t.Errorf("BeginEpoch(2) again: %v, want ErrEpochUsed", err)
	}
	if err := db.ObserveEpoch(4); err != nil {
		t.Fatal(err)
	}
	if _, err := BeginEpoch(db, 4, Buggify{}); !errors.Is(err, ErrEpochUsed) {
		t.Errorf("BeginEpoch(4) after observing 4: %v, want ErrEpochUsed", err)
	}
	if e, err := BeginEpoch(db, 6, Buggify{}); err != nil || e != 6 {
		t.Fatalf("BeginEpoch(6) = %d, %v", e, err)
	}

	// Crash now: nothing of epoch 6 is in the log.
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	db2 := openDB(t, crashed)
	defer db2.Close()
	if got := db2.Epoch(); got != 6 {
		t.Fatalf("after a crash the node has seen epoch %d, want 6", got)
	}
	if !EpochFree(db2, 7, Buggify{}) || EpochFree(db2, 6, Buggify{}) {
		t.Error("EpochFree after the crash: 7 should be free and 6 not")
	}
	bug := Buggify{LeaderResumesEpoch: true}
	if !EpochFree(db2, 6, bug) {
		t.Error("planted: EpochFree(6) should let the node resume its epoch")
	}
	if e, err := BeginEpoch(db2, 0, bug); err != nil || e != 6 {
		t.Errorf("planted: BeginEpoch = %d, %v; want the resumed 6", e, err)
	}
	if e, err := BeginEpoch(db2, 0, Buggify{}); err != nil || e != 7 {
		t.Errorf("BeginEpoch after the crash = %d, %v; want 7", e, err)
	}
	db.Close()
}

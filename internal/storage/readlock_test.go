package storage

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// TestReadLockSeesBatchesWhole: while a read holds ReadLock, an Apply
// (here: a hash replaced by a new version, the shape of a move) does not
// commit, so the read's metadata row and element rows come from the same
// applied state; once the read lets go, the Apply completes. Without the
// lock the Apply commits within the read and hashDump shows the change
// before the unlock.
func TestReadLockSeesBatchesWhole(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	defer d.Close()
	first := entry(1, 1, hmeta("h", 1, 1), hput("h", 1, "f", "old"))
	mustAppend(t, d, first)
	mustApply(t, d, first)
	before := hashDump(t, d, "h")

	second := entry(1, 2,
		keyspace.DeleteOp([]byte("h"), keyspace.Value{Type: keyspace.TypeHash, Version: 1}),
		hmeta("h", 2, 1), hput("h", 2, "f", "new"))
	mustAppend(t, d, second)
	unlock := d.ReadLock()
	applied := make(chan error, 1)
	go func() { applied <- d.Apply([]logrec.Entry{second}) }()
	// The Apply must not get in while the read runs: for a bounded time
	// (nothing can happen here if the lock holds), the read sees the
	// state before it, whole.
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) {
		if got := hashDump(t, d, "h"); got != before {
			unlock()
			t.Fatalf("under ReadLock the hash changed from %s to %s: an Apply committed inside a read", before, got)
		}
		select {
		case err := <-applied:
			unlock()
			t.Fatalf("Apply returned (%v) while a read held ReadLock", err)
		default:
		}
	}
	unlock()
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	if got, want := hashDump(t, d, "h"), "hash v2 n1 [f=new]"; got != want {
		t.Fatalf("after the read: %s, want %s", got, want)
	}
}

package replication

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/commit"
)

// TestFollowerCachesOnlyWhatItReads: a follower's applies fill its row
// cache with nothing (its writes are seldom read back: an empty cache
// costs each write a probe of an empty table, not a row's copy), yet a
// row one of its readers cached is kept up to date by them, and the same
// data led again fills the cache as its leader's applies write.
func TestFollowerCachesOnlyWhatItReads(t *testing.T) {
	l := newLeader(t, 1, commit.Mode{Kind: commit.Async}, nil)
	f := newFollowerNode(t, "f1", vfs.NewMem(), l.dialer)
	waitConnected(t, l, 1)
	writes(t, l, "k", 50)
	waitConverged(t, l, f)
	if st := f.db.RowCacheStats(); st.Rows != 0 {
		t.Fatalf("the follower cached %d rows its applies wrote, want none: %+v", st.Rows, st)
	}
	if st := l.db.RowCacheStats(); st.Rows < 50 {
		t.Fatalf("the leader cached %d rows of the 50 it wrote: %+v", st.Rows, st)
	}
	// A row the follower's reader fetched is cached, and a later write
	// replaces it there: the next read hits and sees the new value.
	if v, ok := get(t, f.db, "k7"); !ok || v != "value-k-7" {
		t.Fatalf("follower read k7 = %q, %v", v, ok)
	}
	propose(t, l, putExec("k7", "new"))
	waitConverged(t, l, f)
	before := f.db.RowCacheStats()
	if v, ok := get(t, f.db, "k7"); !ok || v != "new" {
		t.Fatalf("follower read k7 after a write = %q, %v; want new", v, ok)
	}
	if st := f.db.RowCacheStats(); st.Hits != before.Hits+1 || st.Rows != 1 {
		t.Fatalf("the read row was not updated in the cache: %+v, before %+v", st, before)
	}

	// A leader on data a follower had: its applies fill again.
	fs := vfs.NewMem()
	db := openDB(t, fs)
	NewFollower(FollowerConfig{DB: db, NodeID: "was-follower", Dial: l.dialer, Logger: testLogger(t, "was-follower")})
	l2 := startLeader(t, fs, db, 1, commit.Mode{Kind: commit.Async}, nil)
	for i := range 5 {
		propose(t, l2, putExec(fmt.Sprintf("x%d", i), "v"))
	}
	if st := db.RowCacheStats(); st.Rows < 5 {
		t.Fatalf("a leader on a follower's data cached %d of its 5 writes: %+v", st.Rows, st)
	}
}

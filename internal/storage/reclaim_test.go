package storage

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
)

// TestDropGivesSpaceBack: a DEL of a big collection is one range delete,
// and with no writes after it the disk its rows held comes back (the
// reclaimer compacts the span), while a small drop costs no compaction.
func TestDropGivesSpaceBack(t *testing.T) {
	fs := vfs.NewMem()
	d, err := Open(dir, Options{FS: fs, CacheBytes: 1 << 20, ReclaimBytes: 256 << 10, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	value := func() string { // incompressible, so the disk figure is the data's
		b := make([]byte, 100)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return string(b)
	}
	const fields = 20000
	var es []logrec.Entry
	lsn := uint64(1)
	es = append(es, entry(1, lsn, hmeta("big", 1, fields), hmeta("small", 1, 1), hput("small", 1, "f", "v")))
	for i := 0; i < fields; i += 1000 {
		lsn++
		ops := make([]logrec.Op, 0, 1000)
		for j := i; j < i+1000; j++ {
			ops = append(ops, hput("big", 1, fmt.Sprintf("f%06d", j), value()))
		}
		es = append(es, entry(1, lsn, ops...))
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if err := d.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	lo, hi := keyspace.SubSpan([]byte("big"), 1)
	usage := func() uint64 {
		u, err := d.pdb.EstimateDiskUsage(lo, hi)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	before := usage()
	if before < fields*100 {
		t.Fatalf("the hash's rows hold %d bytes on disk, want at least %d", before, fields*100)
	}

	drop := func(key string) {
		lsn++
		e := entry(1, lsn, keyspace.DeleteOp([]byte(key), keyspace.Value{Type: keyspace.TypeHash, Version: 1}))
		mustAppend(t, d, e)
		mustApply(t, d, e)
	}
	drop("small")
	drop("big")
	compacted := func() int {
		d.reclaim.mu.Lock()
		defer d.reclaim.mu.Unlock()
		return d.reclaim.compacted
	}
	// The count moves just after the compaction returns, so both are
	// waited for.
	testutil.Eventually(t, "the dropped hash's space back", 10*time.Second, func() (bool, string) {
		u := usage()
		return u < before/10 && compacted() > 0, fmt.Sprintf("%d bytes in its span, %d before the DEL; %d spans compacted", u, before, compacted())
	})
	if compacted := compacted(); compacted != 1 {
		t.Fatalf("%d spans compacted, want 1 (the big hash's; the small one is left to Pebble)", compacted)
	}
}

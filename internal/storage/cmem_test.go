package storage

import (
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
)

// TestFlushTrimsTheAllocator: when Pebble has flushed a memtable (freed
// outside the Go heap), the C allocator is trimmed, so what Pebble freed
// leaves the RSS. Fails with the event listener not installed.
func TestFlushTrimsTheAllocator(t *testing.T) {
	trimmed := make(chan struct{}, 1)
	mallocTrim = func() (bool, time.Duration) {
		select {
		case trimmed <- struct{}{}:
		default:
		}
		return true, time.Millisecond
	}
	defer func() { mallocTrim = cMallocTrim }()
	d := open(t, vfs.NewMem())
	closed := false
	defer func() {
		if !closed {
			d.Close()
		}
	}()
	es := []logrec.Entry{entry(1, 1, put("a", "1"), put("b", "2"))}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	select {
	case <-trimmed:
		t.Fatal("trimmed before any flush or compaction")
	default:
	}
	if err := d.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-trimmed:
	case <-time.After(10 * time.Second):
		t.Fatal("no trim within 10 s of a flush")
	}
	// At most one trim a second: the close ends the pause after the first.
	closed = true
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if n, r, ns := d.trim.trims.Load(), d.trim.released.Load(), d.trim.nanos.Load(); n != 1 || r != 1 || ns != int64(time.Millisecond) {
		t.Errorf("stats after one trim: %d trims, %d released, %d ns", n, r, ns)
	}
}

// TestReadsTrimTheAllocator: a read of everything (a digest) churns
// Pebble's block cache, and the allocator is trimmed after it; a kick that
// comes during the pause after a trim gets one more trim after the pause
// (what the last reads freed goes too). Fails with Digest's kick removed,
// or with kicks during the pause dropped.
func TestReadsTrimTheAllocator(t *testing.T) {
	trimmed := make(chan struct{}, 4)
	mallocTrim = func() (bool, time.Duration) {
		trimmed <- struct{}{}
		return false, 0
	}
	defer func() { mallocTrim = cMallocTrim }()
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := []logrec.Entry{entry(1, 1, put("a", "1"), put("b", "2"))}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	wait := func(what string) {
		t.Helper()
		select {
		case <-trimmed:
		case <-time.After(10 * time.Second):
			t.Fatalf("no trim within 10 s of %s", what)
		}
	}
	if _, _, err := d.Digest(); err != nil {
		t.Fatal(err)
	}
	wait("a digest")
	d.trim.kick() // during the pause
	wait("a kick during the pause after a trim")
}

// TestSettledAfterTheLastTrim: once a burst's last trim is a trimInterval
// old with no kick since, OnSettled's function is called, once; kicks
// during the burst do not call it. Fails with the call made after every
// trim, or never.
func TestSettledAfterTheLastTrim(t *testing.T) {
	trimmed := make(chan struct{}, 16)
	mallocTrim = func() (bool, time.Duration) {
		trimmed <- struct{}{}
		return false, 0
	}
	defer func() { mallocTrim = cMallocTrim }()
	// A trimmer of its own: a DB's gets kicks from Pebble's own work.
	d := &DB{trim: newTrimmer()}
	defer d.trim.close()
	settled := make(chan struct{}, 16)
	d.OnSettled(func() { settled <- struct{}{} })
	d.trim.kick()
	<-trimmed
	d.trim.kick() // during the pause: the burst goes on
	select {
	case <-trimmed:
	case <-time.After(10 * time.Second):
		t.Fatal("no second trim")
	}
	if len(settled) != 0 {
		t.Fatal("settled while the burst went on")
	}
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("not settled within 10 s of the last trim")
	}
	if n := d.trim.trims.Load(); n != 2 {
		t.Fatalf("%d trims, want 2", n)
	}
	if len(settled) != 0 {
		t.Fatal("settled twice for one burst")
	}
}

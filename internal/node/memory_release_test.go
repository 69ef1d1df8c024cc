package node

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestHeapReleaseAfterBurst: a settled burst returns the heap when it holds
// at least releaseMinBytes beyond what is live, not when it holds less, and
// not again within releaseEvery, but at its end. Fails with either
// condition left out, or with the release in the window dropped.
func TestHeapReleaseAfterBurst(t *testing.T) {
	now := time.Unix(1000, 0)
	slack := uint64(releaseMinBytes)
	var later []func()
	h := &heapRelease{now: func() time.Time { return now }, slack: func() uint64 { return slack },
		after: func(d time.Duration, f func()) { later = append(later, f) }}
	h.release = func() { slack = 0 }
	h.settled()
	if h.count != 1 || slack != 0 {
		t.Fatalf("after a burst that left %d bytes: %d releases", releaseMinBytes, h.count)
	}
	slack = releaseMinBytes - 1
	now = now.Add(releaseEvery)
	h.settled()
	if h.count != 1 {
		t.Fatalf("released with %d bytes to give back", slack)
	}
	slack = 64 << 20
	now = now.Add(time.Second)
	h.settled() // 11 s after the first release
	if h.count != 2 {
		t.Fatalf("%d releases, want 2", h.count)
	}
	slack = 64 << 20
	now = now.Add(releaseEvery - time.Millisecond)
	h.settled()
	h.settled() // a second burst in the same window arms no second timer
	if h.count != 2 {
		t.Fatal("released twice within releaseEvery")
	}
	// The release skipped for the rate waits for the window's end.
	if len(later) != 1 {
		t.Fatalf("%d releases waiting, want 1", len(later))
	}
	now = now.Add(time.Millisecond)
	later[0]()
	if h.count != 3 || slack != 0 {
		t.Fatalf("%d releases after the window, want 3", h.count)
	}
}

// TestHeapSlackSeesGarbage: the runtime's figures the release is judged by
// show the garbage a burst leaves (no collection runs meanwhile: one would
// make it free pages, which the scavenger may return at any moment).
func TestHeapSlackSeesGarbage(t *testing.T) {
	runtime.GC()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for range 64 << 10 { // 64 MiB of 1 KiB objects, dropped at once
		sink = make([]byte, 1024)
	}
	sink = nil
	if s := heapSlack(); s < releaseMinBytes {
		t.Fatalf("heap slack %d bytes after dropping 64 MiB", s)
	}
}

// sink keeps the compiler from allocating on the stack.
var sink []byte

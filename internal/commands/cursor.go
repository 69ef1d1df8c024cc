package commands

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
)

// CursorTable maps SCAN cursor ids to the key a scan resumes from.
//
// A cursor must be a decimal uint64 (clients such as go-redis parse it as
// one), so it cannot carry an arbitrary resume key itself: the table keeps
// the key and hands out an id. The table is bounded: it holds at most
// capacity cursors and forgets the oldest first (a ring), so a client that
// comes back after many other scans gets ErrInvalidCursor and must start
// over. A cursor stays valid after use until it is evicted, so a client may
// retry a page.
//
// Ids start at a random 63-bit offset per table and then increase: a
// cursor from another node or from before a restart is almost surely
// unknown (ErrInvalidCursor), rather than silently resuming someone else's
// scan. Id 0 is never issued; it means "start" and "done".
//
// A CursorTable is safe for concurrent use.
type CursorTable struct {
	mu    sync.Mutex
	next  uint64
	ring  []cursorEntry // ring[i] holds id base+k for k ≡ i (mod len)
	byID  map[uint64]int
	head  int // the slot the next Put overwrites
	count int
}

type cursorEntry struct {
	id  uint64
	key []byte
}

// NewCursorTable returns a table holding up to capacity cursors
// (at least 1).
func NewCursorTable(capacity int) *CursorTable {
	capacity = max(capacity, 1)
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	// Keep the top bit clear so ids never wrap to 0 in practice.
	start := binary.LittleEndian.Uint64(b[:])>>1 | 1
	return &CursorTable{
		next: start,
		ring: make([]cursorEntry, capacity),
		byID: make(map[uint64]int, capacity),
	}
}

// Put stores the resume key (which the table now owns) and returns its
// new cursor id, evicting the oldest cursor if the table is full.
func (t *CursorTable) Put(key []byte) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	id := t.next
	t.next++
	if t.next == 0 {
		t.next = 1
	}
	slot := &t.ring[t.head]
	if t.count == len(t.ring) {
		delete(t.byID, slot.id)
	} else {
		t.count++
	}
	*slot = cursorEntry{id: id, key: key}
	t.byID[id] = t.head
	t.head = (t.head + 1) % len(t.ring)
	return id
}

// Get returns the resume key of cursor id. The caller must not modify it.
func (t *CursorTable) Get(id uint64) ([]byte, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	i, ok := t.byID[id]
	if !ok {
		return nil, false
	}
	return t.ring[i].key, true
}

// Len returns the number of cursors held.
func (t *CursorTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

// Package rowcache is a bounded in-memory cache of a keyspace's stored
// rows, in front of an LSM point lookup, for storage's data reads.
//
// A point lookup in Pebble costs several microseconds (a skiplist descent
// per memtable, then index, bloom and data blocks); a hash lookup here
// costs a fraction of one. Readers fill it with what they fetched, and
// writers put the rows they wrote (write-through), so a key just written
// reads from memory. A row may be empty: the owner can cache "no such key"
// that way, under the same promise.
//
// # Promise: never a stale row
//
// Once Put(key, row) or Invalidate(key) has returned, no Get returns a
// row cached before it. The owner must call them after the new row is
// readable in the store below, and a reader that misses must take the
// Token Get returns before it reads the store and hand it to Fill: Fill
// drops the row if any Put, Invalidate or Clear touched the key's shard
// since the token was taken, because the row it read may be the one that
// was replaced.
//
//	reader:  _, ok, t := c.Get(key); if !ok { row := store.Get(key); c.Fill(key, row, t) }
//	writer:  store.Commit(batch); c.Put(key, newRow)
//
// If the reader's store read saw the old row, the writer's Put came after
// the Token and Fill drops it; if the Fill came first, the Put replaces
// it. The same holds for InvalidateGroup: a Token of a grouped key holds
// its group's generation too, and Fill drops the row if it moved. A Get between the writer's commit and its Put may return the old
// row: that is the writer not having finished, and storage reports the
// write applied only after the Put.
//
// # Bounds and admission
//
// The cache is split into shards by key hash, each with a mutex, a map
// and its share of the byte budget. An entry is charged what it really
// costs in the Go heap: its one allocation (key and row together, rounded
// up to the allocator's size class) and its map slot, with the map's
// slack for its load factor (TestChargeIsTheHeapCost measures it). When a
// Fill would exceed a shard's share, entries are evicted in the map's
// iteration order, which Go randomises: random replacement, as Redis's
// allkeys-random. Rows bigger than an eighth of a shard's share are not
// cached.
//
// Readers admit rows; writers only update: a Put replaces the key's
// cached row, and caches a row not cached before only into room the
// shard has, never evicting for it. So a bulk load of keys nobody reads
// fills at most the free budget and pushes out no row a reader fetched,
// while a key written and then read soon after (while the cache has
// room) is still read from memory. A writer whose rows are seldom read
// soon after (a follower) calls Update instead, which admits nothing: it
// only replaces a row a reader cached.
package rowcache

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
)

const (
	shardCount = 64
	// groupSlots is the number of group generation counters (8 KiB).
	groupSlots = 1024
	// slotBytes is a map entry's cost beside its allocation: the slot (an
	// 8-byte hash and a 24-byte slice header, and a control byte) divided
	// by the map's load factor, which swings between 7/16 and 7/8 as it
	// grows: ~53-88 bytes measured, 72 on average.
	slotBytes = 72
)

// Cache is safe for concurrent use. The zero value is not usable; see New.
type Cache struct {
	seed       maphash.Seed
	shardBytes int64
	// hash is maphash with seed; tests replace it to make keys collide.
	hash   func(key []byte) uint64
	shards [shardCount]shard
	// group is the length of key's group prefix, 0 for a key in none.
	group func(key []byte) int
	// groups are the group generation counters (see "Groups"). A counter
	// only grows; it is written under no shard's lock, so every check of
	// one that must not miss a bump holds the shard lock of the key and
	// reads the counter after taking it.
	groups [groupSlots]atomic.Uint64
}

// shard maps a key's 64-bit hash to its entry, one allocation:
//
//	uvarint(len(key)) | key | tag (1: bit 0 set when the row exists) | gen (8, a grouped key's) | row
//
// Two keys with one hash share a slot: each Get compares the key, so one
// of them simply misses.
type shard struct {
	mu    sync.Mutex
	rows  map[uint64][]byte
	bytes int64
	// gen counts invalidations: a Token is the gen it was taken at.
	gen uint64
	// hits and misses are counted under mu.
	hits, misses uint64
}

// Token is what a reader's store read is checked against: the key's
// shard's invalidation count and, for a grouped key, its group's
// generation, taken before the read.
type Token struct{ shard, group uint64 }

// New returns a cache holding up to maxBytes of keys and rows. maxBytes
// <= 0 gives a cache that holds nothing (every Get misses).
func New(maxBytes int64) *Cache {
	return NewGrouped(maxBytes, func([]byte) int { return 0 })
}

// NewGrouped is New with groups (see "Groups"): group returns the length
// of key's group prefix, 0 when key is in no group. It must give one key
// the same answer every time.
func NewGrouped(maxBytes int64, group func(key []byte) int) *Cache {
	c := &Cache{seed: maphash.MakeSeed(), shardBytes: max(maxBytes, 0) / shardCount, group: group}
	c.hash = func(key []byte) uint64 { return maphash.Bytes(c.seed, key) }
	for i := range c.shards {
		c.shards[i].rows = make(map[uint64][]byte)
	}
	return c
}

func (c *Cache) locate(key []byte) (*shard, uint64) {
	h := c.hash(key)
	return &c.shards[h%shardCount], h
}

// groupGen is the counter of key's group, nil for a key in none.
func (c *Cache) groupGen(key []byte) *atomic.Uint64 {
	n := c.group(key)
	if n <= 0 {
		return nil
	}
	return &c.groups[maphash.Bytes(c.seed, key[:n])%groupSlots]
}

// lookupLocked returns key's row if the shard holds it (nil: cached as
// no such row), for a grouped key only while gen (its group's counter)
// is what it was when the row was stored; an entry of an older
// generation is removed. The caller holds s.mu.
func (s *shard) lookupLocked(h uint64, key []byte, gen *atomic.Uint64) ([]byte, bool) {
	e, ok := s.rows[h]
	if !ok {
		return nil, false
	}
	n, w := binary.Uvarint(e)
	if int(n) != len(key) || !bytes.Equal(e[w:w+len(key)], key) {
		return nil, false
	}
	at := w + len(key)
	tag := e[at]
	at++
	if gen != nil {
		if binary.BigEndian.Uint64(e[at:]) != gen.Load() {
			delete(s.rows, h)
			s.bytes -= cost(len(e))
			return nil, false
		}
		at += 8
	}
	if tag&tagFound == 0 {
		return nil, true
	}
	return e[at:len(e):len(e)], true
}

const tagFound = 1

// Get returns the cached row of key, which the caller must not modify
// (ok: the cache knows the key; a nil row: it has no row), and the token
// to Fill with on a miss.
func (c *Cache) Get(key []byte) (row []byte, ok bool, t Token) {
	s, h := c.locate(key)
	gen := c.groupGen(key)
	s.mu.Lock()
	row, ok = s.lookupLocked(h, key, gen)
	if ok {
		s.hits++
	} else {
		s.misses++
	}
	t.shard = s.gen
	if gen != nil {
		t.group = gen.Load()
	}
	s.mu.Unlock()
	return row, ok, t
}

// Peek returns the cached row of key, which the caller must not modify,
// without counting a hit or a miss: for a writer that wants the row it is
// about to replace, not for reads.
func (c *Cache) Peek(key []byte) (row []byte, ok bool) {
	s, h := c.locate(key)
	gen := c.groupGen(key)
	s.mu.Lock()
	row, ok = s.lookupLocked(h, key, gen)
	s.mu.Unlock()
	return row, ok
}

// Fill caches row for key (nil: no such row) unless the key's shard or
// group was changed since t was taken, evicting others if the shard is
// full. The cache keeps its own copy of key and row.
func (c *Cache) Fill(key, row []byte, t Token) {
	if !c.Cacheable(len(key), len(row)) {
		return
	}
	s, h := c.locate(key)
	gen := c.groupGen(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != t.shard {
		return
	}
	var g uint64
	if gen != nil {
		// Read under the shard lock, after the shard check: a bump
		// after this is seen by the entry's next lookup.
		if g = gen.Load(); g != t.group {
			return
		}
	}
	c.storeLocked(s, h, entry(key, row, gen != nil, g))
}

// GroupToken is a Token for every key of one group at once, for a reader
// that scans a group's rows from the store and so does not know their
// keys before it reads them (LRANGE of a list's elements): each shard's
// invalidation count and the group's generation, taken before the scan.
// FillGroup holds a row to the count of its key's shard, so a Put,
// Invalidate or Clear of any key of that shard since the token drops the
// row, as it would drop a Fill with that key's own Token.
type GroupToken struct {
	shards [shardCount]uint64
	slot   int // the group's counter
	group  uint64
}

// GroupToken returns the token of the group whose prefix is prefix (as
// NewGrouped's group function cuts it), to take before reading the
// group's rows from the store. It takes every shard's lock in turn.
func (c *Cache) GroupToken(prefix []byte) *GroupToken {
	t := &GroupToken{slot: int(maphash.Bytes(c.seed, prefix) % groupSlots)}
	// The group's counter first: a bump after it is seen by FillGroup,
	// and a shard count read after it is at least as new.
	t.group = c.groups[t.slot].Load()
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		t.shards[i] = s.gen
		s.mu.Unlock()
	}
	return t
}

// FillGroup is Fill for a row read under a GroupToken: it caches row for
// key unless key is in another group than t's, or key's shard or group
// changed since t was taken.
func (c *Cache) FillGroup(key, row []byte, t *GroupToken) {
	if !c.Cacheable(len(key), len(row)) {
		return
	}
	n := c.group(key)
	if n <= 0 || int(maphash.Bytes(c.seed, key[:n])%groupSlots) != t.slot {
		return
	}
	s, h := c.locate(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != t.shards[h%shardCount] {
		return
	}
	// Read under the shard lock, after the shard check, as Fill does.
	g := c.groups[t.slot].Load()
	if g != t.group {
		return
	}
	c.storeLocked(s, h, entry(key, row, true, g))
}

// Cacheable reports whether a row of rowLen bytes under a key of keyLen
// bytes would be cached (a caller can skip building a row that would not).
func (c *Cache) Cacheable(keyLen, rowLen int) bool {
	return cost(entryLen(keyLen, rowLen, true)) <= c.shardBytes/8
}

// Put records that key's row is now row (nil: a write deleted it; a
// write committed it): it makes every Token of the key's shard taken
// before now stale, and replaces the key's cached row. A key not cached
// is cached only if the shard has room for it without evicting (see
// "Bounds and admission"); a row too big to cache drops the old one. The
// cache keeps its own copy of key and row.
func (c *Cache) Put(key, row []byte) {
	if !c.Cacheable(len(key), len(row)) {
		c.Invalidate(key)
		return
	}
	s, h := c.locate(key)
	gen := c.groupGen(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	// One map probe finds what the slot holds: a key not cached that
	// would not fit costs no allocation, and a cached one is replaced by
	// assigning over its slot (no delete and fresh insert, two more
	// probes of a table that mostly misses the CPU's caches: under a
	// follower's writes the probes were a seventh of its CPU).
	old, cached := s.rows[h]
	size := cost(entryLen(len(key), len(row), gen != nil))
	if cached {
		s.bytes -= cost(len(old))
	}
	if s.bytes+size > c.shardBytes {
		if !cached {
			return
		}
		// A cached row that grew stays cached, within the budget.
		for k, v := range s.rows {
			if k == h {
				continue
			}
			delete(s.rows, k)
			s.bytes -= cost(len(v))
			if s.bytes+size <= c.shardBytes {
				break
			}
		}
	}
	var g uint64
	if gen != nil {
		g = gen.Load()
	}
	s.rows[h] = entry(key, row, gen != nil, g)
	s.bytes += size
}

// Update is Put for a writer whose rows nobody may read soon (a follower's
// apply): it replaces key's cached row, and makes every Token of the key's
// shard taken before now stale, as Put does, but never caches a key that
// was not cached. A cache that only readers fill then holds only what they
// fetched: a follower that serves no reads keeps it empty, and each of its
// writes costs a probe of an empty table, not a row's allocation and a
// probe that misses the CPU's caches.
func (c *Cache) Update(key, row []byte) {
	if !c.Cacheable(len(key), len(row)) {
		c.Invalidate(key)
		return
	}
	s, h := c.locate(key)
	gen := c.groupGen(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	// An entry of a dropped group generation is no cached row: the
	// lookup removes it. The slot may hold another key with the same
	// hash: it is left alone.
	if _, cached := s.lookupLocked(h, key, gen); !cached {
		return
	}
	size := cost(entryLen(len(key), len(row), gen != nil))
	s.bytes -= cost(len(s.rows[h]))
	if s.bytes+size > c.shardBytes {
		// The row grew past what the shard has: it goes rather than
		// evict what readers fetched.
		delete(s.rows, h)
		return
	}
	var g uint64
	if gen != nil {
		g = gen.Load()
	}
	s.rows[h] = entry(key, row, gen != nil, g)
	s.bytes += size
}

// InvalidateGroup drops every cached row of the group whose prefix is
// prefix (as NewGrouped's group function cuts it) and makes every Token
// of its keys taken before now stale, in O(1). Call it after the rows'
// deletion is readable in the store. The entries go as they are next
// looked up or evicted.
func (c *Cache) InvalidateGroup(prefix []byte) {
	c.groups[maphash.Bytes(c.seed, prefix)%groupSlots].Add(1)
}

// entry is key and row in one allocation (see shard).
func entry(key, row []byte, grouped bool, gen uint64) []byte {
	e := make([]byte, 0, entryLen(len(key), len(row), grouped))
	e = binary.AppendUvarint(e, uint64(len(key)))
	e = append(e, key...)
	var tag byte
	if row != nil {
		tag = tagFound
	}
	e = append(e, tag)
	if grouped {
		e = binary.BigEndian.AppendUint64(e, gen)
	}
	return append(e, row...)
}

func entryLen(keyLen, rowLen int, grouped bool) int {
	n := varintLen(keyLen) + keyLen + 1 + rowLen
	if grouped {
		n += 8
	}
	return n
}

func varintLen(n int) int {
	return (bits.Len64(uint64(n)|1) + 6) / 7
}

// cost is what an entry of n bytes holds in the heap: its allocation,
// rounded up as Go's allocator does (size classes 16 bytes apart up to
// 256, then at most 1/8 of the size apart), and its map slot.
func cost(n int) int64 {
	var alloc int
	switch {
	case n <= 8:
		alloc = 8
	case n <= 256:
		alloc = (n + 15) &^ 15
	default:
		step := 1 << (bits.Len(uint(n-1)) - 3)
		alloc = (n + step - 1) &^ (step - 1)
	}
	return int64(alloc + slotBytes)
}

// storeLocked caches entry e under hash h (a reader's Fill), replacing
// what the slot held and evicting others past the shard's budget. The
// caller holds s.mu.
func (c *Cache) storeLocked(s *shard, h uint64, e []byte) {
	size := cost(len(e))
	if old, ok := s.rows[h]; ok {
		delete(s.rows, h)
		s.bytes -= cost(len(old))
	}
	if s.bytes+size > c.shardBytes {
		for k, v := range s.rows {
			delete(s.rows, k)
			s.bytes -= cost(len(v))
			if s.bytes+size <= c.shardBytes {
				break
			}
		}
	}
	s.rows[h] = e
	s.bytes += size
}

// Invalidate removes key's row and makes every Token of its shard taken
// before now stale. Call it after the key's new row (or its deletion) is
// readable in the store.
func (c *Cache) Invalidate(key []byte) {
	s, h := c.locate(key)
	s.mu.Lock()
	s.gen++
	if old, ok := s.rows[h]; ok {
		// Another key with the same hash may hold the slot: dropping it
		// too costs it only a miss.
		delete(s.rows, h)
		s.bytes -= cost(len(old))
	}
	s.mu.Unlock()
}

// Clear removes every row and makes every Token taken before now stale
// (the store's keyspace was replaced).
func (c *Cache) Clear() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.gen++
		clear(s.rows)
		s.bytes = 0
		s.mu.Unlock()
	}
}

// Stats is what the cache holds and how it was used.
type Stats struct {
	Rows, Bytes, Hits, Misses uint64
}

// Stats sums the shards' figures.
func (c *Cache) Stats() Stats {
	var st Stats
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		st.Rows += uint64(len(s.rows))
		st.Bytes += uint64(s.bytes)
		st.Hits += s.hits
		st.Misses += s.misses
		s.mu.Unlock()
	}
	return st
}

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
// it. A Get between the writer's commit and its Put may return the old
// row: that is the writer not having finished, and storage reports the
// write applied only after the Put.
//
// # Bounds
//
// The cache is split into shards by key hash, each with a mutex, a map
// and its share of the byte budget (key + row + a fixed overhead per
// entry). When a Fill would exceed a shard's share, entries are evicted
// in the map's iteration order, which Go randomises: random replacement,
// as Redis's allkeys-random. Rows bigger than an eighth of a shard's
// share are not cached.
package rowcache

import (
	"hash/maphash"
	"sync"
)

const (
	shardCount = 64
	// entryOverhead approximates a map entry's memory beside its key and
	// row (map slot, string and slice headers).
	entryOverhead = 64
)

// Cache is safe for concurrent use. The zero value is not usable; see New.
type Cache struct {
	seed       maphash.Seed
	shardBytes int64
	shards     [shardCount]shard
}

type shard struct {
	mu    sync.Mutex
	rows  map[string][]byte
	bytes int64
	// gen counts invalidations: a Token is the gen it was taken at.
	gen uint64
	// hits and misses are counted under mu.
	hits, misses uint64
}

// Token is a shard's invalidation count, taken before a store read.
type Token uint64

// New returns a cache holding up to maxBytes of keys and rows. maxBytes
// <= 0 gives a cache that holds nothing (every Get misses).
func New(maxBytes int64) *Cache {
	c := &Cache{seed: maphash.MakeSeed(), shardBytes: max(maxBytes, 0) / shardCount}
	for i := range c.shards {
		c.shards[i].rows = make(map[string][]byte)
	}
	return c
}

func (c *Cache) shard(key []byte) *shard {
	return &c.shards[maphash.Bytes(c.seed, key)%shardCount]
}

// Get returns the cached row of key, which the caller must not modify, and
// the token to Fill with on a miss.
func (c *Cache) Get(key []byte) (row []byte, ok bool, t Token) {
	s := c.shard(key)
	s.mu.Lock()
	row, ok = s.rows[string(key)]
	if ok {
		s.hits++
	} else {
		s.misses++
	}
	t = Token(s.gen)
	s.mu.Unlock()
	return row, ok, t
}

// Peek returns the cached row of key, which the caller must not modify,
// without counting a hit or a miss: for a writer that wants the row it is
// about to replace, not for reads.
func (c *Cache) Peek(key []byte) (row []byte, ok bool) {
	s := c.shard(key)
	s.mu.Lock()
	row, ok = s.rows[string(key)]
	s.mu.Unlock()
	return row, ok
}

// Fill caches row for key unless the key's shard was changed since t was
// taken. The cache keeps its own copy of key and row.
func (c *Cache) Fill(key, row []byte, t Token) {
	size := int64(len(key) + len(row) + entryOverhead)
	if !c.Cacheable(len(key), len(row)) {
		return
	}
	s := c.shard(key)
	owned := append([]byte(nil), row...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if Token(s.gen) != t {
		return
	}
	c.storeLocked(s, key, owned, size)
}

// Cacheable reports whether a row of rowLen bytes under a key of keyLen
// bytes would be cached (a caller can skip building a row that would not).
func (c *Cache) Cacheable(keyLen, rowLen int) bool {
	return int64(keyLen+rowLen+entryOverhead) <= c.shardBytes/8
}

// Put records that key's row is now row (a write committed it): it makes
// every Token of the key's shard taken before now stale and caches the
// row, or, when the row is too big to cache, drops the old one. The cache
// keeps row itself (the writer built it for this): the caller must not
// modify it afterwards.
func (c *Cache) Put(key, row []byte) {
	size := int64(len(key) + len(row) + entryOverhead)
	if !c.Cacheable(len(key), len(row)) {
		c.Invalidate(key)
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen++
	c.storeLocked(s, key, row, size)
}

// storeLocked caches row (size bytes with key and overhead) for key,
// evicting others past the shard's budget. The caller holds s.mu.
func (c *Cache) storeLocked(s *shard, key, row []byte, size int64) {
	if old, ok := s.rows[string(key)]; ok {
		delete(s.rows, string(key))
		s.bytes -= int64(len(key) + len(old) + entryOverhead)
	}
	if s.bytes+size > c.shardBytes {
		for k, v := range s.rows {
			delete(s.rows, k)
			s.bytes -= int64(len(k) + len(v) + entryOverhead)
			if s.bytes+size <= c.shardBytes {
				break
			}
		}
	}
	s.rows[string(key)] = row
	s.bytes += size
}

// Invalidate removes key's row and makes every Token of its shard taken
// before now stale. Call it after the key's new row (or its deletion) is
// readable in the store.
func (c *Cache) Invalidate(key []byte) {
	s := c.shard(key)
	s.mu.Lock()
	s.gen++
	if old, ok := s.rows[string(key)]; ok {
		delete(s.rows, string(key))
		s.bytes -= int64(len(key) + len(old) + entryOverhead)
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

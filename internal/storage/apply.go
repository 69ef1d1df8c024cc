package storage

import (
	"bytes"
	"fmt"
	"math/bits"
	"slices"
	"sync"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/rowcache"
)

// Apply applies decoded entries, which must continue from Applied()+1 and be
// durable, to the data, and advances the applied LSN, in one batch. The
// batch is not made durable here (Pebble keeps no log: it reaches the disk
// with a memtable flush): the log already is, and a crash re-applies from
// the persisted applied LSN (the log keeps what Pebble has not made durable:
// see TruncateLogBefore). The key counts go in the same batch, so they
// stay in step with the rows across a crash.
func (d *DB) Apply(entries []logrec.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	applied, logged, counts, partial := d.applied, d.durable.LSN, d.counts, d.partial
	// Entries an AppendLogWhile appends now may be applied ahead of the
	// log (its during): the fence learns how far before any batch of
	// this Apply commits, so no flush takes one before they are durable.
	durable := max(logged, d.appendingTo)
	d.mu.Unlock()
	if last := entries[len(entries)-1].LSN; last > logged && last <= durable {
		d.fence.mu.Lock()
		d.fence.ahead = last
		d.fence.mu.Unlock()
	}
	size, ops, built := 0, 0, 0 // the rows' bytes, about; the ops; the arena's bytes
	for i := range entries {
		ops += len(entries[i].Ops)
		for j := range entries[i].Ops {
			op := &entries[i].Ops[j]
			size += len(op.Key) + len(op.Sub) + 32
			built += keyspace.RowBytes(op)
			if !chunkedPut(op) { // a chunked value goes in batches of its own
				size += len(op.Value)
			}
		}
	}
	var b *pebble.Batch
	if size > bigBatch {
		// Sized up front: a batch that grows by doubling to hold a 64 MB
		// value allocates every power of two up to twice that. To a power
		// of two: Pebble sizes the buffer for a batch's first record as
		// the power of two that holds it, and allocates that anew unless
		// the batch's buffer is as large (a 64 MB buffer was followed by a
		// 128 MB one). The pages past what the batch writes are never
		// touched. (pebble.WithInitialSizeBytes would do it exactly, but
		// the option stays with the pooled batch, and every small batch
		// after it would allocate that much.)
		b = d.pdb.NewBatchWithSize(1 << bits.Len(uint(size+4096-1)))
	} else {
		b = d.pdb.NewBatch()
	}
	w := applyWriter{b: b, rows: d.rows, d: d, counts: counts, filter: d.filters.cur.Load(), touched: make(map[string]rowState, ops), cached: make([]cachedRow, 0, ops),
		arena: keyspace.NewArena(built)}
	sc := metaScratch.Get().(*pendingMetas)
	w.metas, w.metaAt = sc.metas[:0], sc.at
	defer func() {
		if cap(w.metas) <= maxPooledMetas {
			clear(w.metas[:cap(w.metas)])
			clear(w.metaAt)
			sc.metas, sc.at = w.metas[:0], w.metaAt
			metaScratch.Put(sc)
		}
		w.b.Close()
		if w.locked { // a failed Apply after a part was committed
			d.readMu.Unlock()
		}
	}()
	for i := range entries {
		e := &entries[i]
		if e.LSN != applied+1 {
			return fmt.Errorf("storage: apply lsn %d after %d: %w", e.LSN, applied, ErrGap)
		}
		if e.LSN > durable {
			return fmt.Errorf("%w: lsn %d, durable %d", ErrNotDurable, e.LSN, durable)
		}
		w.lsn = e.LSN
		// A put's Prior is the row before the op with the entry's earlier
		// ops applied, and Apply writes rows exactly so, except for an
		// entry with a chunked string: it is written in parts, and a
		// replay after a crash between them finds the rows of the ops
		// before it already written. Such an entry reads (the leader
		// sets no Prior in one either).
		hints := !hasChunkedPut(e.Ops)
		zkey, zver, zset := zsetOf(e.Ops)
		for j := range e.Ops {
			op := &e.Ops[j]
			if hints && op.Kind == logrec.OpPut {
				w.hint = op.Prior
			}
			w.uncached = zset && op.Kind == logrec.OpSubPut && zsetIndexOp(op, zkey, zver)
			err := keyspace.ApplyIn(&w, op, w.arena)
			w.hint, w.uncached = logrec.PriorUnknown, false
			if err != nil {
				return fmt.Errorf("storage: apply lsn %d: %w", e.LSN, err)
			}
			if w.err != nil {
				return fmt.Errorf("storage: apply lsn %d: %w", e.LSN, w.err)
			}
		}
		applied = e.LSN
	}
	w.flushMeta()
	_ = w.b.Set(metaApplied, be64(applied), nil)
	_ = w.b.Set(metaKeys, w.counts.encode(), nil)
	if w.parts > 0 || partial != 0 {
		_ = w.b.Delete(metaPartial, nil) // every part is in
	}
	w.lock() // a read command sees this Apply whole or not at all
	records := uint64(w.b.Count())
	if err := w.b.Commit(noSyncWrite); err != nil {
		return fmt.Errorf("storage: apply up to lsn %d: %w", applied, err)
	}
	d.applyRecords.Add(records + w.partRecords)
	// Write-through: the rows just committed (metadata and sub-key rows,
	// under their full row keys) replace the ones the row cache holds, and
	// new rows are cached while it has room (rowcache.Put never evicts),
	// so a row just written reads from memory without a bulk load pushing
	// out what readers fetched (a metadata row's delete caches "no such
	// key"; a sub-key row's only drops it); with SetWritesFill(false)
	// only the cached rows are replaced (rowcache.Update). A range delete
	// of a collection's version drops that version's cached rows (a
	// group, InvalidateGroup, its list blocks with it); a FLUSHALL empties
	// the cache. A list element's row written or deleted drops the list
	// block of its index after its own entry is updated (listblock.go).
	if w.clearCache {
		d.rows.Clear()
	}
	// The key filters get the keys of the metadata rows written, the
	// sub-key filters the sub-key rows written, loaded after the commit
	// (keyfilter.go), and each before the row cache can show its row.
	put := d.rows.Put
	if d.writesFillNot.Load() {
		put = d.rows.Update
	}
	cur, next := d.filters.cur.Load(), d.filters.next.Load()
	subCur, subNext := d.subFilters.cur.Load(), d.subFilters.next.Load()
	var bk []byte // a list block's key (dropListBlock)
	writes := 0
	for _, c := range w.cached {
		if c.superseded {
			continue
		}
		writes++
		if c.set {
			f, n, k := cur, next, c.key[1:]
			if c.key[0] != keyspace.PrefixMeta {
				f, n, k = subCur, subNext, c.key
			}
			if f != nil {
				f.add(k)
			}
			if n != nil {
				n.add(k)
			}
		}
		switch {
		case c.group:
			d.rows.InvalidateGroup(c.key)
		case c.invalidate:
			d.rows.Invalidate(c.key)
		default:
			put(c.key, c.row)
		}
		if !c.group && c.key[0] == keyspace.PrefixSub {
			bk = d.dropListBlock(bk, c.key)
		}
	}
	d.cacheWrites.Add(uint64(writes))
	d.subFilters.added(w.chunks)
	w.locked = false
	d.readMu.Unlock()
	d.mu.Lock()
	d.applied = applied
	d.partial = 0
	d.counts = w.counts
	d.noteExpiryLocked(w.earliest)
	d.mu.Unlock()
	d.reclaim.add(w.dropped)
	d.maybeRescan(&d.filters, w.counts.Keys)
	if f := d.subFilters.cur.Load(); f != nil {
		d.maybeRescan(&d.subFilters, f.added.Load())
	}
	return nil
}

// ApplyRecords is how many records Apply has put in its Pebble batches
// since Open: every row written or deleted, every range delete, and the
// applied LSN and key counts of each batch. A figure of what each node
// writes per entry (BenchmarkSuite's rows/op).
func (d *DB) ApplyRecords() uint64 { return d.applyRecords.Load() }

// SetWritesFill says whether Apply caches the rows it writes that the row
// cache does not hold yet (while the cache has room): on, the default, for
// a leader, whose reads and whose puts' priors (PriorFromMemory) want
// what it just wrote in memory; off for a follower, whose writes are
// seldom read back soon: Apply then only replaces the rows its readers
// cached (rowcache.Update), and a follower that serves no reads keeps an
// empty cache instead of a copy of every row it writes (the write-through
// was a seventh of a follower's CPU under SET -P16, and most of its
// allocations). A row a follower's reader wants is cached by its first
// read. Either way no cached row is ever stale.
func (d *DB) SetWritesFill(on bool) { d.writesFillNot.Store(!on) }

const (
	// bigBatch: an Apply of more bytes than this sizes its batch first.
	bigBatch = 1 << 20
	// partBytes: while it writes a chunked string, Apply commits its
	// batch whenever it holds this much (a few chunks), so that no Pebble
	// buffer (the batch, its WAL record, a memtable, a flush's block)
	// holds more than that of the value. Below half a memtable, so a part
	// is never one of Pebble's large batches, which are flushed whole.
	partBytes = 1 << 20
)

// chunkedPut reports whether op is a put Apply writes in chunks.
func chunkedPut(op *logrec.Op) bool {
	return op.Kind == logrec.OpPut && len(op.Value) > keyspace.ChunkThreshold
}

// hasChunkedPut reports whether any of ops is a chunked put.
func hasChunkedPut(ops []logrec.Op) bool {
	for i := range ops {
		if chunkedPut(&ops[i]) {
			return true
		}
	}
	return false
}

// zsetOf is the key and version of the sorted set whose metadata row the
// entry's ops write, if any (the first, if several): ZADD's of a new
// member, ZINCRBY's, a ZSTORE's.
func zsetOf(ops []logrec.Op) (key []byte, version uint64, ok bool) {
	for i := range ops {
		if op := &ops[i]; op.Kind == logrec.OpMeta && keyspace.Type(op.Type) == keyspace.TypeZSet {
			return op.Key, op.Version, true
		}
	}
	return nil, 0, false
}

// zsetIndexOp reports whether op (a sub-key put) writes an index row of
// the sorted set (key, version): a sorted set's sub-key in the index
// family is one.
func zsetIndexOp(op *logrec.Op, key []byte, version uint64) bool {
	return op.Version == version && len(op.Sub) > 0 && op.Sub[0] == keyspace.ZSetIndexFamily && bytes.Equal(op.Key, key)
}

// applyWriter turns package keyspace's row writes into one Pebble batch,
// and keeps storage's own rows in step: the expiry index row of every
// metadata row with an expiry, and what the row cache gets once the batch
// is committed, and the key counts: each metadata row written or deleted
// is compared with the row it replaces.
type applyWriter struct {
	b    *pebble.Batch
	rows *rowcache.Cache
	d    *DB
	// counts are the key counts with the batch's writes so far. touched
	// holds the metadata rows this batch wrote, for a later write of the
	// same key (the batch is not readable before its commit).
	counts KeyCounts
	// filter: no key it does not hold has a metadata row (keyfilter.go);
	// nil while none is ready.
	filter  *keyFilter
	touched map[string]rowState
	err     error // the first failed read of an old row
	// arena holds the row keys and rows keyspace.ApplyIn builds for this
	// batch: Pebble copies them into the batch, the row cache copies what
	// it keeps, the filters hash them, and nothing holds them after Apply
	// returns. Its slices are never written again (keyspace.Arena), so
	// touched may key on them without a copy (count).
	arena *keyspace.Arena
	// cached: the rows for the row cache, in order, under their full row
	// keys (a nil row: no such row; a group: a sub-key prefix whose rows a
	// range delete removed). A row small enough to cache is kept as
	// written; a bigger one only invalidates.
	cached     []cachedRow
	earliest   int64  // of the index rows written, 0 if none
	flushed    bool   // a FLUSHALL: no key has an old row
	clearCache bool   // the row cache is cleared first
	dropped    []span // range deletes, for the reclaimer once committed
	// chunks: the row keys of the chunks written, for the sub-key
	// filters once committed.
	chunks [][]byte
	// lsn is the entry whose ops are being written: the version of the
	// chunks of a string it writes (SetString).
	lsn uint64
	// hint is the Prior of the put being written, for its metadata row's
	// write (prior takes it), PriorUnknown for any other op.
	hint logrec.Prior
	// uncached: the row being written is a sorted set's index row, which
	// no one reads by its key (ZSCORE and ZADD read the member row; a
	// range or a pop iterates, and an iteration reads Pebble, not the
	// row cache), so the row cache only drops any copy of it, as for a
	// row too big to keep, rather than keep one: an allocation, a map
	// insert and a locked Put per ZADD on the leader, and half the room
	// a sorted set's rows took in the cache. Set only when the entry's
	// metadata op says the key is a sorted set (zsetOf): a ZADD that
	// changes only a score writes none, and its rows are cached as before.
	uncached bool
	// locked: the writer holds readMu, from its first committed part (a
	// chunked string's) until Apply's last batch is committed and the row
	// cache updated.
	locked bool
	parts  int // batches committed before the last (tests)
	// metas: the metadata row writes (puts and deletes), and those of
	// sub-key rows (pending), not yet in the
	// batch, in order (flushMeta writes them in key order), and metaAt
	// the index of each key's latest (keyed
	// on the row key's bytes, which ApplyIn built and no one writes
	// again). A key's earlier write is dead once a later one is made:
	// the batch is not readable before its commit, so only the last write
	// of a row in a batch can be seen, and it is the only one written
	// (flushMeta). A collection written by every entry of a group (a
	// list, hash or set under LPUSH, HSET or SADD from many clients)
	// puts one metadata row in the batch per Apply, not one per entry,
	// on every node. A deletion stays even when the batch put the row
	// first: the row may have been there before the batch. flushMeta
	// runs before anything that must come after
	// them in the batch: a range delete (FLUSHALL's covers metadata
	// rows, a collection's drop its version's rows), a part's commit,
	// the applied LSN.
	metas       []pendingMeta
	metaAt      map[string]int
	partRecords uint64 // records of the parts committed (applyRecords)
}

// pendingMetas is an Apply's metas and metaAt, kept for the next Apply
// (metaScratch) so that they cost no allocation once grown: a new map and
// slice per Apply were an allocation per write on every node.
type pendingMetas struct {
	metas []pendingMeta
	at    map[string]int
}

var metaScratch = sync.Pool{New: func() any { return &pendingMetas{at: map[string]int{}} }}

// maxPooledMetas bounds the pending writes a pooled scratch was grown to
// hold: one grown by a bulk write (every field of a large HSET is a
// pending row) is dropped, not kept, since clearing its map costs by its
// size on every later Apply, and it would hold its memory.
const maxPooledMetas = 4096

// pendingMeta is a metadata row write not yet in the batch.
type pendingMeta struct {
	key, row  []byte
	del, dead bool
	// cached is the index in the writer's cached of this write's row.
	cached int
}

// putMeta takes the write of the metadata row at k (row, or a delete),
// superseding the batch's earlier write of it, if any, whose row then
// goes neither into the batch nor to the row cache: the caller appends
// this write's own cached row next. (Every metas index is dropped with
// flushMeta, before anything that truncates cached.)
func (w *applyWriter) putMeta(k, row []byte, del bool) {
	key := unsafe.String(unsafe.SliceData(k), len(k))
	if i, ok := w.metaAt[key]; ok {
		w.metas[i].dead = true
		w.cached[w.metas[i].cached].superseded = true
	}
	w.metaAt[key] = len(w.metas)
	w.metas = append(w.metas, pendingMeta{key: k, row: row, del: del, cached: len(w.cached)})
}

// flushMeta writes the live pending row writes into the batch in the
// order of their keys. Each key has one live write (putMeta), and the
// batch is applied whole, so any order leaves the same rows. In key order,
// Pebble's memtable insert (arenaskl's Inserter) finds a row whose key
// comes right after the one before it in the memtable from the splice
// that insert left, with a comparison or two instead of a search from
// the skiplist's top (about 23 at 60k rows): a group's list elements
// (LPUSH, RPUSH) and the index rows a group's ZPOPMINs delete, which are
// neighbours (BenchmarkApplyShapes: comparisons per entry LPUSH 20.1 →
// 4.6, ZPOPMIN 53.7 → 32.7; random keys, SET or ZADD, unchanged).
func (w *applyWriter) flushMeta() {
	// The live writes, compacted to the front (metas is cleared below).
	live := w.metas[:0]
	for i := range w.metas {
		if !w.metas[i].dead {
			live = append(live, w.metas[i])
		}
	}
	slices.SortFunc(live, func(a, b pendingMeta) int { return bytes.Compare(a.key, b.key) })
	for i := range live {
		m := &live[i]
		switch {
		case m.del:
			_ = w.b.Delete(m.key, nil)
		default:
			_ = w.b.Set(m.key, m.row, nil)
		}
	}
	clear(w.metas)
	w.metas = w.metas[:0]
	clear(w.metaAt)
}

// Large strings (keyspace's chunk.go).
//
// A string longer than keyspace.ChunkThreshold is written as chunk rows of
// (key, lsn) and a chunked string row naming them, in several batches: the
// ops before it in the entry go in one (so the batches keep the ops'
// order), its chunks in batches of about partBytes, and its metadata row
// in the batch after them, with the ops after it; the applied LSN only in
// the last. Crash order: a crash keeps a prefix of these batches (Pebble
// flushes its memtables in order), and every op is a blind write, so
// replaying the entry from the applied LSN (the log has it: each part
// marks the entry partly applied, metaPartial, and TruncateLogAfter will
// not drop it, storage.go) writes every row again and leaves what one
// batch would have; the chunks are at the
// entry's LSN, so the replay writes the same rows, and a prefix's chunks
// are named by no metadata row until the batch with theirs. The key
// counts go in every batch, so they stay in step with the rows committed
// (a replay compares its writes with the rows the prefix left). readMu is
// held from the first part to the last, so no read command sees a part.
// Sweep skips chunk groups of a version above the applied LSN (sweep.go):
// a part's chunks are not yet named.
//
// Chunks and versions: the chunks of a key's string are dropped (one
// range tombstone) when Apply writes its metadata row again (a SET, a DEL,
// an expiry), so DEL of a 64 MB string is O(1) and its space comes back
// through the reclaimer; and the span of (key, lsn) is cleared before
// chunks are written there, so a second chunked write of the key in the
// entry, or a collection the entry creates for the key after deleting the
// string (it gets the same version, the entry's LSN), starts empty.

// lock takes readMu unless the writer holds it.
func (w *applyWriter) lock() {
	if !w.locked {
		w.d.readMu.Lock()
		w.locked = true
	}
}

// commitPart commits the batch so far, with the key counts of its rows
// (not the applied LSN), and starts the next.
func (w *applyWriter) commitPart() {
	if w.err != nil {
		return
	}
	w.lock()
	w.flushMeta()
	_ = w.b.Set(metaKeys, w.counts.encode(), nil)
	_ = w.b.Set(metaPartial, be64(w.lsn), nil)
	w.partRecords += uint64(w.b.Count())
	if err := w.b.Commit(noSyncWrite); err != nil {
		w.err = fmt.Errorf("commit part of lsn %d: %w", w.lsn, err)
		return
	}
	w.b.Close()
	w.b = w.d.pdb.NewBatch()
	w.parts++
	if h := w.d.afterPart; h != nil {
		h(w.parts)
	}
}

// SetString writes a long string's value in chunks (see above); it
// implements keyspace.StringWriter, so it is the Set of the string's
// metadata row.
//
// The parts before the metadata row hold only chunks, which no row names
// yet: the row the string replaces (and its chunks, and the key counts'
// view of it) stays as it was until the batch that writes the new one, so
// a crash between parts leaves every key readable and counted as its
// stored row says.
func (w *applyWriter) SetString(key, value []byte, expireAtMs int64) {
	old := w.prior(keyspace.MetaKey(key))
	// Clear the span the chunks go to: an earlier chunked write of the
	// key in this entry (whose row, committed in a part, the new one
	// replaces) or the parts a crash kept of this one.
	lo, hi := keyspace.SubSpan(key, w.lsn)
	w.flushMeta() // before the range, as DeleteRange
	_ = w.b.DeleteRange(lo, hi, nil)
	w.commitPart() // the entry's rows before this op go first
	for i := uint64(0); i < keyspace.Chunks(uint64(len(value))); i++ {
		end := min(uint64(len(value)), (i+1)*keyspace.ChunkBytes)
		ck := keyspace.SubKey(key, w.lsn, keyspace.ChunkSub(uint32(i)))
		_ = w.b.Set(ck, value[i*keyspace.ChunkBytes:end], nil)
		w.chunks = append(w.chunks, ck)
		if w.b.Len() >= partBytes {
			w.commitPart()
		}
	}
	if old.chunks != w.lsn {
		w.dropChunks(key, old)
	}
	row := keyspace.AppendChunkedRow(nil, expireAtMs, w.lsn, uint64(len(value)))
	_ = w.b.Set(keyspace.MetaKey(key), row, nil)
	w.cached = append(w.cached, cachedRow{key: keyspace.MetaKey(key), row: row, set: true})
	if expireAtMs != 0 {
		_ = w.b.Set(expiryKey(expireAtMs, key), nil, nil)
		w.earliest = minExpiry(w.earliest, expireAtMs)
	}
	now := rowState{exists: true, expiring: expireAtMs != 0, chunks: w.lsn}
	w.counts = w.counts.change(old, now)
	w.touched[string(key)] = now
}

// dropChunks drops the chunks of the row a metadata write replaces, when
// it was a chunked string's.
func (w *applyWriter) dropChunks(key []byte, old rowState) {
	if old.chunks == 0 {
		return
	}
	lo, hi := keyspace.SubSpan(key, old.chunks)
	w.flushMeta() // before the range, as DeleteRange
	_ = w.b.DeleteRange(lo, hi, nil)
	w.dropped = append(w.dropped, span{lo: lo, hi: hi})
}

// pending reports whether the write of row key k waits in metas: a
// metadata row or any sub-key row (a collection's head row, field,
// member or element), every row keyspace.ApplyIn writes; only the last
// write of each goes into the batch. Besides the metadata and head rows
// that every entry writing a collection writes again, a job queue's
// element row pushed and popped within one Apply (LPUSH/BLPOP is a
// stack: under a backlog a pop takes the element a push of the same
// group put there) is then one delete, not a put and a delete.
func pending(k []byte) bool {
	return k[0] == keyspace.PrefixMeta || k[0] == keyspace.PrefixSub
}

// count moves the counts from the old metadata row at mk (a metadata row
// key) to now, and returns the old row's state. The old row is the
// batch's own write of it, else none after a FLUSHALL in the batch, else
// what the put's Prior says (logrec.Op.Prior), else none when the key
// filter does not hold the key, else the stored row.
//
// mk is a row key ApplyIn built, in the arena or an allocation of its own,
// which no one writes again: touched keys on its bytes without copying
// them (a string per metadata row written was most of the allocations of
// a SET's or a collection write's apply after the row cache's).
func (w *applyWriter) count(mk []byte, now rowState) rowState {
	old := w.prior(mk)
	w.counts = w.counts.change(old, now)
	key := mk[1:]
	w.touched[unsafe.String(unsafe.SliceData(key), len(key))] = now
	return old
}

// prior is the state of the metadata row at mk a write now replaces (see
// count). A put's Prior, when it has one and the batch has not written
// the key, saves the read: the leader said what the row is.
func (w *applyWriter) prior(mk []byte) rowState {
	key := mk[1:]
	hint := w.hint
	w.hint = logrec.PriorUnknown // the put's one metadata row write has it
	said := rowState{exists: hint != logrec.PriorNone, expiring: hint == logrec.PriorExpiring}
	// The batch's own write of the key, or a FLUSHALL before it, is the
	// old row (none after a FLUSHALL: the zero state).
	old, ok := w.touched[string(key)]
	if ok || w.flushed {
		if hint != logrec.PriorUnknown && w.d.checkPriors && old != said {
			w.failPrior(mk, hint, said, old, "this batch's write")
		}
		return old
	}
	if hint != logrec.PriorUnknown {
		if w.d.checkPriors {
			if got, err := w.d.metaRowState(mk); err != nil {
				w.failPrior(mk, hint, said, got, err.Error())
			} else if got != said {
				w.failPrior(mk, hint, said, got, "the stored row")
			}
		}
		return said
	}
	if w.filter == nil || w.filter.mayHave(key) {
		w.d.filters.reads.Add(1)
		var err error
		if old, err = w.d.metaRowState(mk); err != nil {
			if w.err == nil {
				w.err = err
			}
			return rowState{}
		}
	}
	return old
}

// failPrior (Options.CheckPriors) fails the Apply: a put's Prior said the
// row was said, and what knows (the stored row, the batch) says got.
func (w *applyWriter) failPrior(mk []byte, hint logrec.Prior, said, got rowState, knows string) {
	if w.err == nil {
		w.err = fmt.Errorf("put of %q at lsn %d says its prior row is %d (%+v); %s is %+v", mk[1:], w.lsn, hint, said, knows, got)
	}
}

// cachedRow is a row key Apply wrote, deleted or range-deleted (group),
// for the row cache and the filters once the batch is committed.
type cachedRow struct {
	key, row          []byte
	invalidate, group bool
	// superseded: a later write of the batch replaced this one (putMeta),
	// and the row cache and filters get that one only. The same metadata
	// and head rows written by every entry of a group (a list's, under a
	// job queue) made a row cache entry each, an allocation and a locked
	// Put per write on the leader.
	superseded bool
	// set: the row was written (it goes into the filters), not deleted.
	set bool
}

func (w *applyWriter) Set(k, v []byte) {
	if pending(k) {
		w.putMeta(k, v, false)
	} else {
		_ = w.b.Set(k, v, nil)
	}
	if !w.uncached && w.rows.Cacheable(len(k), len(v)) {
		if v == nil {
			v = []byte{} // a row that exists, if empty (a set member's); nil is none
		}
		w.cached = append(w.cached, cachedRow{key: k, row: v, set: true})
	} else {
		w.cached = append(w.cached, cachedRow{key: k, invalidate: true, set: true})
	}
	if k[0] != keyspace.PrefixMeta {
		return
	}
	key := k[1:]
	// keyspace.Apply makes every row it writes: it parses.
	at, _ := keyspace.RowExpiry(v)
	if at != 0 {
		_ = w.b.Set(expiryKey(at, key), nil, nil)
		w.earliest = minExpiry(w.earliest, at)
	}
	w.dropChunks(key, w.count(k, rowState{exists: true, expiring: at != 0}))
}

func (w *applyWriter) Delete(k []byte) {
	if pending(k) {
		w.putMeta(k, nil, true)
	} else {
		_ = w.b.Delete(k, nil)
	}
	if k[0] != keyspace.PrefixMeta {
		// A popped or removed element is seldom read again: its cached
		// row goes, and no "no such row" takes room in its place.
		w.cached = append(w.cached, cachedRow{key: k, invalidate: true})
		return
	}
	w.cached = append(w.cached, cachedRow{key: k})
	w.dropChunks(k[1:], w.count(k, rowState{}))
}

func (w *applyWriter) DeleteRange(lo, hi []byte) {
	w.flushMeta() // the range comes after them (FLUSHALL's covers them)
	_ = w.b.DeleteRange(lo, hi, nil)
	w.dropped = append(w.dropped, span{lo: lo, hi: hi})
	if key, ver, sub, err := keyspace.ParseSubKey(lo); err == nil && len(sub) == 0 {
		if _, end := keyspace.SubSpan(key, ver); bytes.Equal(hi, end) {
			// A collection's version (OpDrop): its cached rows go, as
			// one group of the row cache (subGroupLen).
			w.cached = append(w.cached, cachedRow{key: lo, group: true})
			return
		}
	}
	// Any other range (FLUSHALL's two, or one no op deletes today): the
	// cache is emptied once the batch commits, before the writes after
	// the range in this batch are cached.
	w.clearCache = true
	w.cached = w.cached[:0]
	if bytes.Equal(lo, keyspace.MetaLower) && bytes.Equal(hi, keyspace.MetaUpper) {
		// FLUSHALL: the expiry index goes too. Every key is gone: the
		// counts are 0, and a later write in this batch replaces no row.
		_ = w.b.DeleteRange(expiryLower, expiryUpper, nil)
		w.flushed = true
		w.counts = KeyCounts{}
		clear(w.touched)
	}
}

// noteExpiryLocked records that index rows expiring at earliest (0: none)
// or later were written. The caller holds mu and has committed them.
func (d *DB) noteExpiryLocked(earliest int64) {
	if earliest == 0 {
		return
	}
	d.expiryWrites++
	if d.nextExpiry != 0 && earliest < d.nextExpiry {
		d.nextExpiry = earliest
		// Only a key due sooner than known wakes the expiry loop: a
		// write load of later expiries (SET EX n, n alike) wakes it not
		// at all.
		select {
		case d.expiryWritten <- struct{}{}:
		default:
		}
	}
}

// minExpiry is the earlier of two expiry times, 0 meaning none.
func minExpiry(a, b int64) int64 {
	if a == 0 {
		return b
	}
	return min(a, b)
}

package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/rowcache"
)

// RowCacheStats reports the row cache's contents and hit counts.
func (d *DB) RowCacheStats() rowcache.Stats { return d.rows.Stats() }

// NextExpiry is the earliest time (Unix ms) at which ExpiredKeys may find
// a key due: a lower bound on every expiry index row's time, 0 when it is
// not known (ExpiredKeys scans and learns it), math.MaxInt64 when the
// index was empty at the last scan and nothing was written since. With
// ExpiryWritten it lets an expiry loop sleep until a key is due instead of
// polling: an idle node with no key due wakes for nothing.
func (d *DB) NextExpiry() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.nextExpiry
}

// ExpiryWritten is signalled (a buffer of one, never closed) after an
// apply or ingest wrote an expiry index row due before NextExpiry, which
// it lowered.
func (d *DB) ExpiryWritten() <-chan struct{} { return d.expiryWritten }

// ExpiredKeys returns up to limit keys whose data row expired at or before
// nowMs, removing stale index rows it passes. When no index row can be
// due yet it returns at once without reading.
func (d *DB) ExpiredKeys(nowMs int64, limit int) ([][]byte, error) {
	d.mu.Lock()
	next, writes := d.nextExpiry, d.expiryWrites
	if next > nowMs {
		d.mu.Unlock()
		return nil, nil
	}
	d.expiryScans++
	d.mu.Unlock()
	// Bounded by the whole index, not by nowMs: the first row past nowMs
	// tells when to look again.
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: expiryLower, UpperBound: expiryUpper})
	if err != nil {
		return nil, fmt.Errorf("storage: expiry scan: %w", err)
	}
	defer it.Close()
	var out [][]byte
	stale := d.pdb.NewBatch()
	defer stale.Close()
	view := keyspace.Reader{R: dbRows{d}}
	seen := int64(math.MaxInt64) // the first row not due; none: never
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		at := int64(binary.BigEndian.Uint64(k[1:9]))
		if at > nowMs {
			seen = at
			break
		}
		if len(out) == limit {
			seen = at // more are due: scan again next time
			break
		}
		key := bytes.Clone(k[9:])
		val, found, err := view.GetAny(key)
		if err != nil {
			return nil, corrupt(err)
		}
		if found && val.ExpireAtMs == at {
			out = append(out, key)
			continue
		}
		_ = stale.Delete(k, nil) // deleted, or its expiry changed since
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("storage: expiry scan: %w", err)
	}
	if stale.Len() > 0 {
		if err := stale.Commit(noSyncWrite); err != nil {
			return nil, fmt.Errorf("storage: expiry cleanup: %w", err)
		}
	}
	// The keys returned are due until the leader deletes them, which
	// writes no index row: keep scanning while any are out.
	if len(out) > 0 {
		seen = min(seen, nowMs)
	}
	d.mu.Lock()
	if d.expiryWrites == writes {
		d.nextExpiry = seen
	}
	d.mu.Unlock()
	return out, nil
}

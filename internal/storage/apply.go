package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/tandemdb/tandem/internal/logrec"
)

// Apply applies decoded entries, which must continue from Applied()+1 and be
// durable, to the data, and advances the applied LSN, in one batch. The
// batch is not synced: the log already is, and a crash re-applies from the
// persisted applied LSN (the log keeps what Pebble has not made durable:
// see TruncateLogBefore).
func (d *DB) Apply(entries []logrec.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	applied, durable := d.applied, d.durable.LSN
	d.mu.Unlock()
	b := d.pdb.NewBatch()
	defer b.Close()
	var kbuf, vbuf []byte
	var earliest int64 // of the index rows written, 0 if none
	// cached: what the row cache gets once the batch is committed (a nil
	// row: no such key). A row small enough to cache is built once, for
	// the batch and the cache; a bigger one only invalidates.
	type cachedRow struct {
		key, row   []byte
		invalidate bool
	}
	cached := make([]cachedRow, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.LSN != applied+1 {
			return fmt.Errorf("storage: apply lsn %d after %d: %w", e.LSN, applied, ErrGap)
		}
		if e.LSN > durable {
			return fmt.Errorf("%w: lsn %d, durable %d", ErrNotDurable, e.LSN, durable)
		}
		for _, op := range e.Ops {
			kbuf = append(append(kbuf[:0], prefixData), op.Key...)
			switch op.Kind {
			case logrec.OpPut:
				cacheable := d.rows.Cacheable(len(op.Key), 8+len(op.Value))
				row := vbuf[:0] // too big to cache: the reused buffer
				if cacheable {
					row = make([]byte, 0, 8+len(op.Value))
				}
				row = binary.BigEndian.AppendUint64(row, uint64(op.ExpireAtMs))
				row = append(row, op.Value...)
				_ = b.Set(kbuf, row, nil)
				if cacheable {
					cached = append(cached, cachedRow{key: op.Key, row: row})
				} else {
					vbuf = row
					cached = append(cached, cachedRow{key: op.Key, invalidate: true})
				}
				if op.ExpireAtMs != 0 {
					_ = b.Set(expiryKey(op.ExpireAtMs, op.Key), nil, nil)
					earliest = minExpiry(earliest, op.ExpireAtMs)
				}
			case logrec.OpDelete:
				_ = b.Delete(kbuf, nil)
				cached = append(cached, cachedRow{key: op.Key})
			default:
				return fmt.Errorf("storage: apply lsn %d: op kind %v: %w", e.LSN, op.Kind, logrec.ErrCorrupt)
			}
		}
		applied = e.LSN
	}
	_ = b.Set(metaApplied, be64(applied), nil)
	if err := b.Commit(noSyncWrite); err != nil {
		return fmt.Errorf("storage: apply up to lsn %d: %w", applied, err)
	}
	// Write-through: the rows just committed go to the row cache, so a key
	// just written reads from memory (a delete caches "no such key").
	for _, c := range cached {
		if c.invalidate {
			d.rows.Invalidate(c.key)
		} else {
			d.rows.Put(c.key, c.row)
		}
	}
	d.mu.Lock()
	d.applied = applied
	d.noteExpiryLocked(earliest)
	d.mu.Unlock()
	return nil
}

// noteExpiryLocked records that index rows expiring at earliest (0: none)
// or later were written. The caller holds mu and has committed them.
func (d *DB) noteExpiryLocked(earliest int64) {
	if earliest == 0 {
		return
	}
	d.expiryWrites++
	if d.nextExpiry != 0 {
		d.nextExpiry = min(d.nextExpiry, earliest)
	}
}

// minExpiry is the earlier of two expiry times, 0 meaning none.
func minExpiry(a, b int64) int64 {
	if a == 0 {
		return b
	}
	return min(a, b)
}

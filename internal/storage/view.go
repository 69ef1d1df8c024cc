package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/rowcache"
)

// View is the committed keyspace as seen at NowMs: expired keys are hidden.
type View struct {
	DB    *DB
	NowMs int64
}

var _ keyspace.View = View{}

// Get implements keyspace.View. It reads the row cache first, and fills
// it from Pebble on a miss (see package rowcache for why that is never
// stale).
func (v View) Get(key []byte) (keyspace.Value, bool, error) {
	raw, ok, token := v.DB.rows.Get(key)
	if ok && len(raw) == 0 {
		return keyspace.Value{}, false, nil
	}
	if !ok {
		kbuf := make([]byte, 0, len(key)+1)
		kbuf = append(append(kbuf, prefixData), key...)
		got, closer, err := v.DB.pdb.Get(kbuf)
		if errors.Is(err, pebble.ErrNotFound) {
			v.DB.rows.Fill(key, nil, token) // an empty row: no such key
			return keyspace.Value{}, false, nil
		}
		if err != nil {
			return keyspace.Value{}, false, fmt.Errorf("storage: get: %w", err)
		}
		defer closer.Close()
		raw = got
		if len(raw) >= 8 {
			v.DB.rows.Fill(key, raw, token)
		}
	}
	val, err := decodeValue(raw)
	if err != nil {
		return keyspace.Value{}, false, err
	}
	if val.ExpireAtMs != 0 && val.ExpireAtMs <= v.NowMs {
		return keyspace.Value{}, false, nil
	}
	val.Data = bytes.Clone(val.Data)
	return val, true, nil
}

// RowCacheStats reports the row cache's contents and hit counts.
func (d *DB) RowCacheStats() rowcache.Stats { return d.rows.Stats() }

// Scan implements keyspace.View.
func (v View) Scan(start []byte, fn func(key []byte, val keyspace.Value) bool) error {
	lower := append([]byte{prefixData}, start...)
	it, err := v.DB.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: dataUpper})
	if err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		val, err := decodeValue(it.Value())
		if err != nil {
			return err
		}
		if val.ExpireAtMs != 0 && val.ExpireAtMs <= v.NowMs {
			continue
		}
		if !fn(it.Key()[1:], val) {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	return nil
}

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
	view := View{DB: d, NowMs: 0}
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
		val, found, err := view.Get(key)
		if err != nil {
			return nil, err
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

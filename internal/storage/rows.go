package storage

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// dbRows is the committed rows as package keyspace reads them. Point
// reads go through the row cache, keyed by the full row key (so a user
// key never meets a sub-key row's key), metadata and sub-key rows alike;
// a collection version's sub-key rows are one group of the cache
// (subGroupLen), dropped whole when Apply range-deletes them.
type dbRows struct{ d *DB }

var _ keyspace.Rows = dbRows{}

// subGroupLen is the length of the prefix a sub-key row key shares with
// every row of its (key, version) (keyspace.AppendSubPrefix), the row
// cache's group; 0 for any other key.
func subGroupLen(k []byte) int {
	if len(k) == 0 || k[0] != keyspace.PrefixSub {
		return 0
	}
	_, _, sub, err := keyspace.ParseSubKey(k)
	if err != nil {
		return 0
	}
	return len(k) - len(sub)
}

// Get implements keyspace.Rows. The returned row is a copy (or an
// immutable cached row).
func (r dbRows) Get(k []byte) ([]byte, bool, error) {
	raw, ok, token := r.d.rows.Get(k)
	if ok {
		return raw, raw != nil, nil
	}
	// A row the filters do not hold is not stored (keyfilter.go): a new
	// key (INCR of a new counter), member or field (SADD, HSET, ZADD),
	// mostly. Not cached: the filter answers as fast.
	if fs := r.d.filtersOf(k); fs != nil && !fs.mayHave(k) {
		fs.spared.Add(1)
		return nil, false, nil
	}
	got, closer, err := r.d.pdb.Get(k)
	r.d.trim.kick() // Pebble's block cache churns (cmem.go)
	if errors.Is(err, pebble.ErrNotFound) {
		if k[0] == keyspace.PrefixMeta {
			// No such key. A sub-key read that finds nothing is mostly a
			// new member or field about to be written (SADD, HSET,
			// ZADD): caching its absence would cost more than it saves.
			r.d.rows.Fill(k, nil, token)
		}
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: get: %w", err)
	}
	row := append([]byte{}, got...) // never nil: an empty row exists
	closer.Close()
	if k[0] != keyspace.PrefixMeta || len(row) >= 8 {
		// A metadata row too short to parse is not cached: its reader
		// reports it, every time.
		r.d.rows.Fill(k, row, token)
	}
	return row, true, nil
}

var _ keyspace.CachedRows = dbRows{}

// Cached implements keyspace.CachedRows: a row the row cache holds (a
// hit; a key it knows absent is not ok), never a Pebble read.
func (r dbRows) Cached(k []byte) ([]byte, bool) {
	raw, ok, _ := r.d.rows.Get(k)
	return raw, ok && raw != nil
}

// IterCaching implements keyspace.CachedRows: Iter that fills the row
// cache with the first max rows it passes to fn, as a reader's point read
// fills it (admitting them, evicting others at random when the cache is
// full), under a token of their group taken before the scan, so a row a
// write replaced meanwhile is not kept (rowcache.GroupToken). lo must be
// inside one group's span (a collection version's sub-key rows); rows
// outside it are not kept.
func (r dbRows) IterCaching(lo, hi []byte, max int, fn func(k, v []byte) bool) error {
	n := subGroupLen(lo)
	if n == 0 || max <= 0 {
		return r.Iter(lo, hi, fn)
	}
	t := r.d.rows.GroupToken(lo[:n])
	kept := 0
	return r.Iter(lo, hi, func(k, v []byte) bool {
		if kept < max && bytes.HasPrefix(k, lo[:n]) {
			r.d.rows.FillGroup(k, v, t)
			kept++
		}
		return fn(k, v)
	})
}

// Iter implements keyspace.Rows.
func (r dbRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	defer r.d.trim.kick()
	return iterRows(r.d.pdb, lo, hi, fn)
}

// IterReverse implements keyspace.Rows.
func (r dbRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	defer r.d.trim.kick()
	return iterRowsReverse(r.d.pdb, lo, hi, fn)
}

type iterable interface {
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

func iterRows(src iterable, lo, hi []byte, fn func(k, v []byte) bool) error {
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	return nil
}

func iterRowsReverse(src iterable, lo, hi []byte, fn func(k, v []byte) bool) error {
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("storage: reverse scan: %w", err)
	}
	defer it.Close()
	for ok := it.Last(); ok; ok = it.Prev() {
		if !fn(it.Key(), it.Value()) {
			break
		}
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("storage: reverse scan: %w", err)
	}
	return nil
}

// View is the committed keyspace as seen at NowMs: a keyspace.Reader over
// the stored rows (expired keys are hidden).
type View struct {
	DB    *DB
	NowMs int64
}

var _ keyspace.View = View{}

func (v View) reader() keyspace.Reader { return keyspace.Reader{R: dbRows{v.DB}, NowMs: v.NowMs} }

// Get implements keyspace.View. Metadata rows come from the row cache
// when it has them (see package rowcache for why that is never stale).
// A row that does not parse is ErrCorrupt.
func (v View) Get(key []byte) (keyspace.Value, bool, error) {
	val, ok, err := v.reader().Get(key)
	return val, ok, corrupt(err)
}

// Stat implements keyspace.Statter: a chunked string's metadata without
// its chunks.
func (v View) Stat(key []byte) (keyspace.Value, bool, error) {
	val, ok, err := v.reader().Stat(key)
	return val, ok, corrupt(err)
}

// Scan implements keyspace.View.
func (v View) Scan(start []byte, fn func(key []byte, val keyspace.Value) bool) error {
	return corrupt(v.reader().Scan(start, fn))
}

// Sub implements keyspace.View.
func (v View) Sub(key []byte, version uint64, sub []byte) ([]byte, bool, error) {
	return v.reader().Sub(key, version, sub)
}

// SubScan implements keyspace.View.
func (v View) SubScan(key []byte, version uint64, start []byte, fn func(sub, val []byte) bool) error {
	return v.reader().SubScan(key, version, start, fn)
}

// SubScanReverse implements keyspace.View.
func (v View) SubScanReverse(key []byte, version uint64, end []byte, fn func(sub, val []byte) bool) error {
	return v.reader().SubScanReverse(key, version, end, fn)
}

// Rows implements keyspace.View.
func (v View) Rows() keyspace.Rows { return dbRows{v.DB} }

// Now implements keyspace.View.
func (v View) Now() int64 { return v.NowMs }

// KeyCount is the number of keys applied, from the key counts (O(1)): as
// in Redis's DBSIZE, keys whose expiry passed count until their deletion
// is applied.
func (v View) KeyCount() int64 { return v.DB.KeyCounts().Keys }

// corrupt marks a row that does not parse as storage's corruption too.
func corrupt(err error) error {
	if errors.Is(err, keyspace.ErrCorrupt) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return err
}

// NewVersion implements keyspace.View: no write is sequenced against the
// committed data itself.
func (v View) NewVersion() uint64 { return 0 }

package keyspace

import "fmt"

// Rows is stored rows, keyed as this package encodes them.
type Rows interface {
	// Get returns the row at k. The caller may keep the returned slice;
	// the implementation never modifies it afterwards.
	Get(k []byte) ([]byte, bool, error)
	// Iter calls fn for the rows in [lo, hi) in ascending key order until
	// fn returns false. The slices are valid only during the call.
	Iter(lo, hi []byte, fn func(k, v []byte) bool) error
	// IterReverse calls fn for the rows in [lo, hi) in descending key
	// order until fn returns false, reading only the rows it yields (and
	// the deleted ones between them), so that a read from the high end
	// costs what it returns. The slices are valid only during the call.
	IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error
}

// CachedRows is Rows that can answer a point read from memory alone.
// Cached returns the row at k, the one Get would return, when it is held
// in memory; ok is false when it is not (or is known absent): the caller
// then reads the store (Get, Iter). The caller may keep the row; it is
// never modified. It is for reads of many rows whose keys the caller
// knows (a list's elements, by index), which would otherwise pay an
// iterator's seek in every level of the store and a copy of each row.
//
// IterCaching is Iter over rows of one collection version (lo and hi
// within its sub-key span) that also keeps in that memory up to max of
// the rows it passes to fn, the first ones, as a point read keeps what
// it fetched: so the rows a read scanned because they were not held
// (the head of a list pushed while the memory was full) are held for the
// next read of them.
type CachedRows interface {
	Rows
	Cached(k []byte) (row []byte, ok bool)
	IterCaching(lo, hi []byte, max int, fn func(k, v []byte) bool) error
}

// Reader is the keyspace over Rows at NowMs: the one lookup and the one
// expiry rule, for storage, the leader's overlay and transactions alike.
type Reader struct {
	R     Rows
	NowMs int64
	// LSN is the entry a write command's ops will go in (NewVersion); 0
	// for reads.
	LSN uint64
}

var _ View = Reader{}

// Get implements View.
func (r Reader) Get(key []byte) (Value, bool, error) {
	v, ok, err := r.GetAny(key)
	if !ok || err != nil || Expired(v.ExpireAtMs, r.NowMs) {
		return Value{}, false, err
	}
	return v, true, nil
}

// GetAny is Get without the expiry rule: the key's metadata even when it
// has expired, for the one who deletes it.
func (r Reader) GetAny(key []byte) (Value, bool, error) {
	v, ok, err := r.StatAny(key)
	if !ok || err != nil {
		return Value{}, false, err
	}
	if chunked(v) {
		if v, err = assemble(r.R, key, v); err != nil {
			return Value{}, false, fmt.Errorf("keyspace: key %q: %w", key, err)
		}
	}
	return v, true, nil
}

// Stat is Get without a chunked string's value (chunk.go): its Value has
// Version and Size (the string's length, StrLen) and no Data. For what
// needs a key's type, expiry or length only (STRLEN, TYPE, EXISTS, the
// expiry loop's check), which then costs one row, as in Redis.
func (r Reader) Stat(key []byte) (Value, bool, error) {
	v, ok, err := r.StatAny(key)
	if !ok || err != nil || Expired(v.ExpireAtMs, r.NowMs) {
		return Value{}, false, err
	}
	return v, true, nil
}

// StatAny is Stat without the expiry rule (as GetAny).
func (r Reader) StatAny(key []byte) (Value, bool, error) {
	row, ok, err := r.R.Get(MetaKey(key))
	if !ok || err != nil {
		return Value{}, false, err
	}
	v, err := DecodeMetaRow(row)
	if err != nil {
		return Value{}, false, fmt.Errorf("keyspace: key %q: %w", key, err)
	}
	return v, true, nil
}

// Statter is a View that can Stat.
type Statter interface {
	Stat(key []byte) (Value, bool, error)
}

var _ Statter = Reader{}

// StrLen is the length of the string v, as Get or Stat returned it.
func StrLen(v Value) int64 {
	if chunked(v) {
		return int64(v.Size)
	}
	return int64(len(v.Data))
}

// Scan implements View.
func (r Reader) Scan(start []byte, fn func(key []byte, v Value) bool) error {
	var derr error
	err := r.R.Iter(MetaKey(start), MetaUpper, func(k, row []byte) bool {
		v, err := DecodeMetaRow(row)
		if err != nil {
			derr = fmt.Errorf("keyspace: key %q: %w", k[1:], err)
			return false
		}
		if Expired(v.ExpireAtMs, r.NowMs) {
			return true
		}
		if chunked(v) {
			// Read while the iteration is open: the span is another one.
			if v, err = assemble(r.R, k[1:], v); err != nil {
				derr = fmt.Errorf("keyspace: key %q: %w", k[1:], err)
				return false
			}
		}
		return fn(k[1:], v)
	})
	if derr != nil {
		return derr
	}
	return err
}

// Sub implements View.
func (r Reader) Sub(key []byte, version uint64, sub []byte) ([]byte, bool, error) {
	return r.R.Get(SubKey(key, version, sub))
}

// SubScan implements View.
func (r Reader) SubScan(key []byte, version uint64, start []byte, fn func(sub, val []byte) bool) error {
	lo, hi := subSpan(key, version, len(start))
	n := len(lo)
	return r.R.Iter(append(lo, start...), hi, func(k, v []byte) bool {
		return fn(k[n:], v)
	})
}

// SubScanReverse implements View.
func (r Reader) SubScanReverse(key []byte, version uint64, end []byte, fn func(sub, val []byte) bool) error {
	lo, hi := subSpan(key, version, len(end))
	n := len(lo)
	if end != nil {
		// Into lo's room: hi, not used, keeps its own.
		hi = append(lo[:n:n+len(end)], end...)
	}
	return r.R.IterReverse(lo, hi, func(k, v []byte) bool {
		return fn(k[n:], v)
	})
}

// Rows implements View.
func (r Reader) Rows() Rows { return r.R }

// Now implements View.
func (r Reader) Now() int64 { return r.NowMs }

// NewVersion implements View.
func (r Reader) NewVersion() uint64 { return r.LSN }

// Empty is no rows, for a keyspace that starts empty (tests, models).
type Empty struct{}

// Get implements Rows.
func (Empty) Get([]byte) ([]byte, bool, error) { return nil, false, nil }

// Iter implements Rows.
func (Empty) Iter(_, _ []byte, _ func(k, v []byte) bool) error { return nil }

// IterReverse implements Rows.
func (Empty) IterReverse(_, _ []byte, _ func(k, v []byte) bool) error { return nil }

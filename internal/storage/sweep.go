package storage

import (
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// Garbage sub-key rows.
//
// A DEL, HDEL of the last field or EXPIRE deletion of a collection drops
// its version's sub-key rows with one range tombstone (logrec.OpDrop), and
// Pebble reclaims the space in its background compactions. A write that
// replaces a collection without reading it (SET over a hash: SET does not
// read) leaves the old version's rows behind: no metadata row names that
// version any more, so nothing reads them (package keyspace), but they
// take space. Sweep removes them.
//
// Sweep's promise: every group of sub-key rows (one key's rows of one
// version) that no metadata row names when a pass starts is gone (a range
// tombstone) when the pass ends. A pass starts at most once per
// sweepIntervalMs; each call reads at most its budget of groups (one
// metadata read and one seek per group, however many rows it holds).
//
// Why it is safe beside Apply without a lock: a group is judged in a
// Pebble snapshot at applied LSN A. Versions are the LSNs of the entries
// that created them, so a live group's version is at most A (a group of a
// higher version is a chunked string's chunks committed in a part before
// its metadata row, apply.go, and is left alone); if the snapshot's
// metadata does not name it, no later entry can (a later collection gets a
// version above A, and writes go only to the version its metadata names),
// so no later write lands in the deleted span. Sweeping is local: it
// writes no log entry, and nodes sweep at different times, so Digest and
// snapshots skip garbage groups themselves (eachLiveRow).

// sweepIntervalMs is the least time between the starts of two passes.
const sweepIntervalMs = 10_000

type sweepState struct {
	cursor   []byte // where the pass in progress resumes; nil: none
	nextPass int64  // Unix ms before which no pass starts
	passes   uint64 // passes finished (tests)
}

// SweepDue is when (Unix ms) Sweep next has work: 0 while a pass is under
// way (each call continues it), else when the next pass may start.
func (d *DB) SweepDue() int64 {
	d.sweepMu.Lock()
	defer d.sweepMu.Unlock()
	if d.sweep.cursor != nil {
		return 0
	}
	return d.sweep.nextPass
}

// Sweep continues (or, when due at nowMs, starts) a pass over the sub-key
// rows, visiting at most budget groups, and returns how many garbage
// groups it removed. The removal is written unsynced: one lost to a crash
// is found by a later pass.
func (d *DB) Sweep(nowMs int64, budget int) (removed int, err error) {
	d.sweepMu.Lock()
	defer d.sweepMu.Unlock()
	st := &d.sweep
	if st.cursor == nil {
		if nowMs < st.nextPass {
			return 0, nil
		}
		st.cursor = keyspace.SubLower
	}
	defer d.trim.kick() // it read through the block cache
	snap := d.pdb.NewSnapshot()
	defer snap.Close()
	applied, err := getUint(snap, metaApplied)
	if err != nil {
		return 0, fmt.Errorf("storage: sweep: %w", err)
	}
	b := d.pdb.NewBatch()
	defer b.Close()
	visited := 0
	var gone [][]byte // the groups removed, for the row cache
	done, err := eachGroup(snap, st.cursor, func(key []byte, version uint64, live bool, next []byte) bool {
		// A version above the applied LSN is the chunks of an Apply in
		// parts whose metadata row is not committed yet (apply.go).
		if !live && version <= applied {
			lo, hi := keyspace.SubSpan(key, version)
			_ = b.DeleteRange(lo, hi, nil)
			gone = append(gone, lo)
			removed++
		}
		visited++
		if visited >= budget {
			st.cursor = next
			return false
		}
		return true
	})
	if err != nil {
		return 0, fmt.Errorf("storage: sweep: %w", err)
	}
	if b.Count() > 0 {
		if err := b.Commit(noSyncWrite); err != nil {
			return 0, fmt.Errorf("storage: sweep: %w", err)
		}
		// No metadata names these versions, so nothing reads their rows;
		// their cached ones go all the same (the cache holds what the
		// store holds, whatever the versions' rules).
		for _, lo := range gone {
			d.rows.InvalidateGroup(lo)
		}
	}
	if done {
		st.cursor = nil
		st.nextPass = nowMs + sweepIntervalMs
		st.passes++
	}
	return removed, nil
}

// eachGroup calls fn for each group of sub-key rows from start on, with
// whether src's metadata names its version and the key at which the next
// group begins, until fn returns false. done reports that it reached the
// end of the sub-key rows.
func eachGroup(src *pebble.Snapshot, start []byte, fn func(key []byte, version uint64, live bool, next []byte) bool) (done bool, err error) {
	it, err := src.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: keyspace.SubUpper})
	if err != nil {
		return false, err
	}
	defer it.Close()
	for ok := it.First(); ok; {
		key, version, _, err := keyspace.ParseSubKey(it.Key())
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		live, err := namesVersion(src, key, version)
		if err != nil {
			return false, err
		}
		_, hi := keyspace.SubSpan(key, version)
		if !fn(key, version, live, hi) {
			return false, it.Error()
		}
		ok = it.SeekGE(hi)
	}
	return true, it.Error()
}

// namesVersion reports whether key's metadata row in src names a
// collection or a chunked string of that version.
func namesVersion(src *pebble.Snapshot, key []byte, version uint64) (bool, error) {
	row, closer, err := src.Get(keyspace.MetaKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer closer.Close()
	v, err := keyspace.DecodeMetaRow(row)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return v.Version != 0 && v.Version == version, nil // a chunked string's too
}

// functionsUpper bounds the function libraries' row's span.
var functionsUpper = []byte{keyspace.PrefixFunctions + 1}

// eachLiveRow calls fn for every live row of the keyspace in src, in key
// order, and returns fn's error as it is: every metadata row, the function libraries' row, then the sub-key rows of the versions the
// metadata names. Garbage (see Sweep) is skipped, so what two nodes at the
// same applied LSN yield is equal whenever each swept.
func eachLiveRow(src *pebble.Snapshot, fn func(k, v []byte) error) error {
	var ferr error
	err := iterRows(src, keyspace.MetaLower, keyspace.MetaUpper, func(k, v []byte) bool {
		ferr = fn(k, v)
		return ferr == nil
	})
	if ferr != nil {
		return ferr
	}
	if err != nil {
		return err
	}
	// The function libraries' row ('f', between the metadata rows and the
	// sub-key rows in key order): not a key, but the node's data all the
	// same, which snapshots carry and digests cover.
	if err := iterRows(src, keyspace.FunctionsKey, functionsUpper, func(k, v []byte) bool {
		ferr = fn(k, v)
		return ferr == nil
	}); err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	// Each live group's rows are read as the group is met, with an
	// iterator of their own: memory stays bounded by one group's row.
	var ierr error
	if _, err := eachGroup(src, keyspace.SubLower, func(key []byte, version uint64, ok bool, _ []byte) bool {
		if !ok {
			return true
		}
		lo, hi := keyspace.SubSpan(key, version)
		ierr = iterRows(src, lo, hi, func(k, v []byte) bool {
			ferr = fn(k, v)
			return ferr == nil
		})
		return ierr == nil && ferr == nil
	}); err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	if ferr != nil {
		return ferr
	}
	return ierr
}

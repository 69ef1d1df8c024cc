package storage

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/keyspace"
)

// SnapshotRows are the committed rows frozen at one point (a Pebble
// snapshot): every read through them sees the same applied entries, so a
// sequence of reads (a transaction's) sees all of an entry or none of it,
// since Apply writes an entry in one Pebble batch, or in several under
// readMu, which the snapshot is taken under. Reads bypass the row
// cache, which holds the newest rows. Close releases the snapshot; reads
// after it fail.
type SnapshotRows struct{ s *pebble.Snapshot }

var _ keyspace.Rows = (*SnapshotRows)(nil)

// SnapshotRows returns the rows as applied now.
func (d *DB) SnapshotRows() *SnapshotRows { return &SnapshotRows{s: d.consistentSnapshot()} }

// Get implements keyspace.Rows.
func (r *SnapshotRows) Get(k []byte) ([]byte, bool, error) {
	got, closer, err := r.s.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: snapshot get: %w", err)
	}
	row := bytes.Clone(got)
	closer.Close()
	return row, true, nil
}

// Iter implements keyspace.Rows.
func (r *SnapshotRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	return iterRows(r.s, lo, hi, fn)
}

// IterReverse implements keyspace.Rows.
func (r *SnapshotRows) IterReverse(lo, hi []byte, fn func(k, v []byte) bool) error {
	return iterRowsReverse(r.s, lo, hi, fn)
}

// Close releases the snapshot.
func (r *SnapshotRows) Close() error { return r.s.Close() }

// Applied is the LSN of the last entry applied in the snapshot.
func (r *SnapshotRows) Applied() (uint64, error) {
	v, err := getUint(r.s, metaApplied)
	if err != nil {
		return 0, fmt.Errorf("storage: snapshot applied: %w", err)
	}
	return v, nil
}

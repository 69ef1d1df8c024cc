package storage

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// KeyCounts are INFO's keyspace figures: the keys (metadata rows, of any
// type), and those of them with an expiry. A key whose expiry passed
// counts until its deletion is applied, as in Redis, whose INFO counts
// keys not yet reaped.
type KeyCounts struct {
	Keys, Expires int64
}

// rowState is what the counts need to know of a key's metadata row, and
// the version of its chunks when it is a chunked string's (else 0), which
// Apply drops when it writes the key's metadata row again (chunk.go in
// keyspace, apply.go).
type rowState struct {
	exists, expiring bool
	chunks           uint64
}

// change is c after a key's row went from old to now.
func (c KeyCounts) change(old, now rowState) KeyCounts {
	c.Keys += b2i(now.exists) - b2i(old.exists)
	c.Expires += b2i(now.expiring) - b2i(old.expiring)
	return c
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (c KeyCounts) encode() []byte {
	return binary.BigEndian.AppendUint64(be64(uint64(c.Keys)), uint64(c.Expires))
}

// KeyCounts returns the counts of the data as applied: O(1), no read.
func (d *DB) KeyCounts() KeyCounts {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts
}

// metaRowState reads the stored metadata row at mk (keyspace.MetaKey):
// from the row cache when it holds it, else from Pebble. Only Apply calls
// it, and Apply is the only writer of metadata rows besides ingest, so the
// row read is the one the batch replaces.
func (d *DB) metaRowState(mk []byte) (rowState, error) {
	key := mk[1:]
	raw, ok := d.rows.Peek(mk)
	if !ok {
		got, closer, err := d.pdb.Get(mk)
		if errors.Is(err, pebble.ErrNotFound) {
			return rowState{}, nil
		}
		if err != nil {
			return rowState{}, fmt.Errorf("read %q for the key counts: %w", key, err)
		}
		defer closer.Close()
		raw = got
	}
	if raw == nil {
		return rowState{}, nil // cached as no such key
	}
	v, err := keyspace.DecodeMetaRow(raw)
	if err != nil {
		return rowState{}, fmt.Errorf("stored metadata of %q: %w: %w", key, ErrCorrupt, err)
	}
	st := rowState{exists: true, expiring: v.ExpireAtMs != 0}
	if keyspace.IsChunkedRow(raw) {
		st.chunks = v.Version
	}
	return st, nil
}

// CountKeys counts the keys by a scan of the metadata rows: what
// KeyCounts must equal (tests; a check of the counts).
func (d *DB) CountKeys() (KeyCounts, error) { return d.countRows() }

// PriorReads is how many reads of a key's old metadata row Apply made for
// the key counts since Open: the puts without a Prior (logrec.Op.Prior),
// the deletes and collection writes, less those the key filter spared.
func (d *DB) PriorReads() int64 { return d.filters.reads.Load() }

// PriorFromMemory is the state of the metadata row at mk (keyspace.MetaKey)
// as a put's logrec.Prior, when memory alone tells it: the row cache holds
// the row (or knows it absent), or the key filter does not hold the key.
// Otherwise, and for a chunked string's row, it is PriorUnknown: it never
// reads Pebble. The leader's sequencer calls it for the rows no unapplied
// write of its own has touched (the committed rows are then the rows as
// of its next LSN).
func (d *DB) PriorFromMemory(mk []byte) logrec.Prior {
	raw, ok := d.rows.Peek(mk)
	if !ok {
		if f := d.filters.cur.Load(); f != nil && !f.mayHave(mk[1:]) {
			return logrec.PriorNone
		}
		return logrec.PriorUnknown
	}
	return PriorOfRow(raw)
}

// PriorOfRow is a metadata row's logrec.Prior: PriorNone for nil (no
// row), PriorUnknown for a chunked string's row or one that does not
// parse (the applier reads it and reports it).
func PriorOfRow(raw []byte) logrec.Prior {
	if raw == nil {
		return logrec.PriorNone
	}
	if keyspace.IsChunkedRow(raw) {
		return logrec.PriorUnknown
	}
	at, err := keyspace.RowExpiry(raw)
	switch {
	case err != nil:
		return logrec.PriorUnknown
	case at != 0:
		return logrec.PriorExpiring
	}
	return logrec.PriorPlain
}

// recoverCounts reads the key counts, or, in a data dir from before they
// were kept, counts the metadata rows once and saves the counts
// (unsynced: if they are lost, the next Open counts again).
func (d *DB) recoverCounts() error {
	v, ok, err := d.getMeta(metaKeys)
	if err != nil {
		return err
	}
	if ok {
		if len(v) != 16 {
			return fmt.Errorf("storage: key counts of %d bytes: %w", len(v), ErrCorrupt)
		}
		d.counts = KeyCounts{Keys: int64(binary.BigEndian.Uint64(v)), Expires: int64(binary.BigEndian.Uint64(v[8:]))}
		return nil
	}
	if d.counts, err = d.countRows(); err != nil {
		return err
	}
	if d.counts.Keys > 0 {
		d.log.Info("storage: counted the keys once (a data dir from before the key counts were kept)", "keys", d.counts.Keys, "expires", d.counts.Expires)
	}
	if err := d.pdb.Set(metaKeys, d.counts.encode(), noSyncWrite); err != nil {
		return fmt.Errorf("storage: save the key counts: %w", err)
	}
	return nil
}

// countRows counts the metadata rows by a scan.
func (d *DB) countRows() (KeyCounts, error) {
	var c KeyCounts
	var derr error
	err := iterRows(d.pdb, keyspace.MetaLower, keyspace.MetaUpper, func(k, v []byte) bool {
		at, err := keyspace.RowExpiry(v)
		if err != nil {
			derr = fmt.Errorf("storage: count keys: stored metadata of %q: %w: %w", k[1:], ErrCorrupt, err)
			return false
		}
		c.Keys++
		if at != 0 {
			c.Expires++
		}
		return true
	})
	if derr != nil {
		return c, derr
	}
	if err != nil {
		return c, fmt.Errorf("storage: count keys: %w", err)
	}
	return c, nil
}

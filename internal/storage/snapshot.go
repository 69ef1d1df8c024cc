package storage

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/snapshot"
)

// Snapshot is a consistent point-in-time view of the data, taken without
// stopping writes. Position is the last entry it reflects.
type Snapshot struct {
	snap     *pebble.Snapshot
	trim     *trimmer
	Position logrec.Position
	// EstimatedBytes approximates the data size, for progress reporting.
	EstimatedBytes uint64
	Epochs         []logrec.Position
}

// NewSnapshot takes a snapshot. The caller must Close it. The log from
// Position.LSN on must be retained until the follower that receives it has
// caught up; the caller pins it.
func (d *DB) NewSnapshot() (*Snapshot, error) {
	// No truncation runs until the applied entry's epoch is read: the
	// entry stays in the log, or is the log base.
	d.logMu.Lock()
	defer d.logMu.Unlock()
	snap := d.consistentSnapshot()
	applied, err := getUint(snap, metaApplied)
	if err != nil {
		snap.Close()
		return nil, err
	}
	pos := logrec.Position{LSN: applied}
	if applied > 0 {
		base := d.LogBase()
		switch {
		case applied == base.LSN:
			// The applied entry is the log base (retention or a seed).
			pos.Epoch = base.Epoch
		case applied > base.LSN:
			if pos.Epoch, err = d.epochOf(applied); err != nil {
				snap.Close()
				return nil, fmt.Errorf("storage: snapshot at %d: %w", applied, err)
			}
		default:
			snap.Close()
			return nil, fmt.Errorf("storage: snapshot at %d: before the log base %v: %w", applied, base, ErrCorrupt)
		}
	}
	est, _ := d.pdb.EstimateDiskUsage(keyspace.MetaLower, keyspace.MetaUpper)
	if sub, err := d.pdb.EstimateDiskUsage(keyspace.SubLower, keyspace.SubUpper); err == nil {
		est += sub
	}
	var epochs []logrec.Position
	for _, s := range d.EpochHistory() {
		if s.LSN <= applied {
			epochs = append(epochs, s)
		}
	}
	return &Snapshot{snap: snap, trim: d.trim, Position: pos, EstimatedBytes: est, Epochs: epochs}, nil
}

// Each calls fn for every live row of the keyspace (package keyspace's
// metadata rows, then the sub-key rows their versions name; garbage left
// for Sweep is skipped) under its full row key, in key order. The slices
// are valid only during the call.
func (s *Snapshot) Each(fn func(key, stored []byte) error) error {
	return eachLiveRow(s.snap, fn)
}

// Close releases the snapshot.
func (s *Snapshot) Close() error {
	defer s.trim.kick() // a seed read everything through the block cache
	return s.snap.Close()
}

// BeginIngest discards the data and the log and marks the node as seeding,
// durably, so that a crash mid-ingest restarts the seed instead of serving a
// partial keyspace. Pebble goes first (the mark, the emptied data, the
// zeroed positions, flushed), then the log is emptied: a crash between
// leaves a seeding node, whose log Open empties.
func (d *DB) BeginIngest() error {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	// Readers learn of the seed before any data goes (SeedGeneration).
	d.mu.Lock()
	d.seeding = true
	d.seeds++
	d.mu.Unlock()
	b := d.pdb.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(keyspace.MetaLower, keyspace.MetaUpper, nil)
	_ = b.DeleteRange(keyspace.SubLower, keyspace.SubUpper, nil)
	_ = b.DeleteRange(keyspace.FunctionsKey, functionsUpper, nil)
	_ = b.DeleteRange(expiryLower, expiryUpper, nil)
	_ = b.Set(metaSeeding, []byte{1}, nil)
	_ = b.Set(metaApplied, be64(0), nil)
	_ = b.Delete(metaPartial, nil)
	_ = b.Set(metaKeys, KeyCounts{}.encode(), nil)
	_ = b.Set(metaLogBase, encodePosition(logrec.Position{}), nil)
	if err := d.flushed(b); err != nil {
		return fmt.Errorf("storage: begin ingest: %w", err)
	}
	// The epoch history goes after the seeding mark is durable: a crash
	// between leaves a seeding node with the old history, which the
	// seed's FinishIngest replaces (Open drops its starts past the
	// emptied log); the other order could leave a node with its log and
	// data but no epoch starts.
	err := d.changeEpochs(func(s uint64, _ []logrec.Position) (uint64, []logrec.Position, bool, error) {
		return s, nil, true, nil
	})
	if err != nil {
		return fmt.Errorf("storage: begin ingest: %w", err)
	}
	if err := d.wal.Reset(0); err != nil {
		return fmt.Errorf("storage: begin ingest: empty the log: %w", err)
	}
	d.rows.Clear()
	d.forgetRetentionFlushLocked(logrec.Position{})
	d.mu.Lock()
	d.seeding = true
	d.applied, d.partial = 0, 0
	d.counts = KeyCounts{}
	d.logBase = logrec.Position{}
	d.durable = logrec.Position{}
	d.logBytes, d.logCount = 0, 0
	d.mu.Unlock()
	return nil
}

// IngestRows writes decoded snapshot rows: package keyspace's rows under
// their full row keys (Snapshot.Each). A row that is not one is
// snapshot.ErrCorrupt. They become durable with FinishIngest. The rows of
// one seed are distinct (one snapshot's iteration, and a failed seed
// begins again with BeginIngest), so each metadata row is a new key for
// the key counts, which go in the same batch.
func (d *DB) IngestRows(rows []snapshot.Row) error {
	b := d.pdb.NewBatch()
	defer b.Close()
	var earliest int64
	d.mu.Lock()
	counts := d.counts
	d.mu.Unlock()
	for _, r := range rows {
		if err := keyspace.ValidRow(r.Key, r.Value); err != nil {
			return fmt.Errorf("storage: ingest: %w: %w", snapshot.ErrCorrupt, err)
		}
		_ = b.Set(r.Key, r.Value, nil)
		if r.Key[0] != keyspace.PrefixMeta {
			continue
		}
		at, _ := keyspace.RowExpiry(r.Value)
		if at != 0 {
			_ = b.Set(expiryKey(at, r.Key[1:]), nil, nil)
			earliest = minExpiry(earliest, at)
		}
		counts = counts.change(rowState{}, rowState{exists: true, expiring: at != 0})
	}
	_ = b.Set(metaKeys, counts.encode(), nil)
	if err := b.Commit(noSyncWrite); err != nil {
		return fmt.Errorf("storage: ingest: %w", err)
	}
	var made, subs [][]byte
	for _, r := range rows {
		if r.Key[0] == keyspace.PrefixMeta {
			made = append(made, r.Key[1:])
		} else {
			subs = append(subs, r.Key)
		}
	}
	// After the commit, before the row cache can show a row (keyfilter.go).
	d.filters.added(made)
	d.subFilters.added(subs)
	var bk []byte
	for _, r := range rows {
		d.rows.Invalidate(r.Key)
		if r.Key[0] == keyspace.PrefixSub {
			bk = d.dropListBlock(bk, r.Key)
		}
	}
	d.mu.Lock()
	d.counts = counts
	d.noteExpiryLocked(earliest)
	d.mu.Unlock()
	return nil
}

// FinishIngest makes the ingested data durable at pos: the log restarts
// after pos, and applied and durable are pos. The log is reset first, then
// Pebble gets the positions and loses the seeding mark (flushed, which makes
// every ingested row durable too): a crash between is a crash mid-seed.
func (d *DB) FinishIngest(pos logrec.Position, epochs []logrec.Position) error {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	if err := d.wal.Reset(pos.LSN); err != nil {
		return fmt.Errorf("storage: finish ingest: reset the log: %w", err)
	}
	// The snapshot's epochs before the seeding mark goes: a crash between
	// is a crash mid-seed, whose next seed replaces them.
	err := d.changeEpochs(func(s uint64, _ []logrec.Position) (uint64, []logrec.Position, bool, error) {
		return max(s, pos.Epoch), append([]logrec.Position(nil), epochs...), true, nil
	})
	if err != nil {
		return fmt.Errorf("storage: finish ingest: %w", err)
	}
	b := d.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(metaApplied, be64(pos.LSN), nil)
	_ = b.Set(metaLogBase, encodePosition(pos), nil)
	_ = b.Delete(metaSeeding, nil)
	if err := d.flushed(b); err != nil {
		return fmt.Errorf("storage: finish ingest: %w", err)
	}
	d.forgetRetentionFlushLocked(pos)
	d.mu.Lock()
	d.seeding = false
	d.applied = pos.LSN
	d.logBase = pos
	d.durable = pos
	d.mu.Unlock()
	return nil
}

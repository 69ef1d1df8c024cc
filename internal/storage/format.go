package storage

import (
	"errors"
	"fmt"
	"os"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tandemdb/tandem/internal/dataformat"
	"github.com/tandemdb/tandem/internal/logrec"
)

// The data-dir format gate (package dataformat has the marker, the
// formats and the rule). Open reads the marker before Pebble or the log
// touch the dir and refuses a newer format untouched; once Pebble is open,
// openFormat recognises a dir without a marker, refuses what this build
// cannot read, runs the migration steps and writes the marker last.

// ErrNewerFormat: the data dir is of a format newer than this build's
// (dataformat.ErrNewer). The dir is left untouched.
var ErrNewerFormat = dataformat.ErrNewer

// formatSteps[v] migrates an open data dir of format v to format v+1.
// Each must be safe to run again from its start: a crash inside it leaves
// the dir with the old marker (or none), and the next Open runs it again.
var formatSteps = map[int]func(d *DB) error{
	dataformat.EpochsInPebble: (*DB).migrateEpochFile,
}

// openFormat is Open's gate on the open Pebble, before the log is opened:
// marked is the format the marker named before Pebble opened (0: none),
// fresh whether the dir held no Pebble database then.
func (d *DB) openFormat(marked int, fresh bool) error {
	v := marked
	if v == 0 {
		var err error
		if v, err = d.recogniseFormat(); err != nil {
			return err
		}
		if v == dataformat.LogInPebble {
			return fmt.Errorf("%w: %s holds the replication log in Pebble (data dir format %d), the format before the log moved to its own files; this build reads formats %d to %d: wipe the data dir and re-seed the node", ErrOldFormat, d.dir, v, dataformat.Oldest, dataformat.Current)
		}
	}
	if err := dataformat.CheckVersion(d.dir, v); err != nil {
		return err
	}
	from := v
	for ; v < dataformat.Current; v++ {
		if err := formatSteps[v](d); err != nil {
			return fmt.Errorf("storage: migrate %s from data dir format %d to %d: %w", d.dir, v, v+1, err)
		}
	}
	if marked == dataformat.Current {
		return nil
	}
	if err := dataformat.Write(d.fs, d.dir, dataformat.Current); err != nil {
		return fmt.Errorf("storage: %s: %w", d.dir, err)
	}
	switch {
	case fresh:
		d.log.Info("storage: new data dir", "dir", d.dir, "format", dataformat.Current)
	case from == dataformat.Current:
		d.log.Info("storage: data dir from before the format marker: marked", "dir", d.dir, "format", dataformat.Current)
	default:
		d.log.Warn("storage: data dir migrated; a build of its old format cannot open it now", "dir", d.dir, "from_format", from, "format", dataformat.Current)
	}
	return nil
}

// recogniseFormat tells the format of a data dir without a marker by what
// it holds: the log in Pebble is format 1, an epoch file format 3 (the
// marker came after it), anything else (a new dir too) format 2.
func (d *DB) recogniseFormat() (int, error) {
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: oldLogLower, UpperBound: oldLogUpper})
	if err != nil {
		return 0, fmt.Errorf("storage: open %s: %w", d.dir, err)
	}
	oldLog := it.First()
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, fmt.Errorf("storage: open %s: %w", d.dir, err)
	}
	if oldLog {
		return dataformat.LogInPebble, nil
	}
	if _, err := d.fs.Stat(d.fs.PathJoin(d.dir, epochFile)); err == nil {
		return dataformat.EpochFile, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("storage: open %s: %w", d.dir, err)
	}
	return dataformat.EpochsInPebble, nil
}

// migrateEpochFile (format 2 to 3) copies the seen epoch and the epoch
// history from Pebble's metadata to the epoch file. The rows stay in
// Pebble, unread from then on. Run again after a crash it writes the same
// file.
func (d *DB) migrateEpochFile() error {
	seen, err := d.getUint(metaEpoch)
	if err != nil {
		return err
	}
	var history []logrec.Position
	if v, ok, err := d.getMeta(metaEpochs); err != nil {
		return err
	} else if ok {
		if history, err = decodePositions(v); err != nil {
			return fmt.Errorf("storage: epoch history: %w", err)
		}
	}
	return d.saveEpochs(seen, history)
}

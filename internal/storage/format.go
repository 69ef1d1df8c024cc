package storage

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/logrec"
)

// # The data-dir format gate
//
// A data dir names its layout in <dir>/FORMAT, one line of text:
//
//	tandem data dir format 3
//
// written to FORMAT.tmp, fsynced, renamed over FORMAT and the directory
// fsynced, so a crash leaves the old marker (or none) or the new one,
// never a torn one. It is what PostgreSQL's PG_VERSION, etcd's storage
// version and Pebble's format major version are: a build reads the marker
// before it opens anything else, and
//
//   - refuses a dir of a format newer than DataFormat (ErrNewerFormat,
//     naming both), before Pebble or the log touch it: an older build
//     would misread what it does not know without noticing (a stale epoch
//     from Pebble where the epoch file holds the real one, chunked string
//     rows, a Pebble without its own log whose data a crash left only in
//     the replication log);
//   - migrates a dir of an older known format in place, one step per
//     format (formatSteps), and writes the marker last: a crash inside a
//     migration leaves the old marker (or none), and the next Open runs
//     the steps again, so every step must be safe to run again from its
//     start;
//   - recognises a dir without a marker (written before the gate) by what
//     it holds (recogniseFormat) and migrates it the same way; a new dir
//     is format 2 with nothing in it, and gets the marker the same way.
//
// The formats, each number frozen to one layout:
//
//  1. The replication log in Pebble ('l' rows). Refused (ErrOldFormat):
//     wipe the dir and re-seed the node.
//  2. The log in <dir>/log (package wal); the seen epoch and the epoch
//     history in Pebble's metadata ('m' epoch, epochs). Builds of this
//     format added, without a gate, chunked strings and then a Pebble
//     without its own log (its log, if any, Pebble replays at Open; the
//     data's is the replication log, replayed from the applied LSN): this
//     build reads every such dir. Migrated by copying the epochs to the
//     epoch file (migrateEpochFile).
//  3. The epoch file (<dir>/epochs) holds the seen epoch and the history;
//     the marker exists. DataFormat.
//
// The rule for later changes (the base of rolling upgrades): a change to
// what is stored that a build of the current format would misread or
// could not recover (a new row kind or file, a change of what is durable
// when) raises DataFormat and adds the step from the previous format, or
// documents why that format is refused. The log's entries are gated
// separately and per entry, by logrec's version gate (logrec's package
// comment): a node reads every entry format up to logrec.MaxFormat and
// refuses a higher one as ErrUnsupported, the leader writes a format only
// once every member reads it, so a new entry format needs no new data
// format. A migration is one-way: once a build of format N opened a dir,
// a build of format N-1 refuses it; going back is wiping the dir and
// re-seeding the node from a peer.
const (
	formatFile    = "FORMAT"
	formatFileTmp = "FORMAT.tmp"
	formatPrefix  = "tandem data dir format "
)

// The data-dir formats (see above). Frozen: a number never names another
// layout.
const (
	FormatLogInPebble    = 1
	FormatEpochsInPebble = 2
	FormatEpochFile      = 3
	// DataFormat is the format this build writes and the newest it reads.
	DataFormat = FormatEpochFile
)

// ErrNewerFormat: the data dir's marker names a format newer than
// DataFormat, written by a newer build. The dir is left untouched.
var ErrNewerFormat = errors.New("storage: data dir from a newer format")

// formatSteps[v] migrates an open data dir of format v to format v+1.
// Each must be safe to run again from its start (a crash inside it).
var formatSteps = map[int]func(d *DB) error{
	FormatEpochsInPebble: (*DB).migrateEpochFile,
}

// ReadFormat returns the format named by dir's marker, and ok false when
// dir has none (a new dir, or one from before the gate). A marker that is
// not one line naming a format is ErrCorrupt. It only reads: tandem status
// asks it about a node that does not start.
func ReadFormat(fs vfs.FS, dir string) (format int, ok bool, err error) {
	if fs == nil {
		fs = vfs.Default
	}
	path := fs.PathJoin(dir, formatFile)
	f, err := fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("storage: format marker: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return 0, false, fmt.Errorf("storage: format marker %s: %w", path, err)
	}
	s, ok := strings.CutPrefix(string(b), formatPrefix)
	if ok {
		s, ok = strings.CutSuffix(s, "\n")
	}
	v, perr := strconv.Atoi(s)
	if !ok || perr != nil || v <= 0 {
		return 0, false, fmt.Errorf("storage: format marker %s holds %q, not %q and a format number: %w", path, b, formatPrefix, ErrCorrupt)
	}
	return v, true, nil
}

// CheckFormat says whether this build can open dir: nil for a dir of
// DataFormat or of an older format it migrates, or without a marker;
// ErrNewerFormat, ErrOldFormat or ErrCorrupt (wrapped, naming the
// formats) otherwise. It only reads the marker.
func CheckFormat(fs vfs.FS, dir string) error {
	v, ok, err := ReadFormat(fs, dir)
	if err != nil || !ok {
		return err
	}
	return checkFormatVersion(dir, v)
}

func checkFormatVersion(dir string, v int) error {
	switch {
	case v > DataFormat:
		return fmt.Errorf("%w: %s is data dir format %d, and this build reads formats up to %d: run a build that reads format %d (a migrated data dir cannot go back to an older build; wipe it and re-seed the node to do that)", ErrNewerFormat, dir, v, DataFormat, v)
	case v < FormatEpochsInPebble:
		return fmt.Errorf("%w: %s is data dir format %d (the replication log in Pebble), and this build reads formats %d to %d: wipe the data dir and re-seed the node", ErrOldFormat, dir, v, FormatEpochsInPebble, DataFormat)
	}
	return nil
}

// writeFormat durably replaces dir's marker with format v.
func writeFormat(fs vfs.FS, dir string, v int) error {
	tmp, path := fs.PathJoin(dir, formatFileTmp), fs.PathJoin(dir, formatFile)
	if err := writeSynced(fs, tmp, []byte(formatPrefix+strconv.Itoa(v)+"\n")); err != nil {
		return fmt.Errorf("storage: format marker: %w", err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("storage: format marker: %w", err)
	}
	if err := syncDir(fs, dir); err != nil {
		return fmt.Errorf("storage: format marker: %w", err)
	}
	return nil
}

// writeSynced creates (or truncates) path, writes b and fsyncs it.
func writeSynced(fs vfs.FS, path string, b []byte) error {
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// syncDir fsyncs directory dir, making the renames and creations in it
// durable.
func syncDir(fs vfs.FS, dir string) error {
	df, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	err = df.Sync()
	if cerr := df.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// openFormat is Open's gate, run on the open Pebble before the log is
// opened: marked is the format the marker named before Pebble opened (0:
// none), fresh whether the dir held no Pebble database then. It
// recognises an unmarked dir, refuses what it cannot read, runs the
// migration steps and writes the marker last.
func (d *DB) openFormat(marked int, fresh bool) error {
	v := marked
	if v == 0 {
		var err error
		if v, err = d.recogniseFormat(); err != nil {
			return err
		}
		if v == FormatLogInPebble {
			return fmt.Errorf("%w: %s holds the replication log in Pebble (data dir format %d), the format before the log moved to its own files; this build reads formats %d to %d: wipe the data dir and re-seed the node", ErrOldFormat, d.dir, v, FormatEpochsInPebble, DataFormat)
		}
	}
	if err := checkFormatVersion(d.dir, v); err != nil {
		return err
	}
	from := v
	for ; v < DataFormat; v++ {
		if err := formatSteps[v](d); err != nil {
			return fmt.Errorf("storage: migrate %s from data dir format %d to %d: %w", d.dir, v, v+1, err)
		}
	}
	if marked == DataFormat {
		return nil
	}
	if err := writeFormat(d.fs, d.dir, DataFormat); err != nil {
		return err
	}
	switch {
	case fresh:
		d.log.Info("storage: new data dir", "dir", d.dir, "format", DataFormat)
	case marked == 0 && from == DataFormat:
		d.log.Info("storage: data dir from before the format marker marked", "dir", d.dir, "format", DataFormat)
	default:
		d.log.Warn("storage: data dir migrated; an older build cannot open it now", "dir", d.dir, "from_format", from, "format", DataFormat)
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
		return FormatLogInPebble, nil
	}
	if _, err := d.fs.Stat(d.fs.PathJoin(d.dir, epochFile)); err == nil {
		return FormatEpochFile, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("storage: open %s: %w", d.dir, err)
	}
	return FormatEpochsInPebble, nil
}

// migrateEpochFile (format 2 to 3) copies the seen epoch and the epoch
// history from Pebble's metadata to the epoch file. The rows stay in
// Pebble, unread from then on. Run again after a crash it writes the
// same file.
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

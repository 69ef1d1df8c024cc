// Package dataformat is the data-dir format gate: the versioned marker a
// node's data dir carries, and the rule for what a build does with a dir
// of another format. It is what PostgreSQL's PG_VERSION, etcd's storage
// version and Pebble's format major version are. Package storage runs the
// gate at Open (recognition and migrations need its Pebble); this package
// only reads and writes the marker, so that tools (tandem status) can say
// why a node will not start without linking the storage.
//
// # The marker
//
// <dir>/FORMAT is one line of text:
//
//	tandem data dir format 3
//
// written to FORMAT.tmp, fsynced, renamed over FORMAT and the directory
// fsynced (WriteAtomic), so a crash leaves the old marker (or none) or the
// new one, never a torn one. Anything else in the file is ErrCorrupt,
// never read as some format. Layout frozen.
//
// # The rule
//
// A build reads the marker before anything else in the dir, and
//
//   - refuses a dir of a format newer than Current (ErrNewer, naming both
//     formats), before Pebble or the log touch it: an older build would
//     misread what it does not know without noticing (a stale epoch from
//     Pebble where the epoch file holds the real one, chunked string rows,
//     a Pebble without its own log whose data a crash left only in the
//     replication log);
//   - migrates a dir of an older known format in place, one step per
//     format, and writes the marker last: a crash inside a migration
//     leaves the old marker (or none), and the next Open runs the steps
//     again, so every step must be safe to run again from its start;
//   - refuses a dir of a format it cannot migrate (ErrOlder: wipe the dir
//     and re-seed the node);
//   - recognises a dir without a marker (written before the gate) by what
//     it holds, and migrates it the same way. A new dir is format 2 with
//     nothing in it, and gets its marker the same way.
//
// A migration is one-way: once a build of format N opened a dir, a build
// of format N-1 refuses it; going back is wiping the dir and re-seeding the
// node from a peer. In a rolling upgrade a node of the new build migrates
// its own dir at its first start; nodes of the old build keep theirs.
//
// A later change to what is stored that a build of the current format
// would misread or could not recover (a new row kind or file, a change of
// what is durable when) raises Current and adds the step from the
// previous format to package storage, or documents why that format is
// refused. The log's entries are gated apart, per entry, by logrec's
// version gate (see package logrec): a node reads every entry format up
// to logrec.MaxFormat and refuses a higher one (logrec.ErrUnsupported),
// and a leader writes a format only once every member reads it; so a new
// entry format needs no new data format, and the data format says nothing
// about the entries in the log.
//
// # The formats
//
// Each number is frozen to one layout:
//
//  1. LogInPebble: the replication log in Pebble ('l' rows). Refused.
//  2. EpochsInPebble: the log in <dir>/log (package wal); the seen epoch
//     and the epoch history in Pebble's metadata. Builds of this format
//     added, without a gate, chunked strings and then a Pebble without its
//     own log (Pebble replays its old log, if any, at Open; the data's is
//     the replication log, replayed from the applied LSN): the current
//     build reads every such dir. Migrated by copying the epochs to the
//     epoch file. Recognised by having no epoch file.
//  3. EpochFile: the epoch file (<dir>/epochs) holds the seen epoch and
//     the history; the marker came with this format's later builds (a dir
//     with the epoch file and no marker is this format). Current.
package dataformat

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
)

// The data-dir formats (see the package comment). Frozen: a number never
// names another layout.
const (
	LogInPebble    = 1
	EpochsInPebble = 2
	EpochFile      = 3
	// Current is the format this build writes and the newest it reads.
	Current = EpochFile
	// Oldest is the oldest format this build migrates.
	Oldest = EpochsInPebble
)

// File is the marker's name in the data dir.
const File = "FORMAT"

const prefix = "tandem data dir format "

// Errors of the gate; each is wrapped with the dir and the formats.
var (
	// ErrNewer: the dir is of a format newer than Current, written by a
	// newer build. It must be left untouched.
	ErrNewer = errors.New("dataformat: data dir from a newer format")
	// ErrOlder: the dir is of a format older than Oldest. Wipe it and
	// re-seed the node.
	ErrOlder = errors.New("dataformat: data dir from an older format")
	// ErrCorrupt: the marker is not one line naming a format. It is a
	// frame.ErrCorrupt.
	ErrCorrupt = frame.NewCorruption("dataformat: corrupt format marker")
)

// Read returns the format named by dir's marker, and ok false when dir has
// none (a new dir, or one from before the gate). It only reads. A nil fs
// is the disk.
func Read(fs vfs.FS, dir string) (format int, ok bool, err error) {
	if fs == nil {
		fs = vfs.Default
	}
	path := fs.PathJoin(dir, File)
	f, err := fs.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("dataformat: read the marker: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 256))
	if err != nil {
		return 0, false, fmt.Errorf("dataformat: read the marker %s: %w", path, err)
	}
	s, ok := strings.CutPrefix(string(b), prefix)
	if ok {
		s, ok = strings.CutSuffix(s, "\n")
	}
	v, perr := strconv.Atoi(s)
	if !ok || perr != nil || v <= 0 || s != strconv.Itoa(v) { // as Write writes it: no sign, no leading zero
		return 0, false, fmt.Errorf("%w: %s holds %q, not %q and a format number", ErrCorrupt, path, b, prefix)
	}
	return v, true, nil
}

// CheckVersion says whether this build can open a dir of format v (dir is
// for the message): nil for Oldest through Current, else ErrNewer or
// ErrOlder, wrapped with both formats and what to do.
func CheckVersion(dir string, v int) error {
	switch {
	case v > Current:
		return fmt.Errorf("%w: %s is data dir format %d, and this build reads formats up to %d: run a build that reads format %d (a migrated data dir cannot go back to an older build; wipe it and re-seed the node to do that)", ErrNewer, dir, v, Current, v)
	case v < Oldest:
		return fmt.Errorf("%w: %s is data dir format %d, and this build reads formats %d to %d: wipe the data dir and re-seed the node", ErrOlder, dir, v, Oldest, Current)
	}
	return nil
}

// Check reads dir's marker and says whether this build can open the dir:
// nil without a marker or for a format it reads, else as Read and
// CheckVersion.
func Check(fs vfs.FS, dir string) error {
	v, ok, err := Read(fs, dir)
	if err != nil || !ok {
		return err
	}
	return CheckVersion(dir, v)
}

// Write durably replaces dir's marker with format v (nil fs: the disk).
func Write(fs vfs.FS, dir string, v int) error {
	if fs == nil {
		fs = vfs.Default
	}
	if err := WriteAtomic(fs, dir, File, []byte(prefix+strconv.Itoa(v)+"\n")); err != nil {
		return fmt.Errorf("dataformat: write the marker: %w", err)
	}
	return nil
}

// WriteAtomic durably replaces dir/name with b: it writes name.tmp,
// fsyncs it, renames it over name and fsyncs dir, so a crash leaves the
// old file (or none) or the new one whole.
func WriteAtomic(fs vfs.FS, dir, name string, b []byte) error {
	tmp, path := fs.PathJoin(dir, name+".tmp"), fs.PathJoin(dir, name)
	f, err := fs.Create(tmp, vfs.WriteCategoryUnspecified)
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
	if err := f.Close(); err != nil {
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		return err
	}
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

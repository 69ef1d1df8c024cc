// Package storage keeps a node's data and metadata in one Pebble database,
// and its replication log in segment files beside it (package wal).
//
// # Files and keyspaces
//
//	<dir>/       Pebble: the data, the expiry index and the metadata
//	<dir>/log/   the replication log (package wal): one record per logrec
//	             entry, the record's LSN the entry's
//
//	'd' key              -> expireAtMs (8 bytes, big endian) | value   the data
//	'e' expireAtMs key   -> ""                                        expiry index
//	'm' name             -> value                                     metadata
//
// The metadata: the applied LSN (written with every Apply), the key counts
// (data rows, and those with an expiry: INFO's keyspace figures, written
// with every Apply and IngestRows in the same batch as the rows they
// count), the log base (the position before the first retained entry), the
// highest epoch seen, the epoch history and the seeding mark. Before the log moved to segment
// files it lived in Pebble under 'l' (lsn, 8 bytes BE -> the entry): Open
// refuses a data dir that still holds such rows (ErrOldFormat); it must be
// wiped and the node re-seeded.
//
// # Promises
//
//   - AppendLog makes entries durable (one fdatasync of the log) before it
//     returns, and the durable position is always the last entry in the
//     log (or the log base when the log is empty): there is no separate
//     counter to drift.
//   - Apply writes an entry's operations and the new applied LSN in one
//     Pebble batch, so after a crash data and applied LSN are in step.
//     The batch is not synced: Pebble's own log recovers a prefix of the
//     batches, and the node replays its log from the applied LSN it finds.
//   - Applied never passes durable: Apply refuses entries beyond the log.
//   - KeyCounts is exact for the data as applied: Apply and IngestRows
//     update the counts in the batch that writes the rows, so a crash
//     keeps them in step with the data, and replay counts from there. A
//     data dir without them (older than the counts) is counted once, by
//     a scan, at Open.
//   - The log keeps every entry that Pebble may not have made durable:
//     before retention deletes a log segment, Pebble's log is synced.
//   - Reads of a log entry verify its checksum; a damaged entry is an error
//     wrapping wal.ErrCorrupt or logrec.ErrCorrupt, never skipped. Other
//     damage (a misplaced entry, a malformed value or metadata record, a
//     log that cannot be replayed from the applied LSN) wraps ErrCorrupt.
//     All are frame.ErrCorrupt, the marker callers test for.
//
// # Crash ordering
//
// Pebble and the log are two files with no common commit, so every change
// that touches both writes them in an order whose every crash point Open
// can recover:
//
//   - AppendLog: a new epoch start (and a raised seen epoch) is written to
//     Pebble, synced, before the entries go to the log. A crash between
//     leaves a start beyond the log's end; Open drops the starts past
//     durable+1 (and saves the history), and keeps one at durable+1, the
//     same state StartEpoch leaves before a leader's first entry.
//   - Apply after AppendLog: Pebble can only hold applied LSNs whose
//     entries were synced to the log, and the log is never cut below
//     applied, so Open finds applied ≤ durable and the entries after
//     applied to replay.
//   - TruncateLogBefore (retention): the new log base is written, and when
//     a segment is to be deleted it is written synced first, which syncs
//     Pebble's log with every earlier Apply; then the segments go. A crash
//     before the deletion leaves entries at or below the base, which Open
//     trims. If Open ever finds the log starting after base+1 (or after
//     applied+1: a gap that cannot be replayed) that is corruption.
//   - TruncateLogAfter: the log first, then the epoch history (synced). A
//     crash between leaves starts past the log's end, handled as above.
//     The other order could leave entries whose epoch start is gone.
//   - BeginIngest: the seeding mark, the emptied data and the zeroed
//     positions go to Pebble first (synced), then the log is emptied. Open
//     of a seeding node empties the log (its entries predate the seed),
//     and the seed starts again.
//   - FinishIngest: the log is reset to the snapshot's position first, then
//     Pebble gets the positions and loses the seeding mark (synced, with
//     every ingested row). A crash between is a crash mid-seed. If a log
//     ends at or below the log base (an empty log at an older position),
//     Open resets it to the base.
//
// The expiry index may hold stale rows (a key whose expiry was changed or
// that was deleted); readers check the data row, and ExpiredKeys drops stale
// rows as it meets them. This keeps Apply from reading the index (it reads
// only each key's old data row, for the key counts, from the row cache
// when it holds the row).
package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/rowcache"
	"github.com/tandemdb/tandem/internal/wal"
)

// Errors returned by DB methods.
var (
	// ErrCompacted: the requested log position was removed by retention or
	// precedes a snapshot.
	ErrCompacted = errors.New("storage: log position compacted")
	// ErrGap: appended entries do not follow the durable position.
	ErrGap = errors.New("storage: entries do not follow the log")
	// ErrBelowApplied: a truncation would remove an applied entry.
	ErrBelowApplied = errors.New("storage: truncation below applied lsn")
	// ErrNotDurable: Apply was given an entry beyond the durable log.
	ErrNotDurable = errors.New("storage: apply beyond durable lsn")
	// ErrCorrupt: stored bytes cannot be what was written: a value or a
	// metadata record of the wrong size, a log entry at another LSN's
	// place, an applied LSN beyond the log, a log that starts after the
	// log base. A damaged entry itself is wal.ErrCorrupt (as the log reads
	// it) or logrec.ErrCorrupt. All are frame.ErrCorrupt.
	ErrCorrupt = frame.NewCorruption("storage: corrupt data")
	// ErrOldFormat: the data dir holds the log in Pebble, the format from
	// before the log moved to its own files. Wipe it and re-seed the node.
	ErrOldFormat = errors.New("storage: data dir from an older format")
)

const (
	prefixData   = 'd'
	prefixExpiry = 'e'
	prefixOldLog = 'l' // the log in Pebble, before it moved to segment files
	prefixMeta   = 'm'
	// logDir is the log's directory under the Pebble directory.
	logDir = "log"
)

var (
	metaApplied = []byte("mapplied")
	metaKeys    = []byte("mkeys")
	metaLogBase = []byte("mlogbase")
	metaEpoch   = []byte("mepoch")
	metaEpochs  = []byte("mepochs")
	metaSeeding = []byte("mseeding")
	dataLower   = []byte{prefixData}
	dataUpper   = []byte{prefixData + 1}
	expiryLower = []byte{prefixExpiry}
	expiryUpper = []byte{prefixExpiry + 1}
	oldLogLower = []byte{prefixOldLog}
	oldLogUpper = []byte{prefixOldLog + 1}
	syncWrite   = pebble.Sync
	noSyncWrite = pebble.NoSync
)

// Options configure Open.
type Options struct {
	// FS is the file system, for Pebble and the log; nil means the real
	// disk. Tests use vfs.NewMem.
	FS vfs.FS
	// LogSegmentSize is the nominal size of a log segment file; 0 means
	// the wal's default (64 MiB).
	LogSegmentSize int64
	// CacheBytes is Pebble's block cache size; 0 means 64 MiB.
	CacheBytes int64
	// RowCacheBytes bounds the cache of data rows that point reads fill
	// (package rowcache); 0 means 64 MiB, negative means none.
	RowCacheBytes int64
	Logger        *slog.Logger
}

// DB is a node's storage. Log appends, TruncateLogAfter and the ingest
// calls must come from one goroutine at a time (the replication driver);
// TruncateLogBefore may run beside AppendLog; reads are safe concurrently.
type DB struct {
	pdb *pebble.DB
	wal *wal.WAL
	log *slog.Logger
	// rows caches data rows for View.Get. Every write of a data row puts
	// it there (Apply) or invalidates it (IngestRows; BeginIngest clears
	// it all) after the row is committed and before the write is reported
	// applied. FinishIngest writes no data row, so it leaves it alone.
	rows *rowcache.Cache

	// logMu serialises the changes to the log other than appends
	// (truncations, ingest), and keeps them out of NewSnapshot while it
	// reads the epoch of its applied entry.
	logMu sync.Mutex

	mu      sync.Mutex // guards the fields below
	durable logrec.Position
	logBase logrec.Position
	applied uint64
	epoch   uint64
	epochs  []logrec.Position // (epoch, first LSN) in ascending order
	seeding bool
	counts  KeyCounts // of the data as applied (or ingested so far)
	// seeds counts the seeds begun; it moves before a seed discards the
	// data, so a read that ran across one can tell (SeedGeneration).
	seeds    uint64
	logBytes int64
	logCount int64
	// appends and appended count AppendLog calls (each one fsync) and the
	// entries they wrote since Open: their ratio is the group-commit size.
	appends, appended uint64
	// nextExpiry is a lower bound on every expiry index row's time: while
	// it is in the future ExpiredKeys reads nothing. An idle node must not
	// touch Pebble on every expiry tick: a seek into the index lands in
	// the first block after it, which may hold a 64 MB log entry or value
	// that Pebble would decompress each time. Writes of index rows lower
	// it and bump expiryWrites; a scan raises it to what it saw only if no
	// index row was written since the scan began (it might not see one).
	// 0: unknown, scan.
	nextExpiry   int64
	expiryWrites uint64
	expiryScans  uint64 // scans that read the index (tests)
}

// Pebble's memtables; writes stall when memTables are full. Pebble
// preallocates each of its WAL files to a memtable's size and keeps one
// per unflushed memtable, so with 64 MiB ones a node held ~430 MB of WAL
// files (75 MB written) after 1M x 100 B keys: 626 MB on disk per node.
// 16 MiB ones give 311 MB; when the log still shared the memtable they
// cost ~10% of write throughput, which bench/run.sh no longer shows now
// that only data rows go through it.
const (
	memTableSize = 16 << 20
	memTables    = 4
)

// Open opens (creating if needed) the database in dir and its log in
// dir/log, and recovers the positions from them. It reads every retained
// log entry to verify its checksum and measure the log.
func Open(dir string, opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cache := opts.CacheBytes
	if cache == 0 {
		cache = 64 << 20
	}
	// Pebble charges its memtables to the block cache: a cache no larger
	// than the memtables holds no block at all, and every read decompresses
	// its blocks again. The cache is sized for both.
	c := pebble.NewCache(cache + memTableSize*memTables)
	defer c.Unref()
	po := &pebble.Options{
		FS:                          opts.FS,
		Cache:                       c,
		MemTableSize:                memTableSize,
		MemTableStopWritesThreshold: memTables,
		Logger:                      pebbleLogger{log},
	}
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	rowBytes := opts.RowCacheBytes
	if rowBytes == 0 {
		rowBytes = 64 << 20
	}
	d := &DB{pdb: pdb, log: log, rows: rowcache.New(rowBytes)}
	if err := d.checkFormat(dir); err != nil {
		pdb.Close()
		return nil, err
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	d.wal, err = wal.Open(fs.PathJoin(dir, logDir), wal.Options{FS: fs, SegmentSize: opts.LogSegmentSize, Logger: log})
	if err != nil {
		pdb.Close()
		return nil, fmt.Errorf("storage: open the log: %w", err)
	}
	if err := d.recover(); err != nil {
		d.wal.Close()
		pdb.Close()
		return nil, err
	}
	return d, nil
}

// checkFormat refuses a data dir whose log is in Pebble.
func (d *DB) checkFormat(dir string) error {
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: oldLogLower, UpperBound: oldLogUpper})
	if err != nil {
		return fmt.Errorf("storage: open %s: %w", dir, err)
	}
	defer it.Close()
	if it.First() {
		return fmt.Errorf("%w: %s holds the replication log in Pebble, the format before the log moved to its own files; wipe the data dir and re-seed the node", ErrOldFormat, dir)
	}
	return it.Error()
}

func (d *DB) recover() error {
	var err error
	if d.applied, err = d.getUint(metaApplied); err != nil {
		return err
	}
	if d.epoch, err = d.getUint(metaEpoch); err != nil {
		return err
	}
	if v, ok, err := d.getMeta(metaLogBase); err != nil {
		return err
	} else if ok {
		if d.logBase, err = decodePosition(v); err != nil {
			return fmt.Errorf("storage: log base: %w", err)
		}
	}
	if v, ok, err := d.getMeta(metaEpochs); err != nil {
		return err
	} else if ok {
		if d.epochs, err = decodePositions(v); err != nil {
			return fmt.Errorf("storage: epoch history: %w", err)
		}
	}
	_, seeding, err := d.getMeta(metaSeeding)
	if err != nil {
		return err
	}
	d.seeding = seeding
	if err := d.recoverCounts(); err != nil {
		return err
	}
	base := d.logBase.LSN
	if d.seeding {
		// BeginIngest marks the seed before it empties the log: what the
		// log still holds predates the seed, which starts again.
		if err := d.wal.Reset(base); err != nil {
			return fmt.Errorf("storage: empty the log of a seeding node: %w", err)
		}
	}
	first, last := d.wal.First(), d.wal.Last()
	switch {
	case first > base+1 && first-1 > d.applied:
		return fmt.Errorf("storage: the log starts at lsn %d but the data is applied only to %d: the entries between are gone and cannot be replayed: %w", first, d.applied, ErrCorrupt)
	case first > base+1:
		return fmt.Errorf("storage: the log starts at lsn %d but the log base is %d: the entries between are gone: %w", first, base, ErrCorrupt)
	case last <= base:
		// Nothing after the base (a crash in FinishIngest, or a log that
		// is older than the base): the data holds all of it.
		if err := d.wal.Reset(base); err != nil {
			return fmt.Errorf("storage: reset the log to the log base %d: %w", base, err)
		}
	default:
		// Entries at or below the base: a crash came between saving a
		// new base and deleting the segments.
		if err := d.wal.TruncateFront(base, nil); err != nil {
			return fmt.Errorf("storage: trim the log to the log base %d: %w", base, err)
		}
	}
	d.durable = d.logBase
	for lo := base + 1; lo <= last; {
		raws, err := d.wal.Read(lo, last, 4<<20)
		if err != nil {
			return fmt.Errorf("storage: scan log: %w", err)
		}
		for _, raw := range raws {
			epoch, lsn, err := logrec.PeekLSNVerified(raw) // the wal verified it
			if err != nil {
				return fmt.Errorf("storage: log entry %d: %w", lo, err)
			}
			if lsn != lo || epoch < d.durable.Epoch {
				return fmt.Errorf("storage: log entry at lsn %d holds (%d,%d) after (%d,%d): %w", lo, epoch, lsn, d.durable.Epoch, d.durable.LSN, ErrCorrupt)
			}
			d.durable = logrec.Position{Epoch: epoch, LSN: lsn}
			d.logBytes += int64(len(raw))
			d.logCount++
			lo++
		}
	}
	if d.applied > d.durable.LSN {
		return fmt.Errorf("storage: applied lsn %d beyond durable %d: %w", d.applied, d.durable.LSN, ErrCorrupt)
	}
	if d.applied < base {
		return fmt.Errorf("storage: applied lsn %d before the log base %d: %w", d.applied, base, ErrCorrupt)
	}
	// AppendLog saves an epoch start before its entries, so a crash can
	// leave starts past the log's end: drop them, durably, before later
	// entries of an older epoch could make them look right. A start at
	// durable+1 is what StartEpoch leaves before a leader's first entry.
	if n := len(d.epochs); n > 0 && d.epochs[n-1].LSN > d.durable.LSN+1 {
		var kept []logrec.Position
		for _, s := range d.epochs {
			if s.LSN <= d.durable.LSN+1 {
				kept = append(kept, s)
			}
		}
		d.log.Warn("storage: dropped epoch starts past the end of the log (a crash before their entries were durable)",
			"durable_lsn", d.durable.LSN, "starts", fmt.Sprint(d.epochs[len(kept):]))
		if err := d.pdb.Set(metaEpochs, encodePositions(kept), syncWrite); err != nil {
			return fmt.Errorf("storage: save the epoch history: %w", err)
		}
		d.epochs = kept
	}
	if d.durable.Epoch > d.epoch {
		d.epoch = d.durable.Epoch
	}
	return nil
}

// Close closes the database and the log.
func (d *DB) Close() error {
	werr := d.wal.Close()
	if err := d.pdb.Close(); err != nil {
		return err
	}
	return werr
}

// Durable is the position of the last durable log entry.
func (d *DB) Durable() logrec.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.durable
}

// Applied is the LSN of the last entry applied to the data.
func (d *DB) Applied() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied
}

// LogBase is the position just before the first retained log entry.
func (d *DB) LogBase() logrec.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logBase
}

// LogSize is the number and total encoded bytes of retained log entries.
func (d *DB) LogSize() (entries, bytes int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logCount, d.logBytes
}

// Seeding reports whether a snapshot ingest started and has not finished:
// the data is partial and must not be served.
func (d *DB) Seeding() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seeding
}

// SeedGeneration counts the seeds begun on this DB. A reader that takes it
// before reading and finds it unchanged (and Seeding false) afterwards read
// data no seed discarded under it.
func (d *DB) SeedGeneration() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seeds
}

// Epoch is the highest epoch this node has seen.
func (d *DB) Epoch() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.epoch
}

// EpochHistory returns the (epoch, first LSN) starts in ascending order.
func (d *DB) EpochHistory() []logrec.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]logrec.Position(nil), d.epochs...)
}

// ObserveEpoch durably raises the highest seen epoch to e; lower values are
// ignored. A node must persist an epoch before acting on it, so that after a
// restart it still refuses the lower ones.
func (d *DB) ObserveEpoch(e uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e <= d.epoch {
		return nil
	}
	if err := d.pdb.Set(metaEpoch, be64(e), syncWrite); err != nil {
		return fmt.Errorf("storage: save epoch %d: %w", e, err)
	}
	d.epoch = e
	return nil
}

// StartEpoch records that epoch e's entries begin at lsn (the leader calls it
// when it takes over) and raises the seen epoch to e.
func (d *DB) StartEpoch(e, lsn uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := len(d.epochs); n > 0 && d.epochs[n-1].Epoch >= e {
		return fmt.Errorf("storage: start epoch %d after epoch %d", e, d.epochs[n-1].Epoch)
	}
	epochs := append(append([]logrec.Position(nil), d.epochs...), logrec.Position{Epoch: e, LSN: lsn})
	b := d.pdb.NewBatch()
	defer b.Close()
	_ = b.Set(metaEpochs, encodePositions(epochs), nil)
	if e > d.epoch {
		_ = b.Set(metaEpoch, be64(e), nil)
	}
	if err := b.Commit(syncWrite); err != nil {
		return fmt.Errorf("storage: start epoch %d: %w", e, err)
	}
	d.epochs = epochs
	d.epoch = max(d.epoch, e)
	return nil
}

// AppendLog durably appends encoded entries, which must continue the log
// from Durable().LSN+1. Their checksums are the caller's: one checksum
// per entry per node, computed where the entry is made (the leader's
// Encode) or verified where it arrives (the follower's stream), so
// AppendLog checks only their positions and format. It fsyncs
// before returning. Any epoch entry starts not yet in the epoch history are
// recorded first (synced, in Pebble), then the entries are written to the
// log with one fdatasync.
func (d *DB) AppendLog(entries [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	next := d.durable
	epochs := d.epochs
	seen := d.epoch
	d.mu.Unlock()
	first := next.LSN + 1
	var added int64
	newEpochs := false
	for _, raw := range entries {
		epoch, lsn, err := logrec.PeekLSNVerified(raw)
		if err != nil {
			return fmt.Errorf("storage: append after lsn %d: %w", next.LSN, err)
		}
		if lsn != next.LSN+1 || epoch < next.Epoch {
			return fmt.Errorf("%w: entry (%d,%d) after (%d,%d)", ErrGap, epoch, lsn, next.Epoch, next.LSN)
		}
		if epoch != next.Epoch && (len(epochs) == 0 || epochs[len(epochs)-1].Epoch < epoch) {
			epochs = append(append([]logrec.Position(nil), epochs...), logrec.Position{Epoch: epoch, LSN: lsn})
			newEpochs = true
		}
		next = logrec.Position{Epoch: epoch, LSN: lsn}
		added += int64(len(raw))
	}
	if newEpochs || next.Epoch > seen {
		// The epoch metadata cannot share a commit with the log: it goes
		// first, synced (once per new epoch), so that no entry is ever
		// durable without its epoch's start. A crash before the entries
		// leaves starts past the log's end, which Open drops. Entries of
		// an epoch are proof the epoch exists: the seen epoch is raised
		// with them, so a restart never forgets it.
		b := d.pdb.NewBatch()
		if newEpochs {
			_ = b.Set(metaEpochs, encodePositions(epochs), nil)
		}
		if next.Epoch > seen {
			_ = b.Set(metaEpoch, be64(next.Epoch), nil)
		}
		err := b.Commit(syncWrite)
		b.Close()
		if err != nil {
			return fmt.Errorf("storage: save the epoch of lsn %d..%d: %w", first, next.LSN, err)
		}
	}
	if err := d.wal.Append(first, entries); err != nil {
		return fmt.Errorf("storage: append lsn %d..%d: %w", first, next.LSN, err)
	}
	d.mu.Lock()
	d.durable = next
	d.epochs = epochs
	d.epoch = max(d.epoch, next.Epoch)
	d.logBytes += added
	d.logCount += int64(len(entries))
	d.appends++
	d.appended += uint64(len(entries))
	d.mu.Unlock()
	return nil
}

// AppendStats returns how many durable log appends (one fsync each) this
// DB made since Open, and how many entries they wrote.
func (d *DB) AppendStats() (appends, entries uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.appends, d.appended
}

// ReadLog returns encoded entries with LSN in [lo, hi], stopping early once
// maxBytes is reached (always at least one entry when lo <= hi and lo is in
// the log). It returns ErrCompacted if lo precedes the retained log. Every
// entry's checksum is verified.
func (d *DB) ReadLog(lo, hi uint64, maxBytes int) ([][]byte, error) {
	d.mu.Lock()
	base, last := d.logBase.LSN, d.durable.LSN
	d.mu.Unlock()
	if lo <= base {
		return nil, fmt.Errorf("%w: lsn %d, log starts after %d", ErrCompacted, lo, base)
	}
	hi = min(hi, last)
	if lo > hi {
		return nil, nil
	}
	raws, err := d.wal.Read(lo, hi, maxBytes)
	if errors.Is(err, wal.ErrCompacted) {
		// Retention raced with this read and removed lo.
		return nil, fmt.Errorf("%w: %w", ErrCompacted, err)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: read log: %w", err)
	}
	if len(raws) == 0 {
		// A truncation raced with this read and removed lo.
		return nil, fmt.Errorf("%w: lsn %d missing", ErrCompacted, lo)
	}
	for i, raw := range raws {
		lsn := lo + uint64(i)
		if _, elsn, err := logrec.PeekLSNVerified(raw); err != nil { // the wal verified it
			return nil, fmt.Errorf("storage: read lsn %d: %w", lsn, err)
		} else if elsn != lsn {
			return nil, fmt.Errorf("storage: read lsn %d holds lsn %d: %w", lsn, elsn, ErrCorrupt)
		}
	}
	return raws, nil
}

// epochOf reads the entry at lsn, which must be in the log, and returns
// its epoch.
func (d *DB) epochOf(lsn uint64) (uint64, error) {
	raws, err := d.wal.Read(lsn, lsn, 1)
	if errors.Is(err, wal.ErrCompacted) {
		return 0, fmt.Errorf("%w: %w", ErrCompacted, err)
	}
	if err != nil {
		return 0, fmt.Errorf("storage: read lsn %d: %w", lsn, err)
	}
	if len(raws) == 0 {
		return 0, fmt.Errorf("%w: lsn %d missing", ErrCompacted, lsn)
	}
	epoch, elsn, err := logrec.PeekLSNVerified(raws[0]) // the wal verified it
	if err != nil {
		return 0, fmt.Errorf("storage: read lsn %d: %w", lsn, err)
	}
	if elsn != lsn {
		return 0, fmt.Errorf("storage: read lsn %d holds lsn %d: %w", lsn, elsn, ErrCorrupt)
	}
	return epoch, nil
}

// EpochAt returns the epoch of the entry at lsn (or of the log base). It
// returns ErrCompacted for positions before the log base.
func (d *DB) EpochAt(lsn uint64) (uint64, error) {
	d.mu.Lock()
	base, last := d.logBase, d.durable
	d.mu.Unlock()
	switch {
	case lsn == base.LSN:
		return base.Epoch, nil
	case lsn < base.LSN:
		return 0, fmt.Errorf("%w: lsn %d before %d", ErrCompacted, lsn, base.LSN)
	case lsn > last.LSN:
		return 0, fmt.Errorf("storage: lsn %d beyond durable %d", lsn, last.LSN)
	case lsn == last.LSN:
		return last.Epoch, nil
	}
	return d.epochOf(lsn)
}

// TruncateLogAfter removes every entry after lsn (a diverged suffix). It
// refuses to remove applied entries: those need a re-seed instead.
//
// The log is cut first, then the epoch history loses the starts after lsn
// (synced). A crash between leaves starts past the log's end, which Open
// drops; the other order could leave entries whose epoch start is gone.
func (d *DB) TruncateLogAfter(lsn uint64) error {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	d.mu.Lock()
	durable, applied, base, epochs := d.durable, d.applied, d.logBase, d.epochs
	d.mu.Unlock()
	if lsn >= durable.LSN {
		return nil
	}
	if lsn < applied {
		return fmt.Errorf("%w: truncate after %d, applied %d", ErrBelowApplied, lsn, applied)
	}
	if lsn < base.LSN {
		return fmt.Errorf("%w: truncate after %d, log base %d", ErrCompacted, lsn, base.LSN)
	}
	epoch := base.Epoch
	if lsn > base.LSN {
		var err error
		if epoch, err = d.epochOf(lsn); err != nil {
			return fmt.Errorf("storage: truncate after %d: %w", lsn, err)
		}
	}
	if err := d.wal.TruncateBack(lsn); err != nil {
		return fmt.Errorf("storage: truncate after %d: %w", lsn, err)
	}
	var kept []logrec.Position
	for _, s := range epochs {
		if s.LSN <= lsn {
			kept = append(kept, s)
		}
	}
	if len(kept) != len(epochs) {
		if err := d.pdb.Set(metaEpochs, encodePositions(kept), syncWrite); err != nil {
			return fmt.Errorf("storage: truncate after %d: save the epoch history: %w", lsn, err)
		}
	}
	d.mu.Lock()
	removed := int64(d.durable.LSN - lsn)
	if d.logCount > 0 {
		d.logBytes -= d.logBytes * removed / d.logCount
	}
	d.logCount -= removed
	d.durable = logrec.Position{Epoch: epoch, LSN: lsn}
	d.epochs = kept
	d.mu.Unlock()
	return nil
}

// TruncateLogBefore removes entries up to and including lsn (retention); the
// entry at lsn becomes the log base. It never removes unapplied entries.
//
// The new log base is written unsynced; only when the log is about to
// delete a segment is it written again synced, first, which makes Pebble's
// own log durable up to it, every earlier Apply included: after a crash the
// recovered applied LSN is never below what the log still holds. (A
// pebble.Flush would do it too, at the price of writing the memtables out.)
func (d *DB) TruncateLogBefore(lsn uint64) error {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	d.mu.Lock()
	lsn = min(lsn, d.applied)
	base := d.logBase
	d.mu.Unlock()
	if lsn <= base.LSN {
		return nil
	}
	epoch, err := d.epochOf(lsn)
	if err != nil {
		return fmt.Errorf("storage: retention at %d: %w", lsn, err)
	}
	nb := logrec.Position{Epoch: epoch, LSN: lsn}
	if err := d.pdb.Set(metaLogBase, encodePosition(nb), noSyncWrite); err != nil {
		return fmt.Errorf("storage: retention at %d: %w", lsn, err)
	}
	durableFirst := func() error {
		if err := d.pdb.Set(metaLogBase, encodePosition(nb), syncWrite); err != nil {
			return fmt.Errorf("storage: retention at %d: sync the data before deleting log segments: %w", lsn, err)
		}
		return nil
	}
	if err := d.wal.TruncateFront(lsn, durableFirst); err != nil {
		return fmt.Errorf("storage: retention at %d: %w", lsn, err)
	}
	d.mu.Lock()
	removed := int64(lsn - d.logBase.LSN)
	if d.logCount > 0 {
		d.logBytes -= d.logBytes * removed / d.logCount
	}
	d.logCount -= removed
	d.logBase = nb
	d.mu.Unlock()
	return nil
}

// Apply applies decoded entries, which must continue from Applied()+1 and be
// durable, to the data, and advances the applied LSN, in one batch. The
// batch is not synced: the log already is, and a crash re-applies from the
// persisted applied LSN (the log keeps what Pebble has not made durable:
// see TruncateLogBefore).
func (d *DB) Apply(entries []logrec.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	applied, durable, counts := d.applied, d.durable.LSN, d.counts
	d.mu.Unlock()
	b := d.pdb.NewBatch()
	defer b.Close()
	var kbuf, vbuf []byte
	var earliest int64 // of the index rows written, 0 if none
	// rows of the keys this batch wrote, for the counts of a later op on
	// the same key (the batch is not readable before its commit).
	touched := make(map[string]rowState, len(entries))
	// cached: what the row cache gets once the batch is committed (a nil
	// row: no such key). A row small enough to cache is built once, for
	// the batch and the cache; a bigger one only invalidates.
	type cachedRow struct {
		key, row   []byte
		invalidate bool
	}
	cached := make([]cachedRow, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.LSN != applied+1 {
			return fmt.Errorf("storage: apply lsn %d after %d: %w", e.LSN, applied, ErrGap)
		}
		if e.LSN > durable {
			return fmt.Errorf("%w: lsn %d, durable %d", ErrNotDurable, e.LSN, durable)
		}
		for _, op := range e.Ops {
			kbuf = append(append(kbuf[:0], prefixData), op.Key...)
			old, ok := touched[string(op.Key)]
			if !ok {
				var err error
				if old, err = d.rowState(op.Key, kbuf); err != nil {
					return fmt.Errorf("storage: apply lsn %d: %w", e.LSN, err)
				}
			}
			now := rowState{exists: op.Kind == logrec.OpPut, expiring: op.Kind == logrec.OpPut && op.ExpireAtMs != 0}
			counts = counts.change(old, now)
			touched[string(op.Key)] = now
			switch op.Kind {
			case logrec.OpPut:
				cacheable := d.rows.Cacheable(len(op.Key), 8+len(op.Value))
				row := vbuf[:0] // too big to cache: the reused buffer
				if cacheable {
					row = make([]byte, 0, 8+len(op.Value))
				}
				row = binary.BigEndian.AppendUint64(row, uint64(op.ExpireAtMs))
				row = append(row, op.Value...)
				_ = b.Set(kbuf, row, nil)
				if cacheable {
					cached = append(cached, cachedRow{key: op.Key, row: row})
				} else {
					vbuf = row
					cached = append(cached, cachedRow{key: op.Key, invalidate: true})
				}
				if op.ExpireAtMs != 0 {
					_ = b.Set(expiryKey(op.ExpireAtMs, op.Key), nil, nil)
					earliest = minExpiry(earliest, op.ExpireAtMs)
				}
			case logrec.OpDelete:
				_ = b.Delete(kbuf, nil)
				cached = append(cached, cachedRow{key: op.Key})
			default:
				return fmt.Errorf("storage: apply lsn %d: op kind %v: %w", e.LSN, op.Kind, logrec.ErrCorrupt)
			}
		}
		applied = e.LSN
	}
	_ = b.Set(metaApplied, be64(applied), nil)
	_ = b.Set(metaKeys, counts.encode(), nil)
	if err := b.Commit(noSyncWrite); err != nil {
		return fmt.Errorf("storage: apply up to lsn %d: %w", applied, err)
	}
	// Write-through: the rows just committed go to the row cache, so a key
	// just written reads from memory (a delete caches "no such key").
	for _, c := range cached {
		if c.invalidate {
			d.rows.Invalidate(c.key)
		} else {
			d.rows.Put(c.key, c.row)
		}
	}
	d.mu.Lock()
	d.applied = applied
	d.counts = counts
	d.noteExpiryLocked(earliest)
	d.mu.Unlock()
	return nil
}

// KeyCounts are INFO's keyspace figures: the data rows, and those of them
// with an expiry. A key whose expiry passed counts until its deletion is
// applied, as in Redis, whose INFO counts keys not yet reaped.
type KeyCounts struct {
	Keys, Expires int64
}

// rowState is what Apply needs to know of a key's row for the counts.
type rowState struct{ exists, expiring bool }

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

// rowState reads key's stored row (kbuf is its data key): from the row
// cache when it holds the key, else from Pebble. Only Apply calls it,
// and Apply is the only writer of data rows besides ingest, so the row
// read is the one the batch replaces.
func (d *DB) rowState(key, kbuf []byte) (rowState, error) {
	raw, ok := d.rows.Peek(key)
	if !ok {
		got, closer, err := d.pdb.Get(kbuf)
		if errors.Is(err, pebble.ErrNotFound) {
			return rowState{}, nil
		}
		if err != nil {
			return rowState{}, fmt.Errorf("read %q for the key counts: %w", key, err)
		}
		defer closer.Close()
		raw = got
	}
	if len(raw) == 0 {
		return rowState{}, nil // cached as no such key
	}
	if len(raw) < 8 {
		return rowState{}, fmt.Errorf("stored value of %q is %d bytes: %w", key, len(raw), ErrCorrupt)
	}
	return rowState{exists: true, expiring: binary.BigEndian.Uint64(raw) != 0}, nil
}

// recoverCounts reads the key counts, or, in a data dir from before they
// were kept, counts the data rows once and saves the counts (unsynced: if
// they are lost, the next Open counts again).
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
		d.log.Info("storage: counted the data rows once (a data dir from before the key counts were kept)", "keys", d.counts.Keys, "expires", d.counts.Expires)
	}
	if err := d.pdb.Set(metaKeys, d.counts.encode(), noSyncWrite); err != nil {
		return fmt.Errorf("storage: save the key counts: %w", err)
	}
	return nil
}

// countRows counts the data rows by a scan.
func (d *DB) countRows() (KeyCounts, error) {
	var c KeyCounts
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	if err != nil {
		return c, fmt.Errorf("storage: count keys: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) < 8 {
			return c, fmt.Errorf("storage: count keys: stored value of %q is %d bytes: %w", it.Key()[1:], len(v), ErrCorrupt)
		}
		c.Keys++
		if binary.BigEndian.Uint64(v) != 0 {
			c.Expires++
		}
	}
	if err := it.Error(); err != nil {
		return c, fmt.Errorf("storage: count keys: %w", err)
	}
	return c, nil
}

// noteExpiryLocked records that index rows expiring at earliest (0: none)
// or later were written. The caller holds mu and has committed them.
func (d *DB) noteExpiryLocked(earliest int64) {
	if earliest == 0 {
		return
	}
	d.expiryWrites++
	if d.nextExpiry != 0 {
		d.nextExpiry = min(d.nextExpiry, earliest)
	}
}

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

// minExpiry is the earlier of two expiry times, 0 meaning none.
func minExpiry(a, b int64) int64 {
	if a == 0 {
		return b
	}
	return min(a, b)
}

// Digest hashes the whole data keyspace (keys, values and expiry times) as
// of one consistent point, with the applied LSN at that point. Two nodes at
// the same applied LSN must have equal digests.
func (d *DB) Digest() (applied uint64, sum [32]byte, err error) {
	snap := d.pdb.NewSnapshot()
	defer snap.Close()
	applied, err = getUint(snap, metaApplied)
	if err != nil {
		return 0, sum, err
	}
	it, err := snap.NewIter(&pebble.IterOptions{LowerBound: dataLower, UpperBound: dataUpper})
	if err != nil {
		return 0, sum, fmt.Errorf("storage: digest: %w", err)
	}
	defer it.Close()
	h := sha256.New()
	var n [8]byte
	for ok := it.First(); ok; ok = it.Next() {
		binary.BigEndian.PutUint64(n[:], uint64(len(it.Key())))
		h.Write(n[:])
		h.Write(it.Key())
		binary.BigEndian.PutUint64(n[:], uint64(len(it.Value())))
		h.Write(n[:])
		h.Write(it.Value())
	}
	if err := it.Error(); err != nil {
		return 0, sum, fmt.Errorf("storage: digest: %w", err)
	}
	copy(sum[:], h.Sum(nil))
	return applied, sum, nil
}

// Metrics exposes Pebble's metrics for /metrics.
func (d *DB) Metrics() *pebble.Metrics { return d.pdb.Metrics() }

// DiskBytes is what the storage holds on disk: Pebble's files (data,
// its own log, manifests) and the replication log's segments.
func (d *DB) DiskBytes() int64 {
	return int64(d.pdb.Metrics().DiskSpaceUsage()) + d.wal.Bytes()
}

func (d *DB) getUint(key []byte) (uint64, error) { return getUint(d.pdb, key) }

func (d *DB) getMeta(key []byte) ([]byte, bool, error) {
	v, closer, err := d.pdb.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: read %s: %w", key[1:], err)
	}
	defer closer.Close()
	return bytes.Clone(v), true, nil
}

type getter interface {
	Get(key []byte) ([]byte, io.Closer, error)
}

func getUint(g getter, key []byte) (uint64, error) {
	v, closer, err := g.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("storage: read %s: %w", key[1:], err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("storage: %s is %d bytes: %w", key[1:], len(v), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(v), nil
}

func decodeValue(raw []byte) (keyspace.Value, error) {
	if len(raw) < 8 {
		return keyspace.Value{}, fmt.Errorf("storage: value of %d bytes: %w", len(raw), ErrCorrupt)
	}
	return keyspace.Value{ExpireAtMs: int64(binary.BigEndian.Uint64(raw)), Data: raw[8:]}, nil
}

func expiryKey(atMs int64, key []byte) []byte {
	k := make([]byte, 9, 9+len(key))
	k[0] = prefixExpiry
	binary.BigEndian.PutUint64(k[1:], uint64(atMs))
	return append(k, key...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func encodePosition(p logrec.Position) []byte {
	return binary.BigEndian.AppendUint64(be64(p.Epoch), p.LSN)
}

func decodePosition(b []byte) (logrec.Position, error) {
	if len(b) != 16 {
		return logrec.Position{}, fmt.Errorf("position of %d bytes: %w", len(b), ErrCorrupt)
	}
	return logrec.Position{Epoch: binary.BigEndian.Uint64(b), LSN: binary.BigEndian.Uint64(b[8:])}, nil
}

func encodePositions(ps []logrec.Position) []byte {
	var out []byte
	for _, p := range ps {
		out = append(out, encodePosition(p)...)
	}
	return out
}

func decodePositions(b []byte) ([]logrec.Position, error) {
	if len(b)%16 != 0 {
		return nil, fmt.Errorf("positions of %d bytes: %w", len(b), ErrCorrupt)
	}
	var out []logrec.Position
	for i := 0; i < len(b); i += 16 {
		p, _ := decodePosition(b[i : i+16])
		out = append(out, p)
	}
	return out, nil
}

// pebbleLogger sends Pebble's own messages to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}

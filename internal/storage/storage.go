// Package storage keeps a node's data and metadata in one Pebble database,
// and its replication log in segment files beside it (package wal).
//
// # Files and keyspaces
//
//	<dir>/       Pebble: the data, the expiry index and the metadata
//	<dir>/log/   the replication log (package wal): one record per logrec
//	             entry, the record's LSN the entry's
//
//	'd' key                         -> metadata row    package keyspace's rows: one per key
//	's' keyLen key version sub      -> value           and one per field/member/element
//	'e' expireAtMs key              -> ""              expiry index
//	'm' name                        -> value           metadata
//
// The 'd' and 's' rows are package keyspace's: it alone encodes them, and
// Apply writes them through keyspace.Apply; View reads them through a
// keyspace.Reader. A string's 'd' row is what it always was (expiry |
// value), so data dirs from before typed values open unchanged. Files by
// job: storage.go (open, recovery, positions), log.go (the log, epochs,
// truncation), apply.go (Apply), rows.go (View: reads through the row
// cache), view.go (ExpiredKeys), snapshot.go (snapshots and ingest),
// digest.go, sweep.go (garbage sub-key rows), encoding.go.
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
//     An entry with a string longer than keyspace.ChunkThreshold is
//     written in several batches, the applied LSN in the last (apply.go):
//     a crash can keep some of them, which the replay writes again; the
//     first marks the entry partly applied (metaPartial), so that no
//     truncation drops it from the log before it is applied
//     (TruncateLogAfter refuses, ErrBelowApplied, as for an applied one).
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
// rows as it meets them. This keeps Apply from reading the index: it reads
// only each key's old metadata row (for the key counts, from the row cache
// when it holds the row). For the same reason a write that replaces a
// collection without reading it leaves the old version's sub-key rows
// behind, unreadable; Sweep removes them in the background (see sweep.go
// for what it promises).
package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
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
	metaPartial = []byte("mpartial")
	expiryLower = []byte{prefixExpiry}
	expiryUpper = []byte{prefixExpiry + 1}
	oldLogLower = []byte{prefixOldLog}
	oldLogUpper = []byte{prefixOldLog + 1}
	syncWrite   = pebble.Sync
	noSyncWrite = pebble.NoSync
)

// Options configure Open. The memory figures are what the node's
// --max-memory budget assigns (internal/node); 0 means the default.
type Options struct {
	// FS is the file system, for Pebble and the log; nil means the real
	// disk. Tests use vfs.NewMem.
	FS vfs.FS
	// LogSegmentSize is the nominal size of a log segment file; 0 means
	// DefaultLogSegmentSize.
	LogSegmentSize int64
	// CacheBytes is Pebble's block cache size; 0 means 64 MiB.
	CacheBytes int64
	// MemTableBytes is the size of one of Pebble's memtables; 0 means
	// DefaultMemTableBytes. Pebble keeps up to MemTables of them (the
	// one being written and those waiting to flush) before writes stall;
	// 0 means DefaultMemTables. Their memory is charged to the block
	// cache's allocation, beside CacheBytes (MemoryBytes).
	MemTableBytes int64
	MemTables     int
	// RowCacheBytes bounds the cache of data rows (metadata and sub-key
	// rows) that point reads fill and Apply writes through
	// (package rowcache); 0 means 64 MiB, negative means none.
	RowCacheBytes int64
	// ReclaimBytes is the disk a span deleted by a DEL of a collection or
	// a FLUSHALL must hold before it is compacted in the background to
	// give the space back; 0 means DefaultReclaimBytes.
	ReclaimBytes int64
	Logger       *slog.Logger
}

// MemoryBytes is the most memory Pebble's cache allocation can hold under
// these options: the block cache and every memtable. It lives outside the
// Go heap (Pebble allocates it by hand), so a Go memory limit leaves it
// out.
func (o Options) MemoryBytes() int64 {
	o = o.withDefaults()
	return o.CacheBytes + o.MemTableBytes*int64(o.MemTables)
}

func (o Options) withDefaults() Options {
	if o.LogSegmentSize == 0 {
		o.LogSegmentSize = DefaultLogSegmentSize
	}
	if o.ReclaimBytes == 0 {
		o.ReclaimBytes = DefaultReclaimBytes
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 64 << 20
	}
	if o.MemTableBytes == 0 {
		o.MemTableBytes = DefaultMemTableBytes
	}
	if o.MemTables == 0 {
		o.MemTables = DefaultMemTables
	}
	if o.RowCacheBytes == 0 {
		o.RowCacheBytes = 64 << 20
	}
	return o
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
	// reclaim compacts the spans of large drops in the background.
	reclaim *reclaimer
	// filters tell Apply which keys have no metadata row (keyfilter.go).
	filters keyFilters
	// readMu makes a read command see each applied batch whole: a
	// collection's metadata row and its element rows are separate reads,
	// and a batch committed between them would show half an entry (a
	// list's head row from before a move and its elements from after).
	// Apply holds it across its commit and row cache update (across all
	// its batches when it writes a chunked string in parts, apply.go); a
	// read command holds it shared (ReadLock) while it runs, as Redis runs
	// one command at a time, and so do the Pebble snapshots of Digest,
	// NewSnapshot and SnapshotRows when they are taken.
	readMu sync.RWMutex
	// afterPart, when set (tests), is called after Apply commits each
	// part of an entry but the last.
	afterPart func(part int)

	// logMu serialises the changes to the log other than appends
	// (truncations, ingest), and keeps them out of NewSnapshot while it
	// reads the epoch of its applied entry.
	logMu sync.Mutex

	// sweepMu serialises Sweep calls; it guards sweep.
	sweepMu sync.Mutex
	sweep   sweepState

	mu      sync.Mutex // guards the fields below
	durable logrec.Position
	logBase logrec.Position
	applied uint64
	// partial is the last entry an Apply in parts (apply.go) may have
	// written some rows of without finishing (metaPartial): found at Open
	// after a crash mid-Apply, 0 once an Apply finishes. Those rows are
	// applied data for truncation: the log cannot lose the entry.
	partial uint64
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
	// expiryWritten (capacity 1; set at Open, not guarded) is signalled
	// when a write lowered nextExpiry (ExpiryWritten).
	expiryWritten chan struct{}
	expiryScans   uint64 // scans that read the index (tests)
}

// Defaults of Options.
//
// Pebble's memtables: writes stall when MemTables are full. Pebble
// preallocates each of its WAL files to 110% of a memtable's size and
// keeps one per memtable (plus one) for reuse, so the memtable size is
// also Pebble's disk floor: with 64 MiB ones a node held ~430 MB of WAL
// files (75 MB written) after 1M x 100 B keys, with 16 MiB ones ~90 MB.
// The node sets them from its memory budget.
//
// Log segments are preallocated too, and retention removes whole
// segments: a 16 MiB segment bounds both the space a fresh segment
// holds before it fills and what a trim leaves behind.
const (
	DefaultMemTableBytes  = 16 << 20
	DefaultMemTables      = 4
	DefaultLogSegmentSize = 16 << 20
)

// Open opens (creating if needed) the database in dir and its log in
// dir/log, and recovers the positions from them. It reads every retained
// log entry to verify its checksum and measure the log.
func Open(dir string, opts Options) (*DB, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	opts = opts.withDefaults()
	// Pebble charges its memtables to the block cache: a cache no larger
	// than the memtables holds no block at all, and every read decompresses
	// its blocks again. The cache is sized for both.
	c := pebble.NewCache(opts.MemoryBytes())
	defer c.Unref()
	po := &pebble.Options{
		FS:                          opts.FS,
		Cache:                       c,
		MemTableSize:                uint64(opts.MemTableBytes),
		MemTableStopWritesThreshold: opts.MemTables,
		Logger:                      pebbleLogger{log},
	}
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	// Pebble's own scheduler, without its 100 ms timer while idle.
	po.Experimental.CompactionScheduler = newCompactionScheduler()
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	d := &DB{pdb: pdb, log: log, rows: rowcache.NewGrouped(opts.RowCacheBytes, subGroupLen), expiryWritten: make(chan struct{}, 1)}
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
	// Last: what recovery replays is left to Pebble's own compactions.
	d.reclaim = newReclaimer(pdb, log, opts.ReclaimBytes)
	d.filters.stop = make(chan struct{})
	d.startScan(d.counts.Keys, d.counts.Keys <= filterSyncKeys)
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
	if d.partial, err = d.getUint(metaPartial); err != nil {
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
	d.closeFilters()
	d.reclaim.close()
	werr := d.wal.Close()
	if err := d.pdb.Close(); err != nil {
		return err
	}
	return werr
}

// ReadLock holds off Apply's commits until the returned func is called,
// so that a read command's several row reads see the same applied
// batches. Not for writes: Apply itself waits for it.
func (d *DB) ReadLock() (unlock func()) {
	d.readMu.RLock()
	return d.readMu.RUnlock
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

// Metrics exposes Pebble's metrics for /metrics.
func (d *DB) Metrics() *pebble.Metrics { return d.pdb.Metrics() }

// DiskBytes is what the storage holds on disk: Pebble's files (data,
// its own log, manifests) and the replication log's segments.
func (d *DB) DiskBytes() int64 {
	return int64(d.pdb.Metrics().DiskSpaceUsage()) + d.wal.Bytes()
}

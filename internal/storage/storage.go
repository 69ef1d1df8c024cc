// Package storage keeps a node's data and metadata in one Pebble database,
// and its replication log in segment files beside it (package wal).
//
// # Files and keyspaces
//
//	<dir>/       Pebble: the data, the expiry index and the metadata
//	<dir>/log/   the replication log (package wal): one record per logrec
//	             entry, the record's LSN the entry's
//	<dir>/epochs the highest epoch seen and the epoch history (epochfile.go)
//	<dir>/FORMAT the data dir's format (package dataformat; format.go)
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
// count), the log base (the position before the first retained entry) and
// the seeding mark. The highest epoch seen and the epoch history are in the
// epoch file, written synced and renamed into place (older data dirs have
// them in Pebble, 'm' epoch and epochs). Before the log moved to segment
// files it lived in Pebble under 'l' (lsn, 8 bytes BE -> the entry).
//
// # The format gate
//
// Open runs package dataformat's gate (format.go): it reads <dir>/FORMAT
// before Pebble or the log touch the dir and refuses a newer format
// (ErrNewerFormat) untouched; it recognises a dir without a marker by what
// it holds (rows under 'l': format 1, refused with ErrOldFormat: wipe it
// and re-seed the node; an epoch file: format 3; else format 2, or a new
// dir); it migrates format 2 by copying the epochs from Pebble to the
// epoch file (synced), and writes the marker (synced, renamed into place)
// last, so a crash mid-migration leaves an unmarked format-2 dir or an
// unmarked dir with its epoch file, either of which the next Open takes
// up (TestFormatMigrationCrash). A marked dir without its epoch file is
// ErrCorrupt.
//
// # Promises
//
//   - AppendLog makes entries durable (one fdatasync of the log) before it
//     returns, and the durable position is always the last entry in the
//     log (or the log base when the log is empty): there is no separate
//     counter to drift.
//   - Apply writes an entry's operations and the new applied LSN in one
//     Pebble batch, so after a crash data and applied LSN are in step.
//     Pebble keeps no log of its own (Options.DisableWAL): the
//     replication log is the data's write-ahead log. A batch reaches the
//     disk when Pebble flushes the memtable holding it (when it fills, or
//     when a flush is asked for below); a crash keeps the batches of the
//     flushed memtables, a prefix of them, and the node replays its log
//     from the applied LSN it finds.
//     An entry with a string longer than keyspace.ChunkThreshold is
//     written in several batches, the applied LSN in the last (apply.go):
//     a crash can keep some of them, which the replay writes again; the
//     first marks the entry partly applied (metaPartial), so that no
//     truncation drops it from the log before it is applied
//     (TruncateLogAfter refuses, ErrBelowApplied, as for an applied one).
//   - Applied never passes durable on disk, nor in memory but within an
//     AppendLogWhile, whose during may Apply the entries it appends (the
//     caller's promise: they are committed elsewhere); Apply refuses any
//     other entry beyond the log. A flush waits until the log is durable
//     through every entry applied ahead (flushFence).
//   - KeyCounts is exact for the data as applied: Apply and IngestRows
//     update the counts in the batch that writes the rows, so a crash
//     keeps them in step with the data, and replay counts from there. A
//     data dir without them (older than the counts) is counted once, by
//     a scan, at Open.
//   - The log keeps every entry that Pebble may not have made durable:
//     retention deletes a log segment only once a finished flush holds
//     the applies through it (TruncateLogBefore).
//   - The seen epoch and the epoch history, which must be durable before
//     the step after their change, are in the epoch file (synced, one
//     fsync and a rename): an epoch change (a failover) never waits for a
//     Pebble flush, which took ~1 s under load. The Pebble writes that
//     must be durable before the next step (a seed's marks) are flushed
//     (DB.flushed): a flush writes every memtable before it too. There
//     is no synced Pebble commit: with no Pebble log there is nothing to
//     sync. Close flushes, so a clean restart replays nothing.
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
// can recover. "Flushed" below means written to Pebble and made durable by
// a flush of its memtables, which makes every earlier Pebble write durable
// too: Pebble flushes its memtables in order, each a run of commits.
//
//   - AppendLog: a new epoch start (and a raised seen epoch) is written to
//     the epoch file, synced, before the entries go to the log. A crash between
//     leaves a start beyond the log's end; Open drops the starts past
//     durable+1 (and saves the history), and keeps one at durable+1, the
//     same state StartEpoch leaves before a leader's first entry.
//   - Apply after AppendLog, or during it (AppendLogWhile): Pebble can
//     only hold applied LSNs whose entries were synced to the log (an
//     apply ahead reaches the disk only by a flush, which waits for the
//     log: flushFence; TestApplyAheadCrash), and the log is never cut below
//     applied, so Open finds applied ≤ durable and the entries after
//     applied to replay. A crash loses every Apply since the last flush
//     (a kill -9 too, not only a power loss): Open's applied LSN is that
//     flush's, and the log still holds all that follows (next point).
//   - TruncateLogBefore (retention): the new log base is written
//     (unflushed) after the applies through it; a segment is deleted only
//     after a flush that began after that write has finished, so Pebble's
//     disk holds a base and an applied LSN at or past every deleted entry.
//     The flush is asked for without waiting (the leader's tick runs
//     retention) and a later call deletes the segments. A crash before the
//     deletion leaves entries at or below the base, which Open trims. If
//     Open ever finds the log starting after base+1 (or after applied+1: a
//     gap that cannot be replayed) that is corruption.
//     TestCrashAtEveryStep and TestKill9AfterRetention fail when a segment
//     goes before the flush.
//   - TruncateLogAfter: the log first, then the epoch history (synced). A
//     crash between leaves starts past the log's end, handled as above.
//     The other order could leave entries whose epoch start is gone.
//   - BeginIngest: the seeding mark, the emptied data and the zeroed
//     positions go to Pebble first (flushed), then the epoch history is
//     emptied and the log is emptied. Open
//     of a seeding node empties the log (its entries predate the seed),
//     and the seed starts again.
//   - FinishIngest: the log is reset to the snapshot's position first, then
//     the epoch file gets the snapshot's history, then Pebble gets the
//     positions and loses the seeding mark (flushed, with
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
	"sync/atomic"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/dataformat"
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
	// ErrOldFormat: the data dir is of a format this build cannot migrate
	// (dataformat.ErrOlder): the log in Pebble, the format from before
	// the log moved to its own files. Wipe it and re-seed the node.
	ErrOldFormat = dataformat.ErrOlder
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
	// noSyncWrite is the only commit Pebble takes: it keeps no log of its
	// own (Options.DisableWAL), so a write is durable once its memtable
	// is flushed (flushed), never by a synced commit.
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
	// CheckPriors (tests) makes Apply read the row every put's Prior
	// describes, as it would without it, and fail on a mismatch: a
	// leader that says a wrong prior is caught where it happens, not
	// in a key count that drifts later.
	CheckPriors bool

	// pebbleWAL turns Pebble's own log back on: only for the benchmark
	// that measures what it cost (BenchmarkApplyPebbleWAL).
	pebbleWAL bool
	// afterPebbleOpen, when set (tests), is called once Pebble is open,
	// before the format gate's migration: the crash tests of a migration
	// take their clones from there (Pebble's own Open is Pebble's to
	// test). A pointer, so that Options stay comparable.
	afterPebbleOpen *func()
	// fenceHook, when set (tests), is called with "wait" when the flush
	// fence begins to hold a flush and "flushed" when a flush ends.
	fenceHook *func(event string)
	// l0Compaction, when not 0, is Pebble's L0CompactionThreshold in
	// place of this package's: only for the benchmark that measures what
	// the choice saves (BenchmarkBulkApply).
	l0Compaction int
	// tune, when set, changes Pebble's options last: only for the
	// benchmark that compares them (BenchmarkBulkShape). A pointer, so
	// that Options stay comparable.
	tune *func(*pebble.Options)
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
	// checkPriors: Options.CheckPriors.
	checkPriors bool
	wal         *wal.WAL
	log         *slog.Logger
	// fs and dir locate the epoch file (epochfile.go).
	fs  vfs.FS
	dir string
	// epochMu serialises the changes of the epoch file (changeEpochs).
	epochMu sync.Mutex
	// rows caches data rows for View.Get. Every write of a data row puts
	// it there (Apply; on a follower only over a cached row, see
	// SetWritesFill) or invalidates it (IngestRows; BeginIngest clears
	// it all) after the row is committed and before the write is reported
	// applied. FinishIngest writes no data row, so it leaves it alone.
	rows *rowcache.Cache
	// writesFillNot: Apply only updates the rows the cache holds and
	// caches none it did not (SetWritesFill).
	writesFillNot atomic.Bool
	// applyRecords counts the records Apply put in its Pebble batches
	// (rows, deletes, range deletes, its own metadata: ApplyRecords).
	applyRecords atomic.Uint64
	// cacheWrites counts the rows Apply gave the row cache (Put,
	// Update, Invalidate) after its batches, for tests.
	cacheWrites atomic.Uint64
	// reclaim compacts the spans of large drops in the background.
	reclaim *reclaimer
	// trim gives what Pebble frees outside the Go heap back (cmem.go).
	trim *trimmer
	// filters tell Apply which keys have no metadata row, subFilters
	// the point reads which sub-key rows are not stored (keyfilter.go).
	filters, subFilters keyFilters
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
	// readUnlock is readMu.RUnlock, made once: ReadLock returns it, and
	// a method value made per call is an allocation per read.
	readUnlock func()
	// afterPart, when set (tests), is called after Apply commits each
	// part of an entry but the last.
	afterPart func(part int)

	// logMu serialises the changes to the log other than appends
	// (truncations, ingest), and keeps them out of NewSnapshot while it
	// reads the epoch of its applied entry. It guards the retention's
	// flush state below too (TruncateLogBefore).
	logMu sync.Mutex
	// flushedBase is a log base that a finished Pebble flush holds, with
	// every apply through its LSN: log segments wholly at or below it may
	// go. flushing is the flush retention asked for and has not seen
	// finish (nil: none); closing stops retention asking for more. Guarded
	// by logMu.
	flushedBase logrec.Position
	flushing    *retentionFlush
	closing     bool

	// sweepMu serialises Sweep calls; it guards sweep.
	sweepMu sync.Mutex
	sweep   sweepState

	// applyAhead: Apply may take entries an AppendLogWhile is appending
	// (off with Pebble's own log, which could make them durable first).
	applyAhead bool
	fenceHook  *func(string)
	// fence is the flush fence's state (flushFence), under a mutex of its
	// own: Pebble calls the fence holding its own lock, which no holder
	// of mu may then wait for.
	fence struct {
		mu   sync.Mutex
		cond *sync.Cond
		// durable is the durable LSN as the fence knows it, ahead the
		// highest LSN an Apply took ahead of the log (set before its
		// batch commits). failed: the append those entries were in
		// failed; the fence no longer holds (Close does not flush while
		// applied is past durable; Open would refuse the data if a flush
		// Pebble started itself made such an apply durable: ErrCorrupt).
		durable, ahead uint64
		failed         bool
	}

	mu sync.Mutex // guards the fields below
	// appendingTo is the last LSN of the log append that AppendLogWhile
	// runs now (0: none): Apply may take entries up to it.
	appendingTo uint64
	durable     logrec.Position
	logBase     logrec.Position
	applied     uint64
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
// Pebble's memtables: writes stall when MemTables are full. (When Pebble
// kept its own log it preallocated each log file to 110% of a memtable
// and kept one per memtable for reuse: with 64 MiB memtables a node held
// ~430 MB of them after 1M x 100 B keys, with 16 MiB ones ~90 MB. It keeps
// none now.) The memtables hold the applies since the last flush, which a
// crash replays from the log. The node sets them from its memory budget.
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
	// What Pebble frees outside the Go heap goes back to the OS (cmem.go).
	tuneMalloc()
	trim := newTrimmer()
	// The flush fence (flushFence) is Pebble's FlushBegin: the DB is
	// made after Pebble, so the listener finds it here.
	var fenced atomic.Pointer[DB]
	po := &pebble.Options{
		FS:                          opts.FS,
		Cache:                       c,
		MemTableSize:                uint64(opts.MemTableBytes),
		MemTableStopWritesThreshold: opts.MemTables,
		Logger:                      pebbleLogger{log},
		// The replication log is the write-ahead log of the data: Pebble's
		// own would be a second write and copy of every Apply, on every
		// node (see "Crash ordering" in the package comment).
		DisableWAL: !opts.pebbleWAL,
		EventListener: &pebble.EventListener{
			FlushBegin: func(pebble.FlushInfo) {
				if d := fenced.Load(); d != nil {
					d.flushFence()
				}
			},
			FlushEnd: func(pebble.FlushInfo) {
				trim.kick()
				if opts.fenceHook != nil {
					(*opts.fenceHook)("flushed")
				}
			},
			CompactionEnd: func(pebble.CompactionInfo) { trim.kick() },
		},
	}
	// Bloom filters on every level but the last, as RocksDB's
	// optimize_filters_for_hits: a point read that reaches the bottom
	// level is for a key that is there (a key no level holds is answered
	// by the key filters before Pebble, keyfilter.go, but for their ~1%),
	// so its filter only costs: built over most of the keys by every
	// compaction into it, and on disk. BenchmarkBulkShape (1M new keys,
	// load 22–40): 3.58–3.67 → 3.35–3.36 cpu-µs/key, disk 9.7 → 8.6 MiB,
	// a point read's CPU unchanged (5.5–6.0 → 5.7 µs).
	filter := bloom.FilterPolicy(10)
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = filter
	}
	po.Levels[len(po.Levels)-1].FilterPolicy = pebble.NoFilterPolicy
	if opts.l0Compaction != 0 {
		po.L0CompactionThreshold = opts.l0Compaction
		po.L0StopWritesThreshold = max(12, 3*opts.l0Compaction)
	}
	// Pebble's own scheduler, without its 100 ms timer while idle.
	po.Experimental.CompactionScheduler = newCompactionScheduler()
	// No table holds rows of two kinds (lsmshape.go).
	po.Experimental.SpanPolicyFunc = splitAtPrefixes
	if opts.tune != nil {
		(*opts.tune)(po)
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	// The format gate (format.go) reads the marker before Pebble or the
	// log touch the dir: a newer format is refused untouched.
	marked, _, err := dataformat.Read(fs, dir)
	if err == nil && marked != 0 {
		err = dataformat.CheckVersion(dir, marked)
	}
	if err != nil {
		trim.close()
		return nil, err
	}
	fresh := true
	if desc, err := pebble.Peek(dir, fs); err == nil {
		fresh = !desc.Exists
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		trim.close()
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	d := &DB{pdb: pdb, log: log, fs: fs, dir: dir, rows: rowcache.NewGrouped(opts.RowCacheBytes, subGroupLen), trim: trim, expiryWritten: make(chan struct{}, 1),
		checkPriors: opts.CheckPriors, applyAhead: !opts.pebbleWAL, fenceHook: opts.fenceHook}
	d.readUnlock = d.readMu.RUnlock
	d.fence.cond = sync.NewCond(&d.fence.mu)
	fenced.Store(d)
	if opts.afterPebbleOpen != nil {
		(*opts.afterPebbleOpen)()
	}
	if err := d.openFormat(marked, fresh); err != nil {
		pdb.Close()
		trim.close()
		return nil, err
	}
	// Zeros ahead of the log's tail on the real disk: an append's
	// fdatasync then flushes data only (wal's "Zeros ahead"); not on a
	// test's in-memory FS, where it would only cost memory.
	d.wal, err = wal.Open(fs.PathJoin(dir, logDir), wal.Options{FS: fs, SegmentSize: opts.LogSegmentSize, Logger: log, ZeroAhead: opts.FS == nil})
	if err != nil {
		pdb.Close()
		trim.close()
		return nil, fmt.Errorf("storage: open the log: %w", err)
	}
	if err := d.recover(); err != nil {
		d.wal.Close()
		pdb.Close()
		trim.close()
		return nil, err
	}
	// Last: what recovery replays is left to Pebble's own compactions.
	d.reclaim = newReclaimer(pdb, log, opts.ReclaimBytes)
	d.filters.init(keyspace.MetaLower, keyspace.MetaUpper, 1)
	d.startScan(&d.filters, d.counts.Keys, d.counts.Keys <= filterSyncKeys)
	d.subFilters.init(keyspace.SubLower, keyspace.SubUpper, 0)
	d.startScan(&d.subFilters, 0, false)
	return d, nil
}

func (d *DB) recover() error {
	var err error
	if d.applied, err = d.getUint(metaApplied); err != nil {
		return err
	}
	if d.partial, err = d.getUint(metaPartial); err != nil {
		return err
	}
	if v, ok, err := d.getMeta(metaLogBase); err != nil {
		return err
	} else if ok {
		if d.logBase, err = decodePosition(v); err != nil {
			return fmt.Errorf("storage: log base: %w", err)
		}
	}
	// Every data dir of the current format has its epoch file (a new
	// one and an older one got it in openFormat).
	seen, history, ok, err := d.loadEpochs()
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("storage: %s is data dir format %d but has no epoch file %s: %w", d.dir, dataformat.Current, epochFile, ErrCorrupt)
	}
	d.epoch, d.epochs = seen, history
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
		if err := d.saveEpochs(d.epoch, kept); err != nil {
			return fmt.Errorf("storage: save the epoch history: %w", err)
		}
		d.epochs = kept
	}
	// What Open read from Pebble is on disk (Pebble has no log to replay):
	// the log base is durable with every apply through it.
	d.flushedBase = d.logBase
	if d.durable.Epoch > d.epoch {
		d.epoch = d.durable.Epoch
	}
	return nil
}

// Close closes the database and the log. It flushes Pebble's memtables
// first, so that the next Open has nothing to replay; a crash instead
// leaves the replay to Open's caller (the applies after Applied).
func (d *DB) Close() error {
	d.logMu.Lock()
	d.closing = true
	f := d.flushing
	d.logMu.Unlock()
	if f != nil {
		<-f.done // its AsyncFlush must not meet a closed Pebble
	}
	d.closeFilters()
	d.reclaim.close()
	// Applied past the log (an apply ahead whose append failed,
	// AppendLogWhile) must not reach the disk: a flush would leave
	// applied past durable, which Open refuses. Unflushed applies are
	// replayed from the log, so leaving them is always safe.
	d.mu.Lock()
	ahead := d.applied > d.durable.LSN
	applied, durable := d.applied, d.durable.LSN
	d.mu.Unlock()
	var ferr error
	if ahead {
		d.log.Warn("close: applied is past the durable log (a failed append); not flushing, the log is replayed at open", "applied", applied, "durable", durable)
	} else if ferr = d.pdb.Flush(); ferr != nil {
		ferr = fmt.Errorf("storage: flush at close: %w", ferr)
	}
	werr := d.wal.Close()
	perr := d.pdb.Close()
	d.trim.close() // after Pebble's last event
	if perr != nil {
		return perr
	}
	return errors.Join(ferr, werr)
}

// flushed commits b and makes it durable, with every write committed
// before it: Pebble keeps no log (Options.DisableWAL), so only a flush of
// the memtables writes anything to disk, and Pebble flushes its memtables
// in order, each holding a run of commits. It blocks for the flush: for
// the rare writes that must be durable before the next step (an epoch, an
// epoch history cut, a seed's marks), never for Apply.
func (d *DB) flushed(b *pebble.Batch) error {
	if err := b.Commit(noSyncWrite); err != nil {
		return err
	}
	if err := d.pdb.Flush(); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}

// ReadLock holds off Apply's commits until the returned func is called,
// so that a read command's several row reads see the same applied
// batches. Not for writes: Apply itself waits for it.
func (d *DB) ReadLock() (unlock func()) {
	d.readMu.RLock()
	return d.readUnlock
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

// AppliedPosition is the position of the last entry applied to the data:
// its epoch from the history (0 before any start), as
// replication.EpochAt(EpochHistory(), Applied()) computes it, without
// copying the history: every read asks it.
func (d *DB) AppliedPosition() logrec.Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	var e uint64
	for _, s := range d.epochs {
		if s.LSN > d.applied {
			break
		}
		e = s.Epoch
	}
	return logrec.Position{Epoch: e, LSN: d.applied}
}

// Metrics exposes Pebble's metrics for /metrics.
func (d *DB) Metrics() *pebble.Metrics { return d.pdb.Metrics() }

// DiskBytes is what the storage holds on disk: Pebble's files (data,
// its own log, manifests) and the replication log's segments.
func (d *DB) DiskBytes() int64 {
	return int64(d.pdb.Metrics().DiskSpaceUsage()) + d.wal.Bytes()
}

// MemoryStats is what the storage holds in memory, by part, for the
// node's memory accounting (/debug/memory).
type MemoryStats struct {
	// BlockCacheBytes is Pebble's block cache in use; MemTableBytes its
	// memtables (and large batches), MemTableZombieBytes those no longer
	// written but still held (by an iterator, or kept for reuse). Pebble
	// allocates all three outside the Go heap.
	BlockCacheBytes     int64
	MemTableBytes       int64
	MemTableZombieBytes int64
	// RowCacheBytes is the row cache (Go heap), as it charges itself.
	RowCacheBytes int64
	// KeyFilterBytes is the key filters' bit arrays (Go heap): the one
	// answering and, during a scan, the one being filled.
	KeyFilterBytes int64
	// Trims counts the C allocator's trims after Pebble freed memory
	// (cmem.go), TrimsReleased those that gave pages back, TrimNanos
	// their total CPU time.
	Trims, TrimsReleased, TrimNanos int64
	// Pebble is Pebble's own metrics report (its manual memory by
	// purpose among them).
	Pebble string
}

// MemoryStats reports what the storage holds in memory.
func (d *DB) MemoryStats() MemoryStats {
	m := d.pdb.Metrics()
	st := MemoryStats{
		BlockCacheBytes:     m.BlockCache.Size,
		MemTableBytes:       int64(m.MemTable.Size),
		MemTableZombieBytes: int64(m.MemTable.ZombieSize),
		RowCacheBytes:       int64(d.rows.Stats().Bytes),
		Pebble:              m.String(),
		Trims:               d.trim.trims.Load(),
		TrimsReleased:       d.trim.released.Load(),
		TrimNanos:           d.trim.nanos.Load(),
	}
	for _, f := range [2]*keyFilter{d.filters.cur.Load(), d.filters.next.Load()} {
		if f != nil {
			st.KeyFilterBytes += int64(len(f.blocks)) * int64(unsafe.Sizeof(filterBlock{}))
		}
	}
	return st
}

// OffHeapBytes is what Pebble holds outside the Go heap now: its block
// cache and its memtables, flushed ones still held included. Cheaper than
// MemoryStats (no report is formatted): the node's memory governor reads
// it twice a second under load.
func (d *DB) OffHeapBytes() int64 {
	m := d.pdb.Metrics()
	return m.BlockCache.Size + int64(m.MemTable.Size) + int64(m.MemTable.ZombieSize)
}

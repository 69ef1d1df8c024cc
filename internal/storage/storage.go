// Package storage keeps a node's data, replication log and metadata in one
// Pebble database.
//
// # Keyspaces
//
//	'd' key              -> expireAtMs (8 bytes, big endian) | value   the data
//	'e' expireAtMs key   -> ""                                        expiry index
//	'l' lsn (8 bytes BE) -> logrec encoding                           the log
//	'm' name             -> value                                     metadata
//
// # Promises
//
//   - AppendLog makes entries durable (fsync) before it returns, and the
//     durable position is always the last entry in the log (or the log base
//     when the log is empty): there is no separate counter to drift.
//   - Apply writes an entry's operations and the new applied LSN in one
//     Pebble batch, so after a crash data and applied LSN are in step.
//   - Applied never passes durable: Apply refuses entries beyond the log.
//   - Reads of a log entry verify its checksum; a corrupt entry is an error
//     wrapping logrec.ErrCorrupt, never skipped. Other damage (a misplaced
//     entry, a malformed value or metadata record) wraps ErrCorrupt. Both
//     are frame.ErrCorrupt, the marker callers test for.
//
// The expiry index may hold stale rows (a key whose expiry was changed or
// that was deleted); readers check the data row, and ExpiredKeys drops stale
// rows as it meets them. This keeps Apply free of reads.
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
	// metadata record of the wrong size, a log entry under another LSN's
	// key, an applied LSN beyond the log. A damaged entry itself is
	// logrec.ErrCorrupt. Both are frame.ErrCorrupt.
	ErrCorrupt = frame.NewCorruption("storage: corrupt data")
)

// Position names a log entry.
type Position struct {
	Epoch uint64
	LSN   uint64
}

const (
	prefixData   = 'd'
	prefixExpiry = 'e'
	prefixLog    = 'l'
	prefixMeta   = 'm'
)

var (
	metaApplied = []byte("mapplied")
	metaLogBase = []byte("mlogbase")
	metaEpoch   = []byte("mepoch")
	metaEpochs  = []byte("mepochs")
	metaSeeding = []byte("mseeding")
	dataLower   = []byte{prefixData}
	dataUpper   = []byte{prefixData + 1}
	expiryLower = []byte{prefixExpiry}
	expiryUpper = []byte{prefixExpiry + 1}
	logLower    = []byte{prefixLog}
	logUpper    = []byte{prefixLog + 1}
	syncWrite   = pebble.Sync
	noSyncWrite = pebble.NoSync
)

// Options configure Open.
type Options struct {
	// FS is the file system; nil means the real disk. Tests use vfs.NewMem.
	FS vfs.FS
	// CacheBytes is Pebble's block cache size; 0 means 64 MiB.
	CacheBytes int64
	// RowCacheBytes bounds the cache of data rows that point reads fill
	// (package rowcache); 0 means 64 MiB, negative means none.
	RowCacheBytes int64
	Logger        *slog.Logger
}

// DB is a node's storage. Log appends and truncations must come from one
// goroutine at a time (the replication driver); reads are safe concurrently.
type DB struct {
	pdb *pebble.DB
	log *slog.Logger
	// rows caches data rows for View.Get. Every write of a data row
	// invalidates it after the row is committed and before the write is
	// reported applied (Apply, BeginIngest, FinishIngest).
	rows *rowcache.Cache

	mu      sync.Mutex // guards the fields below
	durable Position
	logBase Position
	applied uint64
	epoch   uint64
	epochs  []Position // (epoch, first LSN) in ascending order
	seeding bool
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

// Pebble's memtables; writes stall when memTables are full. 16 MiB ones
// made point reads in them ~12% cheaper but cost ~10% of write throughput
// in flushes and compactions (tandem bench commit, tandem-async).
const (
	memTableSize = 64 << 20
	memTables    = 4
)

// Open opens (creating if needed) the database in dir and recovers the
// positions from it. It reads every retained log entry once to verify its
// checksum and measure the log.
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
	if err := d.recover(); err != nil {
		pdb.Close()
		return nil, err
	}
	return d, nil
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
	d.durable = d.logBase
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: logLower, UpperBound: logUpper})
	if err != nil {
		return fmt.Errorf("storage: scan log: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		lsn := binary.BigEndian.Uint64(it.Key()[1:])
		epoch, elsn, err := logrec.PeekLSN(it.Value())
		if err != nil {
			return fmt.Errorf("storage: log entry %d: %w", lsn, err)
		}
		if elsn != lsn || lsn != d.durable.LSN+1 {
			return fmt.Errorf("storage: log entry at key %d holds lsn %d after %d: %w", lsn, elsn, d.durable.LSN, ErrCorrupt)
		}
		d.durable = Position{Epoch: epoch, LSN: lsn}
		d.logBytes += int64(len(it.Value()))
		d.logCount++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("storage: scan log: %w", err)
	}
	if d.applied > d.durable.LSN {
		return fmt.Errorf("storage: applied lsn %d beyond durable %d: %w", d.applied, d.durable.LSN, ErrCorrupt)
	}
	if d.durable.Epoch > d.epoch {
		d.epoch = d.durable.Epoch
	}
	return nil
}

// Close closes the database.
func (d *DB) Close() error { return d.pdb.Close() }

// Durable is the position of the last durable log entry.
func (d *DB) Durable() Position {
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
func (d *DB) LogBase() Position {
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
func (d *DB) EpochHistory() []Position {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Position(nil), d.epochs...)
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
	epochs := append(append([]Position(nil), d.epochs...), Position{Epoch: e, LSN: lsn})
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
// from Durable().LSN+1. Each entry's checksum is verified first. It fsyncs
// before returning. Any epoch entry starts not yet in the epoch history are
// recorded with it.
func (d *DB) AppendLog(entries [][]byte) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	next := d.durable
	epochs := d.epochs
	d.mu.Unlock()
	b := d.pdb.NewBatchWithSize(batchSize(entries))
	defer b.Close()
	var key [9]byte
	key[0] = prefixLog
	var added int64
	newEpochs := false
	for _, raw := range entries {
		epoch, lsn, err := logrec.PeekLSN(raw)
		if err != nil {
			return fmt.Errorf("storage: append after lsn %d: %w", next.LSN, err)
		}
		if lsn != next.LSN+1 || epoch < next.Epoch {
			return fmt.Errorf("%w: entry (%d,%d) after (%d,%d)", ErrGap, epoch, lsn, next.Epoch, next.LSN)
		}
		if epoch != next.Epoch && (len(epochs) == 0 || epochs[len(epochs)-1].Epoch < epoch) {
			epochs = append(append([]Position(nil), epochs...), Position{Epoch: epoch, LSN: lsn})
			newEpochs = true
		}
		binary.BigEndian.PutUint64(key[1:], lsn)
		_ = b.Set(key[:], raw, nil)
		next = Position{Epoch: epoch, LSN: lsn}
		added += int64(len(raw))
	}
	if newEpochs {
		_ = b.Set(metaEpochs, encodePositions(epochs), nil)
	}
	if next.Epoch > d.Epoch() {
		// Entries of an epoch are proof the epoch exists: persist it with
		// them so a restart never forgets the highest epoch seen.
		_ = b.Set(metaEpoch, be64(next.Epoch), nil)
	}
	if err := b.Commit(syncWrite); err != nil {
		return fmt.Errorf("storage: append lsn %d..%d: %w", next.LSN-uint64(len(entries))+1, next.LSN, err)
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

func batchSize(entries [][]byte) int {
	n := 0
	for _, e := range entries {
		n += len(e) + 16
	}
	return n
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
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: logKey(lo), UpperBound: logKey(hi + 1)})
	if err != nil {
		return nil, fmt.Errorf("storage: read log: %w", err)
	}
	defer it.Close()
	var out [][]byte
	size := 0
	want := lo
	for ok := it.First(); ok; ok = it.Next() {
		lsn := binary.BigEndian.Uint64(it.Key()[1:])
		if lsn != want {
			// Retention raced with this read and removed lo.
			return nil, fmt.Errorf("%w: lsn %d missing", ErrCompacted, want)
		}
		raw := bytes.Clone(it.Value())
		if _, elsn, err := logrec.PeekLSN(raw); err != nil {
			return nil, fmt.Errorf("storage: read lsn %d: %w", lsn, err)
		} else if elsn != lsn {
			return nil, fmt.Errorf("storage: read lsn %d holds lsn %d: %w", lsn, elsn, ErrCorrupt)
		}
		out = append(out, raw)
		size += len(raw)
		want++
		if size >= maxBytes {
			break
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("storage: read log: %w", err)
	}
	if len(out) == 0 && lo <= hi {
		return nil, fmt.Errorf("%w: lsn %d missing", ErrCompacted, lo)
	}
	return out, nil
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
	v, closer, err := d.pdb.Get(logKey(lsn))
	if err != nil {
		return 0, fmt.Errorf("storage: read lsn %d: %w", lsn, err)
	}
	defer closer.Close()
	epoch, _, err := logrec.PeekLSN(v)
	if err != nil {
		return 0, fmt.Errorf("storage: read lsn %d: %w", lsn, err)
	}
	return epoch, nil
}

// TruncateLogAfter removes every entry after lsn (a diverged suffix). It
// refuses to remove applied entries: those need a re-seed instead.
func (d *DB) TruncateLogAfter(lsn uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if lsn >= d.durable.LSN {
		return nil
	}
	if lsn < d.applied {
		return fmt.Errorf("%w: truncate after %d, applied %d", ErrBelowApplied, lsn, d.applied)
	}
	if lsn < d.logBase.LSN {
		return fmt.Errorf("%w: truncate after %d, log base %d", ErrCompacted, lsn, d.logBase.LSN)
	}
	epoch := d.logBase.Epoch
	if lsn > d.logBase.LSN {
		v, closer, err := d.pdb.Get(logKey(lsn))
		if err != nil {
			return fmt.Errorf("storage: truncate after %d: %w", lsn, err)
		}
		epoch, _, err = logrec.PeekLSN(v)
		closer.Close()
		if err != nil {
			return fmt.Errorf("storage: truncate after %d: %w", lsn, err)
		}
	}
	b := d.pdb.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(logKey(lsn+1), logUpper, nil)
	var epochs []Position
	for _, s := range d.epochs {
		if s.LSN <= lsn {
			epochs = append(epochs, s)
		}
	}
	_ = b.Set(metaEpochs, encodePositions(epochs), nil)
	if err := b.Commit(syncWrite); err != nil {
		return fmt.Errorf("storage: truncate after %d: %w", lsn, err)
	}
	removed := int64(d.durable.LSN - lsn)
	if d.logCount > 0 {
		d.logBytes -= d.logBytes * removed / d.logCount
	}
	d.logCount -= removed
	d.durable = Position{Epoch: epoch, LSN: lsn}
	d.epochs = epochs
	return nil
}

// TruncateLogBefore removes entries up to and including lsn (retention); the
// entry at lsn becomes the log base. It never removes unapplied entries.
func (d *DB) TruncateLogBefore(lsn uint64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	lsn = min(lsn, d.applied)
	if lsn <= d.logBase.LSN {
		return nil
	}
	v, closer, err := d.pdb.Get(logKey(lsn))
	if err != nil {
		return fmt.Errorf("storage: retention at %d: %w", lsn, err)
	}
	epoch, _, err := logrec.PeekLSN(v)
	closer.Close()
	if err != nil {
		return fmt.Errorf("storage: retention at %d: %w", lsn, err)
	}
	base := Position{Epoch: epoch, LSN: lsn}
	b := d.pdb.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(logKey(d.logBase.LSN+1), logKey(lsn+1), nil)
	_ = b.Set(metaLogBase, encodePosition(base), nil)
	if err := b.Commit(noSyncWrite); err != nil {
		return fmt.Errorf("storage: retention at %d: %w", lsn, err)
	}
	removed := int64(lsn - d.logBase.LSN)
	if d.logCount > 0 {
		d.logBytes -= d.logBytes * removed / d.logCount
	}
	d.logCount -= removed
	d.logBase = base
	return nil
}

// Apply applies decoded entries, which must continue from Applied()+1 and be
// durable, to the data, and advances the applied LSN, in one batch. The
// batch is not synced: the log already is, and a crash re-applies from the
// persisted applied LSN.
func (d *DB) Apply(entries []logrec.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	d.mu.Lock()
	applied, durable := d.applied, d.durable.LSN
	d.mu.Unlock()
	b := d.pdb.NewBatch()
	defer b.Close()
	var kbuf, vbuf []byte
	var earliest int64 // of the index rows written, 0 if none
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
			switch op.Kind {
			case logrec.OpPut:
				vbuf = binary.BigEndian.AppendUint64(vbuf[:0], uint64(op.ExpireAtMs))
				vbuf = append(vbuf, op.Value...)
				_ = b.Set(kbuf, vbuf, nil)
				if op.ExpireAtMs != 0 {
					_ = b.Set(expiryKey(op.ExpireAtMs, op.Key), nil, nil)
					earliest = minExpiry(earliest, op.ExpireAtMs)
				}
			case logrec.OpDelete:
				_ = b.Delete(kbuf, nil)
			default:
				return fmt.Errorf("storage: apply lsn %d: op kind %v: %w", e.LSN, op.Kind, logrec.ErrCorrupt)
			}
		}
		applied = e.LSN
	}
	_ = b.Set(metaApplied, be64(applied), nil)
	if err := b.Commit(noSyncWrite); err != nil {
		return fmt.Errorf("storage: apply up to lsn %d: %w", applied, err)
	}
	for i := range entries {
		for _, op := range entries[i].Ops {
			d.rows.Invalidate(op.Key)
		}
	}
	d.mu.Lock()
	d.applied = applied
	d.noteExpiryLocked(earliest)
	d.mu.Unlock()
	return nil
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

func logKey(lsn uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], lsn)
	return k
}

func expiryKey(atMs int64, key []byte) []byte {
	k := make([]byte, 9, 9+len(key))
	k[0] = prefixExpiry
	binary.BigEndian.PutUint64(k[1:], uint64(atMs))
	return append(k, key...)
}

func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func encodePosition(p Position) []byte {
	return binary.BigEndian.AppendUint64(be64(p.Epoch), p.LSN)
}

func decodePosition(b []byte) (Position, error) {
	if len(b) != 16 {
		return Position{}, fmt.Errorf("position of %d bytes: %w", len(b), ErrCorrupt)
	}
	return Position{Epoch: binary.BigEndian.Uint64(b), LSN: binary.BigEndian.Uint64(b[8:])}, nil
}

func encodePositions(ps []Position) []byte {
	var out []byte
	for _, p := range ps {
		out = append(out, encodePosition(p)...)
	}
	return out
}

func decodePositions(b []byte) ([]Position, error) {
	if len(b)%16 != 0 {
		return nil, fmt.Errorf("positions of %d bytes: %w", len(b), ErrCorrupt)
	}
	var out []Position
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

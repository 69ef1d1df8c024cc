package storage

import (
	"errors"
	"fmt"

	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/wal"
)

// ObserveEpoch durably raises the highest seen epoch to e; lower values are
// ignored. A node must persist an epoch before acting on it, so that after a
// restart it still refuses the lower ones.
func (d *DB) ObserveEpoch(e uint64) error {
	if e <= d.Epoch() {
		return nil
	}
	err := d.changeEpochs(func(seen uint64, history []logrec.Position) (uint64, []logrec.Position, bool, error) {
		return max(seen, e), history, e > seen, nil
	})
	if err != nil {
		return fmt.Errorf("storage: save epoch %d: %w", e, err)
	}
	return nil
}

// StartEpoch records that epoch e's entries begin at lsn (the leader calls it
// when it takes over) and raises the seen epoch to e.
func (d *DB) StartEpoch(e, lsn uint64) error {
	return d.changeEpochs(func(seen uint64, history []logrec.Position) (uint64, []logrec.Position, bool, error) {
		if n := len(history); n > 0 && history[n-1].Epoch >= e {
			return 0, nil, false, fmt.Errorf("storage: start epoch %d after epoch %d", e, history[n-1].Epoch)
		}
		return max(seen, e), append(append([]logrec.Position(nil), history...), logrec.Position{Epoch: e, LSN: lsn}), true, nil
	})
}

// AppendLog durably appends encoded entries, which must continue the log
// from Durable().LSN+1. Their checksums are the caller's: one checksum
// per entry per node, computed where the entry is made (the leader's
// Encode) or verified where it arrives (the follower's stream), so
// AppendLog checks only their positions and format. It fsyncs
// before returning. Any epoch entry starts not yet in the epoch history are
// recorded first (synced, in the epoch file), then the entries are written to the
// log with one fdatasync.
func (d *DB) AppendLog(entries [][]byte) error { return d.AppendLogWhile(entries, nil) }

// AppendLogWhile is AppendLog that runs during, if not nil, on the
// caller's goroutine while the log's write and fdatasync run on another
// (appended is closed once they are done, failed or not),
// once the entries' positions are checked and their epoch starts saved:
// during may Apply the entries being appended before they are durable
// (an apply ahead of the log). Such entries must be committed (durable
// on as many nodes as the commit rule asks, elsewhere): a follower
// applies what its leader says is committed while its own fsync of it
// runs. Nothing makes an apply ahead durable before its entries: Pebble
// keeps no log, so only a flush could, and every flush waits until the
// log is durable through the last entry applied ahead (flushFence); so
// after any crash Open still finds applied <= durable. It returns
// during's error, else the append's. If the append fails after an apply
// ahead, the fence stops holding, and Close does not flush while applied
// is past the log (TestApplyAheadFailedAppendReopens: the node reopens
// at its durable log and replays); only a flush Pebble starts itself in
// between (a memtable filled) could then make data durable past the log,
// which Open refuses (ErrCorrupt), as it would a disk that lost synced
// writes.
func (d *DB) AppendLogWhile(entries [][]byte, during func(appended <-chan struct{}) error) error {
	if len(entries) == 0 {
		if during != nil {
			return during(closedChan)
		}
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
		// first, to the epoch file (synced, once per new epoch), so that
		// no entry is ever durable without its epoch's start. A crash
		// before the entries leaves starts past the log's end, which Open
		// drops. Entries of an epoch are proof the epoch exists: the seen
		// epoch is raised with them, so a restart never forgets it. (The
		// history changes only here, in StartEpoch, TruncateLogAfter and
		// the ingest calls, all from the one appending goroutine: the
		// history changeEpochs hands over is the one read above.)
		err := d.changeEpochs(func(s uint64, _ []logrec.Position) (uint64, []logrec.Position, bool, error) {
			return max(s, next.Epoch), epochs, true, nil
		})
		if err != nil {
			return fmt.Errorf("storage: save the epoch of lsn %d..%d: %w", first, next.LSN, err)
		}
	}
	if during != nil {
		return d.appendWhile(first, next, entries, added, during)
	}
	if err := d.wal.Append(first, entries); err != nil {
		return fmt.Errorf("storage: append lsn %d..%d: %w", first, next.LSN, err)
	}
	d.appended1(next, added, len(entries))
	return nil
}

// closedChan is an appended channel for an append of nothing.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// AppliesAhead reports whether Apply takes entries from AppendLogWhile's
// during before they are durable: not with Pebble's own log (a benchmark's
// option), which could make them durable first.
func (d *DB) AppliesAhead() bool { return d.applyAhead }

// appendWhile is AppendLogWhile's append with during beside it.
func (d *DB) appendWhile(first uint64, next logrec.Position, entries [][]byte, added int64, during func(appended <-chan struct{}) error) error {
	d.mu.Lock()
	if d.applyAhead {
		d.appendingTo = next.LSN
	}
	durable := d.durable.LSN
	d.mu.Unlock()
	d.fence.mu.Lock()
	d.fence.durable, d.fence.failed = durable, false // fresh: a seed or truncation may have moved it
	d.fence.mu.Unlock()
	// The append's end is recorded by its own goroutine, not after
	// during: during may wait for a flush, which waits for it.
	done := make(chan error, 1)
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		err := d.wal.Append(first, entries)
		if err == nil {
			d.appended1(next, added, len(entries))
		} else {
			d.mu.Lock()
			d.appendingTo = 0
			d.mu.Unlock()
		}
		d.fence.mu.Lock()
		if err == nil {
			d.fence.durable = next.LSN
		} else {
			d.fence.failed = true
		}
		d.fence.cond.Broadcast()
		d.fence.mu.Unlock()
		done <- err
	}()
	derr := during(appended)
	err := <-done
	if derr != nil {
		return derr
	}
	if err != nil {
		return fmt.Errorf("storage: append lsn %d..%d: %w", first, next.LSN, err)
	}
	return nil
}

// flushFence holds a Pebble flush (its FlushBegin, under Pebble's lock)
// until the log is durable through every entry applied ahead of it
// (AppendLogWhile), so that no flush makes an apply durable before its
// entries: the rest of one log append at most.
func (d *DB) flushFence() {
	if plantNoFlushFence {
		return
	}
	d.fence.mu.Lock()
	defer d.fence.mu.Unlock()
	if d.fence.ahead > d.fence.durable && !d.fence.failed && d.fenceHook != nil {
		(*d.fenceHook)("wait")
	}
	for d.fence.ahead > d.fence.durable && !d.fence.failed {
		d.fence.cond.Wait()
	}
}

// plantNoFlushFence is a planted bug for tests: flushes do not wait for
// the log (TestApplyAheadCrash must catch it).
var plantNoFlushFence = false

// appended1 records an append of n entries through next (and the end of
// an AppendLogWhile's, in the same step: Apply never sees neither).
func (d *DB) appended1(next logrec.Position, added int64, n int) {
	d.mu.Lock()
	d.appendingTo = 0
	d.durable = next
	d.logBytes += added
	d.logCount += int64(n)
	d.appends++
	d.appended += uint64(n)
	d.mu.Unlock()
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

// epochIn returns the epoch of the entry at lsn from the epoch history
// (every entry's epoch has its start there, written before the entry: the
// last start at or before lsn), and false when the history has no start
// at or before lsn. Retention learns the new log base's epoch from it
// rather than by reading the entry, which may be a 64 MB value's.
func epochIn(epochs []logrec.Position, lsn uint64) (uint64, bool) {
	for i := len(epochs) - 1; i >= 0; i-- {
		if epochs[i].LSN <= lsn {
			return epochs[i].Epoch, true
		}
	}
	return 0, false
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
// (in the epoch file, synced). A crash between leaves starts past the log's end, which Open
// drops; the other order could leave entries whose epoch start is gone.
func (d *DB) TruncateLogAfter(lsn uint64) error {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	d.mu.Lock()
	durable, applied, base, epochs := d.durable, max(d.applied, d.partial), d.logBase, d.epochs
	d.mu.Unlock()
	if lsn >= durable.LSN {
		return nil
	}
	if lsn < applied { // a partly applied entry counts as applied
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
		err := d.changeEpochs(func(s uint64, _ []logrec.Position) (uint64, []logrec.Position, bool, error) {
			return s, kept, true, nil
		})
		if err != nil {
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
	d.mu.Unlock()
	return nil
}

// TrimLogTo removes the oldest applied entries so that about keep bytes of
// log remain (sizes estimated from the average entry; whole segments go,
// see TruncateLogBefore): the retention of a node that does not lead.
func (d *DB) TrimLogTo(keep int64) error {
	d.mu.Lock()
	base, count, size := d.logBase.LSN, d.logCount, d.logBytes
	d.mu.Unlock()
	if count == 0 || size <= keep {
		return nil
	}
	return d.TruncateLogBefore(base + uint64(count-count*max(keep, 0)/size))
}

// TruncateLogBefore removes entries up to and including lsn (retention); the
// entry at lsn becomes the log base. It never removes unapplied entries,
// and it never deletes a log segment whose entries Pebble may not hold on
// disk.
//
// Pebble keeps no log of its own, so an Apply is on disk only once a
// flush wrote its memtable. The new log base is written unflushed and
// takes effect for reads at once; the segments at or below it go only
// once a flush that began after the base was written has finished: that
// flush holds the base and every apply through it (the base never passes
// applied), so after a crash Open finds a log base and an applied LSN at
// or past the first entry the log still holds. TruncateLogBefore does not
// wait for the flush: when a whole segment waits on one, it starts it
// (AsyncFlush) and a later call, finding it finished, deletes the
// segments. Retention runs on the leader's tick, which must not stall
// for a flush.
func (d *DB) TruncateLogBefore(lsn uint64) error {
	d.logMu.Lock()
	defer d.logMu.Unlock()
	d.mu.Lock()
	lsn = min(lsn, d.applied)
	base := d.logBase
	epoch, known := epochIn(d.epochs, lsn)
	d.mu.Unlock()
	if lsn > base.LSN {
		if !known {
			var err error
			if epoch, err = d.epochOf(lsn); err != nil {
				return fmt.Errorf("storage: retention at %d: %w", lsn, err)
			}
		}
		nb := logrec.Position{Epoch: epoch, LSN: lsn}
		if err := d.pdb.Set(metaLogBase, encodePosition(nb), noSyncWrite); err != nil {
			return fmt.Errorf("storage: retention at %d: %w", lsn, err)
		}
		d.mu.Lock()
		removed := int64(lsn - d.logBase.LSN)
		if d.logCount > 0 {
			d.logBytes -= d.logBytes * removed / d.logCount
		}
		d.logCount -= removed
		d.logBase = nb
		base = nb
		d.mu.Unlock()
	}
	return d.dropFlushedSegmentsLocked(base)
}

// dropFlushedSegmentsLocked deletes the log segments that the last
// finished flush allows (TruncateLogBefore), and starts a flush when a
// whole segment at or below base waits on one. The caller holds logMu.
func (d *DB) dropFlushedSegmentsLocked(base logrec.Position) error {
	if f := d.flushing; f != nil {
		select {
		case <-f.done:
			d.flushing = nil
			if f.err != nil {
				return fmt.Errorf("storage: retention: flush the data before deleting log segments: %w", f.err)
			}
			d.flushedBase = f.target
		default:
		}
	}
	// The wal removes only segments wholly at or below the LSN it is given.
	if err := d.wal.TruncateFront(d.flushedBase.LSN, nil); err != nil {
		return fmt.Errorf("storage: retention at %d: %w", d.flushedBase.LSN, err)
	}
	if end, ok := d.wal.FirstSegmentEnd(); ok && d.flushing == nil && !d.closing && base.LSN >= end && d.flushedBase.LSN < end {
		// Even asking for a flush can wait (Pebble stalls a memtable
		// rotation while too many memtables or L0 files wait), so a
		// goroutine asks: retention runs on the leader's tick.
		f := &retentionFlush{done: make(chan struct{}), target: base}
		d.flushing = f
		go func() {
			defer close(f.done)
			ch, err := d.pdb.AsyncFlush()
			if err != nil {
				f.err = err
				return
			}
			<-ch
		}()
	}
	return nil
}

// forgetRetentionFlushLocked sets the flushed log base to base, that of a
// log just replaced (ingest), after waiting for a flush retention asked for
// (its target was in the old log). The caller holds logMu.
func (d *DB) forgetRetentionFlushLocked(base logrec.Position) {
	if f := d.flushing; f != nil {
		<-f.done
	}
	d.flushedBase, d.flushing = base, nil
}

// retentionFlush is a flush retention asked for: once done is closed, with
// err nil, Pebble's disk holds target as the log base and every apply
// through it.
type retentionFlush struct {
	done   chan struct{}
	err    error
	target logrec.Position
}

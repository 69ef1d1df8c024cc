// Package wal is the replication log on disk: an append-only sequence of
// records with consecutive log sequence numbers (LSNs), kept in segment
// files in one directory, apart from the data. Every file operation goes
// through a vfs.FS (Pebble's), so tests run it on vfs.NewMem and crash it
// with CrashClone exactly as they crash Pebble.
//
// # Files
//
//	<dir>/<LSN, 20 digits>.seg      a segment: records, then zeros or the end of the file
//	<dir>/<LSN, 20 digits>.seg.tmp  a segment being rewritten (TruncateBack); removed on Open
//
// A segment is named by the LSN of its first record, zero-padded so that
// names sort in LSN order; its records have consecutive LSNs from there,
// and each segment starts where the one before it ends (Open checks). There
// is always at least one segment. Only the last one may be empty: it then
// names the next LSN to be written, which is how an empty log (after Reset,
// or a TruncateBack of everything) keeps its position. One Append (a batch)
// never spans segments: a new segment starts when the batch would take the
// current one past the nominal size (Options.SegmentSize, 64 MiB), so a
// batch larger than that, such as a single 512 MB value, gets a segment to
// itself. New segments are preallocated (vfs.File.Preallocate).
//
// # Record layout (frozen: changing it breaks existing logs)
//
//	word    uint32 little endian: bits 0-30 the payload length n (≥ 5),
//	        bit 31 set on the first record of each Append
//	check   uint32 little endian: CRC32C of word (4 bytes LE) and the
//	        record's offset in its segment (8 bytes LE)
//	payload n bytes: a frame (package frame), a CRC32C over the rest
//
// Eight zero bytes where a header is due end the segment; so does the end
// of the file. The payload is the caller's record (for tandem a logrec
// entry), which is already a frame: the wal adds no second checksum over
// it, and verifies it with frame.Open on every read from disk.
//
// Why the header has a check of its own. Without one, a flipped bit in a
// length sends the reader to a wrong record boundary: the payload fails its
// frame, but nothing after the damage can be located any more, so a torn
// tail and a corrupt record followed by good ones look the same. With the
// check, a header is trusted only when it verifies (8 random bytes pass
// with probability 2^-32, zeros never do), a reader can search the bytes
// after damage for genuine records, and the decision below is made on what
// is there rather than guessed. Binding the offset into the check means a
// record copied to another place (stale bytes, a value that happens to
// contain a record's bytes) does not verify as a record there. The cost is
// 4 bytes per record and a CRC over 12 bytes.
//
// Why bit 31 marks the first record of an Append. Appends are sequential
// and each ends with an fdatasync, so if any record of Append k+1 is on
// disk, Append k was synced. A crash may persist any subset of the unsynced
// blocks of the last Append (disks do, and CrashClone models it with 4 KiB
// blocks), so a torn last Append can leave a damaged record followed by
// intact records of the same Append. Only an intact record that starts an
// Append proves that the damage before it was synced.
//
// # Torn tail or corruption
//
// Open reads every segment in order and verifies every header and payload.
// At the first record that fails, at offset X (a header that does not
// verify, a length running past the end of the file, a payload that fails
// its frame, or non-zero bytes after eight zero bytes):
//
//   - in a segment that is not the last: corruption;
//   - in the last segment, if an intact record that starts an Append lies
//     after X: corruption (a later Append was written, so X was synced);
//   - otherwise X belongs to the last Append, which a crash tore: Open
//     zeroes the segment from X on and logs it at Warn; the log ends
//     before X.
//
// Corruption is an error wrapping ErrCorrupt (a frame.ErrCorrupt); Open
// never skips a record. The rule drops only bytes of the last Append, and
// of that only what follows its first damaged record, except when damage
// hit a synced record of the last Append, which no reader can tell from a
// tear.
//
// # Promises
//
//   - Append writes a batch with one write (records of more than 1 MiB are
//     written on their own) and one fdatasync, and returns after it. Its
//     records survive any crash after that. After a crash during an Append,
//     the log holds a prefix of its records (maybe none) and no other byte
//     of it can be read as a record.
//   - After the last record of a segment there are only zeros, or the end
//     of the file, except for what a torn Append left, which Open zeroes.
//     New segments are new files, TruncateBack writes the kept prefix of a
//     segment to a new file and renames it over the old one, so a record
//     that was dropped can never reappear behind a later one.
//   - Creating, renaming or removing a segment syncs the directory before
//     the operation returns. Removals sync it one file at a time, so a
//     crash during TruncateFront leaves a suffix of the log, and a crash
//     during TruncateBack or Reset a prefix: never a gap.
//   - Reads verify every record (header and frame); a damaged record is
//     ErrCorrupt, a record below First() is ErrCompacted.
//
// # Concurrency
//
// Read, First and Last are safe from any goroutine. Append, TruncateBack
// and Reset must come from one goroutine at a time; TruncateFront may run
// beside them (it never removes the last segment). A Read that overlaps a
// truncation returns the records as they were or an error, never other
// bytes: a reader holds the files it reads open, and a removed segment's
// file is closed when its last reader is done.
package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
)

// Errors returned by WAL methods.
var (
	// ErrCorrupt: a record on disk is damaged (a header or payload that
	// does not verify where a record must be, records missing between
	// segments). It is a frame.ErrCorrupt. A torn tail is not corruption.
	ErrCorrupt = frame.NewCorruption("wal: corrupt log")
	// ErrCompacted: the requested LSN precedes First() (TruncateFront or
	// Reset removed it).
	ErrCompacted = errors.New("wal: lsn compacted")
	// ErrClosed: the WAL was closed.
	ErrClosed = errors.New("wal: closed")
)

// Layout constants: part of the on-disk format.
const (
	headerLen  = 8
	startBit   = 1 << 31
	lenMask    = startBit - 1
	minPayload = frame.HeaderLen + 1
	segSuffix  = ".seg"
	tmpSuffix  = ".tmp"
	nameDigits = 20
)

// MaxRecord is the largest record Append takes.
const MaxRecord = lenMask

const (
	defaultSegmentSize = 64 << 20
	// bufLimit bounds Append's scratch buffer: larger records are written
	// from the caller's slice instead of being copied.
	bufLimit  = 1 << 20
	copyChunk = 1 << 20
)

// Options configure Open.
type Options struct {
	// FS is the file system; nil means the real disk.
	FS vfs.FS
	// SegmentSize is the nominal size of a segment; 0 means 64 MiB.
	SegmentSize int64
	Logger      *slog.Logger
	// ZeroAhead has a goroutine write zeros ahead of the last record of
	// the tail segment and sync them (see "Zeros ahead").
	ZeroAhead bool
}

// Zeros ahead
//
// A segment is preallocated without changing its size (fallocate's
// KEEP_SIZE), so every Append both grows the file and writes blocks the
// file system holds as unwritten extents: its fdatasync must commit the
// new size and the converted extents through the file system's journal
// (ext4: a jbd2 commit) besides the data. With Options.ZeroAhead a
// goroutine (filler) keeps zeros written and synced ahead of the tail's
// last record, up to the segment's nominal size: an Append then
// overwrites blocks already written, inside the file's size, and its
// fdatasync flushes data only, as PostgreSQL's zero-filled WAL segments
// and Pebble's recycled WAL files make theirs (append + fdatasync of 4
// KiB on the dev VM's ext4: ~100 -> ~60 µs of CPU, ~1.0 -> ~0.5 ms;
// BenchmarkAppendZeroAhead). The format allows it: after the last record
// of a segment there are zeros. The filler writes only at or past the
// tail's end and only under wmu, so it never writes where an Append does;
// what it wrote needs no sync for correctness (an Append's own fdatasync
// makes its records durable whatever lies around them). It starts with
// the first Append after Open (an idle log costs nothing), keeps up to
// zeroAheadMax ahead (less while the segment is small; zeroTargets),
// and stops at a failed write or Close.
const (
	zeroAheadMax = 8 << 20
	fillChunk    = 256 << 10
)

// WAL is an open log. See the package comment.
type WAL struct {
	fs      vfs.FS
	dir     string
	segSize int64
	log     *slog.Logger

	// wmu serialises the writers at the tail (Append, TruncateBack, Reset,
	// Close); fmu the removers of segments (TruncateFront, TruncateBack,
	// Reset, Close). Lock order: wmu, fmu, mu.
	wmu  sync.Mutex
	fmu  sync.Mutex
	tail *segment // the last segment; changed under wmu and mu
	buf  []byte   // Append's scratch, under wmu
	err  error    // a failed write or sync: the log's state on disk is unknown

	mu     sync.Mutex // guards the fields below and every segment's offs, end, refs, dead
	segs   []*segment // in LSN order, never empty while open
	first  uint64     // the first LSN that may be read
	last   uint64     // the last record's LSN; first-1 when empty
	closed bool

	// The filler (Options.ZeroAhead; nil channels without it).
	fillWake chan struct{} // capacity 1
	fillStop chan struct{} // closed by Close
	fillDone chan struct{} // closed when the filler returns
	stopOnce sync.Once
}

type segment struct {
	first uint64 // LSN of its first record, and its name
	path  string
	f     vfs.File
	offs  []int64 // offset of each record
	end   int64   // offset after the last record
	refs  int     // Reads holding f
	dead  bool    // no longer in the log: close f once refs is 0
	// zeroed: the filler wrote zeros up to here (at or past end while it
	// is ahead); under wmu.
	zeroed int64
}

func (s *segment) count() int { return len(s.offs) }

// recEnd is the offset after record i.
func (s *segment) recEnd(i int) int64 {
	if i+1 < len(s.offs) {
		return s.offs[i+1]
	}
	return s.end
}

func segName(first uint64) string {
	return fmt.Sprintf("%0*d%s", nameDigits, first, segSuffix)
}

func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, segSuffix)
	if !ok || len(digits) != nameDigits {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil
}

// headerCheck is the check field of a record header with word at offset:
// the CRC32C (frame.Checksum) of word and offset, little-endian, 12 bytes.
// Computed bytewise from the table here, not through a [12]byte and
// frame.Checksum: hash/crc32 calls its fast path through a function
// variable, so the array escaped and every record cost an allocation on
// every node (TestHeaderCheckIsFrameChecksum holds the two equal).
func headerCheck(word uint32, offset int64) uint32 {
	crc := ^uint32(0)
	for i := range 4 {
		crc = castagnoli[byte(crc)^byte(word>>(8*i))] ^ crc>>8
	}
	for i := range 8 {
		crc = castagnoli[byte(crc)^byte(uint64(offset)>>(8*i))] ^ crc>>8
	}
	return ^crc
}

// castagnoli is CRC32C's table, frame.Checksum's polynomial.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func putHeader(dst []byte, n int, start bool, offset int64) {
	word := uint32(n)
	if start {
		word |= startBit
	}
	binary.LittleEndian.PutUint32(dst, word)
	binary.LittleEndian.PutUint32(dst[4:], headerCheck(word, offset))
}

// Open opens the log in dir, creating dir and an empty log (next LSN 1) if
// there is none, verifies every record, truncates a torn tail and fails on
// corruption (see the package comment).
func Open(dir string, opts Options) (*WAL, error) {
	w := &WAL{fs: opts.FS, dir: dir, segSize: opts.SegmentSize, log: opts.Logger}
	if w.fs == nil {
		w.fs = vfs.Default
	}
	if w.segSize <= 0 {
		w.segSize = defaultSegmentSize
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	if err := w.fs.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", dir, err)
	}
	// The directory must outlive a crash as surely as its files.
	if err := syncDir(w.fs, w.fs.PathDir(dir)); err != nil {
		return nil, fmt.Errorf("wal: sync the parent of %s: %w", dir, err)
	}
	names, err := w.fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("wal: list %s: %w", dir, err)
	}
	var firsts []uint64
	removed := false
	for _, name := range names {
		if strings.HasSuffix(name, segSuffix+tmpSuffix) {
			// A rewrite that a crash interrupted before its rename.
			if err := w.fs.Remove(w.fs.PathJoin(dir, name)); err != nil {
				return nil, fmt.Errorf("wal: remove %s: %w", name, err)
			}
			removed = true
			continue
		}
		if first, ok := parseSegName(name); ok {
			firsts = append(firsts, first)
		}
	}
	if removed {
		if err := w.syncDir(); err != nil {
			return nil, err
		}
	}
	slices.Sort(firsts)
	if len(firsts) == 0 {
		s, err := w.createSegment(1, 0)
		if err != nil {
			return nil, err
		}
		w.segs, w.tail, w.first, w.last = []*segment{s}, s, 1, 0
		w.startFiller(opts.ZeroAhead)
		return w, nil
	}
	if firsts[0] == 0 {
		return nil, fmt.Errorf("wal: segment %s names lsn 0: %w", segName(0), ErrCorrupt)
	}
	for i, first := range firsts {
		s, err := w.openSegment(first, i == len(firsts)-1)
		if err == nil && i > 0 {
			prev := w.segs[i-1]
			if want := prev.first + uint64(prev.count()); first != want {
				err = fmt.Errorf("wal: segment %s follows %s, which ends before lsn %d: %w", segName(first), segName(prev.first), want, ErrCorrupt)
			}
		}
		if s != nil {
			w.segs = append(w.segs, s)
		}
		if err != nil {
			w.closeAll()
			return nil, err
		}
	}
	w.tail = w.segs[len(w.segs)-1]
	w.first = w.segs[0].first
	w.last = w.tail.first + uint64(w.tail.count()) - 1
	w.startFiller(opts.ZeroAhead)
	return w, nil
}

// openSegment opens and verifies a segment. A torn tail is truncated if
// last, corruption otherwise.
func (w *WAL) openSegment(first uint64, last bool) (*segment, error) {
	path := w.fs.PathJoin(w.dir, segName(first))
	f, err := w.fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", path, err)
	}
	s := &segment{first: first, path: path, f: f}
	fi, err := f.Stat()
	if err != nil {
		return s, fmt.Errorf("wal: stat %s: %w", path, err)
	}
	size := fi.Size()
	offs, end, reason, err := scan(f, size)
	if err != nil {
		return s, fmt.Errorf("wal: read %s: %w", path, err)
	}
	s.offs, s.end = offs, end
	if reason == "" {
		return s, nil
	}
	where := fmt.Sprintf("%s at offset %d (lsn %d)", path, end, first+uint64(len(offs)))
	if !last {
		return s, fmt.Errorf("wal: %s: %s in a segment that is not the last: %w", where, reason, ErrCorrupt)
	}
	rest := make([]byte, size-end)
	if _, err := f.ReadAt(rest, end); err != nil && !errors.Is(err, io.EOF) {
		return s, fmt.Errorf("wal: read %s: %w", path, err)
	}
	if at, ok := findStart(rest, end); ok {
		return s, fmt.Errorf("wal: %s: %s, and an intact later append at offset %d: %w", where, reason, at, ErrCorrupt)
	}
	// A torn last Append: zero what it left, so that nothing of it can be
	// read as a record once new ones are written over it.
	dirty := int64(len(rest))
	for dirty > 0 && rest[dirty-1] == 0 {
		dirty--
	}
	zeros := make([]byte, min(dirty, copyChunk))
	for off := int64(0); off < dirty; off += int64(len(zeros)) {
		n := min(int64(len(zeros)), dirty-off)
		if _, err := f.WriteAt(zeros[:n], end+off); err != nil {
			return s, fmt.Errorf("wal: truncate the torn tail of %s: %w", path, err)
		}
	}
	if err := f.SyncData(); err != nil {
		return s, fmt.Errorf("wal: truncate the torn tail of %s: %w", path, err)
	}
	w.log.Warn("wal: torn tail truncated (an append a crash interrupted)", "segment", path, "offset", end,
		"next_lsn", first+uint64(len(offs)), "reason", reason, "bytes_zeroed", dirty)
	return s, nil
}

// scan reads a segment from the start and returns the offsets of its
// intact records and the offset after them. reason is "" if the rest of
// the file is zeros (or nothing), else what is wrong at end. err is an I/O
// error, or corruption that no tear can produce.
func scan(f vfs.File, size int64) (offs []int64, end int64, reason string, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), copyChunk)
	var hdr [headerLen]byte
	var payload []byte
	for {
		n, err := io.ReadFull(r, hdr[:])
		switch {
		case errors.Is(err, io.EOF):
			return offs, end, "", nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			if !allZero(hdr[:n]) {
				return offs, end, "a partial header", nil
			}
			return offs, end, "", nil
		case err != nil:
			return nil, 0, "", err
		}
		word := binary.LittleEndian.Uint32(hdr[:])
		check := binary.LittleEndian.Uint32(hdr[4:])
		if word == 0 && check == 0 {
			zero, err := zeroRest(r)
			if err != nil {
				return nil, 0, "", err
			}
			if !zero {
				return offs, end, "non-zero bytes after the end of the records", nil
			}
			return offs, end, "", nil
		}
		if check != headerCheck(word, end) {
			return offs, end, "a header that does not verify", nil
		}
		plen := int64(word & lenMask)
		if plen < minPayload || end+headerLen+plen > size {
			return offs, end, fmt.Sprintf("a record of %d bytes that does not fit the file", plen), nil
		}
		if int64(cap(payload)) < plen {
			payload = make([]byte, plen)
		}
		payload = payload[:plen]
		if _, err := io.ReadFull(r, payload); err != nil {
			return nil, 0, "", err
		}
		if _, err := frame.Open(payload, ErrCorrupt); err != nil {
			return offs, end, "a payload that fails its checksum", nil
		}
		if end == 0 && word&startBit == 0 {
			// Intact, yet not written by an Append: no tear does this.
			return nil, 0, "", fmt.Errorf("the first record does not start an append: %w", ErrCorrupt)
		}
		offs = append(offs, end)
		end += headerLen + plen
	}
}

// findStart looks in rest, the bytes from offset base of a segment on, for
// an intact record that starts an Append, after rest's first byte. It
// steps over intact records whole, so bytes inside one are never taken for
// a record.
func findStart(rest []byte, base int64) (int64, bool) {
	for y := 1; y+headerLen <= len(rest); y++ {
		word := binary.LittleEndian.Uint32(rest[y:])
		if word == 0 || binary.LittleEndian.Uint32(rest[y+4:]) != headerCheck(word, base+int64(y)) {
			continue
		}
		n := int(word & lenMask)
		if n < minPayload || y+headerLen+n > len(rest) {
			continue
		}
		if _, err := frame.Open(rest[y+headerLen:y+headerLen+n], ErrCorrupt); err != nil {
			continue
		}
		if word&startBit != 0 {
			return base + int64(y), true
		}
		y += headerLen + n - 1
	}
	return 0, false
}

func zeroRest(r io.Reader) (bool, error) {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if !allZero(buf[:n]) {
			return false, nil
		}
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// createSegment creates an empty segment named first, preallocated for
// size bytes (at least the nominal size), and syncs the directory.
func (w *WAL) createSegment(first uint64, size int64) (*segment, error) {
	path := w.fs.PathJoin(w.dir, segName(first))
	f, err := w.fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("wal: create %s: %w", path, err)
	}
	w.preallocate(f, path, size)
	if err := w.syncDir(); err != nil {
		f.Close()
		return nil, err
	}
	return &segment{first: first, path: path, f: f}, nil
}

// preallocate reserves space for a segment; failing to is not an error
// (the writes will say if the disk is full).
func (w *WAL) preallocate(f vfs.File, path string, size int64) {
	if err := f.Preallocate(0, max(size, w.segSize)); err != nil {
		w.log.Debug("wal: preallocate", "segment", path, "err", err)
	}
}

func (w *WAL) syncDir() error {
	if err := syncDir(w.fs, w.dir); err != nil {
		return fmt.Errorf("wal: sync %s: %w", w.dir, err)
	}
	return nil
}

func syncDir(fs vfs.FS, dir string) error {
	d, err := fs.OpenDir(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		d.Close()
		return err
	}
	return d.Close()
}

// First is the first LSN that can be read; Last()+1 when the log is empty.
func (w *WAL) First() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.first
}

// FirstSegmentEnd is the LSN of the last record of the first segment,
// when a later segment exists: TruncateFront to that LSN or past it
// removes the first segment. False when the log is one segment (the last
// segment is never removed).
func (w *WAL) FirstSegmentEnd() (uint64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.segs) < 2 {
		return 0, false
	}
	return w.segs[1].first - 1, true
}

// Last is the LSN of the last record; First()-1 when the log is empty.
func (w *WAL) Last() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// Bytes is what the log's segments hold on disk: every record with its
// header, those below First() that no whole-segment removal took yet
// included, and not the space preallocated after the last one.
func (w *WAL) Bytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	for _, s := range w.segs {
		n += s.end
	}
	return n
}

// Append durably appends records, which get LSNs first, first+1, ...;
// first must be Last()+1. Each record must be a frame (package frame) of
// at most MaxRecord bytes; Append does not verify it (the caller did), the
// reads do. It returns once the records are synced (one fdatasync). After a
// failed write or sync every later Append and truncation returns the same
// error: what is on disk is then unknown until the log is opened again.
func (w *WAL) Append(first uint64, records [][]byte) error {
	if len(records) == 0 {
		return nil
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.mu.Lock()
	closed, next := w.closed, w.last+1
	w.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if first != next {
		return fmt.Errorf("wal: append at lsn %d, the log ends at lsn %d", first, next-1)
	}
	var size int64
	for i, r := range records {
		if len(r) < minPayload || int64(len(r)) > MaxRecord {
			return fmt.Errorf("wal: append lsn %d: a record of %d bytes", first+uint64(i), len(r))
		}
		size += headerLen + int64(len(r))
	}
	t, created := w.tail, false
	if t.count() > 0 && t.end+size > w.segSize {
		var err error
		if t, err = w.createSegment(first, size); err != nil {
			return err
		}
		created = true
	}
	offs, err := w.write(t, records)
	if err == nil {
		err = t.f.SyncData()
	}
	if err != nil {
		w.err = fmt.Errorf("wal: append lsn %d..%d to %s: %w", first, first+uint64(len(records))-1, t.path, err)
		if created {
			t.f.Close()
		}
		return w.err
	}
	w.mu.Lock()
	if created {
		w.segs = append(w.segs, t)
		w.tail = t
	}
	t.offs = append(t.offs, offs...)
	t.end += size
	w.last += uint64(len(records))
	w.mu.Unlock()
	if _, low := w.zeroTargets(t); w.fillWake != nil && t.zeroed < low {
		select {
		case w.fillWake <- struct{}{}:
		default:
		}
	}
	return nil
}

// zeroTargets is how far the filler writes zeros in t (to), and below
// what an Append wakes it (low): ahead of the end by as much as the
// segment holds, between a chunk and zeroAheadMax, woken when half of
// that is left, never past the nominal size. The caller holds wmu.
func (w *WAL) zeroTargets(t *segment) (to, low int64) {
	ahead := min(max(t.end, fillChunk), zeroAheadMax)
	return min(t.end+ahead, w.segSize), min(t.end+ahead/2, w.segSize)
}

// startFiller starts the filler if on (see "Zeros ahead").
func (w *WAL) startFiller(on bool) {
	if !on {
		return
	}
	w.fillWake, w.fillStop, w.fillDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go w.filler()
}

// filler writes zeros ahead of the tail when an Append wakes it, until
// Close (see "Zeros ahead").
func (w *WAL) filler() {
	defer close(w.fillDone)
	zeros := make([]byte, fillChunk)
	for {
		select {
		case <-w.fillStop:
			return
		case <-w.fillWake:
		}
		for {
			more, err := w.fillOnce(zeros)
			if err != nil {
				// Appends go on without zeros ahead; their own writes
				// will report the disk's trouble.
				w.log.Warn("wal: writing zeros ahead of the log failed; appends go on without", "err", err)
				return
			}
			if !more {
				break
			}
			select {
			case <-w.fillStop:
				return
			default:
			}
		}
	}
}

// fillOnce writes one chunk of zeros at the tail's end or past it, and
// syncs when it has written all the tail wants; more says whether it
// wants more. The write is under wmu,
// so no Append writes beside it; the sync is not.
func (w *WAL) fillOnce(zeros []byte) (more bool, err error) {
	w.wmu.Lock()
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	t := w.tail
	if closed || w.err != nil {
		w.wmu.Unlock()
		return false, nil
	}
	from := max(t.zeroed, t.end)
	to, _ := w.zeroTargets(t)
	if from >= to {
		w.wmu.Unlock()
		return false, nil
	}
	n := min(int64(len(zeros)), to-from)
	if _, err := t.f.WriteAt(zeros[:n], from); err != nil {
		w.wmu.Unlock()
		return false, fmt.Errorf("write zeros to %s at %d: %w", t.path, from, err)
	}
	t.zeroed = from + n
	if from+n < to {
		// One sync per burst, not per chunk: each is a journal commit
		// the Appends beside it wait for.
		w.wmu.Unlock()
		return true, nil
	}
	w.mu.Lock()
	t.refs++ // a truncation or Close may drop t meanwhile: f stays open
	f := t.f
	w.mu.Unlock()
	w.wmu.Unlock()
	err = f.SyncData()
	w.mu.Lock()
	t.refs--
	dead := t.dead
	t.release()
	w.mu.Unlock()
	if err != nil && !dead {
		return false, fmt.Errorf("sync zeros of %s: %w", t.path, err)
	}
	return false, nil
}

// write writes records at t's end, as few writes as the buffer allows,
// and returns their offsets.
func (w *WAL) write(t *segment, records [][]byte) ([]int64, error) {
	offs := make([]int64, len(records))
	at := t.end  // where buf goes
	off := t.end // where the next record goes
	buf := w.buf[:0]
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		if _, err := t.f.WriteAt(buf, at); err != nil {
			return err
		}
		at += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for i, r := range records {
		offs[i] = off
		var hdr [headerLen]byte
		putHeader(hdr[:], len(r), i == 0, off)
		buf = append(buf, hdr[:]...)
		if len(r) > bufLimit {
			if err := flush(); err != nil {
				return nil, err
			}
			if _, err := t.f.WriteAt(r, at); err != nil {
				return nil, err
			}
			at += int64(len(r))
		} else {
			if len(buf)+len(r) > bufLimit {
				if err := flush(); err != nil {
					return nil, err
				}
			}
			buf = append(buf, r...)
		}
		off += headerLen + int64(len(r))
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if cap(buf) <= bufLimit {
		w.buf = buf[:0]
	}
	return offs, nil
}

// piece is a run of records in one segment that a Read fetches with one
// ReadAt.
type piece struct {
	s        *segment
	lsn      uint64 // of the first record
	from, to int64
	lens     []int64 // payload lengths
}

// Read returns records lo..hi (hi is capped at Last()), stopping after the
// record that brings the total to maxBytes (always at least one when lo
// ≤ hi). The records are copies, which the caller owns (slices of one
// buffer per segment read, each capped at its own length). It returns an
// error wrapping ErrCompacted if lo precedes First(), and ErrCorrupt if a
// record does not verify.
func (w *WAL) Read(lo, hi uint64, maxBytes int) ([][]byte, error) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil, ErrClosed
	}
	if lo < w.first {
		first := w.first
		w.mu.Unlock()
		return nil, fmt.Errorf("%w: lsn %d, the log starts at %d", ErrCompacted, lo, first)
	}
	hi = min(hi, w.last)
	if lo > hi {
		w.mu.Unlock()
		return nil, nil
	}
	si := sort.Search(len(w.segs), func(i int) bool { return w.segs[i].first > lo }) - 1
	var pieces []piece
	total := int64(0)
	lsn := lo
	for ; si < len(w.segs) && lsn <= hi && (len(pieces) == 0 || total < int64(maxBytes)); si++ {
		s := w.segs[si]
		k := int(lsn - s.first)
		p := piece{s: s, lsn: lsn, from: s.offs[k]}
		for ; k < s.count() && lsn <= hi; k++ {
			p.to = s.recEnd(k)
			n := p.to - s.offs[k] - headerLen
			p.lens = append(p.lens, n)
			total += n
			lsn++
			if total >= int64(maxBytes) {
				break
			}
		}
		s.refs++
		pieces = append(pieces, p)
	}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		for _, p := range pieces {
			p.s.refs--
			p.s.release()
		}
		w.mu.Unlock()
	}()
	var out [][]byte
	for _, p := range pieces {
		recs, err := p.read()
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

func (p *piece) read() ([][]byte, error) {
	buf := make([]byte, p.to-p.from)
	if n, err := p.s.f.ReadAt(buf, p.from); n < len(buf) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("wal: read lsn %d from %s: %w", p.lsn, p.s.path, err)
	}
	out := make([][]byte, 0, len(p.lens))
	off := int64(0)
	for i, n := range p.lens {
		word := binary.LittleEndian.Uint32(buf[off:])
		check := binary.LittleEndian.Uint32(buf[off+4:])
		if int64(word&lenMask) != n || check != headerCheck(word, p.from+off) {
			return nil, fmt.Errorf("wal: lsn %d in %s: a header that does not verify: %w", p.lsn+uint64(i), p.s.path, ErrCorrupt)
		}
		rec := buf[off+headerLen : off+headerLen+n : off+headerLen+n]
		if _, err := frame.Open(rec, ErrCorrupt); err != nil {
			return nil, fmt.Errorf("wal: lsn %d in %s: %w", p.lsn+uint64(i), p.s.path, err)
		}
		out = append(out, rec)
		off += headerLen + n
	}
	return out, nil
}

// release closes a removed segment's file once no Read holds it. The
// caller holds mu.
func (s *segment) release() {
	if s.dead && s.refs == 0 && s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// TruncateFront drops the records up to lsn (capped at Last()): First()
// becomes lsn+1, and every segment all of whose records are at or below
// lsn is removed, except the last segment. The segment that then comes
// first may still hold records at or below lsn; they cannot be read, and
// after Open they are there again (First() is not stored: the caller keeps
// its own base). If a segment is to be removed, before (if not nil) is
// called first, and an error from it stops the truncation with nothing
// changed: the caller makes durable there whatever depends on the records
// going (tandem's storage: the data applied from them).
func (w *WAL) TruncateFront(lsn uint64, before func() error) error {
	w.fmu.Lock()
	defer w.fmu.Unlock()
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return ErrClosed
	}
	lsn = min(lsn, w.last)
	if lsn < w.first {
		w.mu.Unlock()
		return nil
	}
	n := 0
	for n+1 < len(w.segs) && w.segs[n+1].first <= lsn+1 {
		n++
	}
	gone := slices.Clone(w.segs[:n])
	w.mu.Unlock()
	if n > 0 && before != nil {
		if err := before(); err != nil {
			return err
		}
	}
	w.mu.Lock()
	w.first = max(w.first, lsn+1)
	// Append only adds at the end, and nothing else removes segments
	// while fmu is held: the first n are still gone's.
	w.segs = slices.Clone(w.segs[n:])
	for _, s := range gone {
		s.dead = true
	}
	w.mu.Unlock()
	// Oldest first, syncing each: a crash leaves a suffix of the log.
	var err error
	for _, s := range gone {
		if err = w.removeFile(s.path); err != nil {
			break
		}
	}
	w.mu.Lock()
	for _, s := range gone {
		s.release()
	}
	w.mu.Unlock()
	return err
}

// removeFile removes a segment file and syncs the directory.
func (w *WAL) removeFile(path string) error {
	if err := w.fs.Remove(path); err != nil {
		return fmt.Errorf("wal: remove %s: %w", path, err)
	}
	return w.syncDir()
}

// TruncateBack drops every record after lsn (a diverged suffix); lsn must
// be at least First()-1. Later segments are removed newest first, then the
// segment holding lsn is rewritten with its records up to lsn (a new file
// renamed over the old one), each step synced, so a crash leaves a prefix
// of the log no shorter than lsn.
func (w *WAL) TruncateBack(lsn uint64) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.fmu.Lock()
	defer w.fmu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.mu.Lock()
	closed, first, last := w.closed, w.first, w.last
	segs := slices.Clone(w.segs)
	w.mu.Unlock()
	switch {
	case closed:
		return ErrClosed
	case lsn >= last:
		return nil
	case lsn+1 < first:
		return fmt.Errorf("%w: truncate after lsn %d, the log starts at %d", ErrCompacted, lsn, first)
	}
	// i: the segment holding lsn+1, the first record to drop.
	i := sort.Search(len(segs), func(i int) bool { return segs[i].first > lsn+1 }) - 1
	fail := func(err error) error {
		w.err = fmt.Errorf("wal: truncate after lsn %d: %w", lsn, err)
		return w.err
	}
	for j := len(segs) - 1; j > i; j-- {
		if err := w.removeFile(segs[j].path); err != nil {
			return fail(err)
		}
	}
	s := segs[i]
	keep := int(lsn + 1 - s.first)
	var repl *segment // the rewritten segment i, if any
	if keep > 0 || i == 0 {
		var err error
		if repl, err = w.rewrite(s, keep); err != nil {
			return fail(err)
		}
	} else if err := w.removeFile(s.path); err != nil {
		return fail(err)
	}
	w.mu.Lock()
	for _, d := range segs[i:] {
		d.dead = true
		d.release()
	}
	w.segs = slices.Clone(segs[:i])
	if repl != nil {
		w.segs = append(w.segs, repl)
	}
	w.tail = w.segs[len(w.segs)-1]
	w.last = lsn
	w.mu.Unlock()
	return nil
}

// rewrite writes the first keep records of s to a new file and renames it
// over s. It returns the new segment.
func (w *WAL) rewrite(s *segment, keep int) (*segment, error) {
	size := int64(0)
	if keep > 0 {
		size = s.recEnd(keep - 1)
	}
	tmp := s.path + tmpSuffix
	f, err := w.fs.Create(tmp, vfs.WriteCategoryUnspecified)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", tmp, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	w.preallocate(f, tmp, size)
	buf := make([]byte, min(size, copyChunk))
	for off := int64(0); off < size; off += int64(len(buf)) {
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := s.f.ReadAt(b, off); err != nil {
			return nil, fmt.Errorf("read %s: %w", s.path, err)
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return nil, fmt.Errorf("write %s: %w", tmp, err)
		}
	}
	if err := f.SyncData(); err != nil {
		return nil, fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := w.fs.Rename(tmp, s.path); err != nil {
		return nil, fmt.Errorf("rename %s: %w", tmp, err)
	}
	if err := w.syncDir(); err != nil {
		return nil, err
	}
	ok = true
	return &segment{first: s.first, path: s.path, f: f, offs: slices.Clone(s.offs[:keep]), end: size}, nil
}

// Reset empties the log: every segment is removed (newest first, each
// synced) and the next record is base+1. A crash during Reset leaves a
// prefix of the old log, or an empty log at base 0 or base.
func (w *WAL) Reset(base uint64) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.fmu.Lock()
	defer w.fmu.Unlock()
	if w.err != nil {
		return w.err
	}
	w.mu.Lock()
	closed := w.closed
	segs := slices.Clone(w.segs)
	empty := w.first == base+1 && w.last == base && len(segs) == 1 && segs[0].count() == 0 && segs[0].first == base+1
	w.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if empty {
		return nil
	}
	fail := func(err error) error {
		w.err = fmt.Errorf("wal: reset to lsn %d: %w", base, err)
		return w.err
	}
	for j := len(segs) - 1; j >= 0; j-- {
		if err := w.removeFile(segs[j].path); err != nil {
			return fail(err)
		}
	}
	s, err := w.createSegment(base+1, 0)
	if err != nil {
		return fail(err)
	}
	w.mu.Lock()
	for _, d := range segs {
		d.dead = true
		d.release()
	}
	w.segs, w.tail, w.first, w.last = []*segment{s}, s, base+1, base
	w.mu.Unlock()
	return nil
}

// Close closes the log. Reads still running finish on the files they hold.
func (w *WAL) Close() error {
	if w.fillStop != nil {
		// Before wmu: the filler may be waiting for it.
		w.stopOnce.Do(func() { close(w.fillStop) })
		<-w.fillDone
	}
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.fmu.Lock()
	defer w.fmu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	for _, s := range w.segs {
		s.dead = true
		s.release()
	}
	return nil
}

// closeAll closes the files of a WAL that failed to open.
func (w *WAL) closeAll() {
	for _, s := range w.segs {
		s.f.Close()
	}
}

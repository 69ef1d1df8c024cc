package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/testutil"
)

const dir = "/log"

// rec is the record at lsn written in generation gen (a TruncateBack or
// Reset starts a new one, so that rewritten LSNs hold other bytes), of a
// size that varies with lsn.
func rec(lsn, gen uint64) []byte {
	return recSized(lsn, gen, 10+int(lsn*37%200))
}

func recSized(lsn, gen uint64, size int) []byte {
	body := fmt.Sprintf("lsn=%d gen=%d ", lsn, gen)
	if pad := size - len(body); pad > 0 {
		body += strings.Repeat(string(rune('a'+lsn%26)), pad)
	}
	f := append(frame.Begin(nil), body...)
	frame.Seal(f)
	return f
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openW(t *testing.T, fs vfs.FS, segSize int64) *WAL {
	t.Helper()
	w, err := Open(dir, Options{FS: fs, SegmentSize: segSize, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return w
}

func reopenW(t *testing.T, w *WAL, fs vfs.FS, segSize int64) *WAL {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openW(t, fs, segSize)
}

// appendRange appends lo..hi of generation gen in batches of up to batch.
func appendRange(t *testing.T, w *WAL, lo, hi, gen uint64, batch int) {
	t.Helper()
	for lsn := lo; lsn <= hi; {
		var recs [][]byte
		for len(recs) < batch && lsn <= hi {
			recs = append(recs, rec(lsn, gen))
			lsn++
		}
		if err := w.Append(lsn-uint64(len(recs)), recs); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
}

// checkLog reads the whole log and compares it with want (lsn -> record).
func checkLog(t *testing.T, w *WAL, first, last uint64, want func(lsn uint64) []byte) {
	t.Helper()
	if f, l := w.First(), w.Last(); f != first || l != last {
		t.Fatalf("log is %d..%d, want %d..%d", f, l, first, last)
	}
	got, err := w.Read(first, last, 1<<30)
	if err != nil {
		t.Fatalf("Read(%d, %d): %v", first, last, err)
	}
	if len(got) != int(last+1-first) {
		t.Fatalf("Read(%d, %d) = %d records", first, last, len(got))
	}
	for i, r := range got {
		if lsn := first + uint64(i); !bytes.Equal(r, want(lsn)) {
			t.Fatalf("lsn %d = %q, want %q", lsn, r, want(lsn))
		}
	}
}

func gen0(lsn uint64) []byte { return rec(lsn, 0) }

// segments lists the segment files in dir.
func segments(t *testing.T, fs vfs.FS) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

func fileBytes(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(fs.PathJoin(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, fs vfs.FS, name string, b []byte) {
	t.Helper()
	f, err := fs.Create(fs.PathJoin(dir, name), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Clone(b)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestAppendReadReopen(t *testing.T) {
	const segSize = 1024
	fs := vfs.NewMem()
	w := openW(t, fs, segSize)
	defer func() { w.Close() }()
	if w.First() != 1 || w.Last() != 0 {
		t.Fatalf("empty log %d..%d, want 1..0", w.First(), w.Last())
	}
	if got, err := w.Read(1, 10, 1<<20); err != nil || got != nil {
		t.Fatalf("Read of an empty log = %v, %v", got, err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for lsn := uint64(1); lsn <= 300; {
		n := min(1+r.IntN(7), int(301-lsn))
		appendRange(t, w, lsn, lsn+uint64(n)-1, 0, n)
		lsn += uint64(n)
	}
	for round := 0; round < 2; round++ {
		checkLog(t, w, 1, 300, gen0)
		// Every segment is within the nominal size, or holds one append.
		if n := len(segments(t, fs)); n < 10 || n != len(w.segs) {
			t.Fatalf("round %d: %d segment files for ~35 KB at 1 KiB each, %d open", round, n, len(w.segs))
		}
		var onDisk int64
		for _, s := range w.segs {
			b := fileBytes(t, fs, segName(s.first))
			onDisk += int64(len(b))
			if int64(len(b)) != s.end {
				t.Errorf("round %d: %s holds %d bytes, its records %d", round, segName(s.first), len(b), s.end)
			}
			starts := 0
			for _, off := range s.offs {
				if b[off+3]&0x80 != 0 {
					starts++
				}
			}
			if s.end > segSize && starts != 1 {
				t.Errorf("round %d: %s holds %d bytes in %d appends, more than the nominal %d", round, segName(s.first), s.end, starts, segSize)
			}
		}
		if w.Bytes() != onDisk {
			t.Errorf("round %d: Bytes() = %d, the segment files hold %d", round, w.Bytes(), onDisk)
		}
		for i := 0; i < 200; i++ {
			lo := 1 + uint64(r.IntN(300))
			hi := lo + uint64(r.IntN(40))
			maxBytes := 1 + r.IntN(3000)
			got, err := w.Read(lo, hi, maxBytes)
			if err != nil {
				t.Fatalf("Read(%d, %d, %d): %v", lo, hi, maxBytes, err)
			}
			// The model: records from lo while under maxBytes, at least one,
			// at most to hi and the end of the log.
			var want [][]byte
			size := 0
			for lsn := lo; lsn <= min(hi, 300); lsn++ {
				want = append(want, rec(lsn, 0))
				size += len(want[len(want)-1])
				if size >= maxBytes {
					break
				}
			}
			if !slices.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("Read(%d, %d, %d) = %d records, want %d", lo, hi, maxBytes, len(got), len(want))
			}
		}
		if _, err := w.Read(0, 5, 1<<20); !errors.Is(err, ErrCompacted) {
			t.Errorf("Read(0) error %v, want ErrCompacted", err)
		}
		w = reopenW(t, w, fs, segSize)
	}
	// The log goes on after a reopen.
	appendRange(t, w, 301, 310, 0, 3)
	w = reopenW(t, w, fs, segSize)
	checkLog(t, w, 1, 310, gen0)
}

func TestAppendRejects(t *testing.T) {
	w := openW(t, vfs.NewMem(), 0)
	defer w.Close()
	appendRange(t, w, 1, 3, 0, 3)
	for _, tt := range []struct {
		name  string
		first uint64
		recs  [][]byte
	}{
		{"gap", 5, [][]byte{rec(5, 0)}},
		{"repeat", 3, [][]byte{rec(3, 0)}},
		{"too short to be a frame", 4, [][]byte{rec(4, 0), []byte("abcd")}},
		{"empty", 4, [][]byte{{}}},
	} {
		if err := w.Append(tt.first, tt.recs); err == nil {
			t.Errorf("%s: Append succeeded", tt.name)
		}
	}
	if err := w.Append(4, nil); err != nil {
		t.Errorf("empty Append: %v", err)
	}
	checkLog(t, w, 1, 3, gen0)
}

// TestLargeBatchOwnSegment: a batch larger than the nominal size gets a
// segment to itself, and the next append starts another.
func TestLargeBatchOwnSegment(t *testing.T) {
	const segSize = 1024
	fs := vfs.NewMem()
	w := openW(t, fs, segSize)
	defer func() { w.Close() }()
	appendRange(t, w, 1, 3, 0, 3)
	big := recSized(4, 0, 5000)
	if err := w.Append(4, [][]byte{big}); err != nil {
		t.Fatal(err)
	}
	appendRange(t, w, 5, 6, 0, 2)
	want := func(lsn uint64) []byte {
		if lsn == 4 {
			return big
		}
		return rec(lsn, 0)
	}
	checkLog(t, w, 1, 6, want)
	if got := segments(t, fs); !slices.Equal(got, []string{segName(1), segName(4), segName(5)}) {
		t.Errorf("segments %v", got)
	}
	w = reopenW(t, w, fs, segSize)
	checkLog(t, w, 1, 6, want)
}

// lastRecordSpan returns the offsets of the last record of the last
// segment of a closed log, from its index.
func lastRecordSpan(t *testing.T, fs vfs.FS, segSize int64) (name string, start, end int64) {
	t.Helper()
	w := openW(t, fs, segSize)
	defer w.Close()
	s := w.segs[len(w.segs)-1]
	return segName(s.first), s.offs[s.count()-1], s.end
}

// TestTornTail cuts the last record at every byte, pads the cut with
// zeros or garbage as a crash might, and checks that Open truncates it,
// keeps everything before it, and appends after it.
func TestTornTail(t *testing.T) {
	build := func() *vfs.MemFS {
		fs := vfs.NewMem()
		w := openW(t, fs, 1024)
		appendRange(t, w, 1, 20, 0, 4)
		appendRange(t, w, 21, 21, 0, 1)
		w.Close()
		return fs
	}
	name, start, end := lastRecordSpan(t, build(), 1024)
	tails := map[string]func(n int) []byte{
		"eof":     func(int) []byte { return nil },
		"zeros":   func(n int) []byte { return make([]byte, n) },
		"garbage": func(n int) []byte { return bytes.Repeat([]byte{0xa5, 0x3c, 0x00, 0xff}, n/4+1)[:n] },
	}
	for kind, tail := range tails {
		for cut := start; cut <= end; cut++ {
			fs := build()
			b := fileBytes(t, fs, name)
			torn := append(b[:cut:cut], tail(int(end-cut)+100)...)
			writeFile(t, fs, name, torn)
			w, err := Open(dir, Options{FS: fs, SegmentSize: 1024, Logger: testLogger(t)})
			if err != nil {
				t.Fatalf("%s, cut at %d of %d..%d: Open: %v", kind, cut, start, end, err)
			}
			want := uint64(20)
			if cut == end {
				want = 21 // the record is whole; only what follows is dropped
			}
			checkLog(t, w, 1, want, gen0)
			appendRange(t, w, want+1, want+2, 1, 2)
			w.Close()
			w = openW(t, fs, 1024)
			checkLog(t, w, 1, want+2, func(lsn uint64) []byte {
				if lsn > want {
					return rec(lsn, 1)
				}
				return rec(lsn, 0)
			})
			w.Close()
		}
	}
}

// TestTornAppendOutOfOrder: a crash kept later blocks of the last Append
// but not its first: the intact records after the damage belong to the
// torn Append, so the log ends before it.
func TestTornAppendOutOfOrder(t *testing.T) {
	fs := vfs.NewMem()
	w := openW(t, fs, 1<<20)
	appendRange(t, w, 1, 5, 0, 5)
	appendRange(t, w, 6, 12, 0, 7)
	s := w.segs[0]
	batchStart, secondRec := s.offs[5], s.offs[6]
	w.Close()
	b := fileBytes(t, fs, segName(1))
	for _, damage := range []struct {
		name string
		fn   func(b []byte)
	}{
		{"first record zeroed", func(b []byte) { clear(b[batchStart:secondRec]) }},
		{"first header zeroed", func(b []byte) { clear(b[batchStart : batchStart+headerLen]) }},
		{"first payload damaged", func(b []byte) { b[secondRec-3] ^= 0x40 }},
	} {
		c := bytes.Clone(b)
		damage.fn(c)
		writeFile(t, fs, segName(1), c)
		w := openW(t, fs, 1<<20)
		checkLog(t, w, 1, 5, gen0)
		w.Close()
		writeFile(t, fs, segName(1), b)
	}
}

// TestCorruption: damage that a tear cannot explain is an error wrapping
// ErrCorrupt, on Open and on Read, never a shorter log.
func TestCorruption(t *testing.T) {
	const segSize = 512
	build := func() (*vfs.MemFS, []string) {
		fs := vfs.NewMem()
		w := openW(t, fs, segSize)
		appendRange(t, w, 1, 30, 0, 2)
		w.Close()
		// Larger segments from here: the last one gets several appends.
		w = openW(t, fs, 1<<20)
		appendRange(t, w, 31, 40, 0, 2)
		w.Close()
		return fs, segments(t, fs)
	}
	_, names := build()
	if len(names) < 4 {
		t.Fatalf("%d segments", len(names))
	}
	mid := names[1]
	last := names[len(names)-1]
	// Offsets inside the last segment: its first batch, and its last.
	fs, _ := build()
	w := openW(t, fs, segSize)
	ls := w.segs[len(w.segs)-1]
	if ls.count() < 4 {
		t.Fatalf("the last segment holds %d records", ls.count())
	}
	firstRecOfLast, lastBatch := ls.offs[0], ls.offs[ls.count()-2]
	w.Close()
	tests := []struct {
		name   string
		file   string
		damage func(b []byte) []byte
	}{
		{"payload bit in a middle segment", mid, func(b []byte) []byte { b[len(b)/2] ^= 0x08; return b }},
		{"length bit in a middle segment", mid, func(b []byte) []byte { b[0] ^= 0x01; return b }},
		{"check bit in a middle segment", mid, func(b []byte) []byte { b[5] ^= 0x01; return b }},
		{"middle segment cut short", mid, func(b []byte) []byte { return b[:len(b)-3] }},
		{"garbage after a middle segment's records", mid, func(b []byte) []byte { return append(b, 0, 0, 0, 0, 0, 0, 0, 0, 1) }},
		{"an earlier append in the last segment", last, func(b []byte) []byte { b[firstRecOfLast+headerLen+2] ^= 0x80; return b }},
		{"an earlier append in the last segment zeroed", last, func(b []byte) []byte { clear(b[:lastBatch]); return b }},
		{"the last byte of an earlier append", last, func(b []byte) []byte { b[lastBatch-1] ^= 1; return b }},
		{"a middle segment missing", mid, nil},
	}
	for _, tt := range tests {
		fs, _ := build()
		if tt.damage == nil {
			if err := fs.Remove(fs.PathJoin(dir, tt.file)); err != nil {
				t.Fatal(err)
			}
		} else {
			writeFile(t, fs, tt.file, tt.damage(fileBytes(t, fs, tt.file)))
		}
		w, err := Open(dir, Options{FS: fs, SegmentSize: segSize, Logger: testLogger(t)})
		if !errors.Is(err, ErrCorrupt) || !frame.IsCorruption(err) {
			if err == nil {
				t.Errorf("%s: Open succeeded with log %d..%d", tt.name, w.First(), w.Last())
				w.Close()
			} else {
				t.Errorf("%s: Open error %v, want ErrCorrupt", tt.name, err)
			}
			continue
		}
		t.Logf("%s: %v", tt.name, err)
	}
	// Damage after Open: reads verify what they read.
	fs, _ = build()
	w = openW(t, fs, segSize)
	defer w.Close()
	mf := fs
	b, err := mf.UnsafeGetFileDataBuffer(mf.PathJoin(dir, mid))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := parseSegName(mid)
	b[len(b)-2] ^= 0x20 // the segment's last record
	n := uint64(w.segs[1].count())
	if _, err := w.Read(first, first+n-1, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Read over a damaged record: %v, want ErrCorrupt", err)
	}
	if got, err := w.Read(first, first+n-2, 1<<20); err != nil || len(got) != int(n-1) {
		t.Errorf("Read before the damaged record = %d, %v", len(got), err)
	}
	b[4] ^= 0x01 // the first record's check
	if _, err := w.Read(first, first, 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Read of a damaged header: %v, want ErrCorrupt", err)
	}
}

func TestTruncateFront(t *testing.T) {
	const segSize = 1024
	fs := vfs.NewMem()
	w := openW(t, fs, segSize)
	defer func() { w.Close() }()
	appendRange(t, w, 1, 100, 0, 3)
	segsBefore := segments(t, fs)
	// The first segment whose records are not all at or below 37.
	var keepFrom string
	for _, s := range w.segs {
		if s.first+uint64(s.count())-1 > 37 {
			keepFrom = segName(s.first)
			break
		}
	}
	boom := errors.New("boom")
	if err := w.TruncateFront(37, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("TruncateFront with a failing before: %v", err)
	}
	if w.First() != 1 || !slices.Equal(segments(t, fs), segsBefore) {
		t.Fatalf("a refused TruncateFront changed the log: first %d", w.First())
	}
	called := false
	if err := w.TruncateFront(37, func() error { called = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if !called {
		t.Error("before was not called though segments were removed")
	}
	checkLog(t, w, 38, 100, gen0)
	if _, err := w.Read(37, 40, 1<<20); !errors.Is(err, ErrCompacted) {
		t.Errorf("Read(37) error %v, want ErrCompacted", err)
	}
	if got := segments(t, fs); got[0] != keepFrom {
		t.Errorf("first segment %s, want %s", got[0], keepFrom)
	}
	// After Open the first segment is whole again.
	keepFirst, _ := parseSegName(keepFrom)
	w = reopenW(t, w, fs, segSize)
	checkLog(t, w, keepFirst, 100, gen0)
	// Inside the first segment: nothing to remove, before not called.
	if w.segs[0].count() < 2 {
		t.Fatalf("first segment holds %d records", w.segs[0].count())
	}
	called = false
	if err := w.TruncateFront(keepFirst, func() error { called = true; return nil }); err != nil || called {
		t.Errorf("TruncateFront inside the first segment: %v, before called %v", err, called)
	}
	checkLog(t, w, keepFirst+1, 100, gen0)
	// Everything: the last segment stays, and the log goes on.
	if err := w.TruncateFront(1000, nil); err != nil {
		t.Fatal(err)
	}
	checkLog(t, w, 101, 100, gen0)
	if n := len(segments(t, fs)); n != 1 {
		t.Errorf("%d segments after trimming everything, want 1", n)
	}
	appendRange(t, w, 101, 105, 0, 5)
	w = reopenW(t, w, fs, segSize)
	if w.Last() != 105 || w.First() > 101 {
		t.Errorf("after reopen: %d..%d", w.First(), w.Last())
	}
}

func TestTruncateBack(t *testing.T) {
	const segSize = 1024
	fs := vfs.NewMem()
	w := openW(t, fs, segSize)
	defer func() { w.Close() }()
	appendRange(t, w, 1, 100, 0, 3)
	boundary := w.segs[3].first - 1 // the last record of segment 2
	inside := w.segs[2].first + 1   // inside segment 2
	gen := uint64(0)
	contents := map[uint64][]byte{}
	for lsn := uint64(1); lsn <= 100; lsn++ {
		contents[lsn] = rec(lsn, 0)
	}
	want := func(lsn uint64) []byte { return contents[lsn] }
	for _, after := range []uint64{80, boundary, inside} {
		if err := w.TruncateBack(after); err != nil {
			t.Fatalf("TruncateBack(%d): %v", after, err)
		}
		for round := 0; round < 2; round++ {
			checkLog(t, w, 1, after, want)
			if got, err := w.Read(after+1, after+10, 1<<20); err != nil || got != nil {
				t.Errorf("after %d: Read past the end = %d, %v", after, len(got), err)
			}
			w = reopenW(t, w, fs, segSize)
		}
		// New records of other sizes over the dropped ones: nothing of the
		// old suffix comes back.
		gen++
		for lsn := after + 1; lsn <= after+4; lsn++ {
			contents[lsn] = recSized(lsn, gen, 7+int(lsn%5))
			if err := w.Append(lsn, [][]byte{contents[lsn]}); err != nil {
				t.Fatal(err)
			}
		}
		w = reopenW(t, w, fs, segSize)
		checkLog(t, w, 1, after+4, want)
		if err := w.TruncateBack(after + 4); err != nil { // a no-op
			t.Fatal(err)
		}
	}
	// Down to before the first record: empty, and the next LSN kept.
	if err := w.TruncateFront(10, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.TruncateBack(9); !errors.Is(err, ErrCompacted) {
		t.Errorf("TruncateBack below First()-1: %v, want ErrCompacted", err)
	}
	if err := w.TruncateBack(10); err != nil {
		t.Fatal(err)
	}
	checkLog(t, w, 11, 10, want)
	w = reopenW(t, w, fs, segSize)
	if w.Last() != 10 {
		t.Fatalf("after reopen the log ends at %d, want 10", w.Last())
	}
	f := w.First()
	if err := w.TruncateBack(f - 1); err != nil {
		t.Fatal(err)
	}
	checkLog(t, w, f, f-1, want)
	w = reopenW(t, w, fs, segSize)
	checkLog(t, w, f, f-1, want)
	if got := segments(t, fs); !slices.Equal(got, []string{segName(f)}) {
		t.Errorf("segments %v, want one empty at %d", got, f)
	}
}

func TestReset(t *testing.T) {
	fs := vfs.NewMem()
	w := openW(t, fs, 1024)
	defer func() { w.Close() }()
	appendRange(t, w, 1, 60, 0, 4)
	if err := w.Reset(500); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		checkLog(t, w, 501, 500, gen0)
		if got := segments(t, fs); !slices.Equal(got, []string{segName(501)}) {
			t.Errorf("round %d: segments %v", round, got)
		}
		w = reopenW(t, w, fs, 1024)
	}
	if err := w.Reset(500); err != nil { // already there
		t.Fatal(err)
	}
	appendRange(t, w, 501, 510, 0, 4)
	w = reopenW(t, w, fs, 1024)
	checkLog(t, w, 501, 510, gen0)
	if err := w.Reset(0); err != nil {
		t.Fatal(err)
	}
	w = reopenW(t, w, fs, 1024)
	checkLog(t, w, 1, 0, gen0)
}

// TestConcurrentReads: readers on other goroutines during appends and
// front truncations see each record as written or ErrCompacted.
func TestConcurrentReads(t *testing.T) {
	w := openW(t, vfs.NewMem(), 2048)
	defer w.Close()
	const n = 3000
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	done := make(chan struct{})
	wg.Add(2)
	go func() { // the appender
		defer wg.Done()
		defer close(done)
		for lsn := uint64(1); lsn <= n; lsn += 5 {
			recs := [][]byte{rec(lsn, 0), rec(lsn+1, 0), rec(lsn+2, 0), rec(lsn+3, 0), rec(lsn+4, 0)}
			if err := w.Append(lsn, recs); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // retention, 500 records behind
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if last := w.Last(); last > 500 {
				if err := w.TruncateFront(last-500, nil); err != nil {
					errs <- err
					return
				}
			}
		}
	}()
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 7))
			for {
				select {
				case <-done:
					return
				default:
				}
				last := w.Last()
				if last == 0 {
					continue
				}
				lo := 1 + uint64(r.IntN(int(last)))
				got, err := w.Read(lo, lo+uint64(r.IntN(50)), 1+r.IntN(8000))
				if errors.Is(err, ErrCompacted) {
					continue
				}
				if err != nil {
					errs <- err
					return
				}
				for i, b := range got {
					if !bytes.Equal(b, rec(lo+uint64(i), 0)) {
						errs <- fmt.Errorf("lsn %d read %q", lo+uint64(i), b)
						return
					}
				}
			}
		}(uint64(g))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHeaderCheckIsFrameChecksum holds headerCheck to what the record
// format says it is, the CRC32C of the word and the offset little-endian
// (frame.Checksum over 12 bytes), and to costing no allocation.
func TestHeaderCheckIsFrameChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 10000 {
		word, offset := rng.Uint32(), int64(rng.Uint64())
		if i < 4 {
			word, offset = []uint32{0, ^uint32(0), 1, startBit | 7}[i], []int64{0, -1, 1 << 40, 8}[i]
		}
		var b [12]byte
		binary.LittleEndian.PutUint32(b[:4], word)
		binary.LittleEndian.PutUint64(b[4:], uint64(offset))
		if got, want := headerCheck(word, offset), frame.Checksum(b[:]); got != want {
			t.Fatalf("headerCheck(%#x, %d) = %#x, frame.Checksum = %#x", word, offset, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = headerCheck(5, 77) }); n != 0 {
		t.Fatalf("headerCheck allocates %v times", n)
	}
}

// TestZeroAheadFill runs the filler's steps by hand: zeros are written
// from the tail's end, never over a record, up to what the segment's size
// asks and at most its nominal size; Appends then write inside the file's
// size without growing it, and the log reads back whole after a reopen.
func TestZeroAheadFill(t *testing.T) {
	fs := vfs.NewMem()
	const segSize = 1 << 20
	w := openW(t, fs, segSize) // no filler goroutine: the test runs its steps
	appendRange(t, w, 1, 100, 0, 7)
	end := w.tail.end
	zeros := make([]byte, fillChunk)
	fill := func() {
		t.Helper()
		for {
			more, err := w.fillOnce(zeros)
			if err != nil {
				t.Fatalf("fillOnce: %v", err)
			}
			if !more {
				return
			}
		}
	}
	fill()
	seg := segName(1)
	b := fileBytes(t, fs, seg)
	if want := end + fillChunk; int64(len(b)) != want {
		t.Fatalf("after the fill the segment is %d bytes, want %d (end %d + one chunk)", len(b), want, end)
	}
	if !allZero(b[end:]) {
		t.Fatalf("the fill wrote non-zero bytes after the records")
	}
	size := len(b)
	appendRange(t, w, 101, 200, 0, 5)
	if n := len(fileBytes(t, fs, seg)); n != size {
		t.Fatalf("Appends inside the zeros grew the file from %d to %d bytes", size, n)
	}
	checkLog(t, w, 1, 200, gen0)
	// Past what a small segment asks for, up to the nominal size only.
	appendRange(t, w, 201, 5000, 0, 50)
	fill()
	for _, name := range segments(t, fs) {
		if n := len(fileBytes(t, fs, name)); n > segSize {
			t.Fatalf("segment %s is %d bytes, past the nominal %d", name, n, segSize)
		}
	}
	w = reopenW(t, w, fs, segSize)
	checkLog(t, w, 1, 5000, gen0)
	appendRange(t, w, 5001, 5100, 0, 9)
	w = reopenW(t, w, fs, segSize)
	checkLog(t, w, 1, 5100, gen0)
	w.Close()
}

// TestZeroAheadConcurrent appends across many small segments with the
// filler running beside the Appends (and -race watching), truncates back
// and front meanwhile, closes while it may be writing, and reads
// everything back after a reopen.
func TestZeroAheadConcurrent(t *testing.T) {
	fs := vfs.NewMem()
	const segSize = 64 << 10
	open := func() *WAL {
		w, err := Open(dir, Options{FS: fs, SegmentSize: segSize, Logger: testLogger(t), ZeroAhead: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return w
	}
	w := open()
	appendRange(t, w, 1, 3000, 0, 7)
	if err := w.TruncateBack(2500); err != nil {
		t.Fatal(err)
	}
	appendRange(t, w, 2501, 4000, 1, 3)
	if err := w.TruncateFront(1000, nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w = open()
	defer w.Close()
	want := func(lsn uint64) []byte {
		if lsn <= 2500 {
			return rec(lsn, 0)
		}
		return rec(lsn, 1)
	}
	got, err := w.Read(1001, 4000, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3000 {
		t.Fatalf("read %d records after lsn 1000, want 3000", len(got))
	}
	for i, r := range got {
		if lsn := uint64(1001 + i); !bytes.Equal(r, want(lsn)) {
			t.Fatalf("lsn %d = %q, want %q", lsn, r, want(lsn))
		}
	}
}

// BenchmarkAppendZeroAhead is one 4 KiB record per Append (one
// fdatasync each) on the real disk, without and with the filler (see
// "Zeros ahead"), reporting the process's CPU per Append (the filler's
// included).
//
//	go test ./internal/wal -run '^$' -bench AppendZeroAhead -benchtime 2000x -count 3
func BenchmarkAppendZeroAhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("zeroahead=%v", on), func(b *testing.B) {
			w, err := Open(b.TempDir(), Options{ZeroAhead: on, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			r := recSized(1, 0, 4096)
			cpu0 := testutil.ProcessCPU()
			b.ResetTimer()
			for i := range b.N {
				if err := w.Append(uint64(i+1), [][]byte{r}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((testutil.ProcessCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/append")
		})
	}
}

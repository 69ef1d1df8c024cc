package wal

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/testutil"
)

// model is what the log holds between steps: the records by LSN (those
// TruncateFront dropped too: they may come back after Open), and the
// logical first and last LSN.
type model struct {
	recs        map[uint64][]byte
	first, last uint64
}

func (m model) clone() model {
	m.recs = maps.Clone(m.recs)
	return m
}

type crashOp struct {
	kind string // append, front, back, reset
	lo   uint64 // append: first LSN
	n    int    // append: count; a negative n makes one record of -n bytes
	at   uint64 // front, back, reset: the LSN
}

// TestCrashAtEveryStep runs appends (across segments, one larger than a
// segment), front and back truncations and a reset on a crashable disk,
// and reopens a crash clone taken before every write, sync, create, rename
// and remove. Each must open without error and hold a log that the step
// could have left: every record of every Append that returned (unless a
// truncation that returned dropped it), a prefix of the one running, with
// every byte as written, and it must take appends after its end that
// survive a reopen.
func TestCrashAtEveryStep(t *testing.T) {
	// Batches of several 4 KiB blocks (CrashClone keeps or drops each
	// unsynced block on its own, so a crash tears them in any pattern).
	const segSize = 10 << 10
	ops := []crashOp{
		{kind: "append", lo: 1, n: 4},
		{kind: "append", lo: 5, n: 1},
		{kind: "append", lo: 6, n: 60},
		{kind: "append", lo: 66, n: 3},
		{kind: "front", at: 9},
		{kind: "append", lo: 69, n: -20000}, // a segment to itself
		{kind: "append", lo: 70, n: 50},
		{kind: "back", at: 75},
		{kind: "append", lo: 76, n: 40},
		{kind: "back", at: 40},
		{kind: "append", lo: 41, n: 30},
		{kind: "front", at: 60},
		{kind: "reset", at: 200},
		{kind: "append", lo: 201, n: 45},
		{kind: "back", at: 200},
		{kind: "append", lo: 201, n: 2},
	}
	c := testutil.NewCrasher(0, 15, 30, 45, 60, 75, 90, 100)
	w, err := Open(dir, Options{FS: c.FS(), SegmentSize: segSize, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	m := model{recs: map[uint64][]byte{}, first: 1, last: 0}
	models := []model{m.clone()} // models[i]: before op i
	gen := uint64(0)
	for i, op := range ops {
		c.Step(i)
		switch op.kind {
		case "append":
			var recs [][]byte
			if op.n < 0 {
				recs = [][]byte{recSized(op.lo, gen, -op.n)}
			} else {
				for j := 0; j < op.n; j++ {
					recs = append(recs, rec(op.lo+uint64(j), gen))
				}
			}
			if err := w.Append(op.lo, recs); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			for j, r := range recs {
				m.recs[op.lo+uint64(j)] = r
			}
			m.last = op.lo + uint64(len(recs)) - 1
		case "front":
			if err := w.TruncateFront(op.at, nil); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			m.first = op.at + 1
		case "back":
			if err := w.TruncateBack(op.at); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			for lsn := op.at + 1; lsn <= m.last; lsn++ {
				delete(m.recs, lsn)
			}
			m.last = op.at
			gen++
		case "reset":
			if err := w.Reset(op.at); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
			m = model{recs: map[uint64][]byte{}, first: op.at + 1, last: op.at}
			gen++
		}
		models = append(models, m.clone())
	}
	c.Step(len(ops))
	c.Take()
	t.Logf("%d crash clones", len(c.Clones))
	for _, cl := range c.Clones {
		checkClone(t, cl, ops, models, segSize)
	}
}

func checkClone(t *testing.T, cl testutil.Clone, ops []crashOp, models []model, segSize int64) {
	t.Helper()
	name := fmt.Sprintf("step %d", cl.Step)
	if cl.Step < len(ops) {
		name += fmt.Sprintf(" (%s %d %d %d)", ops[cl.Step].kind, ops[cl.Step].lo, ops[cl.Step].n, ops[cl.Step].at)
	}
	name += fmt.Sprintf(", %d%% unsynced kept", cl.Pct)
	w, err := Open(dir, Options{FS: cl.FS, SegmentSize: segSize, Logger: testLogger(t)})
	if err != nil {
		t.Errorf("%s: Open: %v", name, err)
		return
	}
	pre := models[cl.Step]
	post := pre
	if cl.Step+1 < len(models) {
		post = models[cl.Step+1]
	}
	f, l := w.First(), w.Last()
	got, err := w.Read(f, l, 1<<30)
	if err != nil {
		t.Errorf("%s: Read(%d, %d): %v", name, f, l, err)
		w.Close()
		return
	}
	// Which states the crash may have left.
	lastLo, lastHi, firstHi := pre.last, pre.last, pre.first
	emptyOK := func(uint64, uint64) bool { return false }
	if cl.Step < len(ops) {
		switch op := ops[cl.Step]; op.kind {
		case "append":
			lastHi = post.last
		case "front":
			firstHi = post.first
		case "back":
			lastLo = op.at
		case "reset":
			// A prefix of the old log, or empty at 0 or at the base.
			lastLo = 0
			emptyOK = func(f, l uint64) bool { return l+1 == f && (f == 1 || f == op.at+1) }
		}
	}
	if !emptyOK(f, l) {
		if l < lastLo || l > lastHi {
			t.Errorf("%s: log ends at %d, want %d..%d", name, l, lastLo, lastHi)
		}
		if f > firstHi || f < 1 {
			t.Errorf("%s: log starts at %d, want at most %d", name, f, firstHi)
		}
		for i, r := range got {
			lsn := f + uint64(i)
			want, ok := pre.recs[lsn]
			if lsn > pre.last || !ok {
				want = post.recs[lsn]
			}
			if !bytes.Equal(r, want) {
				t.Errorf("%s: lsn %d holds %q, want %q", name, lsn, r, want)
				w.Close()
				return
			}
		}
	}
	w.Close()
	// It takes appends after its end, and nothing that was dropped comes
	// back behind them. The appends are as long as the records the crash
	// (or the truncation) lost at l+1..: if a remnant of those were left
	// on disk, it would line up right after the new ones. Each try runs on
	// a copy of the crashed disk.
	var lost []int
	for lsn := l + 1; ; lsn++ {
		r, ok := post.recs[lsn]
		if !ok {
			r, ok = pre.recs[lsn]
		}
		if !ok {
			break
		}
		lost = append(lost, len(r)-frame.HeaderLen) // recSized takes the body size
	}
	counts := []int{1}
	if len(lost) > 2 {
		counts = append(counts, len(lost)/2, len(lost)-1)
	}
	for _, n := range counts {
		fs := cl.FS.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 100, RNG: rand.New(rand.NewPCG(1, 1))})
		w, err := Open(dir, Options{FS: fs, SegmentSize: segSize, Logger: testLogger(t)})
		if err != nil {
			t.Errorf("%s: reopen: %v", name, err)
			return
		}
		var extra [][]byte
		for i := 0; i < n; i++ {
			size := 40
			if i < len(lost) {
				size = lost[i]
			}
			extra = append(extra, recSized(l+1+uint64(i), 99, size))
		}
		if err := w.Append(l+1, extra); err != nil {
			t.Errorf("%s: append after the recovered end: %v", name, err)
			w.Close()
			return
		}
		w.Close()
		if w, err = Open(dir, Options{FS: fs, SegmentSize: segSize, Logger: testLogger(t)}); err != nil {
			t.Errorf("%s: reopen after appending %d: %v", name, n, err)
			return
		}
		last := l + uint64(n)
		if w.Last() != last {
			t.Errorf("%s: after appending %d..%d and reopening, the log ends at %d", name, l+1, last, w.Last())
		}
		if tail, err := w.Read(l+1, last, 1<<30); err != nil || !slices.EqualFunc(tail, extra, bytes.Equal) {
			t.Errorf("%s: the appended records read back as %d records, %v", name, len(tail), err)
		}
		w.Close()
	}
}

// TestAppendedSurvivesCrash: after each Append returns, a crash that keeps
// nothing unsynced, or any part of it, keeps every record.
func TestAppendedSurvivesCrash(t *testing.T) {
	mem := vfs.NewCrashableMem()
	w := openW(t, mem, 700)
	defer w.Close()
	r := rand.New(rand.NewPCG(5, 6))
	last := uint64(0)
	for i := 0; i < 40; i++ {
		n := 1 + r.IntN(6)
		appendRange(t, w, last+1, last+uint64(n), 0, n)
		last += uint64(n)
		for _, pct := range []int{0, r.IntN(101)} {
			cfg := vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(uint64(i), uint64(pct)))}
			cw := openW(t, mem.CrashClone(cfg), 700)
			checkLog(t, cw, 1, last, gen0)
			cw.Close()
		}
	}
}

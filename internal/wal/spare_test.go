package wal

import (
	"bytes"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSpareSegments: once the log has taken SegmentSize/8 bytes, it
// leaves its preallocated first segment early for a spare one, and every
// later segment is a spare: SegmentSize bytes, the records then zeros.
// Where segments start does not depend on when a spare was ready. Close
// leaves no spare behind, Open removes one a crash left (whatever it
// holds), a reopened log goes on in its zero-filled tail, and NoSpare
// makes none.
func TestSpareSegments(t *testing.T) {
	const segSize = 4096
	build := func(noSpare bool) (*vfs.MemFS, []string) {
		fs := vfs.NewMem()
		w, err := Open(dir, Options{FS: fs, SegmentSize: segSize, Logger: testLogger(t), NoSpare: noSpare})
		if err != nil {
			t.Fatal(err)
		}
		appendRange(t, w, 1, 300, 0, 3)
		checkLog(t, w, 1, 300, gen0)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return fs, segments(t, fs)
	}
	fs, names := build(false)
	for i := 0; i < 3; i++ {
		if _, again := build(false); !slices.Equal(again, names) {
			t.Fatalf("segments %v in one build, %v in another", names, again)
		}
	}
	if all, _ := fs.List(dir); len(all) != len(names) {
		t.Fatalf("files %v after Close, segments %v: a spare left behind", all, names)
	}
	first := fileBytes(t, fs, names[0])
	if int64(len(first)) >= segSize/4 {
		t.Fatalf("the first segment holds %d bytes: no early start for a spare (at %d appended)", len(first), segSize/8)
	}
	for _, name := range names[1:] {
		if b := fileBytes(t, fs, name); len(b) != segSize {
			t.Errorf("%s holds %d bytes, not a spare's %d", name, len(b), segSize)
		}
	}
	_, plain := build(true)
	if slices.Equal(plain, names) {
		t.Fatalf("segments %v with and without spares", names)
	}

	// A spare a crash left, half written: Open removes it.
	writeFile(t, fs, spareName, bytes.Repeat([]byte{0xa5}, segSize/2))
	w := openW(t, fs, segSize)
	if _, err := fs.Stat(fs.PathJoin(dir, spareName)); err == nil {
		t.Fatalf("Open kept %s", spareName)
	}
	checkLog(t, w, 1, 300, gen0)
	// The zero-filled tail takes appends until it is full: no early start.
	tail := w.tail.first
	appendRange(t, w, 301, 303, 1, 3)
	if w.tail.first != tail {
		t.Fatalf("an append to a zero-filled tail started segment %d", w.tail.first)
	}
	appendRange(t, w, 304, 600, 1, 3)
	w = reopenW(t, w, fs, segSize)
	defer w.Close()
	checkLog(t, w, 1, 600, func(lsn uint64) []byte { return rec(lsn, min(lsn/301, 1)) })
}

// BenchmarkAppendSync measures an Append and its fdatasync on the real
// disk into a preallocated segment (NoSpare) and into spare segments
// (zero-filled): the process's CPU and the wall time per Append of 10
// records of 150 bytes (a group commit of ten SETs).
//
//	go test ./internal/wal -run '^$' -bench AppendSync -benchtime 3000x -count 3
func BenchmarkAppendSync(b *testing.B) {
	for _, noSpare := range []bool{true, false} {
		b.Run(fmt.Sprintf("spare=%v", !noSpare), func(b *testing.B) {
			const segSize = 16 << 20
			w, err := Open(b.TempDir(), Options{SegmentSize: segSize, NoSpare: noSpare})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			batch := func(lsn uint64) [][]byte {
				recs := make([][]byte, 10)
				for i := range recs {
					recs[i] = recSized(lsn+uint64(i), 0, 150)
				}
				return recs
			}
			// Past the early start: the appends measured go to the
			// segment a spare made (or on in the preallocated one).
			lsn := uint64(1)
			for w.Bytes() < segSize/8+4096 {
				if err := w.Append(lsn, batch(lsn)); err != nil {
					b.Fatal(err)
				}
				lsn += 10
			}
			recs := make([][][]byte, b.N)
			for i := range recs {
				recs[i] = batch(lsn + uint64(i)*10)
			}
			cpu0, t0 := rusageCPU(), time.Now()
			b.ResetTimer()
			for i := range recs {
				if err := w.Append(lsn, recs[i]); err != nil {
					b.Fatal(err)
				}
				lsn += 10
			}
			b.StopTimer()
			b.ReportMetric(float64((rusageCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/append")
			b.ReportMetric(float64(time.Since(t0).Microseconds())/float64(b.N), "wall-µs/append")
		})
	}
}

// rusageCPU is the process's user and system CPU time so far.
func rusageCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/snapshot"
	"github.com/tandemdb/tandem/internal/testutil"
	"github.com/tandemdb/tandem/internal/wal"
)

const dir = "/db"

func put(k, v string) logrec.Op {
	return logrec.Op{Kind: logrec.OpPut, Key: []byte(k), Value: []byte(v)}
}

func putExp(k, v string, at int64) logrec.Op {
	return logrec.Op{Kind: logrec.OpPut, Key: []byte(k), Value: []byte(v), ExpireAtMs: at}
}

func del(k string) logrec.Op { return logrec.Op{Kind: logrec.OpDelete, Key: []byte(k)} }

func entry(epoch, lsn uint64, ops ...logrec.Op) logrec.Entry {
	return logrec.Entry{Epoch: epoch, LSN: lsn, TimeNs: int64(lsn) * 1000, Ops: ops}
}

func encodeAll(es ...logrec.Entry) [][]byte {
	out := make([][]byte, len(es))
	for i := range es {
		out[i] = logrec.Encode(&es[i])
	}
	return out
}

// seq returns entries lo..hi; epochOf gives each one's epoch and each puts
// key k<lsn%3> = v<lsn>.
func seq(lo, hi uint64, epochOf func(lsn uint64) uint64) []logrec.Entry {
	var out []logrec.Entry
	for lsn := lo; lsn <= hi; lsn++ {
		out = append(out, entry(epochOf(lsn), lsn, put(fmt.Sprintf("k%d", lsn%3), fmt.Sprintf("v%d", lsn))))
	}
	return out
}

func epoch1(uint64) uint64 { return 1 }

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func open(t *testing.T, fs vfs.FS) *DB {
	t.Helper()
	d, err := Open(dir, Options{FS: fs, CacheBytes: 1 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

func reopen(t *testing.T, d *DB, fs vfs.FS) *DB {
	t.Helper()
	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return open(t, fs)
}

func mustAppend(t *testing.T, d *DB, es ...logrec.Entry) {
	t.Helper()
	if err := d.AppendLog(encodeAll(es...)); err != nil {
		t.Fatalf("AppendLog: %v", err)
	}
}

func mustApply(t *testing.T, d *DB, es ...logrec.Entry) {
	t.Helper()
	if err := d.Apply(es); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// dump returns every data row as key=value@expiry, expired ones included.
func dump(t *testing.T, d *DB) []string {
	t.Helper()
	var out []string
	err := View{DB: d, NowMs: -1 << 63}.Scan(nil, func(k []byte, v keyspace.Value) bool {
		out = append(out, fmt.Sprintf("%s=%s@%d", k, v.Data, v.ExpireAtMs))
		return true
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// state is the model: the data after applying es in order.
func state(es []logrec.Entry) []string {
	m := map[string]string{}
	for _, e := range es {
		for _, op := range e.Ops {
			if op.Kind == logrec.OpDelete {
				delete(m, string(op.Key))
			} else {
				m[string(op.Key)] = fmt.Sprintf("%s=%s@%d", op.Key, op.Value, op.ExpireAtMs)
			}
		}
	}
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

type positions struct {
	durable, base logrec.Position
	applied       uint64
	epoch         uint64
	epochs        []logrec.Position
	count         int64
}

func positionsOf(d *DB) positions {
	n, _ := d.LogSize()
	return positions{d.Durable(), d.LogBase(), d.Applied(), d.Epoch(), d.EpochHistory(), n}
}

func TestAppendReadReopen(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	defer func() { d.Close() }()
	if got := positionsOf(d); !reflect.DeepEqual(got, positions{}) {
		t.Fatalf("empty db: %+v", got)
	}
	es := seq(1, 10, func(lsn uint64) uint64 { return 1 + lsn/6 }) // epoch 1: 1-5, epoch 2: 6-10
	mustAppend(t, d, es[:3]...)
	mustAppend(t, d, es[3:]...)
	raws := encodeAll(es...)
	want := positions{
		durable: logrec.Position{Epoch: 2, LSN: 10},
		epoch:   2,
		epochs:  []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 2, LSN: 6}},
		count:   10,
	}
	readTests := []struct {
		lo, hi   uint64
		maxBytes int
		want     [][]byte
	}{
		{1, 10, 1 << 20, raws},
		{4, 6, 1 << 20, raws[3:6]},
		{9, 100, 1 << 20, raws[8:]},
		{11, 20, 1 << 20, nil},
		{5, 4, 1 << 20, nil},
		{2, 10, 1, raws[1:2]}, // at least one entry
		{2, 10, len(raws[1]) + 1, raws[1:3]},
	}
	for round := 0; round < 2; round++ {
		if got := positionsOf(d); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: positions %+v, want %+v", round, got, want)
		}
		for _, tt := range readTests {
			got, err := d.ReadLog(tt.lo, tt.hi, tt.maxBytes)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("round %d: ReadLog(%d, %d, %d) = %d entries, %v; want %d", round, tt.lo, tt.hi, tt.maxBytes, len(got), err, len(tt.want))
			}
		}
		if _, err := d.ReadLog(0, 3, 1<<20); !errors.Is(err, ErrCompacted) {
			t.Errorf("ReadLog(0) error %v, want ErrCompacted", err)
		}
		for lsn, want := range map[uint64]uint64{0: 0, 1: 1, 5: 1, 6: 2, 10: 2} {
			if got, err := d.EpochAt(lsn); err != nil || got != want {
				t.Errorf("EpochAt(%d) = %d, %v; want %d", lsn, got, err, want)
			}
		}
		if _, err := d.EpochAt(11); err == nil {
			t.Errorf("EpochAt beyond durable succeeded")
		}
		d = reopen(t, d, fs)
	}
}

func TestAppendLogRejects(t *testing.T) {
	good := seq(1, 3, func(lsn uint64) uint64 { return 2 })
	badFormat := logrec.Encode(&logrec.Entry{Epoch: 2, LSN: 5})
	badFormat[4] = 99 // the format version byte
	tests := []struct {
		name    string
		entries [][]byte
		want    error
	}{
		{"gap", encodeAll(entry(2, 5)), ErrGap},
		{"repeated lsn", encodeAll(entry(2, 3)), ErrGap},
		{"lsn zero", encodeAll(entry(2, 0)), ErrGap},
		{"lower epoch", encodeAll(entry(1, 4)), ErrGap},
		{"gap inside the batch", encodeAll(entry(2, 4), entry(2, 6)), ErrGap},
		{"epoch going back inside the batch", encodeAll(entry(3, 4), entry(2, 5)), ErrGap},
		// Checksums are the caller's (verified where entries arrive);
		// malformed bytes are still refused.
		{"garbage", [][]byte{[]byte("xyz")}, logrec.ErrCorrupt},
		{"unknown format after a good one", append(encodeAll(entry(2, 4)), badFormat), logrec.ErrUnsupported},
	}
	fs := vfs.NewMem()
	d := open(t, fs)
	defer func() { d.Close() }()
	mustAppend(t, d, good...)
	before := positionsOf(d)
	for _, tt := range tests {
		if err := d.AppendLog(tt.entries); !errors.Is(err, tt.want) {
			t.Errorf("%s: AppendLog error %v, want %v", tt.name, err, tt.want)
		}
		if got := positionsOf(d); !reflect.DeepEqual(got, before) {
			t.Errorf("%s: positions changed to %+v", tt.name, got)
		}
	}
	// Nothing of a refused batch reached the disk.
	d = reopen(t, d, fs)
	if got := positionsOf(d); !reflect.DeepEqual(got, before) {
		t.Errorf("after reopen: positions %+v, want %+v", got, before)
	}
	if err := d.AppendLog(nil); err != nil {
		t.Errorf("empty AppendLog: %v", err)
	}
	mustAppend(t, d, entry(3, 4))
	if got := d.EpochHistory(); !reflect.DeepEqual(got, []logrec.Position{{Epoch: 2, LSN: 1}, {Epoch: 3, LSN: 4}}) {
		t.Errorf("epoch history %v", got)
	}
}

// logSegment returns the buffer of the log's first segment file, which
// the test may change in place.
func logSegment(t *testing.T, fs *vfs.MemFS) []byte {
	t.Helper()
	logd := fs.PathJoin(dir, logDir)
	names, err := fs.List(logd)
	if err != nil || len(names) == 0 {
		t.Fatalf("log segments %v, %v", names, err)
	}
	slices.Sort(names)
	b, err := fs.UnsafeGetFileDataBuffer(fs.PathJoin(logd, names[0]))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCorruptStoredEntry damages entries in the log's segment file: reads
// and recovery report corruption instead of skipping them, except damage
// to the last append, which is a torn tail (a crash mid-append looks the
// same) and is truncated.
func TestCorruptStoredEntry(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	es := seq(1, 5, epoch1)
	for i := range es {
		mustAppend(t, d, es[i]) // one append each
	}
	raws := encodeAll(es...)
	seg := logSegment(t, fs)
	at3 := bytes.Index(seg, raws[2])
	if at3 < 0 || len(raws[2]) != len(raws[3]) {
		t.Fatal("entry 3 not found in the segment, or not the size of entry 4")
	}
	good := bytes.Clone(seg)
	seg[at3+len(raws[2])/2] ^= 0x10
	if _, err := d.ReadLog(1, 5, 1<<20); !errors.Is(err, wal.ErrCorrupt) || !frame.IsCorruption(err) {
		t.Errorf("ReadLog over a corrupt entry: %v, want wal.ErrCorrupt", err)
	}
	if got, err := d.ReadLog(1, 2, 1<<20); err != nil || len(got) != 2 {
		t.Errorf("ReadLog before the corrupt entry = %d, %v", len(got), err)
	}
	if _, err := d.EpochAt(3); !frame.IsCorruption(err) {
		t.Errorf("EpochAt(3) error %v, want a corruption", err)
	}
	// An intact entry at another entry's place is corrupt as well.
	copy(seg, good)
	copy(seg[at3:], raws[3])
	if _, err := d.ReadLog(3, 3, 1<<20); !errors.Is(err, ErrCorrupt) || !frame.IsCorruption(err) {
		t.Errorf("ReadLog of a misplaced entry: %v, want ErrCorrupt", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	openErr := func(name string, want error) {
		t.Helper()
		d, err := Open(dir, Options{FS: fs, Logger: testLogger(t)})
		if !errors.Is(err, want) || !frame.IsCorruption(err) {
			if err == nil {
				d.Close()
			}
			t.Errorf("Open with %s: %v, want %v", name, err, want)
		}
	}
	openErr("a misplaced entry", ErrCorrupt)
	copy(seg, good)
	seg[at3+len(raws[2])/2] ^= 0x10
	openErr("a corrupt entry before later appends", wal.ErrCorrupt)
	// Damage in the last append: a torn tail.
	copy(seg, good)
	at5 := bytes.Index(seg, raws[4])
	seg[at5+len(raws[4])-1] ^= 0x01
	d = open(t, fs)
	defer func() { d.Close() }()
	if got := d.Durable(); got != (logrec.Position{Epoch: 1, LSN: 4}) {
		t.Errorf("after a torn last entry: durable %v, want (1,4)", got)
	}
	mustAppend(t, d, es[4])
	d = reopen(t, d, fs)
	if got, err := d.ReadLog(1, 5, 1<<20); err != nil || !reflect.DeepEqual(got, raws) {
		t.Errorf("after appending again: %d entries, %v", len(got), err)
	}
}

// TestCorruptStoredValue: a data row too short to hold its expiry is
// storage's corruption (the shared marker), on Get and on Scan.
func TestCorruptStoredValue(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	if err := d.pdb.Set(keyspace.MetaKey([]byte("k")), []byte("short"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	d.filters.added([][]byte{[]byte("k")}) // as Apply would (keyfilter.go)
	if _, _, err := (View{DB: d}).Get([]byte("k")); !errors.Is(err, ErrCorrupt) || !frame.IsCorruption(err) {
		t.Errorf("Get of a short value: %v, want ErrCorrupt", err)
	}
	err := View{DB: d}.Scan(nil, func([]byte, keyspace.Value) bool { return true })
	if !errors.Is(err, ErrCorrupt) || !frame.IsCorruption(err) {
		t.Errorf("Scan over a short value: %v, want ErrCorrupt", err)
	}
}

func TestApplyRefusals(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := seq(1, 4, epoch1)
	mustAppend(t, d, es[:3]...)
	mustApply(t, d, es[0])
	tests := []struct {
		name    string
		entries []logrec.Entry
		want    error
	}{
		{"beyond durable", []logrec.Entry{es[1], es[2], es[3]}, ErrNotDurable},
		{"gap", es[2:3], ErrGap},
		{"already applied", es[0:1], ErrGap},
		{"unknown op kind", []logrec.Entry{entry(1, 2, logrec.Op{Kind: 99, Key: []byte("x")})}, logrec.ErrCorrupt},
	}
	want := dump(t, d)
	for _, tt := range tests {
		if err := d.Apply(tt.entries); !errors.Is(err, tt.want) {
			t.Errorf("%s: Apply error %v, want %v", tt.name, err, tt.want)
		}
		if d.Applied() != 1 {
			t.Errorf("%s: applied %d, want 1", tt.name, d.Applied())
		}
		if got := dump(t, d); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: data changed to %v", tt.name, got)
		}
	}
	if err := d.Apply(nil); err != nil {
		t.Errorf("empty Apply: %v", err)
	}
	mustApply(t, d, es[1:3]...)
	if got, want := dump(t, d), state(es[:3]); !reflect.DeepEqual(got, want) {
		t.Errorf("data %v, want %v", got, want)
	}
}

// TestApplyAtomicAcrossCrash crashes after Applies: Pebble keeps no log
// (Options.DisableWAL), so whatever the crash keeps of the unflushed
// bytes, the data is exactly the model's state at the applied LSN of the
// last flush, and the log holds every entry after it. Crashes during a
// flush (a clone before every write the flush makes) recover that
// flush's applied LSN or the one before, never a mix.
func TestApplyAtomicAcrossCrash(t *testing.T) {
	const n = 12
	// Large multi-op entries so that one Apply batch spans several blocks.
	var es []logrec.Entry
	for lsn := uint64(1); lsn <= n; lsn++ {
		var ops []logrec.Op
		for k := 0; k < 4; k++ {
			v := strings.Repeat(fmt.Sprint(lsn), 1500)
			ops = append(ops, put(fmt.Sprintf("k%d", (int(lsn)+k)%7), v))
		}
		ops = append(ops, del(fmt.Sprintf("k%d", (lsn+5)%7)))
		es = append(es, entry(1, lsn, ops...))
	}
	c := testutil.NewCrasher(0, 30, 100)
	d, err := Open(dir, Options{FS: c.FS(), CacheBytes: 1 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, d, es[:8]...)
	for i := 0; i < 4; i++ {
		mustApply(t, d, es[i])
	}
	// A flush makes the earlier Applies durable. (AppendLog writes the
	// log, not Pebble; ObserveEpoch the epoch file.)
	if err := d.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, d, es[8:]...)
	c.Step(0) // applies 5..12, not flushed
	for i := 4; i < n; i++ {
		mustApply(t, d, es[i])
	}
	c.Take()
	c.Step(1) // the flush of 5..12
	if err := d.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	c.Step(2)
	c.Take()
	// The clones are read once Pebble's background work has stopped.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, cl := range c.Clones {
		name := fmt.Sprintf("step %d pct %d", cl.Step, cl.Pct)
		r, err := Open(dir, Options{FS: cl.FS, CacheBytes: 1 << 20, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("%s: Open crash clone: %v", name, err)
		}
		applied := r.Applied()
		seen[applied] = true
		want := []uint64{4}
		switch cl.Step {
		case 1:
			want = []uint64{4, n}
		case 2:
			want = []uint64{n}
		}
		if !slices.Contains(want, applied) {
			t.Errorf("%s: applied %d, want one of %v", name, applied, want)
		}
		if got := r.Durable(); got != (logrec.Position{Epoch: 1, LSN: n}) {
			t.Errorf("%s: durable %v, want (1,%d)", name, got, n)
		}
		if got, want := dump(t, r), state(es[:applied]); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: data at applied %d differs from the model", name, applied)
		}
		// The log holds what is to be replayed.
		if applied < n {
			if got, err := r.ReadLog(applied+1, n, 1<<30); err != nil || !reflect.DeepEqual(got, encodeAll(es[applied:]...)) {
				t.Errorf("%s: log after applied %d: %d entries, %v", name, applied, len(got), err)
			}
		}
		r.Close()
	}
	if !seen[4] || !seen[n] {
		t.Errorf("recovered applied LSNs %v, want both 4 and %d", seen, n)
	}
	t.Logf("%d crash clones, recovered applied LSNs: %v", len(c.Clones), seen)
}

func TestTruncateLogAfter(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	defer func() { d.Close() }()
	// Epoch 1: 1-4, epoch 2: 5-7, epoch 3: 8-10.
	es := seq(1, 10, func(lsn uint64) uint64 { return []uint64{0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3}[lsn] })
	// A follower persists an epoch before it takes entries of it (AppendLog
	// raises Epoch() in memory only).
	if err := d.ObserveEpoch(4); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es[:3]...)
	if err := d.TruncateLogAfter(2); !errors.Is(err, ErrBelowApplied) {
		t.Fatalf("TruncateLogAfter below applied: %v, want ErrBelowApplied", err)
	}
	if err := d.TruncateLogAfter(10); err != nil || d.Durable().LSN != 10 {
		t.Fatalf("TruncateLogAfter(durable) = %v, durable %v", err, d.Durable())
	}
	tests := []struct {
		after  uint64
		want   positions
		append logrec.Entry // appended after the truncation
	}{
		{6, positions{durable: logrec.Position{Epoch: 2, LSN: 6}, applied: 3, epoch: 4, epochs: []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 2, LSN: 5}}, count: 6}, entry(3, 7)},
		{4, positions{durable: logrec.Position{Epoch: 1, LSN: 4}, applied: 3, epoch: 4, epochs: []logrec.Position{{Epoch: 1, LSN: 1}}, count: 4}, entry(4, 5)},
		{3, positions{durable: logrec.Position{Epoch: 1, LSN: 3}, applied: 3, epoch: 4, epochs: []logrec.Position{{Epoch: 1, LSN: 1}}, count: 3}, entry(4, 4)},
	}
	for _, tt := range tests {
		if err := d.TruncateLogAfter(tt.after); err != nil {
			t.Fatalf("TruncateLogAfter(%d): %v", tt.after, err)
		}
		for round := 0; round < 2; round++ {
			if got := positionsOf(d); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("after %d, round %d: %+v, want %+v", tt.after, round, got, tt.want)
			}
			if got, err := d.ReadLog(tt.after+1, 100, 1<<20); err != nil || len(got) != 0 {
				t.Errorf("after %d: ReadLog past the end = %d entries, %v", tt.after, len(got), err)
			}
			d = reopen(t, d, fs)
		}
		// The log continues from the truncation point in a new epoch.
		mustAppend(t, d, tt.append)
		if got := d.Durable(); got != (logrec.Position{Epoch: tt.append.Epoch, LSN: tt.append.LSN}) {
			t.Errorf("after %d: durable %v after append", tt.after, got)
		}
		if got := d.EpochHistory(); got[len(got)-1] != (logrec.Position{Epoch: tt.append.Epoch, LSN: tt.append.LSN}) {
			t.Errorf("after %d: epoch history %v does not end with the new start", tt.after, got)
		}
	}
}

func TestTruncateLogBefore(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	defer func() { d.Close() }()
	es := seq(1, 10, func(lsn uint64) uint64 { return 1 + lsn/5 }) // epoch 1: 1-4, epoch 2: 5-9, 3: 10
	mustAppend(t, d, es...)
	mustApply(t, d, es[:6]...)
	// Never past applied: asking for 8 trims through 6.
	if err := d.TruncateLogBefore(8); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		if got := d.LogBase(); got != (logrec.Position{Epoch: 2, LSN: 6}) {
			t.Errorf("round %d: log base %v, want (2,6)", round, got)
		}
		if got := d.Durable(); got != (logrec.Position{Epoch: 3, LSN: 10}) {
			t.Errorf("round %d: durable %v, want (3,10)", round, got)
		}
		if n, _ := d.LogSize(); n != 4 {
			t.Errorf("round %d: %d entries retained, want 4", round, n)
		}
		for _, lo := range []uint64{1, 5, 6} {
			if _, err := d.ReadLog(lo, 10, 1<<20); !errors.Is(err, ErrCompacted) {
				t.Errorf("round %d: ReadLog(%d) error %v, want ErrCompacted", round, lo, err)
			}
		}
		if got, err := d.ReadLog(7, 10, 1<<20); err != nil || !reflect.DeepEqual(got, encodeAll(es[6:]...)) {
			t.Errorf("round %d: ReadLog(7, 10) = %d entries, %v", round, len(got), err)
		}
		if e, err := d.EpochAt(6); err != nil || e != 2 {
			t.Errorf("round %d: EpochAt(base) = %d, %v; want 2", round, e, err)
		}
		if _, err := d.EpochAt(5); !errors.Is(err, ErrCompacted) {
			t.Errorf("round %d: EpochAt(5) error %v, want ErrCompacted", round, err)
		}
		d = reopen(t, d, fs)
	}
	if err := d.TruncateLogBefore(3); err != nil || d.LogBase() != (logrec.Position{Epoch: 2, LSN: 6}) {
		t.Errorf("TruncateLogBefore below base: %v, base %v", err, d.LogBase())
	}
	// Trim everything: the durable position survives as the log base.
	mustApply(t, d, es[6:]...)
	if err := d.TruncateLogBefore(10); err != nil {
		t.Fatal(err)
	}
	d = reopen(t, d, fs)
	want := positions{durable: logrec.Position{Epoch: 3, LSN: 10}, base: logrec.Position{Epoch: 3, LSN: 10}, applied: 10, epoch: 3,
		epochs: []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 2, LSN: 5}, {Epoch: 3, LSN: 10}}}
	if got := positionsOf(d); !reflect.DeepEqual(got, want) {
		t.Errorf("fully trimmed: %+v, want %+v", got, want)
	}
	if err := d.AppendLog(encodeAll(entry(3, 12))); !errors.Is(err, ErrGap) {
		t.Errorf("gap after the base: %v, want ErrGap", err)
	}
	mustAppend(t, d, entry(3, 11))
}

func TestViewExpiry(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := []logrec.Entry{entry(1, 1,
		putExp("a", "1", 1000),
		put("b", "2"),
		putExp("c", "3", 2000),
		put("d", "4"),
	), entry(1, 2, del("d"))}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	tests := []struct {
		key   string
		nowMs int64
		want  string // "" means not found
	}{
		{"a", 999, "1"},
		{"a", 1000, ""},
		{"a", 5000, ""},
		{"b", 1 << 50, "2"},
		{"c", 1999, "3"},
		{"c", 2000, ""},
		{"d", 0, ""},
		{"missing", 0, ""},
	}
	for _, tt := range tests {
		v, ok, err := View{DB: d, NowMs: tt.nowMs}.Get([]byte(tt.key))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(v.Data); ok != (tt.want != "") || got != tt.want {
			t.Errorf("Get(%q) at %d = %q, %v; want %q", tt.key, tt.nowMs, got, ok, tt.want)
		}
	}
	scan := func(nowMs int64, start string) []string {
		var keys []string
		_ = View{DB: d, NowMs: nowMs}.Scan([]byte(start), func(k []byte, v keyspace.Value) bool {
			keys = append(keys, string(k))
			return true
		})
		return keys
	}
	for _, tt := range []struct {
		nowMs int64
		start string
		want  []string
	}{
		{0, "", []string{"a", "b", "c"}},
		{1000, "", []string{"b", "c"}},
		{3000, "", []string{"b"}},
		{0, "b", []string{"b", "c"}},
	} {
		if got := scan(tt.nowMs, tt.start); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Scan(%q) at %d = %v, want %v", tt.start, tt.nowMs, got, tt.want)
		}
	}
	// Scan stops when fn returns false.
	var n int
	_ = View{DB: d}.Scan(nil, func([]byte, keyspace.Value) bool { n++; return false })
	if n != 1 {
		t.Errorf("Scan called fn %d times after it returned false", n)
	}
}

func expiryRows(t *testing.T, d *DB) []string {
	t.Helper()
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: expiryLower, UpperBound: expiryUpper})
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		out = append(out, fmt.Sprintf("%d:%s", int64(uint64(k[1])<<56|uint64(k[2])<<48|uint64(k[3])<<40|uint64(k[4])<<32|uint64(k[5])<<24|uint64(k[6])<<16|uint64(k[7])<<8|uint64(k[8])), k[9:]))
	}
	return out
}

func TestExpiredKeys(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := []logrec.Entry{
		entry(1, 1, putExp("a", "1", 100), putExp("b", "2", 200), putExp("c", "3", 300), putExp("d", "4", 400), put("e", "5")),
		// b loses its expiry, c moves to 500, d is deleted: their index rows
		// at 200, 300 and 400 are stale.
		entry(1, 2, put("b", "2"), putExp("c", "3", 500), del("d")),
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if got, want := expiryRows(t, d), []string{"100:a", "200:b", "300:c", "400:d", "500:c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("index rows %v, want %v", got, want)
	}
	tests := []struct {
		nowMs     int64
		limit     int
		want      []string
		wantIndex []string
	}{
		{50, 10, nil, []string{"100:a", "200:b", "300:c", "400:d", "500:c"}},
		{100, 1, []string{"a"}, []string{"100:a", "200:b", "300:c", "400:d", "500:c"}},
		{250, 10, []string{"a"}, []string{"100:a", "300:c", "400:d", "500:c"}},
		{450, 10, []string{"a"}, []string{"100:a", "500:c"}},
		{500, 10, []string{"a", "c"}, []string{"100:a", "500:c"}},
		{500, 1, []string{"a"}, []string{"100:a", "500:c"}},
	}
	for _, tt := range tests {
		keys, err := d.ExpiredKeys(tt.nowMs, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, k := range keys {
			got = append(got, string(k))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ExpiredKeys(%d, %d) = %v, want %v", tt.nowMs, tt.limit, got, tt.want)
		}
		if idx := expiryRows(t, d); !reflect.DeepEqual(idx, tt.wantIndex) {
			t.Errorf("after ExpiredKeys(%d, %d): index %v, want %v", tt.nowMs, tt.limit, idx, tt.wantIndex)
		}
	}
	// Deleting the expired keys (as the leader's expiry would) empties the index.
	mustAppend(t, d, entry(1, 3, del("a"), del("c")))
	mustApply(t, d, entry(1, 3, del("a"), del("c")))
	if keys, err := d.ExpiredKeys(1000, 10); err != nil || len(keys) != 0 {
		t.Errorf("after deletes: ExpiredKeys = %q, %v", keys, err)
	}
	if idx := expiryRows(t, d); len(idx) != 0 {
		t.Errorf("after deletes: index %v", idx)
	}
}

func TestDigest(t *testing.T) {
	build := func(es ...logrec.Entry) *DB {
		d := open(t, vfs.NewMem())
		t.Cleanup(func() { d.Close() })
		mustAppend(t, d, es...)
		mustApply(t, d, es...)
		return d
	}
	base := []logrec.Entry{entry(1, 1, put("a", "1"), putExp("b", "2", 99)), entry(1, 2, put("c", "3"))}
	tests := []struct {
		name string
		es   []logrec.Entry
		same bool
	}{
		{"same entries", base, true},
		{"same content by another history", []logrec.Entry{
			entry(1, 1, put("c", "x"), put("a", "0"), put("z", "z")),
			entry(1, 2, put("c", "3"), put("a", "1"), putExp("b", "2", 99), del("z")),
		}, true},
		{"different value", []logrec.Entry{entry(1, 1, put("a", "1"), putExp("b", "2", 99)), entry(1, 2, put("c", "4"))}, false},
		{"different expiry", []logrec.Entry{entry(1, 1, put("a", "1"), putExp("b", "2", 98)), entry(1, 2, put("c", "3"))}, false},
		{"missing key", []logrec.Entry{entry(1, 1, put("a", "1"), putExp("b", "2", 99)), entry(1, 2)}, false},
		{"key and value boundary moved", []logrec.Entry{entry(1, 1, put("a", "1"), putExp("b", "2", 99)), entry(1, 2, put("c3", ""))}, false},
	}
	ref := build(base...)
	refApplied, refSum, err := ref.Digest()
	if err != nil || refApplied != 2 {
		t.Fatalf("Digest = %d, %v", refApplied, err)
	}
	for _, tt := range tests {
		applied, sum, err := build(tt.es...).Digest()
		if err != nil {
			t.Fatal(err)
		}
		if applied != refApplied {
			t.Errorf("%s: applied %d, want %d", tt.name, applied, refApplied)
		}
		if (sum == refSum) != tt.same {
			t.Errorf("%s: digests equal = %v, want %v", tt.name, sum == refSum, tt.same)
		}
	}
	// The applied LSN is part of what Digest reports.
	more := build(append(slices.Clone(base), entry(1, 3))...)
	if applied, sum, _ := more.Digest(); applied != 3 || sum != refSum {
		t.Errorf("empty third entry: applied %d, same sum %v; want 3, true", applied, sum == refSum)
	}
}

func TestSnapshotPointInTime(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := []logrec.Entry{
		entry(1, 1, put("a", "1"), put("b", "2"), putExp("c", "3", 77)),
		entry(2, 2, put("d", "4")),
		// After the snapshot:
		entry(2, 3, put("a", "changed"), del("b"), put("e", "new")),
		entry(2, 4, del("d")),
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es[:2]...)
	snap, err := d.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	if snap.Position != (logrec.Position{Epoch: 2, LSN: 2}) {
		t.Errorf("snapshot position %v, want (2,2)", snap.Position)
	}
	if want := []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 2, LSN: 2}}; !reflect.DeepEqual(snap.Epochs, want) {
		t.Errorf("snapshot epochs %v, want %v", snap.Epochs, want)
	}
	var rows []string
	err = snap.Each(func(key, stored []byte) error {
		if len(rows) == 0 {
			// Writes go on while the snapshot is read.
			mustApply(t, d, es[2:]...)
		}
		v, err := keyspace.DecodeMetaRow(stored)
		if err != nil {
			return err
		}
		rows = append(rows, fmt.Sprintf("%s=%s@%d", key[1:], v.Data, v.ExpireAtMs))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := state(es[:2]); !reflect.DeepEqual(rows, want) {
		t.Errorf("snapshot rows %v, want %v", rows, want)
	}
	if got, want := dump(t, d), state(es); !reflect.DeepEqual(got, want) {
		t.Errorf("live data %v, want %v", got, want)
	}
	stop := errors.New("stop")
	if err := snap.Each(func(key, stored []byte) error { return stop }); err != stop {
		t.Errorf("Each returned %v, want the callback's error", err)
	}
	// After retention removed the applied entry, the position comes from the
	// log base.
	if err := d.TruncateLogBefore(4); err != nil {
		t.Fatal(err)
	}
	s2, err := d.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Position != (logrec.Position{Epoch: 2, LSN: 4}) {
		t.Errorf("snapshot at log base: position %v, want (2,4)", s2.Position)
	}
}

// ingest copies src's snapshot into dst through the chunk codec.
func ingest(t *testing.T, src, dst *DB, finish bool) *Snapshot {
	t.Helper()
	snap, err := src.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { snap.Close() })
	gen := dst.SeedGeneration()
	if err := dst.BeginIngest(); err != nil {
		t.Fatal(err)
	}
	if dst.SeedGeneration() != gen+1 {
		t.Fatalf("seed generation %d after BeginIngest, want %d: a read across the seed could not tell", dst.SeedGeneration(), gen+1)
	}
	if !dst.Seeding() || dst.Applied() != 0 || dst.Durable() != (logrec.Position{}) {
		t.Fatalf("after BeginIngest: seeding %v applied %d durable %v", dst.Seeding(), dst.Applied(), dst.Durable())
	}
	var enc snapshot.Encoder
	flush := func() {
		rows, err := snapshot.Decode(enc.Finish())
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.IngestRows(rows); err != nil {
			t.Fatal(err)
		}
	}
	err = snap.Each(func(key, stored []byte) error {
		enc.Add(key, stored)
		if enc.Count() == 2 {
			flush()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	flush()
	if finish {
		if err := dst.FinishIngest(snap.Position, snap.Epochs); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

func TestIngest(t *testing.T) {
	src := open(t, vfs.NewMem())
	defer src.Close()
	es := []logrec.Entry{
		entry(1, 1, put("a", "1"), putExp("b", "2", 500)),
		entry(2, 2, put("c", "3"), put("d", "4"), put("e", "5")),
	}
	mustAppend(t, src, es...)
	mustApply(t, src, es...)

	fs := vfs.NewMem()
	dst := open(t, fs)
	defer func() { dst.Close() }()
	// Old data, an unrelated log and a higher seen epoch.
	old := []logrec.Entry{entry(1, 1, put("old", "x"), putExp("z", "z", 100)), entry(1, 2), entry(1, 3)}
	mustAppend(t, dst, old...)
	mustApply(t, dst, old[:2]...)
	if err := dst.ObserveEpoch(7); err != nil {
		t.Fatal(err)
	}
	snap := ingest(t, src, dst, true)
	_, srcSum, _ := src.Digest()
	want := positions{durable: logrec.Position{Epoch: 2, LSN: 2}, base: logrec.Position{Epoch: 2, LSN: 2}, applied: 2, epoch: 7, epochs: []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 2, LSN: 2}}}
	for round := 0; round < 2; round++ {
		if dst.Seeding() {
			t.Errorf("round %d: still seeding", round)
		}
		if got := positionsOf(dst); !reflect.DeepEqual(got, want) {
			t.Errorf("round %d: positions %+v, want %+v", round, got, want)
		}
		if applied, sum, err := dst.Digest(); err != nil || applied != 2 || sum != srcSum {
			t.Errorf("round %d: digest applied %d, equal %v, %v", round, applied, sum == srcSum, err)
		}
		// The expiry index was rebuilt from the rows, the old one dropped.
		if keys, err := dst.ExpiredKeys(1000, 10); err != nil || len(keys) != 1 || string(keys[0]) != "b" {
			t.Errorf("round %d: ExpiredKeys = %q, %v; want [b]", round, keys, err)
		}
		dst = reopen(t, dst, fs)
	}
	if snap.Position != (logrec.Position{Epoch: 2, LSN: 2}) {
		t.Errorf("snapshot position %v", snap.Position)
	}
	// The log continues after the snapshot position.
	if err := dst.AppendLog(encodeAll(entry(2, 2))); !errors.Is(err, ErrGap) {
		t.Errorf("append at the snapshot position: %v, want ErrGap", err)
	}
	mustAppend(t, dst, entry(2, 3, put("f", "6")))
	mustApply(t, dst, entry(2, 3, put("f", "6")))
	if _, err := dst.ReadLog(2, 3, 1<<20); !errors.Is(err, ErrCompacted) {
		t.Errorf("ReadLog at the snapshot position: %v, want ErrCompacted", err)
	}
	// Rows too short to hold an expiry are refused.
	if err := dst.IngestRows([]snapshot.Row{{Key: []byte("k"), Value: []byte("short")}}); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("IngestRows of a short value: %v, want snapshot.ErrCorrupt", err)
	}
}

// TestSeedingSurvivesCrash: a crash between BeginIngest and FinishIngest
// leaves the node seeding, so it never serves the partial data.
func TestSeedingSurvivesCrash(t *testing.T) {
	src := open(t, vfs.NewMem())
	defer src.Close()
	es := []logrec.Entry{entry(1, 1, put("a", "1"), put("b", "2"), put("c", "3"))}
	mustAppend(t, src, es...)
	mustApply(t, src, es...)

	fs := vfs.NewCrashableMem()
	dst := open(t, fs)
	defer func() { dst.Close() }()
	mustAppend(t, dst, entry(1, 1, put("old", "x")))
	mustApply(t, dst, entry(1, 1, put("old", "x")))
	ingest(t, src, dst, false)

	for _, pct := range []int{0, 100} {
		clone := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: rand.New(rand.NewPCG(1, 2))})
		c := open(t, clone)
		if !c.Seeding() {
			t.Errorf("pct %d: not seeding after a crash mid-ingest", pct)
		}
		if got := positionsOf(c); got.applied != 0 || got.durable != (logrec.Position{}) || got.count != 0 {
			t.Errorf("pct %d: positions %+v, want empty", pct, got)
		}
		if got := dump(t, c); slices.Contains(got, "old=x@0") {
			t.Errorf("pct %d: old data survived BeginIngest: %v", pct, got)
		}
		c.Close()
	}
	// A clean close without FinishIngest is the same.
	dst = reopen(t, dst, fs)
	if !dst.Seeding() {
		t.Fatal("not seeding after reopen without FinishIngest")
	}
	// Restarting the seed completes it.
	ingest(t, src, dst, true)
	dst = reopen(t, dst, fs)
	if dst.Seeding() {
		t.Error("still seeding after FinishIngest")
	}
	_, want, _ := src.Digest()
	if applied, got, _ := dst.Digest(); applied != 1 || got != want {
		t.Errorf("after the seed: applied %d, digest equal %v", applied, got == want)
	}
}

func TestEpochs(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	defer func() { d.Close() }()
	if err := d.ObserveEpoch(4); err != nil {
		t.Fatal(err)
	}
	if err := d.ObserveEpoch(2); err != nil || d.Epoch() != 4 {
		t.Fatalf("lower ObserveEpoch: %v, epoch %d", err, d.Epoch())
	}
	d = reopen(t, d, fs)
	if d.Epoch() != 4 {
		t.Fatalf("epoch %d after reopen, want 4", d.Epoch())
	}
	if err := d.StartEpoch(3, 1); err != nil {
		t.Fatal(err)
	}
	if d.Epoch() != 4 {
		t.Errorf("StartEpoch of a lower epoch lowered the seen epoch to %d", d.Epoch())
	}
	if err := d.StartEpoch(3, 5); err == nil {
		t.Error("StartEpoch of the same epoch succeeded")
	}
	if err := d.StartEpoch(6, 1); err != nil {
		t.Fatal(err)
	}
	d = reopen(t, d, fs)
	if got := d.EpochHistory(); d.Epoch() != 6 || !reflect.DeepEqual(got, []logrec.Position{{Epoch: 3, LSN: 1}, {Epoch: 6, LSN: 1}}) {
		t.Errorf("after reopen: epoch %d, history %v", d.Epoch(), got)
	}
	// Entries of the started epoch do not add a duplicate start.
	mustAppend(t, d, entry(6, 1))
	if got := d.EpochHistory(); !reflect.DeepEqual(got, []logrec.Position{{Epoch: 3, LSN: 1}, {Epoch: 6, LSN: 1}}) {
		t.Errorf("history after appending: %v", got)
	}
}

func TestAppendStatsCountsFsyncedBatches(t *testing.T) {
	d := open(t, vfs.NewMem())
	if err := d.AppendLog(encodeAll(entry(1, 1), entry(1, 2))); err != nil {
		t.Fatal(err)
	}
	if err := d.AppendLog(encodeAll(entry(1, 3))); err != nil {
		t.Fatal(err)
	}
	_ = d.AppendLog(encodeAll(entry(1, 9))) // a gap: refused, not counted
	if a, e := d.AppendStats(); a != 2 || e != 3 {
		t.Errorf("AppendStats = %d appends, %d entries; want 2, 3", a, e)
	}
}

// TestExpiryScanReadsOnlyWhenDue: once a scan has seen when the next index
// row is due, ExpiredKeys does not read Pebble before then (an idle node
// must not seek into blocks that may hold huge values on every tick), and
// a write of an earlier expiry, applied or ingested, makes it look again.
func TestExpiryScanReadsOnlyWhenDue(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	scans := func() uint64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.expiryScans
	}
	expired := func(now int64) []string {
		t.Helper()
		keys, err := d.ExpiredKeys(now, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, k := range keys {
			out = append(out, string(k))
		}
		return out
	}
	if got := expired(10); got != nil || scans() != 1 {
		t.Fatalf("empty index: %v after %d scans, want nothing after 1", got, scans())
	}
	for now := int64(11); now < 20; now++ {
		expired(now)
	}
	if scans() != 1 {
		t.Fatalf("%d scans of an empty index, want 1", scans())
	}
	// NextExpiry and ExpiryWritten tell the expiry loop how long it may
	// sleep: a write signals only when it lowers NextExpiry.
	written := func() bool {
		select {
		case <-d.ExpiryWritten():
			return true
		default:
			return false
		}
	}
	if next := d.NextExpiry(); next != math.MaxInt64 || written() {
		t.Fatalf("empty index: NextExpiry %d (signalled %v), want none, unsignalled", next, written())
	}
	e1 := entry(1, 1, putExp("a", "1", 500), put("big", strings.Repeat("x", 1<<20)))
	mustAppend(t, d, e1)
	mustApply(t, d, e1)
	if next, w := d.NextExpiry(), written(); next != 500 || !w {
		t.Fatalf("a due at 500 written: NextExpiry %d, signalled %v; want 500, signalled", next, w)
	}
	e0 := entry(1, 2, putExp("later", "1", 900))
	mustAppend(t, d, e0)
	mustApply(t, d, e0)
	if next, w := d.NextExpiry(), written(); next != 500 || w {
		t.Fatalf("a key due after a written: NextExpiry %d, signalled %v; want 500, unsignalled", next, w)
	}
	// The write itself says when a is due: no scan before.
	expired(100)
	expired(499)
	if scans() != 1 {
		t.Fatalf("%d scans before a's time, want still 1", scans())
	}
	e2 := entry(1, 3, putExp("b", "2", 300))
	mustAppend(t, d, e2)
	mustApply(t, d, e2)
	if next, w := d.NextExpiry(), written(); next != 300 || !w {
		t.Fatalf("b due at 300 written: NextExpiry %d, signalled %v; want 300, signalled", next, w)
	}
	if got := expired(300); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("b due at 300 written after the scan: ExpiredKeys(300) = %v, want [b]", got)
	}
	// Until the leader deletes b, it stays due.
	if got := expired(301); !reflect.DeepEqual(got, []string{"b"}) {
		t.Fatalf("ExpiredKeys(301) = %v, want [b] again", got)
	}
	e3 := entry(1, 4, del("b"))
	mustAppend(t, d, e3)
	mustApply(t, d, e3)
	if got := expired(302); got != nil {
		t.Fatalf("after b's delete: %v", got)
	}
	n := scans()
	expired(400)
	if scans() != n {
		t.Fatal("scanned again before a's time though nothing earlier was written")
	}
	if got := expired(500); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatalf("ExpiredKeys(500) = %v, want [a]", got)
	}
}

// TestOldFormatRefused: a data dir whose log is in Pebble (under 'l', the
// format before the log had its own files) is refused with a clear error,
// not opened with its log missing.
func TestOldFormatRefused(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	mustAppend(t, d, seq(1, 3, epoch1)...)
	old := binary.BigEndian.AppendUint64([]byte{prefixOldLog}, 3)
	if err := d.pdb.Set(old, encodeAll(entry(1, 3))[0], pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	unmark(t, fs, true) // as a build of that format left it
	_, err := Open(dir, Options{FS: fs, Logger: testLogger(t)})
	if !errors.Is(err, ErrOldFormat) || !strings.Contains(err.Error(), "re-seed") {
		t.Fatalf("Open of an old-format dir: %v, want ErrOldFormat saying to re-seed", err)
	}
}

// TestLogGapIsCorruption: a log that starts after the applied LSN + 1 (its
// first segment gone) cannot be replayed: Open fails loudly.
func TestLogGapIsCorruption(t *testing.T) {
	fs := vfs.NewMem()
	d, err := Open(dir, Options{FS: fs, CacheBytes: 1 << 20, LogSegmentSize: 512, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for lsn := uint64(1); lsn <= 30; lsn += 3 {
		mustAppend(t, d, seq(lsn, lsn+2, epoch1)...)
	}
	mustApply(t, d, seq(1, 4, epoch1)...)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	logd := fs.PathJoin(dir, logDir)
	names, _ := fs.List(logd)
	slices.Sort(names)
	if len(names) < 2 {
		t.Fatalf("log segments %v", names)
	}
	for _, name := range names[:1] {
		if err := fs.Remove(fs.PathJoin(logd, name)); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Open(dir, Options{FS: fs, Logger: testLogger(t)})
	if !errors.Is(err, ErrCorrupt) || !frame.IsCorruption(err) || !strings.Contains(err.Error(), "cannot be replayed") {
		t.Fatalf("Open with the log's first segments gone: %v, want ErrCorrupt", err)
	}
}

// TestTrimLogTo: a node that does not lead keeps about the newest keep
// bytes of its log, never an unapplied entry.
func TestTrimLogTo(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	var es []logrec.Entry
	for lsn := uint64(1); lsn <= 100; lsn++ {
		es = append(es, entry(1, lsn, put("k", strings.Repeat("v", 100))))
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es[:50]...)
	_, size := d.LogSize()
	per := size / 100
	if err := d.TrimLogTo(size); err != nil || d.LogBase().LSN != 0 {
		t.Fatalf("nothing to trim: base %v, %v", d.LogBase(), err)
	}
	// Keeping 10 entries' worth would cut into the unapplied ones: the
	// trim stops at applied.
	if err := d.TrimLogTo(10 * per); err != nil || d.LogBase().LSN != 50 {
		t.Fatalf("trim to 10 entries with 50 applied: base %v, %v; want 50", d.LogBase(), err)
	}
	mustApply(t, d, es[50:]...)
	// Sizes are estimated from the average entry: about 10 are kept.
	if err := d.TrimLogTo(10 * per); err != nil || d.LogBase().LSN < 89 || d.LogBase().LSN > 91 {
		t.Fatalf("trim to 10 entries, all applied: base %v, %v; want about 90", d.LogBase(), err)
	}
	if n, _ := d.LogSize(); n < 9 || n > 11 {
		t.Fatalf("%d entries kept, want about 10", n)
	}
}

// TestLargeApplyLeavesSmallBatchesSmall: after an Apply of a large value,
// a small Apply allocates a small batch (sizing the large batch must not
// leave its size with the batches Pebble pools and hands out again, as
// pebble.WithInitialSizeBytes does).
func TestLargeApplyLeavesSmallBatchesSmall(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	big := strings.Repeat("v", 8<<20)
	es := []logrec.Entry{entry(1, 1, put("big", big))}
	for lsn := uint64(2); lsn <= 21; lsn++ {
		es = append(es, entry(1, lsn, put("k", "v")))
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es[0])
	if err := d.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, e := range es[1:] {
		mustApply(t, d, e)
	}
	runtime.ReadMemStats(&after)
	if n := (after.TotalAlloc - before.TotalAlloc) / 20; n > 1<<20 {
		t.Fatalf("a small Apply after a large one allocated %d bytes", n)
	}
}

// TestEpochsFromBeforeTheEpochFile: a data dir that keeps the seen epoch
// and the epoch history in Pebble (from before the epoch file) opens with
// them, and writes the file, which wins from then on.
func TestEpochsFromBeforeTheEpochFile(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	mustAppend(t, d, seq(1, 3, epoch1)...)
	hist := []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 4, LSN: 4}}
	for _, kv := range [][2][]byte{{metaEpoch, be64(7)}, {metaEpochs, encodePositions(hist)}} {
		if err := d.pdb.Set(kv[0], kv[1], pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	unmark(t, fs, true) // a dir of data dir format 2
	d, err := Open(dir, Options{FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Epoch() != 7 || !slices.Equal(d.EpochHistory(), hist) {
		t.Fatalf("epoch %d, history %v; want 7, %v from Pebble", d.Epoch(), d.EpochHistory(), hist)
	}
	if err := d.ObserveEpoch(9); err != nil {
		t.Fatal(err)
	}
	d = reopen(t, d, fs)
	defer d.Close()
	if d.Epoch() != 9 || !slices.Equal(d.EpochHistory(), hist) {
		t.Fatalf("after a reopen: epoch %d, history %v; want 9, %v from the file", d.Epoch(), d.EpochHistory(), hist)
	}
}

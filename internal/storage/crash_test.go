package storage

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/snapshot"
	"github.com/tandemdb/tandem/internal/testutil"
)

// crashModel is what the node holds between two steps: the entries of the
// current history by LSN (those retention dropped included: data at an
// applied LSN is the seed plus the entries after it), the seed an ingest
// left, and the positions.
type crashModel struct {
	entries map[uint64]logrec.Entry
	seed    []string // the data at seedLSN
	seedLSN uint64
	durable logrec.Position
	applied uint64
	seeding bool
}

func (m crashModel) clone() crashModel {
	m.entries = maps.Clone(m.entries)
	return m
}

// dataAt is the data (rowsDump) once the entries up to applied are
// applied: the seed's rows, then each op through keyspace.Apply on a map.
func (m crashModel) dataAt(applied uint64) ([]string, bool) {
	rows := rowMap{}
	for _, r := range m.seed {
		k, v, _ := strings.Cut(r, "=")
		rows[k] = v
	}
	for lsn := m.seedLSN + 1; lsn <= applied; lsn++ {
		e, ok := m.entries[lsn]
		if !ok {
			return nil, false
		}
		for i := range e.Ops {
			if err := keyspace.Apply(rows, &e.Ops[i]); err != nil {
				panic(err)
			}
		}
	}
	var out []string
	for k, v := range rows {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out, true
}

// rowMap is keyspace rows in a map, hex-encoded, written literally.
type rowMap map[string]string

func (m rowMap) Set(k, v []byte) { m[hex.EncodeToString(k)] = hex.EncodeToString(v) }
func (m rowMap) Delete(k []byte) { delete(m, hex.EncodeToString(k)) }
func (m rowMap) DeleteRange(lo, hi []byte) {
	for k := range m {
		raw, _ := hex.DecodeString(k)
		if bytes.Compare(raw, lo) >= 0 && bytes.Compare(raw, hi) < 0 {
			delete(m, k)
		}
	}
}

// rowsDump is every row of the keyspace as stored, garbage included:
// metadata and sub-key rows, hex key=value, in key order.
func rowsDump(t *testing.T, d *DB) []string {
	t.Helper()
	var out []string
	for _, span := range [][2][]byte{{keyspace.MetaLower, keyspace.MetaUpper}, {keyspace.SubLower, keyspace.SubUpper}} {
		if err := iterRows(d.pdb, span[0], span[1], func(k, v []byte) bool {
			out = append(out, hex.EncodeToString(k)+"="+hex.EncodeToString(v))
			return true
		}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}

type crashStep struct {
	name string
	run  func(t *testing.T, d *DB, m *crashModel)
}

// crashEntries are lo..hi of epoch, each putting one of a few keys (some
// with an expiry) or deleting one.
func crashEntries(lo, hi, epoch uint64) []logrec.Entry {
	var out []logrec.Entry
	for lsn := lo; lsn <= hi; lsn++ {
		k := fmt.Sprintf("k%d", lsn%7)
		op := put(k, fmt.Sprintf("v%d-e%d-%s", lsn, epoch, strings.Repeat("x", int(lsn%5)*20)))
		switch lsn % 5 {
		case 3:
			op = del(k)
		case 4:
			op.ExpireAtMs = int64(1000 + lsn)
		}
		out = append(out, entry(epoch, lsn, op, put(fmt.Sprintf("n%d", lsn%3), fmt.Sprint(lsn))))
		// Typed values (log format v2): a hash's metadata and field
		// rows, a field delete, a drop of a version, a FLUSHALL.
		h := []byte(fmt.Sprintf("h%d", lsn%2))
		ver := lsn / 4
		typed := []logrec.Op{
			{Kind: logrec.OpMeta, Key: h, Type: uint8(keyspace.TypeHash), Version: ver, Size: lsn, ExpireAtMs: int64(lsn%2) * 5000},
			{Kind: logrec.OpSubPut, Key: h, Version: ver, Sub: []byte(fmt.Sprintf("f%d", lsn%3)), Value: []byte(fmt.Sprint(lsn))},
		}
		switch lsn % 6 {
		case 2:
			typed = append(typed, logrec.Op{Kind: logrec.OpSubDel, Key: h, Version: ver, Sub: []byte("f1")})
		case 5:
			typed = []logrec.Op{{Kind: logrec.OpDrop, Key: h, Version: ver}}
		}
		if lsn == 9 {
			typed = append(typed, logrec.Op{Kind: logrec.OpFlushAll}, put("after-flush", "1"))
		}
		e := &out[len(out)-1]
		e.Ops = append(e.Ops, typed...)
	}
	return out
}

func appendStep(lo, hi, epoch uint64) crashStep {
	return crashStep{fmt.Sprintf("append %d..%d epoch %d", lo, hi, epoch), func(t *testing.T, d *DB, m *crashModel) {
		es := crashEntries(lo, hi, epoch)
		mustAppend(t, d, es...)
		for _, e := range es {
			m.entries[e.LSN] = e
		}
		m.durable = logrec.Position{Epoch: epoch, LSN: hi}
	}}
}

func applyStep(hi uint64) crashStep {
	return crashStep{fmt.Sprintf("apply to %d", hi), func(t *testing.T, d *DB, m *crashModel) {
		var es []logrec.Entry
		for lsn := m.applied + 1; lsn <= hi; lsn++ {
			es = append(es, m.entries[lsn])
		}
		mustApply(t, d, es...)
		m.applied = hi
	}}
}

// TestCrashAtEveryStep runs a node's storage through appends (epoch
// starts inside a batch and at a StartEpoch), applies, a Pebble flush,
// retention that deletes log segments, a truncation of a diverged suffix
// and a seed, on a crashable disk, and opens a crash clone taken before
// every write, sync, create, rename and remove of Pebble and of the log.
// Each must open, and:
//
//   - hold every entry whose AppendLog returned (unless a truncation or a
//     seed that was under way or done dropped it), and no entry the step
//     did not write;
//   - have applied ≤ durable, and the data equal to the model's at the
//     recovered applied LSN;
//   - have the log from applied+1 to durable readable, and replaying it
//     (Apply) give the model's data at durable;
//   - have an epoch history with a start for every epoch change in the
//     log and none past durable+1;
//   - be seeding (and empty) exactly when a seed was under way.
func TestCrashAtEveryStep(t *testing.T) {
	const segSize = 1 << 10
	src := open(t, vfs.NewMem())
	defer src.Close()
	srcEntries := crashEntries(1, 6, 1)
	srcEntries = append(srcEntries[:4], crashEntries(5, 6, 2)...)
	mustAppend(t, src, srcEntries...)
	mustApply(t, src, srcEntries...)
	srcSnap, err := src.NewSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer srcSnap.Close()
	var srcData []string // the live rows a seed copies (no garbage)
	var srcRows [][]snapshot.Row
	var enc snapshot.Encoder
	flush := func() {
		// The rows alias the chunk, and the encoder reuses its buffer.
		rows, err := snapshot.Decode(bytes.Clone(enc.Finish()))
		if err != nil {
			t.Fatal(err)
		}
		srcRows = append(srcRows, rows)
	}
	if err := srcSnap.Each(func(key, stored []byte) error {
		srcData = append(srcData, hex.EncodeToString(key)+"="+hex.EncodeToString(stored))
		enc.Add(key, stored)
		if enc.Count() == 3 {
			flush()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	flush()

	steps := []crashStep{
		appendStep(1, 10, 1),
		applyStep(6),
		{"append 11..20, epoch 2 from 15", func(t *testing.T, d *DB, m *crashModel) {
			es := append(crashEntries(11, 14, 1), crashEntries(15, 20, 2)...)
			mustAppend(t, d, es...)
			for _, e := range es {
				m.entries[e.LSN] = e
			}
			m.durable = logrec.Position{Epoch: 2, LSN: 20}
		}},
		applyStep(15),
		{"flush", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.pdb.Flush(); err != nil {
				t.Fatal(err)
			}
		}},
		appendStep(21, 30, 2),
		appendStep(31, 40, 2),
		applyStep(35),
		{"trim to 30", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.TruncateLogBefore(30); err != nil {
				t.Fatal(err)
			}
		}},
		appendStep(41, 50, 3),
		applyStep(38),
		{"truncate after 40", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.TruncateLogAfter(40); err != nil {
				t.Fatal(err)
			}
			for lsn := uint64(41); lsn <= 50; lsn++ {
				delete(m.entries, lsn)
			}
			m.durable = logrec.Position{Epoch: 2, LSN: 40}
		}},
		appendStep(41, 45, 4),
		applyStep(45),
		{"trim to 44", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.TruncateLogBefore(44); err != nil {
				t.Fatal(err)
			}
		}},
		{"begin ingest", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.BeginIngest(); err != nil {
				t.Fatal(err)
			}
			*m = crashModel{entries: map[uint64]logrec.Entry{}, seeding: true}
		}},
		{"ingest rows", func(t *testing.T, d *DB, m *crashModel) {
			for _, rows := range srcRows {
				if err := d.IngestRows(rows); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"finish ingest", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.FinishIngest(srcSnap.Position, srcSnap.Epochs); err != nil {
				t.Fatal(err)
			}
			*m = crashModel{entries: map[uint64]logrec.Entry{}, seed: srcData, seedLSN: 6, durable: srcSnap.Position, applied: 6}
		}},
		appendStep(7, 12, 5),
		applyStep(12),
		{"start epoch 6 at 13", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.StartEpoch(6, 13); err != nil {
				t.Fatal(err)
			}
		}},
		appendStep(13, 30, 6),
		applyStep(25),
		{"trim to 24", func(t *testing.T, d *DB, m *crashModel) {
			if err := d.TruncateLogBefore(24); err != nil {
				t.Fatal(err)
			}
		}},
	}

	c := testutil.NewCrasher(0, 50, 100)
	d, err := Open(dir, Options{FS: c.FS(), CacheBytes: 1 << 20, LogSegmentSize: segSize, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := crashModel{entries: map[uint64]logrec.Entry{}}
	models := []crashModel{m.clone()}
	for i, s := range steps {
		c.Step(i)
		s.run(t, d, &m)
		models = append(models, m.clone())
	}
	c.Step(len(steps))
	c.Take()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d crash clones", len(c.Clones))
	perStep := map[int]int{}
	for _, cl := range c.Clones {
		perStep[cl.Step]++
	}
	t.Logf("per step: %v", perStep)
	for _, cl := range c.Clones {
		name := fmt.Sprintf("step %d", cl.Step)
		if cl.Step < len(steps) {
			name += " (" + steps[cl.Step].name + ")"
		}
		name += fmt.Sprintf(", %d%% unsynced kept", cl.Pct)
		pre := models[cl.Step]
		post := pre
		if cl.Step < len(steps) {
			post = models[cl.Step+1]
		}
		checkCrash(t, name, cl.FS, segSize, pre, post, cl.Step < len(steps) && steps[cl.Step].name == "truncate after 40")
	}
}

// checkCrash opens a crashed disk and checks it against the models before
// and after the step it crashed in.
func checkCrash(t *testing.T, name string, fs *vfs.MemFS, segSize int64, pre, post crashModel, truncating bool) {
	t.Helper()
	d, err := Open(dir, Options{FS: fs, CacheBytes: 1 << 20, LogSegmentSize: segSize, Logger: testLogger(t)})
	if err != nil {
		t.Errorf("%s: Open: %v", name, err)
		return
	}
	defer d.Close()
	fail := func(format string, args ...any) {
		t.Errorf("%s: "+format, append([]any{name}, args...)...)
	}
	// The key counts recovered are the rows' (they share each batch).
	checkCounts(t, name+": opened", d)
	if d.Seeding() {
		if !pre.seeding && !post.seeding {
			fail("seeding, with no seed under way")
		}
		if n, _ := d.LogSize(); d.Applied() != 0 || d.Durable() != (logrec.Position{}) || n != 0 {
			fail("seeding with applied %d, durable %v, %d entries", d.Applied(), d.Durable(), n)
		}
		return
	}
	// Not seeding: the state before the step or after it.
	var cands []crashModel
	for _, m := range []crashModel{pre, post} {
		if !m.seeding {
			cands = append(cands, m)
		}
	}
	if len(cands) == 0 {
		fail("not seeding in the middle of a seed")
		return
	}
	durable, applied, base := d.Durable(), d.Applied(), d.LogBase()
	lo, hi := cands[0].durable.LSN, cands[0].durable.LSN
	for _, m := range cands[1:] {
		lo, hi = min(lo, m.durable.LSN), max(hi, m.durable.LSN)
	}
	if truncating {
		lo = post.durable.LSN
	}
	if durable.LSN < lo || durable.LSN > hi {
		fail("durable %v, want %d..%d", durable, lo, hi)
	}
	if applied > durable.LSN || base.LSN > applied {
		fail("log base %v, applied %d, durable %v", base, applied, durable)
		return
	}
	// Find the model the data and the log agree with.
	data := rowsDump(t, d)
	log, err := d.ReadLog(applied+1, durable.LSN, 1<<30)
	if err != nil {
		fail("the log from applied %d to durable %d cannot be read: %v", applied, durable.LSN, err)
		return
	}
	var m *crashModel
	for i := range cands {
		want, ok := cands[i].dataAt(applied)
		if !ok || !reflect.DeepEqual(data, want) {
			continue
		}
		match := true
		for j, raw := range log {
			e := cands[i].entries[applied+1+uint64(j)]
			if string(raw) != string(logrec.Encode(&e)) {
				match = false
				break
			}
		}
		if match {
			m = &cands[i]
			break
		}
	}
	if m == nil {
		fail("data at applied %d or the log to %d is neither the state before the step nor after it", applied, durable.LSN)
		return
	}
	// The epoch history names every epoch change the log holds, and no
	// start past durable+1.
	hist := d.EpochHistory()
	for _, s := range hist {
		if s.LSN > durable.LSN+1 {
			fail("epoch start %v past durable %v", s, durable)
		}
	}
	prev := base.Epoch
	for lsn := base.LSN + 1; lsn <= durable.LSN; lsn++ {
		e := m.entries[lsn].Epoch
		if e != prev && !slices.Contains(hist, logrec.Position{Epoch: e, LSN: lsn}) {
			fail("no epoch start for (%d,%d) in %v", e, lsn, hist)
		}
		prev = e
	}
	if d.Epoch() < durable.Epoch {
		fail("seen epoch %d below durable %v", d.Epoch(), durable)
	}
	// Replay.
	var es []logrec.Entry
	for _, raw := range log {
		e, err := logrec.Decode(raw)
		if err != nil {
			fail("decode: %v", err)
			return
		}
		es = append(es, e)
	}
	if err := d.Apply(es); err != nil {
		fail("replay %d..%d: %v", applied+1, durable.LSN, err)
		return
	}
	if want, _ := m.dataAt(durable.LSN); !reflect.DeepEqual(rowsDump(t, d), want) {
		fail("data after replaying to %d differs from the model", durable.LSN)
	}
	checkCounts(t, name+": replayed", d)
}

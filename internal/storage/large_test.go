package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/keyspace"
	"github.com/tandemdb/tandem/internal/logrec"
)

// bigValue is a value of n bytes that is not one byte repeated, so a
// misplaced chunk shows.
func bigValue(n int, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}

// bigLen is past keyspace.ChunkThreshold and not a multiple of
// keyspace.ChunkBytes: the last chunk is short.
const bigLen = keyspace.ChunkThreshold + 3*keyspace.ChunkBytes + 123

// getString reads key through the View (keyspace.Reader).
func getString(t *testing.T, d *DB, key string) (string, bool) {
	t.Helper()
	v, ok, err := View{DB: d}.Get([]byte(key))
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	if ok && (!v.IsString() || v.Version != 0) {
		t.Fatalf("get %q: %+v, want an ordinary string", key, v)
	}
	return string(v.Data), ok
}

// subRowsOf counts key's sub-key rows of every version as stored.
func subRowsOf(t *testing.T, d *DB, key string) int {
	t.Helper()
	n := 0
	lo := keyspace.AppendSubPrefix(nil, []byte(key), 0)
	_, hi := keyspace.SubSpan([]byte(key), ^uint64(0))
	if err := iterRows(d.pdb, lo, hi, func(_, _ []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestChunkedString(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	big := bigValue(bigLen, 1)
	parts := 0
	d.afterPart = func(int) {
		parts++
		// A read command waits for the whole Apply (readMu is held from
		// the first part on).
		if d.readMu.TryRLock() {
			d.readMu.RUnlock()
			t.Errorf("part %d committed without readMu held", parts)
		}
	}
	es := []logrec.Entry{
		entry(1, 1, put("a", "1"), putExp("big", big, 1<<50), put("b", "2")),
		entry(1, 2, put("big", "small")),
		entry(1, 3, put("big", big)),
		entry(1, 4, del("big")),
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es[0])
	if parts < 2 {
		t.Fatalf("a %d-byte value was written in %d parts", bigLen, parts)
	}
	if got, ok := getString(t, d, "big"); !ok || got != big {
		t.Fatalf("big: %d bytes, found %v", len(got), ok)
	}
	row, ok, err := dbRows{d}.Get(keyspace.MetaKey([]byte("big")))
	if err != nil || !ok || !keyspace.IsChunkedRow(row) {
		t.Fatalf("big's metadata row %x, %v, %v: want a chunked string row", row, ok, err)
	}
	if n, want := subRowsOf(t, d, "big"), int(keyspace.Chunks(bigLen)); n != want {
		t.Fatalf("%d chunk rows, want %d", n, want)
	}
	if c := d.KeyCounts(); c != (KeyCounts{Keys: 3, Expires: 1}) {
		t.Fatalf("counts %+v", c)
	}
	if rows := expiryRows(t, d); len(rows) != 1 {
		t.Fatalf("expiry index %v", rows)
	}
	// Scan reads it whole too.
	var scanned []string
	if err := (View{DB: d}).Scan(nil, func(k []byte, v keyspace.Value) bool {
		scanned = append(scanned, fmt.Sprintf("%s:%d", k, len(v.Data)))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a:1", "b:1", fmt.Sprintf("big:%d", bigLen)}; !reflect.DeepEqual(scanned, want) {
		t.Fatalf("scan %v, want %v", scanned, want)
	}
	// A string written over it drops its chunks: DEL and SET are O(1)
	// rows, the space comes back without Sweep.
	mustApply(t, d, es[1])
	if got, _ := getString(t, d, "big"); got != "small" {
		t.Fatalf("big after SET: %q", got)
	}
	if n := subRowsOf(t, d, "big"); n != 0 {
		t.Fatalf("%d chunk rows left after SET over the chunked string", n)
	}
	mustApply(t, d, es[2], es[3])
	if _, ok := getString(t, d, "big"); ok {
		t.Fatal("big after DEL")
	}
	if n := subRowsOf(t, d, "big"); n != 0 {
		t.Fatalf("%d chunk rows left after DEL", n)
	}
	if c := d.KeyCounts(); c != (KeyCounts{Keys: 2}) {
		t.Fatalf("counts %+v", c)
	}
}

// TestChunkedStringSameEntry: an entry that writes a chunked string and
// then, after deleting it, a hash of the same key gives the hash the
// entry's LSN as version, the chunks' version: the hash must not see them.
// And a second chunked write of a key in one entry leaves only its own.
func TestChunkedStringSameEntry(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	big, big2 := bigValue(bigLen, 2), bigValue(keyspace.ChunkThreshold+1, 3)
	es := []logrec.Entry{
		entry(1, 1, put("h", big), del("h"), hput("h", 1, "f", "v"), hmeta("h", 1, 1)),
		entry(1, 2, put("s", big), put("s", big2)),
	}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	if got := hashDump(t, d, "h"); got != "hash v1 n1 [f=v]" {
		t.Fatalf("hash h: %s", got)
	}
	if got, _ := getString(t, d, "s"); got != big2 {
		t.Fatalf("s: %d bytes, want the second value's %d", len(got), len(big2))
	}
	if n, want := subRowsOf(t, d, "s"), int(keyspace.Chunks(uint64(len(big2)))); n != want {
		t.Fatalf("s: %d chunk rows, want %d", n, want)
	}
	if c := d.KeyCounts(); c != (KeyCounts{Keys: 2}) {
		t.Fatalf("counts %+v", c)
	}
}

// TestChunkedStringCrashMidApply crashes the node after each part of an
// Apply in parts (the parts so far made durable, as Pebble's WAL may),
// reopens the crash clone and replays the log from the applied LSN: the
// data, the key counts and the digest must be those of a node that never
// crashed, and until the replay the partly applied entry cannot be
// truncated from the log.
func TestChunkedStringCrashMidApply(t *testing.T) {
	big := bigValue(bigLen, 4)
	es := []logrec.Entry{
		entry(1, 1, put("old", "x"), put("gone", "y")),
		// The puts say their prior rows (logrec.Op.Prior), true before the
		// crash and wrong in the replay of a part already written: the
		// replay must read them.
		entry(1, 2, withPrior(put("new", "1"), logrec.PriorNone), withPrior(put("new2", "1"), logrec.PriorNone), del("gone"),
			put("big", big), withPrior(put("after", "2"), logrec.PriorNone), del("old")),
	}
	ref := open(t, vfs.NewMem())
	mustAppend(t, ref, es...)
	mustApply(t, ref, es...)
	wantDump, wantCounts := dump(t, ref), ref.KeyCounts()
	_, wantSum, err := ref.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref.Close()

	for crashAt := 1; ; crashAt++ {
		fs := vfs.NewCrashableMem()
		d := open(t, fs)
		mustAppend(t, d, es...)
		mustApply(t, d, es[0])
		var clone *vfs.MemFS
		d.afterPart = func(part int) {
			if part != crashAt {
				return
			}
			if err := d.pdb.Flush(); err != nil { // the parts so far reach the disk
				t.Fatal(err)
			}
			clone = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
		}
		mustApply(t, d, es[1])
		d.Close()
		if clone == nil {
			if crashAt < 3 {
				t.Fatalf("only %d parts", crashAt-1)
			}
			break
		}
		c := open(t, clone)
		if got := c.Applied(); got != 1 {
			t.Fatalf("crash after part %d: applied %d, want 1", crashAt, got)
		}
		if err := c.TruncateLogAfter(1); !errors.Is(err, ErrBelowApplied) {
			t.Fatalf("crash after part %d: truncating the partly applied entry: %v, want ErrBelowApplied", crashAt, err)
		}
		raws, err := c.ReadLog(2, 2, 1<<30)
		if err != nil || len(raws) != 1 {
			t.Fatalf("crash after part %d: read the log: %d, %v", crashAt, len(raws), err)
		}
		e, err := logrec.Decode(raws[0])
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, c, e)
		if got := dump(t, c); !reflect.DeepEqual(got, wantDump) {
			t.Errorf("crash after part %d: data after replay differs", crashAt)
		}
		if got := c.KeyCounts(); got != wantCounts {
			t.Errorf("crash after part %d: counts %+v after replay, want %+v", crashAt, got, wantCounts)
		}
		if _, sum, err := c.Digest(); err != nil || sum != wantSum {
			t.Errorf("crash after part %d: digest differs after replay (%v)", crashAt, err)
		}
		if got, _ := getString(t, c, "big"); got != big {
			t.Errorf("crash after part %d: big is %d bytes after replay", crashAt, len(got))
		}
		c.Close()
	}
}

// TestSweepSparesChunksOfAnApplyInParts: a Sweep pass that runs while an
// Apply is between parts sees chunks no metadata row names yet; it must
// leave them.
func TestSweepSparesChunksOfAnApplyInParts(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	big := bigValue(bigLen, 5)
	es := []logrec.Entry{entry(1, 1, put("big", big))}
	mustAppend(t, d, es...)
	d.afterPart = func(part int) {
		if part == 2 {
			if _, err := d.Sweep(0, 1000); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustApply(t, d, es...)
	if got, _ := getString(t, d, "big"); got != big {
		t.Fatalf("big is %d bytes after a sweep mid-Apply", len(got))
	}
}

// TestChunkedStringSnapshot: a snapshot carries a chunked string's rows
// (its chunks as the live rows of the version it names), the follower
// that ingests them reads the string, and both digests agree.
func TestChunkedStringSnapshot(t *testing.T) {
	src, dst := open(t, vfs.NewMem()), open(t, vfs.NewMem())
	t.Cleanup(func() { src.Close(); dst.Close() }) // after the snapshot's (ingest)
	big := bigValue(bigLen, 6)
	es := []logrec.Entry{entry(1, 1, put("big", big), put("k", "v"))}
	mustAppend(t, src, es...)
	mustApply(t, src, es...)
	ingest(t, src, dst, true)
	if got, _ := getString(t, dst, "big"); got != big {
		t.Fatalf("big is %d bytes on the seeded node", len(got))
	}
	_, a, err := src.Digest()
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := dst.Digest()
	if err != nil || a != b {
		t.Fatalf("digests differ (%v)", err)
	}
	if c := dst.KeyCounts(); c != (KeyCounts{Keys: 2}) {
		t.Fatalf("counts %+v", c)
	}
}

// TestChunkedStringCorrupt: a chunk missing or cut short is ErrCorrupt,
// never a shorter value.
func TestChunkedStringCorrupt(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := []logrec.Entry{entry(1, 1, put("big", bigValue(bigLen, 7)))}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	k := keyspace.SubKey([]byte("big"), 1, keyspace.ChunkSub(2))
	if err := d.pdb.Set(k, bytes.Repeat([]byte("x"), 10), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (View{DB: d}).Get([]byte("big")); !errors.Is(err, keyspace.ErrCorrupt) {
		t.Fatalf("short chunk: %v", err)
	}
	if err := d.pdb.Delete(k, pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if _, _, err := (View{DB: d}).Get([]byte("big")); !errors.Is(err, keyspace.ErrCorrupt) {
		t.Fatalf("missing chunk: %v", err)
	}
}

// TestStatReadsNoChunks: Stat (STRLEN, TYPE, EXISTS, the expiry loop)
// answers a chunked string's type, expiry and length from its metadata
// row, reading none of its chunks.
func TestStatReadsNoChunks(t *testing.T) {
	d := open(t, vfs.NewMem())
	defer d.Close()
	es := []logrec.Entry{entry(1, 1, putExp("big", bigValue(bigLen, 8), 1<<50))}
	mustAppend(t, d, es...)
	mustApply(t, d, es...)
	val, ok, err := View{DB: d, NowMs: 1}.Stat([]byte("big"))
	if err != nil || !ok || !val.IsString() || keyspace.StrLen(val) != bigLen || val.ExpireAtMs != 1<<50 {
		t.Fatalf("Stat: %+v, %v, %v", val, ok, err)
	}
	rows := &countingRows{Rows: dbRows{d}}
	if _, _, err := (keyspace.Reader{R: rows, NowMs: 1}).Stat([]byte("big")); err != nil || rows.iters != 0 || rows.gets != 1 {
		t.Fatalf("Stat read %d rows and %d spans (%v); want the metadata row only", rows.gets, rows.iters, err)
	}
	if _, _, err := (keyspace.Reader{R: rows, NowMs: 1}).Get([]byte("big")); err != nil || rows.iters != 1 {
		t.Fatalf("Get read %d spans (%v); want the chunks' one", rows.iters, err)
	}
	if _, ok, _ := (View{DB: d, NowMs: 1 << 50}).Stat([]byte("big")); ok {
		t.Fatal("Stat of an expired key")
	}
}

// countingRows counts the point reads and iterations made through it.
type countingRows struct {
	keyspace.Rows
	gets, iters int
}

func (c *countingRows) Get(k []byte) ([]byte, bool, error) {
	c.gets++
	return c.Rows.Get(k)
}

func (c *countingRows) Iter(lo, hi []byte, fn func(k, v []byte) bool) error {
	c.iters++
	return c.Rows.Iter(lo, hi, fn)
}

package storage

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/dataformat"
	"github.com/tandemdb/tandem/internal/frame"
	"github.com/tandemdb/tandem/internal/logrec"
	"github.com/tandemdb/tandem/internal/testutil"
)

// readMarker is the marker file's bytes ("" when there is none).
func readMarker(t *testing.T, fs vfs.FS) string {
	t.Helper()
	f, err := fs.Open(fs.PathJoin(dir, dataformat.File))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// setMarker writes the marker durably (as a build of that format would).
func setMarker(t *testing.T, fs vfs.FS, content string) {
	t.Helper()
	if err := dataformat.WriteAtomic(fs, dir, dataformat.File, []byte(content)); err != nil {
		t.Fatal(err)
	}
}

// unmark removes the files a build of an older format did not write (the
// marker; with epochFileToo the epoch file), durably.
func unmark(t *testing.T, fs vfs.FS, epochFileToo bool) {
	t.Helper()
	names := []string{dataformat.File}
	if epochFileToo {
		names = append(names, epochFile)
	}
	for _, name := range names {
		if err := fs.Remove(fs.PathJoin(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	d, err := fs.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil {
		t.Fatal(err)
	}
}

// format2Dir makes a data dir as a build of format 2 left it: entries
// 1..6 (epoch 1 from 1, epoch 4 from 4) in the log, 1..4 applied, the
// seen epoch (7) and the history in Pebble's metadata, no epoch file and
// no marker. It returns the history.
func format2Dir(t *testing.T, fs vfs.FS) []logrec.Position {
	t.Helper()
	d := open(t, fs)
	hist := []logrec.Position{{Epoch: 1, LSN: 1}, {Epoch: 4, LSN: 4}}
	es := seq(1, 6, func(lsn uint64) uint64 {
		if lsn >= 4 {
			return 4
		}
		return 1
	})
	mustAppend(t, d, es...)
	mustApply(t, d, es[:4]...)
	for _, kv := range [][2][]byte{{metaEpoch, be64(7)}, {metaEpochs, encodePositions(hist)}} {
		if err := d.pdb.Set(kv[0], kv[1], pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	unmark(t, fs, true)
	return hist
}

// TestFormatMarkerOnNewDir: a new data dir gets the marker of dataformat.Current,
// one line of text, and dataformat.Read reads it back.
func TestFormatMarkerOnNewDir(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	defer d.Close()
	if got, want := readMarker(t, fs), fmt.Sprintf("tandem data dir format %d\n", dataformat.Current); got != want {
		t.Fatalf("marker %q, want %q", got, want)
	}
	if v, ok, err := dataformat.Read(fs, dir); v != dataformat.Current || !ok || err != nil {
		t.Fatalf("dataformat.Read = %d, %v, %v; want %d", v, ok, err, dataformat.Current)
	}
	if _, err := fs.Stat(fs.PathJoin(dir, dataformat.File+".tmp")); err == nil {
		t.Fatal("the marker's temporary file is left behind")
	}
}

// TestNewerFormatRefused: a dir whose marker names a newer format is
// refused with both formats named, before anything in it is touched (a new
// dir is not created either).
func TestNewerFormatRefused(t *testing.T) {
	for _, used := range []bool{false, true} {
		t.Run(fmt.Sprintf("used=%v", used), func(t *testing.T) {
			fs := vfs.NewMem()
			if used {
				d := open(t, fs)
				mustAppend(t, d, seq(1, 3, epoch1)...)
				mustApply(t, d, seq(1, 2, epoch1)...)
				if err := d.Close(); err != nil {
					t.Fatal(err)
				}
			} else if err := fs.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			newer := dataformat.Current + 1
			setMarker(t, fs, fmt.Sprintf("tandem data dir format %d\n", newer))
			before := listAll(t, fs, dir)
			_, err := Open(dir, Options{FS: fs, Logger: testLogger(t)})
			if !errors.Is(err, ErrNewerFormat) {
				t.Fatalf("Open of a format %d dir: %v, want ErrNewerFormat", newer, err)
			}
			for _, want := range []string{fmt.Sprintf("format %d", newer), fmt.Sprintf("up to %d", dataformat.Current)} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if err := dataformat.Check(fs, dir); !errors.Is(err, ErrNewerFormat) {
				t.Errorf("CheckFormat: %v, want ErrNewerFormat", err)
			}
			if after := listAll(t, fs, dir); !slices.Equal(before, after) {
				t.Fatalf("the refused dir changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

// listAll lists every file under root with its size and contents' length,
// sorted: what a refused Open must leave as it was.
func listAll(t *testing.T, fs vfs.FS, root string) []string {
	t.Helper()
	var out []string
	names, err := fs.List(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p := fs.PathJoin(root, n)
		st, err := fs.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.IsDir() {
			out = append(out, listAll(t, fs, p)...)
			continue
		}
		f, err := fs.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %x", p, b))
	}
	slices.Sort(out)
	return out
}

// TestBadMarkerRefused: a marker naming format 1 (the log in Pebble) is
// ErrOldFormat; one that is not a marker is corruption, never read as some
// format; a marked dir without its epoch file is corruption.
func TestBadMarkerRefused(t *testing.T) {
	for _, tc := range []struct {
		name, marker string
		want         error
	}{
		{"format 1", "tandem data dir format 1\n", ErrOldFormat},
		{"empty", "", frame.ErrCorrupt},
		{"no newline", fmt.Sprintf("tandem data dir format %d", dataformat.Current), frame.ErrCorrupt},
		{"zero", "tandem data dir format 0\n", frame.ErrCorrupt},
		{"negative", "tandem data dir format -3\n", frame.ErrCorrupt},
		{"flipped", fmt.Sprintf("tandem data dir formaT %d\n", dataformat.Current), frame.ErrCorrupt},
		{"trailing", fmt.Sprintf("tandem data dir format %d\nx", dataformat.Current), frame.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			d := open(t, fs)
			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			setMarker(t, fs, tc.marker)
			if _, err := Open(dir, Options{FS: fs, Logger: testLogger(t)}); !errors.Is(err, tc.want) {
				t.Fatalf("Open with marker %q: %v, want %v", tc.marker, err, tc.want)
			}
		})
	}
	t.Run("no epoch file", func(t *testing.T) {
		fs := vfs.NewMem()
		d := open(t, fs)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		if err := fs.Remove(fs.PathJoin(dir, epochFile)); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(dir, Options{FS: fs, Logger: testLogger(t)}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "no epoch file") {
			t.Fatalf("Open of a marked dir without its epoch file: %v, want ErrCorrupt", err)
		}
	})
}

// TestUnmarkedDirFromBeforeTheGate: a dir a build of format 3 wrote before
// the marker existed (the epoch file, no marker) opens as it is and gets
// the marker; its epochs are the file's, not Pebble's stale ones.
func TestUnmarkedDirFromBeforeTheGate(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	mustAppend(t, d, seq(1, 3, epoch1)...)
	mustApply(t, d, seq(1, 3, epoch1)...)
	if err := d.ObserveEpoch(5); err != nil {
		t.Fatal(err)
	}
	// Stale epochs in Pebble, as a format-2 build left them before the
	// epoch file took over.
	if err := d.pdb.Set(metaEpoch, be64(2), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	want := dump(t, d)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	unmark(t, fs, false)
	d = open(t, fs)
	defer d.Close()
	if d.Epoch() != 5 || d.Durable().LSN != 3 || d.Applied() != 3 || !slices.Equal(dump(t, d), want) {
		t.Fatalf("epoch %d, durable %v, applied %d, data %v; want 5, 3, 3, %v", d.Epoch(), d.Durable(), d.Applied(), dump(t, d), want)
	}
	if v, ok, err := dataformat.Read(fs, dir); v != dataformat.Current || !ok || err != nil {
		t.Fatalf("after Open: dataformat.Read = %d, %v, %v; want %d", v, ok, err, dataformat.Current)
	}
}

// TestFormat2Migrated: a dir of format 2 (the epochs in Pebble, no epoch
// file, no marker) is migrated: its epochs go to the epoch file, the
// marker follows, and the log and data are as they were.
func TestFormat2Migrated(t *testing.T) {
	fs := vfs.NewMem()
	hist := format2Dir(t, fs)
	d := open(t, fs)
	checkMigrated(t, "Open", d, fs, hist)
	d = reopen(t, d, fs)
	defer d.Close()
	checkMigrated(t, "reopen", d, fs, hist)
}

// checkMigrated checks the format-2 dir of format2Dir after its migration.
func checkMigrated(t *testing.T, name string, d *DB, fs vfs.FS, hist []logrec.Position) {
	t.Helper()
	if d.Epoch() != 7 || !slices.Equal(d.EpochHistory(), hist) {
		t.Fatalf("%s: epoch %d, history %v; want 7, %v from Pebble", name, d.Epoch(), d.EpochHistory(), hist)
	}
	if got := d.Durable(); got != (logrec.Position{Epoch: 4, LSN: 6}) || d.Applied() != 4 {
		t.Fatalf("%s: durable %v, applied %d; want (4,6), 4", name, got, d.Applied())
	}
	if got, want := dump(t, d), []string{"k0=v3@0", "k1=v4@0", "k2=v2@0"}; !slices.Equal(got, want) {
		t.Fatalf("%s: data %v, want %v", name, got, want)
	}
	if v, ok, err := dataformat.Read(fs, dir); v != dataformat.Current || !ok || err != nil {
		t.Fatalf("%s: dataformat.Read = %d, %v, %v; want %d", name, v, ok, err, dataformat.Current)
	}
}

// TestFormatMigrationCrash: a crash at every write of a format-2 dir's
// migration leaves a dir that the next
// Open migrates or has migrated: the epochs from Pebble, the log and the
// data kept, the marker written. Writing the marker before the epoch file,
// or not atomically, fails it.
func TestFormatMigrationCrash(t *testing.T) {
	c := testutil.NewCrasher(0, 50, 100)
	hist := format2Dir(t, c.Mem)
	startCrashes := func() { c.Step(0) }
	d, err := Open(dir, Options{FS: c.FS(), CacheBytes: 1 << 20, Logger: testLogger(t), afterPebbleOpen: &startCrashes})
	if err != nil {
		t.Fatal(err)
	}
	c.Step(1)
	c.Take()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if len(c.Clones) < 6 {
		t.Fatalf("only %d crash clones", len(c.Clones))
	}
	t.Logf("%d crash clones", len(c.Clones))
	for i, cl := range c.Clones {
		name := fmt.Sprintf("clone %d (step %d, %d%% unsynced kept)", i, cl.Step, cl.Pct)
		d, err := Open(dir, Options{FS: cl.FS, CacheBytes: 1 << 20, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("%s: Open: %v", name, err)
		}
		checkMigrated(t, name, d, cl.FS, hist)
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOldFormatRefusedNamesFormats: a dir recognised as format 1 (the log
// in Pebble) is refused with the formats named.
func TestOldFormatRefusedNamesFormats(t *testing.T) {
	fs := vfs.NewMem()
	d := open(t, fs)
	if err := d.pdb.Set([]byte{prefixOldLog, 0, 0, 0, 0, 0, 0, 0, 1}, []byte("x"), pebble.NoSync); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	unmark(t, fs, true)
	_, err := Open(dir, Options{FS: fs, Logger: testLogger(t)})
	if !errors.Is(err, ErrOldFormat) || !strings.Contains(err.Error(), fmt.Sprintf("format %d", dataformat.LogInPebble)) || !strings.Contains(err.Error(), fmt.Sprintf("formats %d to %d", dataformat.Oldest, dataformat.Current)) {
		t.Fatalf("Open of a format-1 dir: %v, want ErrOldFormat naming the formats", err)
	}
	if readMarker(t, fs) != "" {
		t.Fatal("a refused dir got a marker")
	}
}

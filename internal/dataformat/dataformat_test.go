package dataformat

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemdb/tandem/internal/frame"
)

// TestMarker: Write then Read gives the format back, as one line of text
// and no temporary file left; a dir without a marker is ok=false.
func TestMarker(t *testing.T) {
	fs := vfs.NewMem()
	if err := fs.MkdirAll("/d", 0o755); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := Read(fs, "/d"); v != 0 || ok || err != nil {
		t.Fatalf("Read of an unmarked dir = %d, %v, %v", v, ok, err)
	}
	for _, v := range []int{Current, Current + 7} {
		if err := Write(fs, "/d", v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := Read(fs, "/d"); got != v || !ok || err != nil {
			t.Fatalf("Read after Write(%d) = %d, %v, %v", v, got, ok, err)
		}
	}
	names, _ := fs.List("/d")
	if len(names) != 1 || names[0] != File {
		t.Fatalf("dir holds %v, want only %s", names, File)
	}
}

// TestCorruptMarker: anything but one line naming a positive format is
// ErrCorrupt (a frame.ErrCorrupt), never read as some format.
func TestCorruptMarker(t *testing.T) {
	for _, m := range []string{
		"", "\n", "tandem data dir format \n", "tandem data dir format 3",
		"tandem data dir format 0\n", "tandem data dir format -3\n", "tandem data dir format +3\n",
		"tandem data dir formaT 3\n", "tandem data dir format 3\nx", "tandem data dir format 3 \n",
		"tandem data dir format 3\n\n", "tandem data dir format 03\n", "tandem data dir format 99999999999999999999\n",
	} {
		fs := vfs.NewMem()
		if err := WriteAtomic(fs, "", File, []byte(m)); err != nil {
			t.Fatal(err)
		}
		v, _, err := Read(fs, "")
		if !errors.Is(err, ErrCorrupt) || !errors.Is(err, frame.ErrCorrupt) {
			t.Errorf("Read of marker %q = %d, %v; want ErrCorrupt", m, v, err)
		}
	}
}

// TestCheckVersion: formats Oldest..Current pass; a newer one is ErrNewer
// and an older one ErrOlder, each naming both formats.
func TestCheckVersion(t *testing.T) {
	for v := Oldest; v <= Current; v++ {
		if err := CheckVersion("/d", v); err != nil {
			t.Errorf("CheckVersion(%d) = %v", v, err)
		}
	}
	for _, tc := range []struct {
		v    int
		want error
		says []string
	}{
		{Current + 1, ErrNewer, []string{fmt.Sprintf("format %d", Current+1), fmt.Sprintf("up to %d", Current)}},
		{LogInPebble, ErrOlder, []string{fmt.Sprintf("format %d", LogInPebble), fmt.Sprintf("formats %d to %d", Oldest, Current), "re-seed"}},
	} {
		err := CheckVersion("/d", tc.v)
		if !errors.Is(err, tc.want) {
			t.Errorf("CheckVersion(%d) = %v, want %v", tc.v, err, tc.want)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("CheckVersion(%d) = %q, does not say %q", tc.v, err, s)
			}
		}
	}
}

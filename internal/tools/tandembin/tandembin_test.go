package tandembin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestPathFlag(t *testing.T) {
	t.Cleanup(func() { Set("") })
	bin := filepath.Join(t.TempDir(), "tandem")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	Set(bin)
	if p, err := Path(); err != nil || p != bin {
		t.Fatalf("Path() with --tandem %s = %q, %v", bin, p, err)
	}
	Set(filepath.Join(t.TempDir(), "missing"))
	if p, err := Path(); err == nil {
		t.Fatalf("Path() with a missing --tandem = %q, no error", p)
	}
}

// Without --tandem, `tandem` on PATH is found (none is beside the test
// binary).
func TestPathLookup(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tandem")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	if p, err := Path(); err != nil || p != bin {
		t.Fatalf("Path() = %q, %v; want %s", p, err, bin)
	}
	t.Setenv("PATH", t.TempDir())
	if p, err := Path(); err == nil {
		t.Fatalf("Path() with no tandem anywhere = %q, no error", p)
	}
}

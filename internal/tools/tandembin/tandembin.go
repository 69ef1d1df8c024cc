// Package tandembin finds the tandem server binary that the tools (chaos,
// the benchmarks) run as cluster processes. The tools live in their own
// binary, tandem-bench, so the binary they test is a separate file: the one
// given with --tandem (what `tandem chaos` and `tandem bench` pass: the
// tandem that was run), else `tandem` beside tandem-bench, else `tandem` on
// PATH.
package tandembin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

var (
	mu   sync.Mutex
	flag string
)

// Set records the --tandem flag's value ("" for none).
func Set(path string) {
	mu.Lock()
	defer mu.Unlock()
	flag = path
}

// Path returns the tandem binary to run: Set's path, else `tandem` in
// the directory of the running executable, else `tandem` on PATH.
func Path() (string, error) {
	mu.Lock()
	p := flag
	mu.Unlock()
	if p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("--tandem: %w", err)
		}
		return p, nil
	}
	var errs []error
	if exe, err := os.Executable(); err == nil {
		beside := filepath.Join(filepath.Dir(exe), "tandem")
		if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
			return beside, nil
		}
	} else {
		errs = append(errs, err)
	}
	p, err := exec.LookPath("tandem")
	if err == nil {
		return p, nil
	}
	errs = append(errs, err)
	return "", fmt.Errorf("no tandem binary beside this one or on PATH (build one: go build -o tandem ./cmd/tandem, and pass --tandem ./tandem): %w", errors.Join(errs...))
}

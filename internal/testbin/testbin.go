// Package testbin builds the tandem binary once per test process, for tests
// that run real node processes.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

var (
	once sync.Once
	path string
	err  error
)

// Path returns the path of a freshly built tandem binary, building it on
// first use. It fails the test if the build fails.
func Path(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, derr := os.MkdirTemp("", "tandem-bin-")
		if derr != nil {
			err = derr
			return
		}
		path = filepath.Join(dir, "tandem")
		cmd := exec.Command("go", "build", "-o", path, "./cmd/tandem")
		cmd.Dir = root
		out, berr := cmd.CombinedOutput()
		if berr != nil {
			err = &buildError{out: string(out), err: berr}
		}
	})
	if err != nil {
		t.Fatalf("build tandem: %v", err)
	}
	return path
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

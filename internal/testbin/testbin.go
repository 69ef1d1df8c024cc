// Package testbin builds tandem's binaries once per test process, for tests
// that run real processes: Path the server binary (cmd/tandem), ToolsPath
// the tools binary (cmd/tandem-bench), both in one directory, as
// `go install` would put them.
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
	dirOnce sync.Once
	dir     string
	dirErr  error

	tandem = build{name: "tandem", pkg: "./cmd/tandem"}
	tools  = build{name: "tandem-bench", pkg: "./cmd/tandem-bench"}
)

// build is one binary, built on first use.
type build struct {
	name, pkg string
	once      sync.Once
	err       error
}

// Path returns the path of a freshly built tandem binary, building it on
// first use. It fails the test if the build fails.
func Path(t testing.TB) string {
	t.Helper()
	return tandem.path(t)
}

// ToolsPath returns the path of a freshly built tandem-bench binary,
// beside Path's tandem, building it on first use.
func ToolsPath(t testing.TB) string {
	t.Helper()
	return tools.path(t)
}

func (b *build) path(t testing.TB) string {
	t.Helper()
	dirOnce.Do(func() { dir, dirErr = os.MkdirTemp("", "tandem-bin-") })
	if dirErr != nil {
		t.Fatalf("build %s: %v", b.name, dirErr)
	}
	out := filepath.Join(dir, b.name)
	b.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", out, b.pkg)
		cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = &buildError{out: string(msg), err: err}
		}
	})
	if b.err != nil {
		t.Fatalf("build %s: %v", b.name, b.err)
	}
	return out
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

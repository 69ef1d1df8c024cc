package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemdb/tandem/internal/testbin"
)

// run runs bin with args and PATH set to path, and returns its combined
// output and whether it exited 0.
func run(t *testing.T, path, bin string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PATH="+path)
	out, err := cmd.CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return string(out), err == nil
}

// Without tandem-bench beside it or on PATH, `tandem chaos` and `tandem
// bench` fail and say how to get it.
func TestToolCommandWithoutTools(t *testing.T) {
	b, err := os.ReadFile(testbin.Path(t))
	if err != nil {
		t.Fatal(err)
	}
	alone := filepath.Join(t.TempDir(), "tandem")
	if err := os.WriteFile(alone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"chaos", "bench"} {
		out, ok := run(t, t.TempDir(), alone, c, "--help")
		if ok {
			t.Fatalf("tandem %s without tandem-bench exited 0:\n%s", c, out)
		}
		for _, want := range []string{"go install ./cmd/tandem-bench", "go run ./cmd/tandem-bench --tandem " + alone + " " + c} {
			if !strings.Contains(out, want) {
				t.Errorf("tandem %s without tandem-bench does not say %q:\n%s", c, want, out)
			}
		}
	}
}

// With tandem-bench beside it, `tandem chaos` and `tandem bench` are
// tandem-bench's commands, every flag passed through.
func TestToolCommandRunsTools(t *testing.T) {
	tandem := testbin.Path(t)
	testbin.ToolsPath(t) // beside it
	out, ok := run(t, t.TempDir(), tandem, "bench", "failover", "--help")
	if !ok || !strings.Contains(out, "kill -9 trials") {
		t.Errorf("tandem bench failover --help: ok %v\n%s", ok, out)
	}
	out, ok = run(t, t.TempDir(), tandem, "chaos", "--faults", "kill-leader,meteor", "--dir", t.TempDir())
	if ok || !strings.Contains(out, "tandem-bench:") || !strings.Contains(out, "meteor") {
		t.Errorf("tandem chaos with an unknown fault: ok %v, want tandem-bench's refusal of it:\n%s", ok, out)
	}
}

// The server binary links no tool package (the CI's .ci/tools-apart.sh
// checks every product package; this is the quick check for this one).
func TestServerBinaryLinksNoTools(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "/internal/tools/") || strings.HasSuffix(p, "/internal/tools") {
			t.Errorf("cmd/tandem links %s", p)
		}
	}
}

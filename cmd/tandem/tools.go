package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
)

// toolsBinary is the tools binary (cmd/tandem-bench): the chaos harness
// and the benchmarks, kept out of the server binary so that a production
// install links no harness, benchmark driver or fault injector.
const toolsBinary = "tandem-bench"

// toolCommands are `tandem chaos` and `tandem bench`: each runs
// tandem-bench's command of the same name with the same arguments, telling
// it to test this tandem binary.
func toolCommands() []*cobra.Command {
	var out []*cobra.Command
	for _, c := range []struct{ name, short string }{
		{"chaos", "Run a local cluster under faults and check what it promises (runs tandem-bench chaos)"},
		{"bench", "Benchmarks: failover, commit (runs tandem-bench bench)"},
	} {
		out = append(out, &cobra.Command{
			Use:                c.name,
			Short:              c.short,
			DisableFlagParsing: true, // every flag, --help included, is tandem-bench's
			RunE: func(cmd *cobra.Command, args []string) error {
				return runTool(c.name, args)
			},
		})
	}
	return out
}

// runTool replaces this process with `tandem-bench --tandem SELF name
// args...`, so that signals, output and the exit status are the tool's.
func runTool(name string, args []string) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("%s: find this binary: %w", name, err)
	}
	bin, ok := findTool(self)
	if !ok {
		return fmt.Errorf(`"tandem %[1]s" runs the tools binary %[2]s, which is neither beside %[3]s nor on PATH; `+
			`install it from the tandem source tree with "go install ./cmd/tandem-bench" (beside tandem when both are go-installed), `+
			`or run it in place with "go run ./cmd/tandem-bench --tandem %[3]s %[1]s ..."`, name, toolsBinary, self)
	}
	argv := append([]string{bin, "--tandem", self, name}, args...)
	if err := syscall.Exec(bin, argv, os.Environ()); err != nil {
		return fmt.Errorf("%s: run %s: %w", name, bin, err)
	}
	return nil // not reached: Exec returns only on failure
}

// findTool finds tandem-bench beside self, else on PATH.
func findTool(self string) (string, bool) {
	beside := filepath.Join(filepath.Dir(self), toolsBinary)
	if fi, err := os.Stat(beside); err == nil && !fi.IsDir() {
		return beside, true
	}
	p, err := exec.LookPath(toolsBinary)
	return p, err == nil
}

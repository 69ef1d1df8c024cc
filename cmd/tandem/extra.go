package main

import (
	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/tools/chaos"
	"github.com/tandemdb/tandem/internal/tools/commitbench"
	"github.com/tandemdb/tandem/internal/tools/failbench"
)

// extraCommands lists commands built in other packages.
func extraCommands() []*cobra.Command {
	bench := &cobra.Command{Use: "bench", Short: "Benchmarks"}
	bench.AddCommand(failbench.NewCommand(), commitbench.NewCommand())
	return []*cobra.Command{chaos.NewCommand(), bench}
}

// Command tandem-bench holds tandem's tools, apart from the server binary:
// `tandem-bench chaos` (the Jepsen-style harness, internal/tools/chaos),
// `tandem-bench bench failover`, `tandem-bench bench commit`,
// `tandem-bench bench pubsub`, `tandem-bench bench apps` and
// `tandem-bench bench reads` (the benchmarks, internal/tools/failbench,
// internal/tools/commitbench, internal/tools/pubsubbench,
// internal/tools/appsbench and internal/tools/readbench).
// `tandem chaos` and `tandem bench` run it (found beside tandem or on
// PATH), so users keep the one-command way in.
//
// The tools start clusters of the tandem binary given by --tandem, else
// `tandem` beside this binary, else on PATH (internal/tools/tandembin).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/tools/appsbench"
	"github.com/tandemdb/tandem/internal/tools/chaos"
	"github.com/tandemdb/tandem/internal/tools/commitbench"
	"github.com/tandemdb/tandem/internal/tools/failbench"
	"github.com/tandemdb/tandem/internal/tools/pubsubbench"
	"github.com/tandemdb/tandem/internal/tools/readbench"
	"github.com/tandemdb/tandem/internal/tools/tandembin"
)

func main() {
	var binary string
	root := &cobra.Command{
		Use:           "tandem-bench",
		Short:         "tandem's tools: the chaos harness and the benchmarks",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(*cobra.Command, []string) {
			tandembin.Set(binary)
		},
	}
	root.PersistentFlags().StringVar(&binary, "tandem", "", "the tandem binary whose processes the tools run (default: tandem beside this binary, else on PATH)")
	bench := &cobra.Command{Use: "bench", Short: "Benchmarks"}
	bench.AddCommand(failbench.NewCommand(), commitbench.NewCommand(), pubsubbench.NewCommand(), appsbench.NewCommand(), readbench.NewCommand())
	root.AddCommand(chaos.NewCommand(), bench)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tandem-bench:", err)
		os.Exit(1)
	}
}

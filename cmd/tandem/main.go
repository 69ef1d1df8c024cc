// Command tandem is the replicated key-value store: `tandem up` runs a local
// cluster, `tandem server` one node, `tandem status` reports on a cluster.
// It links no tool: `tandem chaos` and `tandem bench` run the tools binary,
// tandem-bench (cmd/tandem-bench), found beside it or on PATH.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "tandem",
		Short:         "tandem: a replicated, Redis-compatible key-value store",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serverCmd(), upCmd(), statusCmd(), orchestratorCmd(), promoteCmd(), switchoverCmd(), modeCmd(), failoverPolicyCmd())
	root.AddCommand(toolCommands()...)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "tandem:", err)
		os.Exit(1)
	}
}

package main

import (
	"github.com/spf13/cobra"

	"github.com/tandemdb/tandem/internal/chaos"
	"github.com/tandemdb/tandem/internal/failbench"
)

// extraCommands lists commands built in other packages.
func extraCommands() []*cobra.Command {
	return []*cobra.Command{chaos.NewCommand(), failbench.NewCommand()}
}

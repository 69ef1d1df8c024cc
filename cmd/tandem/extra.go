package main

import "github.com/spf13/cobra"

// extraCommands lists commands wired from other packages (chaos, bench).
func extraCommands() []*cobra.Command { return nil }

package cli

import "github.com/spf13/cobra"

func runCommand(g *globals) *cobra.Command {
	return &cobra.Command{Use: "run ID FILE", Short: "Run a code file in a sandbox", Hidden: true}
}

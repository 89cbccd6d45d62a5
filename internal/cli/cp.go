package cli

import "github.com/spf13/cobra"

func cpCommand(g *globals) *cobra.Command {
	return &cobra.Command{Use: "cp SRC DST", Short: "Copy files between the host and a sandbox", Hidden: true}
}

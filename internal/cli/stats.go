package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func statsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stats ID",
		Short: "Show a started sandbox's CPU, memory, tasks, disk and network use",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := g.client().Metrics(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), m, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "cpu\t%.2f s\n", m.CPUSeconds)
				fmt.Fprintf(w, "memory\t%s / %s\n", mib(m.MemoryBytes), mib(m.MemoryLimitBytes))
				fmt.Fprintf(w, "tasks\t%d / %d\n", m.Pids, m.PidsLimit)
				fmt.Fprintf(w, "oom kills\t%d\n", m.OOMKills)
				fmt.Fprintf(w, "disk\t%s / %s\n", mib(m.DiskUsedBytes), mib(m.DiskLimitBytes))
				if n := m.Network; n != nil {
					fmt.Fprintf(w, "network tx\t%d bytes, %d packets\n", n.TxBytes, n.TxPackets)
					fmt.Fprintf(w, "network rx\t%d bytes, %d packets\n", n.RxBytes, n.RxPackets)
				}
			})
		},
	}
}

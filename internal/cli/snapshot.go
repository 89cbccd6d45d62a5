package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func snapshotTable(items []sbx.Snapshot) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tNAME\tSIZE\tCHECKSUM\tCREATED")
		for _, s := range items {
			sum := s.Checksum
			if len(sum) > 19 {
				sum = sum[:19]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.ID, s.Name, shortSize(s.Size), sum, ago(s.CreatedAt))
		}
	}
}

func shortSize(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%dK", (n+1023)>>10)
	}
	return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
}

func snapshotCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "State snapshots of a sandbox's files: create, ls, restore, rm",
	}
	var name string
	create := &cobra.Command{
		Use: "create SANDBOX [--name NAME]", Short: "Snapshot a sandbox's files (a started one is frozen for the copy)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sn, err := g.client().CreateSnapshot(cmd.Context(), args[0], name)
			if err != nil {
				return err
			}
			return g.printID(cmd.OutOrStdout(), sn, sn.ID)
		},
	}
	create.Flags().StringVar(&name, "name", "", "name (unique among the sandbox's snapshots; default: the ID)")
	ls := &cobra.Command{
		Use: "ls SANDBOX", Short: "List a sandbox's snapshots", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			items, err := g.client().ListSnapshots(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), items, snapshotTable(items))
		},
	}
	restore := &cobra.Command{
		Use: "restore SANDBOX SNAPSHOT", Short: "Roll a sandbox's files back to a snapshot (verified first)",
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb, err := g.client().RestoreSnapshot(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return g.printID(cmd.OutOrStdout(), sb, sb.ID)
		},
	}
	rm := &cobra.Command{
		Use: "rm SANDBOX SNAPSHOT...", Short: "Delete snapshots", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var failed error
			for _, sid := range args[1:] {
				if err := g.client().DeleteSnapshot(cmd.Context(), args[0], sid); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", sid, message(err))
					failed = exitError{1}
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), sid)
			}
			return failed
		},
	}
	cmd.AddCommand(create, ls, restore, rm)
	return cmd
}

func cloneCommand(g *globals) *cobra.Command {
	var (
		req        sbx.CloneRequest
		res        sbx.Resources
		env, label []string
	)
	cmd := &cobra.Command{
		Use:   "clone SRC [--name NAME] [-e K=V]... [--cpu N] ...",
		Short: "Create a started sandbox from another's current files; the source keeps running",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if req.Env, err = kv(env, "--env"); err != nil {
				return err
			}
			if len(label) > 0 {
				if req.Labels, err = kv(label, "--label"); err != nil {
					return err
				}
			}
			if res != (sbx.Resources{}) {
				r := res
				req.Resources = &r
			}
			sb, err := g.client().CloneSandbox(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return g.printID(cmd.OutOrStdout(), sb, sb.ID)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "the clone's name")
	f.StringVar(&req.Runtime, "runtime", "", "runtime class (default: the source's)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE, over the source's (repeatable)")
	f.StringArrayVarP(&label, "label", "l", nil, "label KEY=VALUE (repeatable; replaces the source's labels)")
	resourceFlags(cmd, &res)
	return cmd
}

// resourceFlags are the resource flags of clone and restart.
func resourceFlags(cmd *cobra.Command, res *sbx.Resources) {
	f := cmd.Flags()
	f.Float64Var(&res.CPU, "cpu", 0, "CPU cores (fractional)")
	f.Int64Var(&res.MemoryMB, "memory", 0, "memory limit in MiB")
	f.Int64Var(&res.DiskMB, "disk", 0, "writable layer size in MiB (grow only)")
	f.Int64Var(&res.Pids, "pids", 0, "maximum number of processes")
}

func resetCommand(g *globals) *cobra.Command {
	var hard bool
	cmd := &cobra.Command{
		Use:   "reset [--hard] ID",
		Short: "Kill every process and start the entrypoint again; --hard also discards the sandbox's files",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mode := sbx.ResetSoft
			if hard {
				mode = sbx.ResetHard
			}
			sb, err := g.client().ResetSandbox(cmd.Context(), args[0], mode)
			if err != nil {
				return err
			}
			return g.printID(cmd.OutOrStdout(), sb, sb.ID)
		},
	}
	cmd.Flags().BoolVar(&hard, "hard", false, "discard the writable layer: back to the image's files")
	return cmd
}

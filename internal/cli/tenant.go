package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func tenantCommand(g *globals) *cobra.Command {
	t := &cobra.Command{Use: "tenant", Short: "Manage tenants (admin key)"}
	var req sbx.CreateTenantRequest
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a tenant", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			tn, err := g.client().CreateTenant(cmd.Context(), req)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), tn, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, tn.ID) })
		},
	}
	create.Flags().IntVar(&req.Limits.MaxSandboxes, "max-sandboxes", 0, "most sandboxes at once")
	create.Flags().Float64Var(&req.Limits.MaxCPU, "max-cpu", 0, "most CPU cores per sandbox")
	create.Flags().Int64Var(&req.Limits.MaxMemoryMB, "max-memory", 0, "most memory per sandbox, MiB")
	create.Flags().Int64Var(&req.Limits.MaxDiskMB, "max-disk", 0, "most disk per sandbox, MiB")
	create.Flags().Int64Var(&req.Limits.MaxPids, "max-pids", 0, "most processes per sandbox")
	ls := &cobra.Command{
		Use: "ls", Short: "List tenants", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			items, err := g.client().ListTenants(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), items, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tNAME\tADMIN\tCREATED")
				for _, t := range items {
					fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", t.ID, t.Name, t.Admin, ago(t.CreatedAt))
				}
			})
		},
	}
	t.AddCommand(create, ls)
	return t
}

func keyCommand(g *globals) *cobra.Command {
	k := &cobra.Command{Use: "key", Short: "Manage API keys (admin key)"}
	var tenant, name string
	create := &cobra.Command{
		Use: "create", Short: "Create an API key; the secret is printed once", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := g.client().CreateKey(cmd.Context(), tenant, name)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), key, func(tw *tabwriter.Writer) { fmt.Fprintln(tw, key.Key) })
		},
	}
	create.Flags().StringVar(&name, "name", "", "a name for the key")
	ls := &cobra.Command{
		Use: "ls", Short: "List a tenant's keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			items, err := g.client().ListKeys(cmd.Context(), tenant)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), items, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tCREATED")
				for _, k := range items {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, ago(k.CreatedAt))
				}
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm KEYID", Short: "Revoke a key", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().DeleteKey(cmd.Context(), tenant, args[0])
		},
	}
	for _, c := range []*cobra.Command{create, ls, rm} {
		c.Flags().StringVar(&tenant, "tenant", "", "tenant ID")
		c.MarkFlagRequired("tenant")
	}
	k.AddCommand(create, ls, rm)
	return k
}

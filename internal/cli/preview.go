package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func parsePortArg(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q: want a number from 1 to 65535", s)
	}
	return n, nil
}

func previewCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "preview",
		Short: "Preview URLs: reach a sandbox's ports over HTTP and WebSocket",
		Long: `Preview URLs reach a port inside a sandbox through the daemon, in every network mode:
  http://{port}-{id}.{preview domain}/        (wildcard DNS)
  http://{daemon}/preview/{id}/{port}/        (no DNS needed)
A private sandbox's ports need its token: header X-Sbx-Preview-Token, or ?token= (which sets a cookie).`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "url ID PORT",
		Short: "Print the preview URLs of a port and the sandbox's preview token",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := parsePortArg(args[1])
			if err != nil {
				return err
			}
			l, err := g.client().Preview(cmd.Context(), args[0], port)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), l, func(tw *tabwriter.Writer) {
				if l.URL != "" {
					fmt.Fprintf(tw, "URL\t%s\n", l.URL)
				}
				fmt.Fprintf(tw, "PATH URL\t%s\n", l.PathURL)
				access := "private (send the token)"
				if l.Public {
					access = "public (no token needed)"
				}
				fmt.Fprintf(tw, "ACCESS\t%s\n", access)
				fmt.Fprintf(tw, "TOKEN\t%s\n", l.Token)
			})
		},
	})
	var ttl time.Duration
	sign := &cobra.Command{
		Use:   "sign ID PORT [--ttl 1h]",
		Short: "Mint a signed preview URL for one port, valid for --ttl or until revoked",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := parsePortArg(args[1])
			if err != nil {
				return err
			}
			if ttl < time.Second {
				return fmt.Errorf("--ttl %v: at least 1s", ttl)
			}
			sp, err := g.client().SignPreview(cmd.Context(), args[0], port, ttl)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), sp, func(tw *tabwriter.Writer) {
				if sp.URL != "" {
					fmt.Fprintf(tw, "URL\t%s\n", sp.URL)
				}
				fmt.Fprintf(tw, "PATH URL\t%s\n", sp.PathURL)
				fmt.Fprintf(tw, "TOKEN\t%s\n", sp.Token)
				fmt.Fprintf(tw, "EXPIRES\t%s\n", sp.ExpiresAt.Local().Format(time.RFC3339))
			})
		},
	}
	sign.Flags().DurationVar(&ttl, "ttl", time.Hour, "validity (at most 168h)")
	cmd.AddCommand(sign)
	cmd.AddCommand(&cobra.Command{
		Use:   "revoke ID PORT TOKEN",
		Short: "Revoke a signed preview token",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			port, err := parsePortArg(args[1])
			if err != nil {
				return err
			}
			return g.client().RevokePreview(cmd.Context(), args[0], port, args[2])
		},
	})
	var off bool
	public := &cobra.Command{
		Use:   "public ID [--off]",
		Short: "Serve a sandbox's preview URLs without a token (--off: token only again)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb, err := g.client().SetPublic(cmd.Context(), args[0], !off)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), sb, func(tw *tabwriter.Writer) {
				if sb.Public {
					fmt.Fprintf(tw, "%s\tpublic\n", sb.ID)
				} else {
					fmt.Fprintf(tw, "%s\tprivate\n", sb.ID)
				}
			})
		},
	}
	public.Flags().BoolVar(&off, "off", false, "make the previews private again")
	cmd.AddCommand(public)
	return cmd
}

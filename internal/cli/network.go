package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// networkFlags are the egress-policy flags shared by create and network.
type networkFlags struct {
	mode        string
	blockAll    bool
	open        bool
	allow, deny []string
}

func (n *networkFlags) policyFlags(f *pflag.FlagSet) {
	f.BoolVar(&n.blockAll, "block-all", false, "egress policy: nothing leaves the sandbox")
	f.StringArrayVar(&n.allow, "allow", nil, "egress policy: only this CIDR (repeatable)")
	f.StringArrayVar(&n.deny, "deny", nil, "egress policy: never this CIDR (repeatable; checked before --allow)")
	f.BoolVar(&n.open, "open", false, "egress policy: everything but the host, other sandboxes and link-local")
}

func (n *networkFlags) given() bool {
	return n.blockAll || n.open || len(n.allow) > 0 || len(n.deny) > 0
}

func (n *networkFlags) policy() (sbx.NetworkPolicy, error) {
	if n.open && (n.blockAll || len(n.allow) > 0 || len(n.deny) > 0) {
		return sbx.NetworkPolicy{}, errors.New("--open excludes --block-all, --allow and --deny")
	}
	p := sbx.NetworkPolicy{BlockAll: n.blockAll, Allow: n.allow, Deny: n.deny}
	if n.open {
		p.Allow = []string{"0.0.0.0/0"}
	}
	return p, nil
}

// request is create's network field: nil when no flag was given.
func (n *networkFlags) request(cmd *cobra.Command) (*sbx.NetworkRequest, error) {
	if n.mode == "" && !n.given() {
		return nil, nil
	}
	mode := n.mode
	if mode == "" && n.given() {
		mode = sbx.NetworkBridge // a policy implies a network
	}
	p, err := n.policy()
	if err != nil {
		return nil, err
	}
	return &sbx.NetworkRequest{Mode: mode, BlockAll: p.BlockAll, Allow: p.Allow, Deny: p.Deny}, nil
}

func networkTable(n sbx.Network) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "MODE\t%s\n", n.Mode)
		if n.Mode != sbx.NetworkBridge {
			return
		}
		fmt.Fprintf(tw, "IP\t%s\n", n.IP)
		switch {
		case n.BlockAll:
			fmt.Fprintln(tw, "EGRESS\tblock all")
		case len(n.Allow) == 0 && len(n.Deny) == 0:
			fmt.Fprintln(tw, "EGRESS\topen")
		default:
			if len(n.Deny) > 0 {
				fmt.Fprintf(tw, "DENY\t%s\n", strings.Join(n.Deny, " "))
			}
			if len(n.Allow) > 0 {
				fmt.Fprintf(tw, "ALLOW\t%s\n", strings.Join(n.Allow, " "))
			}
		}
	}
}

func networkCommand(g *globals) *cobra.Command {
	var nf networkFlags
	var audit, follow bool
	cmd := &cobra.Command{
		Use:   "network ID [--block-all | --open | --allow CIDR... --deny CIDR...] | --audit [-f]",
		Short: "Show a sandbox's network, replace its egress policy live, or show what it connected to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if audit {
				return showAudit(cmd, g, args[0], follow)
			}
			var (
				n   sbx.Network
				err error
			)
			if nf.given() {
				p, perr := nf.policy()
				if perr != nil {
					return perr
				}
				n, err = g.client().SetNetworkPolicy(cmd.Context(), args[0], p)
			} else {
				n, err = g.client().Network(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), n, networkTable(n))
		},
	}
	nf.policyFlags(cmd.Flags())
	cmd.Flags().BoolVar(&audit, "audit", false, "show the egress audit log: connections opened or tried, with their verdicts")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "with --audit: keep printing new entries")
	return cmd
}

func showAudit(cmd *cobra.Command, g *globals, id string, follow bool) error {
	out := cmd.OutOrStdout()
	line := func(e sbx.AuditEntry) error {
		if g.json {
			return json.NewEncoder(out).Encode(e)
		}
		dst := e.Dst
		if e.Port != 0 {
			dst = fmt.Sprintf("%s:%d", e.Dst, e.Port)
		}
		_, err := fmt.Fprintf(out, "%s  %-7s  %-4s  %s\n", e.Time.Format("15:04:05.000"), e.Verdict, e.Protocol, dst)
		return err
	}
	if follow {
		return g.client().FollowNetworkAudit(cmd.Context(), id, 0, line)
	}
	entries, err := g.client().NetworkAudit(cmd.Context(), id, 0)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := line(e); err != nil {
			return err
		}
	}
	return nil
}

package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// lifecycleFlags are --auto-stop, --auto-archive and --auto-delete.
type lifecycleFlags struct{ stop, archive, del string }

func (l *lifecycleFlags) add(f *pflag.FlagSet) {
	f.StringVar(&l.stop, "auto-stop", "", `stop after this long without activity, e.g. 15m ("never")`)
	f.StringVar(&l.archive, "auto-archive", "", `archive after this long stopped, e.g. 24h ("never")`)
	f.StringVar(&l.del, "auto-delete", "", `delete after this long stopped ("0": as soon as it stops; "never")`)
}

// policy returns the policy the flags set (nil when none is).
func (l *lifecycleFlags) policy() (*sbx.LifecyclePolicy, error) {
	var p sbx.LifecyclePolicy
	set := false
	for _, f := range []struct {
		name, v string
		dst     **int64
		never   int64
	}{
		{"--auto-stop", l.stop, &p.AutoStopSeconds, 0},
		{"--auto-archive", l.archive, &p.AutoArchiveSeconds, 0},
		{"--auto-delete", l.del, &p.AutoDeleteSeconds, -1},
	} {
		if f.v == "" {
			continue
		}
		set = true
		if strings.EqualFold(f.v, "never") {
			n := f.never
			*f.dst = &n
			continue
		}
		d, err := time.ParseDuration(f.v)
		if err != nil || d < 0 || d%time.Second != 0 {
			return nil, fmt.Errorf("%s %q: want a duration in whole seconds such as 90s, 15m or 24h, or never", f.name, f.v)
		}
		*f.dst = sbx.Seconds(d)
	}
	if !set {
		return nil, nil
	}
	return &p, nil
}

func lifecycleCommands(g *globals) []*cobra.Command {
	archive := &cobra.Command{
		Use:   "archive ID...",
		Short: "Archive stopped sandboxes: their files go to the archive store and the local disk is freed; start restores them",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var failed error
			for _, id := range args {
				sb, err := g.client().ArchiveSandbox(cmd.Context(), id)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", id, message(err))
					failed = exitError{1}
					continue
				}
				if g.json {
					g.print(cmd.OutOrStdout(), sb, nil)
				} else if a := sb.Lifecycle.Archive; a != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s\tarchived: %s of data stored in %s\n", id, mib(a.DataBytes), mib(a.StoredBytes))
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), id)
				}
			}
			return failed
		},
	}

	var lf lifecycleFlags
	policy := &cobra.Command{
		Use:   "lifecycle ID",
		Short: "Show or change a sandbox's auto-stop, auto-archive and auto-delete",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := lf.policy()
			if err != nil {
				return err
			}
			var sb sbx.Sandbox
			if p == nil {
				sb, err = g.client().GetSandbox(cmd.Context(), args[0])
			} else {
				sb, err = g.client().SetLifecycle(cmd.Context(), args[0], *p)
			}
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), sb.Lifecycle, func(w *tabwriter.Writer) {
				l := sb.Lifecycle
				fmt.Fprintf(w, "auto-stop\t%s\n", seconds(l.AutoStopSeconds, 0))
				fmt.Fprintf(w, "auto-archive\t%s\n", seconds(l.AutoArchiveSeconds, 0))
				fmt.Fprintf(w, "auto-delete\t%s\n", seconds(l.AutoDeleteSeconds, -1))
				fmt.Fprintf(w, "last activity\t%s\n", l.LastActivityAt.Format(time.RFC3339))
				if l.KeepaliveUntil != nil {
					fmt.Fprintf(w, "keep-alive until\t%s\n", l.KeepaliveUntil.Format(time.RFC3339))
				}
				if l.StoppedAt != nil {
					fmt.Fprintf(w, "at rest since\t%s\n", l.StoppedAt.Format(time.RFC3339))
				}
			})
		},
	}
	lf.add(policy.Flags())

	keepalive := &cobra.Command{
		Use:   "keepalive ID [DURATION]",
		Short: "Record activity and hold off a sandbox's auto-stop for DURATION (e.g. 2h; 0 ends a lease)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d time.Duration
			if len(args) == 2 {
				var err error
				if d, err = time.ParseDuration(args[1]); err != nil || d < 0 {
					return fmt.Errorf("duration %q: want e.g. 30m or 2h", args[1])
				}
			}
			sb, err := g.client().Keepalive(cmd.Context(), args[0], d)
			if err != nil {
				return err
			}
			if g.json {
				return g.print(cmd.OutOrStdout(), sb.Lifecycle, nil)
			}
			if u := sb.Lifecycle.KeepaliveUntil; u != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "%s\tno auto-stop before %s\n", sb.ID, u.Format(time.RFC3339))
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), sb.ID)
			}
			return nil
		},
	}
	return []*cobra.Command{archive, policy, keepalive, statsCommand(g)}
}

// seconds shows a lifecycle duration, with never for the never value.
func seconds(v, never int64) string {
	if v == never {
		return "never"
	}
	if v == 0 {
		return "at once"
	}
	return (time.Duration(v) * time.Second).String()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

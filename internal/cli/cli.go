// Package cli is sbx's command line: a client of the daemon through the
// public Go SDK (sdk/go). Every command prints a human table by default and
// the API objects with --json.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// exitError carries a command's exit code (e.g. of `sbx exec`).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the CLI with args and returns the process exit code. extra adds
// commands wired elsewhere (the daemon's `serve`).
func Main(args []string, extra ...*cobra.Command) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	root.AddCommand(extra...)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintln(os.Stderr, "sbx:", message(err))
		return 1
	}
}

func message(err error) string {
	var e *sbx.Error
	if errors.As(err, &e) && e.Detail != "" {
		return e.Detail
	}
	return err.Error()
}

type globals struct {
	url, key string
	json     bool
}

func (g *globals) client() *sbx.Client {
	url, key := g.url, g.key
	if url == "" {
		url = os.Getenv("SBX_URL")
	}
	if url == "" {
		url = "http://127.0.0.1:7070"
	}
	if key == "" {
		key = os.Getenv("SBX_API_KEY")
	}
	if key == "" {
		if b, err := os.ReadFile("/var/lib/sbx/admin.key"); err == nil {
			key = strings.TrimSpace(string(b))
		}
	}
	return sbx.New(url, key)
}

func (g *globals) print(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	if g.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

// listCommand is an "ls" without arguments: list's items in the table
// that table draws (JSON with --json).
func listCommand[T any](g *globals, short string, list func(*sbx.Client, context.Context) ([]T, error),
	table func([]T) func(*tabwriter.Writer)) *cobra.Command {
	return &cobra.Command{
		Use: "ls", Short: short, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			items, err := list(g.client(), cmd.Context())
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), items, table(items))
		},
	}
}

// inspectCommand is an "inspect ARG": what get returns for ARG, always as
// JSON.
func inspectCommand[T any](g *globals, use, short string, get func(*sbx.Client, context.Context, string) (T, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := get(g.client(), cmd.Context(), args[0])
			if err != nil {
				return err
			}
			g.json = true
			return g.print(cmd.OutOrStdout(), v, nil)
		},
	}
}

// printID prints what a create-like command made: v as JSON with --json,
// else its ID alone on a line, for scripts to capture.
func (g *globals) printID(w io.Writer, v any, id string) error {
	if g.json {
		return g.print(w, v, nil)
	}
	fmt.Fprintln(w, id)
	return nil
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "sbx",
		Short:         "sbx runs untrusted code in isolated sandboxes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.url, "url", "", "daemon URL (env SBX_URL, default http://127.0.0.1:7070)")
	pf.StringVar(&g.key, "api-key", "", "API key (env SBX_API_KEY)")
	pf.BoolVar(&g.json, "json", false, "print JSON")
	root.AddCommand(sandboxCommands(g)...)
	root.AddCommand(lifecycleCommands(g)...)
	root.AddCommand(cpCommand(g))
	root.AddCommand(snapshotCommand(g), cloneCommand(g), resetCommand(g))

	root.AddCommand(runCommand(g), contextCommand(g))
	root.AddCommand(imageCommand(g), templateCommand(g), tenantCommand(g), keyCommand(g), versionCommand(g))
	root.AddCommand(volumeCommand(g))
	return root
}

func versionCommand(g *globals) *cobra.Command {
	return &cobra.Command{Use: "version", Short: "Print the daemon's version", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h, err := g.client().Health(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "daemon %s\n", h.Version)
			return nil
		}}
}

func kv(pairs []string, what string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", what, p)
		}
		m[k] = v
	}
	return m, nil
}

func ago(t time.Time) string {
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

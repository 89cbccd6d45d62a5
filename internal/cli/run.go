package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// languageOf infers a code file's language from its extension.
func languageOf(file string) string {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".py":
		return sbx.LangPython
	case ".js", ".mjs", ".cjs":
		return sbx.LangJavaScript
	case ".ts", ".mts", ".cts":
		return sbx.LangTypeScript
	case ".sh", ".bash":
		return sbx.LangBash
	}
	return ""
}

// artifactName is the file an artifact is saved as: its 1-based index and
// its title, made safe for a file name.
func artifactName(i int, a sbx.Artifact) string {
	var b strings.Builder
	for _, r := range a.Title {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('_')
		}
	}
	title := strings.Trim(b.String(), "._")
	if len(title) > 60 {
		title = title[:60]
	}
	if title == "" {
		return fmt.Sprintf("%d.png", i)
	}
	return fmt.Sprintf("%d-%s.png", i, title)
}

func runCommand(g *globals) *cobra.Command {
	var (
		lang, contextID, artifacts, cwd, user string
		env                                   []string
		timeout                               float64
	)
	cmd := &cobra.Command{
		Use:   "run [flags] ID FILE|- [args...]",
		Short: "Run a code file in a sandbox, streaming its output; exits with its exit code",
		Long: `Run a code file (python, javascript, typescript or bash, inferred from
the extension .py, .js, .ts, .sh unless --lang is given; - reads the code
from standard input) in a sandbox, once or in a context (--context, see
"sbx context"). Matplotlib figures come back as PNG artifacts, saved with
--artifacts DIR as N-TITLE.png. In a context the value of a last
expression is printed, and an exception's traceback goes to stderr.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			envMap, err := kv(env, "--env")
			if err != nil {
				return err
			}
			id, file := args[0], args[1]
			var code []byte
			if file == "-" {
				code, err = io.ReadAll(cmd.InOrStdin())
			} else {
				code, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			if lang == "" && contextID == "" {
				if lang = languageOf(file); lang == "" {
					return fmt.Errorf("cannot tell the language of %s: use --lang python|javascript|typescript|bash", file)
				}
			}
			if artifacts != "" {
				if err := os.MkdirAll(artifacts, 0o755); err != nil {
					return err
				}
			}
			req := sbx.CodeRequest{
				Language: lang, Code: string(code), Argv: args[2:], Env: envMap, Cwd: cwd, User: user,
				TimeoutSeconds: timeout, ContextID: contextID,
			}
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			n := 0
			res, err := g.client().RunCodeStream(cmd.Context(), id, req, sbx.CodeHandlers{
				Stdout: func(b []byte) error { _, err := stdout.Write(b); return err },
				Stderr: func(b []byte) error { _, err := stderr.Write(b); return err },
				Artifact: func(a sbx.Artifact) error {
					if a.Type == "text/plain" {
						_, err := fmt.Fprintln(stdout, a.Text)
						return err
					}
					n++
					what := a.Kind + " chart"
					if a.Title != "" {
						what += fmt.Sprintf(" %q", a.Title)
					}
					if artifacts == "" {
						fmt.Fprintf(stderr, "sbx: figure %d: %s (save it with --artifacts DIR)\n", n, what)
						return nil
					}
					path := filepath.Join(artifacts, artifactName(n, a))
					if err := os.WriteFile(path, a.Data, 0o644); err != nil {
						return err
					}
					fmt.Fprintf(stderr, "sbx: figure %d: %s saved as %s\n", n, what, path)
					return nil
				},
			})
			if err != nil {
				return err
			}
			if res.Error != nil {
				if res.Error.Traceback != "" {
					fmt.Fprint(stderr, res.Error.Traceback)
					if !strings.HasSuffix(res.Error.Traceback, "\n") {
						fmt.Fprintln(stderr)
					}
				} else {
					fmt.Fprintf(stderr, "%s: %s\n", res.Error.Name, res.Error.Value)
				}
			}
			if res.TimedOut {
				fmt.Fprintln(stderr, "sbx: the code timed out")
			}
			if res.OOMKilled {
				fmt.Fprintln(stderr, "sbx: the code was killed for running out of memory")
			}
			if res.ExitCode != 0 {
				return exitError{res.ExitCode}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.StringVarP(&lang, "lang", "l", "", "language: python, javascript, typescript or bash (default: from the extension)")
	f.StringVarP(&contextID, "context", "c", "", "run in this context (see sbx context create)")
	f.StringVar(&artifacts, "artifacts", "", "save figures as PNG files in this directory")
	f.Float64Var(&timeout, "timeout", 0, "seconds after which the code is killed (in a context: interrupted)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE")
	f.StringVarP(&cwd, "workdir", "w", "", "working directory")
	f.StringVarP(&user, "user", "u", "", "user (name, uid or uid:gid)")
	return cmd
}

func contextTable(list []sbx.CodeContext) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tLANGUAGE\tSTATE\tRUNS\tCWD\tCREATED")
		for _, c := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", c.ID, c.Language, c.State, c.Runs, c.Cwd, ago(c.CreatedAt))
		}
	}
}

// contextCommand manages code contexts, the persistent interpreters that
// `sbx run --context` runs code in.
func contextCommand(g *globals) *cobra.Command {
	root := &cobra.Command{Use: "context", Short: "Manage code contexts (persistent interpreters) of a sandbox"}
	var (
		cwd, user, lang string
		env             []string
	)
	create := &cobra.Command{
		Use: "create ID", Short: "Start a code context and print its ID", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			envMap, err := kv(env, "--env")
			if err != nil {
				return err
			}
			c, err := g.client().CreateContext(cmd.Context(), args[0], sbx.CreateContextRequest{Language: lang, Cwd: cwd, Env: envMap, User: user})
			if err != nil {
				return err
			}
			return g.printID(cmd.OutOrStdout(), c, c.ID)
		},
	}
	create.Flags().StringVarP(&lang, "lang", "l", "", "language: python (default) or javascript")
	create.Flags().StringVarP(&cwd, "workdir", "w", "", "working directory")
	create.Flags().StringVarP(&user, "user", "u", "", "user (name, uid or uid:gid)")
	create.Flags().StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE")
	ls := &cobra.Command{
		Use: "ls ID", Short: "List a sandbox's code contexts", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := g.client().ListContexts(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), list, contextTable(list))
		},
	}
	rm := &cobra.Command{
		Use: "rm ID CONTEXT...", Short: "Delete code contexts", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var failed bool
			for _, c := range args[1:] {
				if err := g.client().DeleteContext(cmd.Context(), args[0], c); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "sbx: %s: %s\n", c, message(err))
					failed = true
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), c)
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	restart := &cobra.Command{
		Use: "restart ID CONTEXT", Short: "Restart a code context: a fresh interpreter, same ID", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client().RestartContext(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), c, contextTable([]sbx.CodeContext{c}))
		},
	}
	root.AddCommand(create, ls, restart, rm)
	return root
}

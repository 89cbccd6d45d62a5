package cli

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func sandboxTable(items []sbx.Sandbox) func(*tabwriter.Writer) {
	return func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tSTATE\tCPU\tMEM\tCREATED")
		for _, s := range items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%g\t%dM\t%s\n", s.ID, s.Name, s.Image, s.State, s.Resources.CPU, s.Resources.MemoryMB, ago(s.CreatedAt))
		}
	}
}

func sandboxCommands(g *globals) []*cobra.Command {
	var (
		req        sbx.CreateSandboxRequest
		res        sbx.Resources
		env, label []string
		entrypoint string
		netFlags   networkFlags
		lcFlags    lifecycleFlags
		volumes    []string
	)
	create := &cobra.Command{
		Use:   "create [flags] [-- cmd args...]",
		Short: "Create a sandbox; returns once it is started",
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if req.Env, err = kv(env, "--env"); err != nil {
				return err
			}
			if req.Labels, err = kv(label, "--label"); err != nil {
				return err
			}
			if res != (sbx.Resources{}) {
				r := res
				req.Resources = &r
			}
			if entrypoint != "" {
				req.Entrypoint = strings.Fields(entrypoint)
			}
			req.Cmd = args
			if req.Network, err = netFlags.request(cmd); err != nil {
				return err
			}
			if req.Lifecycle, err = lcFlags.policy(); err != nil {
				return err
			}
			if req.Volumes, err = parseVolumeFlags(volumes); err != nil {
				return err
			}
			sb, err := g.client().CreateSandbox(cmd.Context(), req)
			if err != nil {
				return err
			}
			return g.printID(cmd.OutOrStdout(), sb, sb.ID)
		},
	}
	f := create.Flags()
	f.StringVar(&req.Name, "name", "", "name (unique among your sandboxes)")
	f.StringVar(&req.Image, "image", "", "image (default: the daemon's default image)")
	f.StringVar(&req.Template, "template", "", "create from this template instead of an image (see sbx template)")
	f.StringVar(&req.Runtime, "runtime", "", "runtime class (crun, runc)")
	f.StringArrayVarP(&env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringArrayVarP(&label, "label", "l", nil, "label KEY=VALUE (repeatable)")
	f.Float64Var(&res.CPU, "cpu", 0, "CPU cores (fractional)")
	f.Int64Var(&res.MemoryMB, "memory", 0, "memory limit in MiB")
	f.Int64Var(&res.DiskMB, "disk", 0, "writable layer size in MiB")
	f.Int64Var(&res.Pids, "pids", 0, "maximum number of processes")
	f.StringVarP(&req.User, "user", "u", "", "user of the entrypoint and of execs")
	f.StringVarP(&req.Workdir, "workdir", "w", "", "working directory")
	f.StringVar(&entrypoint, "entrypoint", "", "override the image's entrypoint")
	f.StringVar(&netFlags.mode, "network", "", "network mode: none (loopback only) or bridge (default: the daemon's)")
	netFlags.policyFlags(f)
	lcFlags.add(f)
	f.StringArrayVarP(&volumes, "volume", "v", nil, volumeFlagHelp)
	f.BoolVar(&req.Public, "public", false, "serve preview URLs without a token")

	var lsLabels, lsStates []string
	var all bool
	ls := &cobra.Command{
		Use: "ls", Short: "List sandboxes", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			labels, err := kv(lsLabels, "--label")
			if err != nil {
				return err
			}
			opts := sbx.ListOptions{Labels: labels, States: lsStates}
			var items []sbx.Sandbox
			if all {
				items, err = g.client().ListAllSandboxes(cmd.Context(), opts)
			} else {
				var page sbx.SandboxList
				page, err = g.client().ListSandboxes(cmd.Context(), opts)
				items = page.Items
			}
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), items, sandboxTable(items))
		},
	}
	ls.Flags().StringArrayVarP(&lsLabels, "label", "l", nil, "only sandboxes with this label KEY=VALUE")
	ls.Flags().StringArrayVar(&lsStates, "state", nil, "only sandboxes in this state")
	ls.Flags().BoolVarP(&all, "all", "a", false, "every page")

	inspect := inspectCommand(g, "inspect ID", "Show a sandbox as JSON", (*sbx.Client).GetSandbox)
	lifecycle := func(use, short string, do func(cmd *cobra.Command, id string) (sbx.Sandbox, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID...", Short: short, Args: cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var failed error
				for _, id := range args {
					sb, err := do(cmd, id)
					if err != nil {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", id, message(err))
						failed = exitError{1}
						continue
					}
					if g.json {
						g.print(cmd.OutOrStdout(), sb, nil)
					} else {
						fmt.Fprintln(cmd.OutOrStdout(), id)
					}
				}
				return failed
			},
		}
	}
	start := lifecycle("start", "Start stopped sandboxes", func(cmd *cobra.Command, id string) (sbx.Sandbox, error) {
		return g.client().StartSandbox(cmd.Context(), id)
	})
	var grace = new(float64)
	stop := lifecycle("stop", "Stop sandboxes (SIGTERM, then SIGKILL after the grace period); files are kept", func(cmd *cobra.Command, id string) (sbx.Sandbox, error) {
		return g.client().StopSandbox(cmd.Context(), id, secs(*grace))
	})
	stop.Flags().Float64Var(grace, "grace", 0, "seconds between SIGTERM and SIGKILL (default: the daemon's)")
	var (
		restartEnv []string
		restartRes sbx.Resources
	)
	restart := lifecycle("restart", "Restart sandboxes (with --env or resource flags: changed at the new start)", func(cmd *cobra.Command, id string) (sbx.Sandbox, error) {
		env, err := kv(restartEnv, "--env")
		if err != nil {
			return sbx.Sandbox{}, err
		}
		if len(env) == 0 && restartRes == (sbx.Resources{}) {
			return g.client().RestartSandbox(cmd.Context(), id)
		}
		req := sbx.RestartRequest{Env: env}
		if restartRes != (sbx.Resources{}) {
			r := restartRes
			req.Resources = &r
		}
		return g.client().RestartSandboxWith(cmd.Context(), id, req)
	})
	restart.Flags().StringArrayVarP(&restartEnv, "env", "e", nil, "environment variable KEY=VALUE, set at the new start (repeatable)")
	resourceFlags(restart, &restartRes)
	rm := lifecycle("rm", "Delete sandboxes and everything in them", func(cmd *cobra.Command, id string) (sbx.Sandbox, error) {
		return sbx.Sandbox{ID: id}, g.client().DeleteSandbox(cmd.Context(), id)
	})

	var rz sbx.ResizeRequest
	resize := &cobra.Command{
		Use: "resize ID", Short: "Change CPU and memory (live) or grow the disk (while stopped)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb, err := g.client().ResizeSandbox(cmd.Context(), args[0], rz)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), sb, sandboxTable([]sbx.Sandbox{sb}))
		},
	}
	resize.Flags().Float64Var(&rz.CPU, "cpu", 0, "CPU cores")
	resize.Flags().Int64Var(&rz.MemoryMB, "memory", 0, "memory in MiB")
	resize.Flags().Int64Var(&rz.DiskMB, "disk", 0, "disk in MiB (grow only, while stopped)")
	resize.Flags().Int64Var(&rz.Pids, "pids", 0, "maximum processes")

	labelCmd := &cobra.Command{
		Use: "label ID KEY=VALUE...", Short: "Replace a sandbox's labels", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := kv(args[1:], "label")
			if err != nil {
				return err
			}
			if labels == nil {
				labels = map[string]string{}
			}
			sb, err := g.client().SetLabels(cmd.Context(), args[0], labels)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), sb, func(tw *tabwriter.Writer) {
				for k, v := range sb.Labels {
					fmt.Fprintf(tw, "%s=%s\n", k, v)
				}
			})
		},
	}

	var (
		execUser, execDir string
		execEnv           []string
		execTimeout       float64
		interactive, tty  bool
	)
	execCmd := &cobra.Command{
		Use:   "exec [flags] ID [-- cmd args...]",
		Short: "Run a command in a sandbox, streaming its output; exits with its exit code",
		Long: `Run a command in a sandbox, streaming its output; exits with its exit code.

With -t the command runs on a terminal in the sandbox, wired to this one
(sbx exec -it ID for a shell: /bin/bash if the image has it, else /bin/sh).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			env, err := kv(execEnv, "--env")
			if err != nil {
				return err
			}
			argv := args[1:]
			if len(argv) > 0 && argv[0] == "--" {
				argv = argv[1:]
			}
			if tty {
				if execTimeout != 0 {
					return fmt.Errorf("--timeout cannot be used with -t")
				}
				req := sbx.CreatePTYRequest{Argv: argv, Cwd: execDir, Env: env, User: execUser}
				code, err := ttyExec(cmd.Context(), g.client(), args[0], req, cmd.InOrStdin(), cmd.OutOrStdout(), interactive)
				if err != nil {
					return err
				}
				if code != 0 {
					return exitError{code}
				}
				return nil
			}
			if len(argv) == 0 {
				return fmt.Errorf("no command given: sbx exec ID -- cmd args")
			}
			req := sbx.ExecRequest{Argv: argv, Cwd: execDir, Env: env, User: execUser, TimeoutSeconds: execTimeout}
			var exit sbx.ExitStatus
			if interactive {
				// Live stdin over the WebSocket exec: what is typed or
				// piped reaches the command as it comes.
				exit, err = interactiveExec(cmd.Context(), g.client(), args[0], req, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			} else {
				exit, err = g.client().ExecStream(cmd.Context(), args[0], req, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			if err != nil {
				return err
			}
			if exit.TimedOut {
				fmt.Fprintln(cmd.ErrOrStderr(), "sbx: the command timed out")
			}
			if exit.OOMKilled {
				fmt.Fprintln(cmd.ErrOrStderr(), "sbx: the command was killed for running out of memory")
			}
			if exit.Code != 0 {
				return exitError{exit.Code}
			}
			return nil
		},
	}
	execCmd.Flags().SetInterspersed(false)
	execCmd.Flags().StringVarP(&execUser, "user", "u", "", "user (name, uid or uid:gid)")
	execCmd.Flags().StringVarP(&execDir, "workdir", "w", "", "working directory")
	execCmd.Flags().StringArrayVarP(&execEnv, "env", "e", nil, "environment variable KEY=VALUE")
	execCmd.Flags().Float64Var(&execTimeout, "timeout", 0, "seconds after which the command's process group is killed")
	execCmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "send standard input to the command")
	execCmd.Flags().BoolVarP(&tty, "tty", "t", false, "run the command on a terminal (default command: the sandbox's shell)")

	var follow bool
	logs := &cobra.Command{
		Use: "logs ID", Short: "Print the output of a sandbox's entrypoint", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rc, err := g.client().Logs(cmd.Context(), args[0], follow)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(cmd.OutOrStdout(), rc)
			if cmd.Context().Err() != nil {
				return nil
			}
			return err
		},
	}
	logs.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")

	events := &cobra.Command{
		Use: "events ID", Short: "List a sandbox's events", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			evs, err := g.client().Events(cmd.Context(), args[0], 0)
			if err != nil {
				return err
			}
			return g.print(cmd.OutOrStdout(), evs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "TIME\tTYPE\tFROM\tTO\tMESSAGE")
				for _, e := range evs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format("15:04:05.000"), e.Type, e.From, e.To, e.Message)
				}
			})
		},
	}
	return []*cobra.Command{create, ls, inspect, start, stop, restart, rm, resize, labelCmd, execCmd, logs, events, networkCommand(g), previewCommand(g)}
}

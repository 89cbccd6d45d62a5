package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/sbx-sh/sbx/internal/config"
)

// Commands returns the daemon-side subcommands of sbx: `serve` and
// `config default`.
func Commands() []*cobra.Command {
	var (
		file     string
		listen   string
		stateDir string
		runDir   string
		level    string
		runtime  string
		allowVul bool
		cgParent string
		bridge   string
		table    string
		subnet   string
		netMode  string
		// lcInterval is how often the lifecycle timers run.
		lcInterval time.Duration
		prevDom    string
	)
	serve := &cobra.Command{
		Use:   "serve",
		Short: "Run the sbx daemon (HTTP API and sandbox engine); needs root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.Default()
			if file != "" {
				var err error
				if cfg, err = config.Load(file); err != nil {
					return err
				}
			}
			f := cmd.Flags()
			if f.Changed("listen") {
				cfg.Listen = listen
			}
			if f.Changed("state-dir") {
				cfg.StateDir = stateDir
			}
			if f.Changed("run-dir") {
				cfg.RunDir = runDir
			}
			if f.Changed("log-level") {
				cfg.LogLevel = level
			}
			if f.Changed("default-runtime") {
				cfg.DefaultRuntime = runtime
			}
			if f.Changed("cgroup-parent") {
				cfg.CgroupParent = cgParent
			}
			if f.Changed("network-bridge") {
				cfg.Network.Bridge = bridge
			}
			if f.Changed("network-table") {
				cfg.Network.Table = table
			}
			if f.Changed("network-subnet") {
				cfg.Network.Subnet = subnet
			}
			if f.Changed("network-default-mode") {
				cfg.Network.DefaultMode = netMode
			}
			if f.Changed("lifecycle-interval") {
				cfg.Lifecycle.Interval.Duration = lcInterval
			}
			if f.Changed("preview-domain") {
				cfg.Preview.Domain = prevDom
			}
			if f.Changed("allow-vulnerable-runtime") {
				cfg.AllowVulnerableRuntime = allowVul
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
				return fmt.Errorf("log level: %w", err)
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			cmd.SilenceUsage = true
			return Run(cfg, log, cmd.OutOrStdout())
		},
	}
	def := config.Default()
	f := serve.Flags()
	f.StringVar(&file, "config", "", "TOML configuration file")
	f.StringVar(&listen, "listen", def.Listen, "address of the HTTP API")
	f.StringVar(&stateDir, "state-dir", def.StateDir, "state directory")
	f.StringVar(&runDir, "run-dir", def.RunDir, "directory for sockets and runtime state")
	f.StringVar(&level, "log-level", def.LogLevel, "debug, info, warn or error")
	f.StringVar(&runtime, "default-runtime", def.DefaultRuntime, "default runtime class")
	f.StringVar(&cgParent, "cgroup-parent", def.CgroupParent, "parent cgroup of all sandboxes")
	f.StringVar(&bridge, "network-bridge", def.Network.Bridge, "bridge of bridged sandboxes")
	f.StringVar(&table, "network-table", def.Network.Table, "nftables table (inet) of sbx's rules")
	f.StringVar(&subnet, "network-subnet", def.Network.Subnet, "IPv4 subnet of bridged sandboxes")
	f.StringVar(&netMode, "network-default-mode", def.Network.DefaultMode, "none or bridge: network of a sandbox that asks for none")
	f.StringVar(&prevDom, "preview-domain", def.Preview.Domain, "host form of preview URLs: {port}-{id}.DOMAIN (default preview.localhost:<listen port>)")
	f.BoolVar(&allowVul, "allow-vulnerable-runtime", false, "start even with a runtime version that has known escapes")
	f.DurationVar(&lcInterval, "lifecycle-interval", def.Lifecycle.Interval.Duration, "how often auto-stop/archive/delete timers are checked")

	cfgCmd := &cobra.Command{Use: "config", Short: "Daemon configuration"}
	cfgCmd.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "Print the default configuration as TOML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := config.Default().Encode()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	return []*cobra.Command{serve, cfgCmd}
}

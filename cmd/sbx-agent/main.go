// Command sbx-agent is the init (PID 1) of every sbx sandbox: it reaps
// zombies, supervises the image's entrypoint and serves the host's agent
// protocol on an inherited listening socket. It is static and needs nothing
// from the image.
//
//	sbx-agent init --listen-fd 3 [--log-limit BYTES] [--] [entrypoint argv...]
//	sbx-agent version
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/sbx-sh/sbx/internal/agent"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "version":
		fmt.Printf("sbx-agent %s (protocol %s)\n", version, agent.Version)
	case "init":
		fs := flag.NewFlagSet("init", flag.ExitOnError)
		fd := fs.Int("listen-fd", 3, "inherited listening socket `fd`")
		limit := fs.Int("log-limit", 1<<20, "`bytes` of entrypoint output kept for logs")
		user := fs.String("user", "", "`user` of the entrypoint and default user of execs (name, uid or uid:gid)")
		fs.Parse(os.Args[2:])
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		err := agent.RunInit(context.Background(), agent.InitConfig{
			ListenFD:   *fd,
			Entrypoint: fs.Args(),
			LogLimit:   *limit,
			User:       *user,
			Logger:     log,
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "sbx-agent: %v\n", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: sbx-agent init --listen-fd N [--log-limit BYTES] [--] [entrypoint argv...]\n       sbx-agent version")
	os.Exit(2)
}

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// InitConfig configures RunInit.
type InitConfig struct {
	// ListenFD is the inherited listening unix socket (3 with the
	// runtime's --preserve-fds 1).
	ListenFD int
	// Entrypoint is the image's command, supervised; may be empty.
	Entrypoint []string
	// LogLimit bounds the entrypoint's retained output; 0 means 1 MiB.
	LogLimit int
	// User runs the entrypoint and is the default user of execs.
	User string
	// Logger receives the agent's diagnostics; nil discards them.
	Logger *slog.Logger
}

// forwarded are the signals passed on to the entrypoint's process group.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2}

// RunInit does the work of the sandbox's init: it reaps every child
// (orphans included, through one central wait4(-1) loop), supervises the
// entrypoint, forwards signals to it, and serves the agent protocol on the
// inherited listener. It returns after SIGTERM once the entrypoint is gone
// (at once without one), having sent SIGTERM to every exec's process
// group; or when ctx ends. The entrypoint's own exit does not end it.
//
// When not PID 1 it makes itself a child subreaper, so orphans of its
// children are still re-parented to it and reaped.
func RunInit(ctx context.Context, cfg InitConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := os.NewFile(uintptr(cfg.ListenFD), "agent-listener")
	if f == nil {
		return fmt.Errorf("listen fd %d is not open", cfg.ListenFD)
	}
	ln, err := net.FileListener(f)
	f.Close() // FileListener dup'ed it
	if err != nil {
		return fmt.Errorf("using fd %d as the agent listener: %w", cfg.ListenFD, err)
	}
	if os.Getpid() != 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			ln.Close()
			return fmt.Errorf("becoming a child subreaper: %w", err)
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe before the entrypoint starts: a SIGTERM that arrives early
	// must be forwarded, not kill the agent by default action.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	r := newReaper(true)
	go r.run(ctx)

	s, err := newServer(ctx, ServerConfig{
		Logger:     log,
		Entrypoint: cfg.Entrypoint,
		LogLimit:   cfg.LogLimit,
		User:       cfg.User,
		reaper:     r,
	})
	if err != nil {
		ln.Close()
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- s.serve(ctx, ln) }()

	terminating := false
	for {
		var epDone <-chan struct{}
		if terminating {
			epDone = s.epDone
		}
		select {
		case sig := <-sigs:
			ssig := sig.(syscall.Signal)
			log.Info("signal", "signal", signalName(ssig))
			s.signalEntrypoint(ssig)
			if ssig == syscall.SIGTERM {
				s.signalExecs(syscall.SIGTERM)
				terminating = true
			}
		case <-epDone:
			log.Info("terminating: entrypoint gone")
			cancel()
			<-errc
			return nil
		case err := <-errc:
			return err
		case <-ctx.Done():
			<-errc
			return nil
		}
	}
}

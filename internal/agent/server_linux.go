package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// ServerConfig configures the server half.
type ServerConfig struct {
	// Logger receives the agent's own diagnostics; nil discards them.
	Logger *slog.Logger
	// Env is the sandbox's environment that every exec starts from;
	// nil means the agent's own environment.
	Env []string
	// Dir is the default working directory of an exec; "" means the
	// agent's own working directory (the sandbox's workdir).
	Dir string
	// User is the default user of an exec ("name", "uid", "uid:gid");
	// "" runs as the agent's own user.
	User string
	// FilesRoot is the directory the file API is confined to (through
	// os.Root, so no path or symlink resolves outside it); "" means "/",
	// the sandbox's root as the agent sees it. Relative paths are taken
	// from Dir.
	FilesRoot string
	// EtcDir holds the passwd and group files users are resolved
	// against; "" means /etc.
	EtcDir string
	// Entrypoint, when set, is started at once as a supervised child
	// whose output Logs serves. Its exit does not stop the server.
	Entrypoint []string
	// LogLimit bounds the entrypoint's retained output; 0 means 1 MiB.
	LogLimit int

	// reaper is set by RunInit to the central wait4(-1) reaper; without
	// it each child is waited for by pid.
	reaper *reaper
}

// server is the state shared by the HTTP handlers, the exec sessions and
// the init loop.
type server struct {
	log    *slog.Logger
	reaper *reaper
	env    []string
	dir    string
	user   string
	etcDir string
	// filesRoot confines the toolbox's file and code work; see
	// ServerConfig.FilesRoot.
	filesRoot string
	started   time.Time
	logs      *ring
	ctx       context.Context // ends when the server stops

	mu       sync.Mutex
	ep       *EntrypointStatus // nil without an entrypoint
	epPgid   int               // 0 unless the entrypoint is running
	epDone   chan struct{}     // closed when the entrypoint has ended (or never started)
	sessions map[*execSession]struct{}

	// shells are the named session shells (session_linux.go).
	shells shellSet
}

func newServer(ctx context.Context, cfg ServerConfig) (*server, error) {
	s := &server{
		log:       cfg.Logger,
		reaper:    cfg.reaper,
		env:       cfg.Env,
		dir:       cfg.Dir,
		user:      cfg.User,
		etcDir:    cfg.EtcDir,
		filesRoot: cfg.FilesRoot,
		started:   time.Now(),
		logs:      newRing(cfg.LogLimit),
		ctx:       ctx,
		epDone:    make(chan struct{}),
		sessions:  make(map[*execSession]struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reaper == nil {
		s.reaper = newReaper(false)
	}
	if s.env == nil {
		s.env = os.Environ()
	}
	if s.dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("getting working directory: %w", err)
		}
		s.dir = wd
	}
	if s.filesRoot == "" {
		s.filesRoot = "/"
	}
	if s.etcDir == "" {
		s.etcDir = "/etc"
	}
	if len(cfg.Entrypoint) > 0 {
		s.startEntrypoint(cfg.Entrypoint)
	} else {
		s.logs.Close()
		close(s.epDone)
	}
	return s, nil
}

// Serve answers the agent protocol on ln until ctx ends, then closes ln and
// returns nil. Running exec sessions are not interrupted by the return:
// they end with their processes.
func Serve(ctx context.Context, ln net.Listener, cfg ServerConfig) error {
	s, err := newServer(ctx, cfg)
	if err != nil {
		ln.Close()
		return err
	}
	return s.serve(ctx, ln)
}

func (s *server) serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/health", s.handleHealth)
	mux.HandleFunc("GET /v1/logs", s.handleLogs)
	mux.HandleFunc("POST /v1/exec", s.handleExec)
	// The toolbox: one file and one routes function per capability.
	s.fileRoutes(mux)

	s.codeRoutes(mux)

	s.ptyRoutes(mux)

	s.sessionRoutes(mux)

	s.portRoutes(mux)
	srv := &http.Server{
		Handler:           s.checkVersion(mux),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving agent protocol: %w", err)
	case <-ctx.Done():
		srv.Close()
		<-errc
		return nil
	}
}

// checkVersion refuses clients of a protocol major version we do not speak.
func (s *server) checkVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := r.Header.Get(versionHeader)
		if v == "" {
			writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument,
				"missing %s header: this agent speaks protocol version %s", versionHeader, Version))
			return
		}
		if majorVersion(v) != majorVersion(Version) {
			writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument,
				"client speaks agent protocol version %s, this agent speaks version %s: upgrade the sandbox's agent or the daemon", v, Version))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(wireError{Message: errdefs.Message(err), Kind: kindName(err)})
}

func (s *server) health() Health {
	h := Health{Version: Version, PID: os.Getpid(), Uptime: time.Since(s.started)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ep != nil {
		ep := *s.ep
		ep.Argv = append([]string(nil), s.ep.Argv...)
		if s.ep.Exit != nil {
			e := *s.ep.Exit
			ep.Exit = &e
		}
		h.Entrypoint = &ep
	}
	return h
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.health())
}

func (s *server) handleLogs(w http.ResponseWriter, r *http.Request) {
	follow := r.URL.Query().Get("follow")
	rr := s.logs.reader(r.Context(), follow == "1" || follow == "true")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	buf := make([]byte, chunkSize)
	for {
		n, err := rr.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// startEntrypoint runs argv in its own process group with stdin /dev/null
// and stdout+stderr into the log ring. A failure to start is recorded as
// exit code 127 with the reason in the log, as a shell would.
func (s *server) startEntrypoint(argv []string) {
	ep := &EntrypointStatus{Argv: append([]string(nil), argv...)}
	s.ep = ep
	fail := func(err error) {
		fmt.Fprintf(s.logs, "sbx-agent: starting entrypoint: %v\n", err)
		s.logs.Close()
		ep.Exit = &ExitStatus{Code: 127}
		close(s.epDone)
		s.log.Error("starting entrypoint", "argv", argv, "err", err)
	}
	path, err := lookPath(argv[0], envValue(s.env, "PATH"), s.dir)
	if err != nil {
		fail(err)
		return
	}
	env := s.env
	sys := &syscall.SysProcAttr{Setpgid: true}
	if s.user != "" {
		id, err := resolveUser(s.etcDir, s.user)
		if err != nil {
			fail(err)
			return
		}
		env = mergeEnv(env, []string{"HOME=" + id.Home})
		sys.Credential = &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: id.Groups}
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		fail(err)
		return
	}
	defer null.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		fail(err)
		return
	}
	c, err := s.reaper.start(path, argv, &syscall.ProcAttr{
		Dir:   s.dir,
		Env:   env,
		Files: []uintptr{null.Fd(), pw.Fd(), pw.Fd()},
		Sys:   sys,
	})
	pw.Close()
	if err != nil {
		pr.Close()
		fail(fmt.Errorf("exec %s: %w", path, err))
		return
	}
	ep.PID, ep.Running = c.pid, true
	s.epPgid = c.pid
	s.log.Info("entrypoint started", "argv", argv, "pid", c.pid)
	go func() {
		io.Copy(s.logs, pr)
		pr.Close()
		s.logs.Close()
	}()
	go func() {
		<-c.done
		st := c.exitStatus()
		s.mu.Lock()
		ep.Running, ep.Exit, s.epPgid = false, &st, 0
		s.mu.Unlock()
		close(s.epDone)
		s.log.Info("entrypoint exited", "code", st.Code, "signal", st.Signal)
	}()
}

// signalEntrypoint sends sig to the entrypoint's process group if it runs.
func (s *server) signalEntrypoint(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epPgid > 0 {
		syscall.Kill(-s.epPgid, sig)
	}
}

// signalExecs sends sig to the process group of every running exec.
func (s *server) signalExecs(sig syscall.Signal) {
	s.mu.Lock()
	sessions := make([]*execSession, 0, len(s.sessions))
	for e := range s.sessions {
		sessions = append(sessions, e)
	}
	s.mu.Unlock()
	for _, e := range sessions {
		e.signal(sig)
	}
}

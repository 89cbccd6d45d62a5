// Package daemon assembles `sbx serve`: configuration, logger, store,
// runtimes, image store, sandbox service and the HTTP transports, and runs
// them until SIGTERM or SIGINT.
//
// Shutdown is graceful: the listener stops accepting, in-flight requests
// finish (up to a deadline), state is persisted, and sandboxes keep running;
// the next daemon re-adopts them.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/agentbin"
	"github.com/sbx-sh/sbx/internal/archive"
	"github.com/sbx-sh/sbx/internal/auth"
	"github.com/sbx-sh/sbx/internal/cgroup"
	"github.com/sbx-sh/sbx/internal/compat/daytona"
	"github.com/sbx-sh/sbx/internal/config"
	"github.com/sbx-sh/sbx/internal/httpapi"
	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/network"
	"github.com/sbx-sh/sbx/internal/preview"
	"github.com/sbx-sh/sbx/internal/runtime"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/store/sqlite"
	"github.com/sbx-sh/sbx/internal/template"
	"github.com/sbx-sh/sbx/internal/volume"
)

// Version is set at build time.
var Version = "dev"

// Daemon is a running sbx daemon.
type Daemon struct {
	Config    config.Config
	Log       *slog.Logger
	Store     store.Store
	Auth      *auth.Service
	Images    *image.Store
	Sandboxes *sandbox.Service
	Templates *template.Service
	Volumes   *volume.Manager
	Handler   http.Handler

	lock    *os.File
	network *network.Linux
	preview *preview.Service
}

// New opens everything the daemon needs. adminKeyOut receives the admin
// key the first time the state directory is used.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, adminKeyOut io.Writer) (*Daemon, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("sbx serve must run as root (it creates namespaces, mounts and cgroups)")
	}
	d := &Daemon{Config: cfg, Log: log}
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	for _, dir := range []string{cfg.StateDir, cfg.RunDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
	}
	lock, err := os.OpenFile(filepath.Join(cfg.StateDir, "sbx.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	d.lock = lock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil, fmt.Errorf("another sbx daemon is using %s", cfg.StateDir)
	}
	if err := runtime.SetSubreaper(); err != nil {
		return nil, fmt.Errorf("becoming a child subreaper: %w", err)
	}
	if mounted, err := cgroup.PrepareHybrid("/sys/fs/cgroup"); err != nil {
		return nil, err
	} else if mounted {
		log.Info("mounted the v1 hugetlb cgroup hierarchy (crun refuses the hybrid layout without it)")
	}
	cgfs, err := cgroup.Detect("/sys/fs/cgroup")
	if err != nil {
		return nil, err
	}

	st, err := sqlite.Open(ctx, filepath.Join(cfg.StateDir, "sbx.db"), log)
	if err != nil {
		return nil, err
	}
	d.Store = st
	d.Auth = auth.New(st, log)
	secret, created, err := d.Auth.EnsureAdmin(ctx)
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(cfg.StateDir, "admin.key")
	if created {
		if err := os.WriteFile(keyPath, []byte(secret+"\n"), 0o600); err != nil {
			return nil, err
		}
		fmt.Fprintf(adminKeyOut, "Admin API key (shown once; also in %s):\n%s\n", keyPath, secret)
	}
	admin, err := adminTenant(ctx, d.Auth)
	if err != nil {
		return nil, err
	}

	agentPath, err := agentbin.Install(filepath.Join(cfg.StateDir, "bin"), cfg.AgentPath)
	if err != nil {
		return nil, err
	}
	classes, err := runtimes(ctx, cfg, log)
	if err != nil {
		return nil, err
	}

	imgs, err := image.Open(ctx, filepath.Join(cfg.StateDir, "images"), st, log)
	if err != nil {
		return nil, err
	}
	imgs.SetAdminTenant(admin)
	d.Images = imgs

	netCfg := cfg.Network
	var nw network.Manager
	if netCfg.Enabled {
		resolvers := network.HostResolvers("/etc/resolv.conf")
		if len(netCfg.DNS) > 0 {
			resolvers = nil
			for _, d := range netCfg.DNS {
				resolvers = append(resolvers, netip.MustParseAddr(d)) // checked by Validate
			}
		}
		if len(resolvers) == 0 {
			log.Warn("no nameserver for sandboxes: the host's are loopback stubs; set network.dns")
		}
		l, err := network.Open(ctx, network.Config{
			Bridge: netCfg.Bridge, Table: netCfg.Table, Subnet: netip.MustParsePrefix(netCfg.Subnet),
			NetnsDir: filepath.Join(cfg.RunDir, "netns"), Resolvers: resolvers,
			AuditGroup: auditGroup(netCfg.AuditGroup, netCfg.Table),
		})
		if err != nil {
			return nil, err
		}
		d.network = l
		nw = l
	}
	archDir := cfg.Archive.Dir
	if archDir == "" {
		archDir = filepath.Join(cfg.StateDir, "archive")
	}
	arch, err := archive.NewLocal(archDir)
	if err != nil {
		return nil, fmt.Errorf("archive store: %w", err)
	}
	vols, err := volume.New(volume.Config{
		Dir: filepath.Join(cfg.StateDir, "volumes"), MaxSizeMB: cfg.Volumes.MaxSizeMB,
		MaxPerTenant: cfg.Volumes.MaxPerTenant, MaxTotalMBPerTenant: cfg.Volumes.MaxTotalMBTenant,
	}, st, log.With("component", "volumes"))
	if err != nil {
		return nil, err
	}
	d.Volumes = vols
	svc, err := sandbox.New(sandbox.Config{
		StateDir:       cfg.StateDir,
		RunDir:         cfg.RunDir,
		Runtimes:       classes,
		DefaultRuntime: cfg.DefaultRuntime,
		DefaultImage:   cfg.DefaultImage,
		Defaults:       resources(cfg.Defaults),
		Maximums:       resources(cfg.Maximums),
		AgentBinary:    agentPath,
		Ranges:         idmap.DefaultRanges,
		CgroupParent:   cfg.CgroupParent,
		Cgroups:        cgfs,
		StopGrace:      cfg.StopGrace.Duration,
		MaxExecs:       cfg.Toolbox.MaxConcurrentExecs,
		DiskPool:       cfg.Pools.DiskImages,
		MaxSnapshots:   cfg.Snapshots.MaxPerSandbox,
		Network:        nw,
		Volumes:        vols,
		DefaultNetwork: store.Network{
			Mode: netCfg.DefaultMode, BlockAll: netCfg.DefaultPolicy.BlockAll,
			Allow: netCfg.DefaultPolicy.Allow, Deny: netCfg.DefaultPolicy.Deny,
		},
		Archive:   arch,
		Lifecycle: lifecycle(cfg.Lifecycle),
	}, st, imgs, log)
	if err != nil {
		return nil, err
	}
	d.Sandboxes = svc
	if err := svc.Recover(ctx); err != nil {
		return nil, err
	}
	buildNet := "none"
	if nw != nil {
		buildNet = "bridge"
	}
	tpl, err := template.New(template.Config{Dir: filepath.Join(cfg.StateDir, "templates"), BuildNetwork: buildNet}, st, imgs, svc, log.With("component", "templates"))
	if err != nil {
		return nil, err
	}
	d.Templates = tpl
	svc.SetTemplates(tpl)
	if err := tpl.Recover(ctx); err != nil {
		return nil, err
	}
	prev, err := newPreview(cfg, svc, st, log)
	if err != nil {
		return nil, err
	}
	d.preview = prev
	native := httpapi.New(httpapi.Config{
		Sandboxes: svc,
		Volumes:   vols,
		Images:    imgs,
		Auth:      d.Auth,
		Templates: tpl,
		Log:       log,
		Version:   Version,

		Previews:       prev,
		PreviewBaseURL: cfg.Preview.BaseURL,

		MaxExecOutput: cfg.Toolbox.MaxExecOutputMB << 20,
		MaxUploadSize: cfg.Toolbox.MaxUploadMB << 20,
	})
	// The Daytona compatibility layer answers under /api (Daytona SDKs'
	// apiUrl is http://host:port/api); everything else is the native API.
	mux := http.NewServeMux()
	mux.Handle(daytona.Prefix+"/", daytona.New(daytona.Config{
		Sandboxes:     svc,
		Volumes:       vols,
		Auth:          d.Auth,
		Templates:     tpl,
		Log:           log.With("api", "daytona"),
		MaxExecOutput: cfg.Toolbox.MaxExecOutputMB << 20,
		MaxUploadSize: cfg.Toolbox.MaxUploadMB << 20,
		Previews:      prev,
	}))
	mux.Handle("/", native)
	// Preview hosts ({port}-{id}.{domain}) and /preview/ paths go to the
	// preview proxy before any API route is looked at.
	d.Handler = accessLog(log, prev.Handler(mux))
	ok = true
	return d, nil
}

// newPreview sets up preview URLs: the daemon's preview secret lives in
// the state directory, so tokens outlive restarts.
func newPreview(cfg config.Config, svc *sandbox.Service, st store.Store, log *slog.Logger) (*preview.Service, error) {
	key, err := preview.LoadKey(filepath.Join(cfg.StateDir, "preview.key"))
	if err != nil {
		return nil, err
	}
	domain := cfg.Preview.Domain
	if domain == "" {
		_, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen address %q: %w", cfg.Listen, err)
		}
		domain = "preview.localhost:" + port
	}
	return preview.New(preview.Config{
		Sandboxes: svc, Revocations: st, Key: key, Domain: domain, Scheme: cfg.Preview.Scheme,
		WriteError: httpapi.PreviewErrorWriter(log.With("transport", "preview")),
		Log:        log.With("transport", "preview"),
	}), nil
}

func adminTenant(ctx context.Context, a *auth.Service) (string, error) {
	ts, err := a.ListTenants(ctx)
	if err != nil {
		return "", err
	}
	for _, t := range ts {
		if t.Admin {
			return t.ID, nil
		}
	}
	return "", errors.New("no admin tenant")
}

func lifecycle(l config.Lifecycle) sandbox.LifecycleConfig {
	return sandbox.LifecycleConfig{
		Defaults:       store.Lifecycle{AutoStop: l.AutoStopSeconds, AutoArchive: l.AutoArchiveSeconds, AutoDelete: l.AutoDeleteSeconds},
		MaxAutoStop:    l.MaxAutoStopSeconds,
		MaxAutoArchive: l.MaxAutoArchiveSeconds,
		MaxAutoDelete:  l.MaxAutoDeleteSeconds,
		MaxKeepalive:   l.MaxKeepalive.Duration,
		Interval:       l.Interval.Duration,
	}
}

func resources(r config.Resources) store.Resources {
	return store.Resources{CPU: r.CPU, MemoryMB: r.MemoryMB, DiskMB: r.DiskMB, Pids: r.Pids}
}

// runtimes sets up the configured runtime classes whose binaries exist,
// refusing versions with known escapes unless allowed.
func runtimes(ctx context.Context, cfg config.Config, log *slog.Logger) (map[string]sandbox.RuntimeClass, error) {
	classes := map[string]sandbox.RuntimeClass{}
	names := make([]string, 0, len(cfg.Runtimes))
	for n := range cfg.Runtimes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		rc := cfg.Runtimes[name]
		oci, err := runtime.NewOCI(name, rc.Path, filepath.Join(cfg.RunDir, "runtime", name), rc.Flags...)
		if err != nil {
			if name == cfg.DefaultRuntime {
				return nil, fmt.Errorf("default runtime %s: %w (install it, or choose another default_runtime)", name, err)
			}
			log.Info("runtime class unavailable", "runtime", name, "err", err)
			continue
		}
		v, err := oci.Version(ctx)
		if err != nil {
			return nil, err
		}
		if err := runtime.CheckVersion(baseName(rc.Path), v); err != nil {
			if !cfg.AllowVulnerableRuntime {
				if name == cfg.DefaultRuntime {
					return nil, err
				}
				log.Warn("runtime class disabled", "runtime", name, "err", err)
				continue
			}
			log.Warn("running a runtime with known escapes because allow_vulnerable_runtime is set", "runtime", name, "err", err)
		}
		log.Info("runtime class ready", "runtime", name, "binary", oci.Binary(), "version", v, "userns", rc.UserNS)
		classes[name] = sandbox.RuntimeClass{Runtime: oci, UserNS: rc.UserNS}
	}
	return classes, nil
}

func baseName(path string) string {
	b := filepath.Base(path)
	return strings.TrimSuffix(b, filepath.Ext(b))
}

// Serve serves the API on ln until ctx ends, then shuts down gracefully.
func (d *Daemon) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           d.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.Log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	d.Log.Info("shutting down: finishing in-flight requests; sandboxes keep running")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		srv.Close()
	}
	return nil
}

// Close releases the daemon's resources; sandboxes keep running.
func (d *Daemon) Close() error {
	if d.Templates != nil {
		d.Templates.Close()
	}
	if d.preview != nil {
		d.preview.Close()
	}
	if d.Sandboxes != nil {
		d.Sandboxes.Close()
	}
	if d.Store != nil {
		d.Store.Close()
	}
	if d.network != nil {
		d.network.Close() // the network stays for the sandboxes
	}
	if d.lock != nil {
		d.lock.Close()
	}
	return nil
}

// Run is `sbx serve`: it builds the daemon, listens, and serves until
// SIGTERM or SIGINT.
func Run(cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := New(ctx, cfg, log, stdout)
	if err != nil {
		return err
	}
	defer d.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	log.Info("sbx serving", "listen", ln.Addr().String(), "state_dir", cfg.StateDir, "version", Version)
	return d.Serve(ctx, ln)
}

// statusRecorder remembers the status for the access log; Unwrap lets
// flushes and WebSocket hijacks through.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// accessLog writes one debug line per request for every transport. It logs
// the path only: never the query (a key could have been put there) nor any
// header.
func accessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		log.LogAttrs(r.Context(), slog.LevelDebug, "http request",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Duration("duration", time.Since(start)))
	})
}

// auditGroup is the NFLOG group of the egress audit log: the configured
// one, none (-1), or one derived from the nftables table name (unique per
// daemon on a host), in 1000..60999.
func auditGroup(configured int, table string) uint16 {
	switch {
	case configured < 0:
		return 0
	case configured > 0:
		return uint16(configured)
	}
	h := fnv.New32a()
	h.Write([]byte(table))
	return uint16(1000 + h.Sum32()%60000)
}

// Package sandbox is the lifecycle service: it creates, starts, stops,
// resizes and destroys sandboxes, runs commands in them through their
// agents, and on start-up reconciles its records with what the kernel and
// the runtimes actually hold.
//
// States and transitions (every transition is recorded as an event):
//
//	creating → started            create (the agent answers)
//	started  → stopping → stopped stop (SIGTERM, grace, SIGKILL)
//	stopped  → starting → started start
//	any      → destroying → destroyed
//	started  → error              the sandbox's init died on its own
//	creating/starting → error     a start failed (files kept; start again)
//
// Concurrency: operations on one sandbox are serialized by a per-sandbox
// lock; operations on different sandboxes run concurrently. Exec holds the
// lock only to find the sandbox's agent, so execs run in parallel.
//
// Crash safety: the record is written (state creating) before any kernel
// work, every step is idempotent, and Recover rolls each sandbox forward or
// back at start-up; see recover.go.
package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/archive"
	"github.com/sbx-sh/sbx/internal/cgroup"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/network"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/runtime"
	"github.com/sbx-sh/sbx/internal/store"
)

// RuntimeClass is a runtime a sandbox can choose.
type RuntimeClass struct {
	Runtime runtime.Runtime
	UserNS  bool
}

// Images resolves image references (implemented by *image.Store).
type Images interface {
	Resolve(ctx context.Context, tenantID, ref string) (image.Image, error)
}

// Config configures the service.
type Config struct {
	StateDir       string // sandboxes live in StateDir/sandboxes/<id>
	RunDir         string // agent sockets: RunDir/agents/<id>.sock
	Runtimes       map[string]RuntimeClass
	DefaultRuntime string
	DefaultImage   string
	Defaults       store.Resources
	Maximums       store.Resources
	AgentBinary    string // host path of sbx-agent
	Ranges         idmap.Ranges
	CgroupParent   string // e.g. "/sbx"
	Cgroups        cgroup.FS
	StopGrace      time.Duration
	// AgentTimeout bounds how long a start waits for the agent to answer.
	AgentTimeout time.Duration
	// MaxExecs bounds the commands running at once in one sandbox
	// through Exec; 0 means DefaultMaxExecs.
	MaxExecs int
	// DiskPool is how many ready-made writable-layer images of the
	// default disk size are kept (StateDir/pool/disks); 0 makes each at
	// create.
	DiskPool int
	// Network is the bridge networking; nil disables mode bridge.
	Network network.Manager
	// DefaultNetwork is the mode and egress policy of a sandbox that asks
	// for none (IP unused).
	DefaultNetwork store.Network
	// Archive is where archived sandboxes' layers go; nil disables archiving.
	Archive archive.Store
	// Lifecycle is the operator's auto-stop/archive/delete policy.
	Lifecycle LifecycleConfig
	// Now is the clock of the lifecycle timers; nil is time.Now.
	Now func() time.Time
	// Volumes is the volume manager; nil disables volume mounts.
	Volumes Volumes
	// MaxSnapshots bounds the state snapshots one sandbox keeps; 0 means
	// DefaultMaxSnapshots.
	MaxSnapshots int
}

// DefaultMaxExecs is the default of Config.MaxExecs.
const DefaultMaxExecs = 64

// Service manages sandboxes. Create one with New, call Recover once, and
// Close when done.
type Service struct {
	cfg    Config
	st     store.Store
	images Images
	log    *slog.Logger

	ctx    context.Context // lives as long as the service; ends monitors
	cancel context.CancelFunc

	mu    sync.Mutex
	locks map[string]*sync.Mutex
	live  map[string]*instance

	slotMu sync.Mutex // serializes uid-slot allocation with record creation
	wg     sync.WaitGroup

	disks *rootfs.DiskPool // nil without a pool

	activity sync.Map // sandbox ID → *atomic.Int64, unix nanos of the latest Touch

	templates Templates // nil: creating from a template is unavailable
	kickc     chan struct{}
	timers    sync.Once // starts runLifecycle
}

// instance is a running sandbox.
type instance struct {
	proc     *runtime.Process
	agent    *agent.Client
	done     chan struct{} // closed when the init has exited
	exit     runtime.Exit
	stopping bool         // the exit was asked for (stop/delete), not a crash
	execs    atomic.Int32 // running Execs, bounded by Config.MaxExecs
}

// New returns a service.
func New(cfg Config, st store.Store, images Images, log *slog.Logger) (*Service, error) {
	if _, ok := cfg.Runtimes[cfg.DefaultRuntime]; !ok {
		return nil, fmt.Errorf("sandbox: default runtime %q not configured", cfg.DefaultRuntime)
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.AgentTimeout == 0 {
		cfg.AgentTimeout = 30 * time.Second
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "/sbx"
	}
	if cfg.Ranges.Size == 0 {
		cfg.Ranges = idmap.DefaultRanges
	}
	// Sandboxes' runtimes run as unprivileged host uids inside user
	// namespaces and must traverse to their root filesystems: the
	// directories on the way are 0711 (searchable, not listable).
	for _, d := range []string{cfg.StateDir, filepath.Join(cfg.StateDir, "sandboxes")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(filepath.Join(cfg.RunDir, "agents"), 0o700); err != nil {
		return nil, err
	}
	var pool *rootfs.DiskPool
	if cfg.DiskPool > 0 && cfg.Defaults.DiskMB > 0 {
		p, err := rootfs.NewDiskPool(filepath.Join(cfg.StateDir, "pool", "disks"), cfg.Defaults.DiskMB<<20, cfg.DiskPool, log)
		if err != nil {
			return nil, err
		}
		pool = p
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		cfg: cfg, st: st, images: images, log: log,
		ctx: ctx, cancel: cancel,
		locks: map[string]*sync.Mutex{},
		live:  map[string]*instance{},
		disks: pool,
		kickc: make(chan struct{}, 1),
	}, nil
}

// Close stops watching sandboxes. Sandboxes keep running; a new service
// re-adopts them with Recover.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	if s.disks != nil {
		s.disks.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, in := range s.live {
		in.agent.Close()
		in.proc.Close()
		delete(s.live, id)
	}
	return nil
}

func (s *Service) lock(id string) func() {
	s.mu.Lock()
	l, ok := s.locks[id]
	if !ok {
		l = &sync.Mutex{}
		s.locks[id] = l
	}
	s.mu.Unlock()
	l.Lock()
	return l.Unlock
}

func (s *Service) instance(id string) *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[id]
}

func (s *Service) dir(id string) string { return filepath.Join(s.cfg.StateDir, "sandboxes", id) }
func (s *Service) socket(id string) string {
	return filepath.Join(s.cfg.RunDir, "agents", id+".sock")
}
func (s *Service) cgroupPath(id string) string { return s.cfg.CgroupParent + "/" + id }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return idEncoding.EncodeToString(b) // 16 characters
}

// Create makes a sandbox and returns once it is started (its agent answers).
// A failed create leaves nothing behind.
func (s *Service) Create(ctx context.Context, opts CreateOptions) (store.Sandbox, error) {
	ph := newPhases()
	tenant, err := s.st.GetTenant(ctx, opts.TenantID)
	if err != nil {
		return store.Sandbox{}, fmt.Errorf("creating sandbox: %w", err)
	}
	if opts.Name != "" {
		if err := validateName(opts.Name); err != nil {
			return store.Sandbox{}, err
		}
	}
	if err := ValidateLabels(opts.Labels); err != nil {
		return store.Sandbox{}, err
	}
	if err := validateEnv(opts.Env); err != nil {
		return store.Sandbox{}, err
	}
	if err := validateArgs("entrypoint", opts.Entrypoint); err != nil {
		return store.Sandbox{}, err
	}
	if err := validateArgs("cmd", opts.Cmd); err != nil {
		return store.Sandbox{}, err
	}
	if opts.Workdir != "" && !strings.HasPrefix(opts.Workdir, "/") {
		return store.Sandbox{}, invalid("workdir must be an absolute path")
	}
	res, err := resolveResources(opts.Resources, s.cfg.Defaults, tenantMax(s.cfg.Maximums, tenant.Limits))
	if err != nil {
		return store.Sandbox{}, err
	}
	class := opts.Runtime
	if class == "" {
		class = s.cfg.DefaultRuntime
	}
	rc, ok := s.cfg.Runtimes[class]
	if !ok {
		return store.Sandbox{}, invalid("unknown runtime class %q", class)
	}
	nw, err := s.resolveNetwork(opts.Network)
	if err != nil {
		return store.Sandbox{}, err
	}
	lc := s.defaultLifecycle()
	if err := s.cfg.Lifecycle.Apply(&lc, opts.Lifecycle); err != nil {
		return store.Sandbox{}, err
	}
	vols, err := s.resolveVolumes(ctx, opts.TenantID, opts.Volumes)
	if err != nil {
		return store.Sandbox{}, err
	}
	ref := opts.Image
	if opts.Template != "" {
		if ref, err = s.templateImage(ctx, opts); err != nil {
			return store.Sandbox{}, err
		}
	}
	if ref == "" {
		ref = s.cfg.DefaultImage
	}
	img, err := s.images.Resolve(ctx, opts.TenantID, ref)
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			return store.Sandbox{}, errdefs.Publicf(errdefs.ErrNotFound, "image %q not found (pull or import it first)", ref)
		}
		return store.Sandbox{}, fmt.Errorf("resolving image %q: %w", ref, err)
	}
	if max := tenant.Limits.MaxSandboxes; max > 0 {
		items, _, err := s.List(ctx, store.SandboxFilter{TenantID: opts.TenantID, Limit: max + 1})
		if err != nil {
			return store.Sandbox{}, err
		}
		if len(items) >= max {
			return store.Sandbox{}, errdefs.Publicf(errdefs.ErrResourceExhausted, "the tenant's limit of %d sandboxes is reached", max)
		}
	}

	now := time.Now().UTC()
	sb := store.Sandbox{
		ID:          newID(),
		TenantID:    opts.TenantID,
		Name:        opts.Name,
		Image:       ref,
		ImageDigest: img.Digest,
		Runtime:     class,
		State:       store.StateCreating,
		Desired:     store.StateStarted,
		Env:         opts.Env,
		Labels:      opts.Labels,
		Resources:   res,
		User:        opts.User,
		Entrypoint:  opts.Entrypoint,
		Cmd:         opts.Cmd,
		Workdir:     opts.Workdir,
		UIDSlot:     -1,
		Network:     nw,
		Lifecycle:   lc,
		Volumes:     vols,
		Public:      opts.Public,
		CreatedAt:   now,
		UpdatedAt:   now,
	}
	if sb.Name == "" {
		sb.Name = sb.ID
	}
	ph.mark("resolve")
	if err := s.insert(ctx, &sb, rc.UserNS); err != nil {
		return store.Sandbox{}, err
	}
	ph.mark("record")
	unlock := s.lock(sb.ID)
	defer unlock()
	s.event(sb, "state", "", store.StateCreating, "")
	log := s.log.With("sandbox", sb.ID)

	if err := rootfs.Create(ctx, rootfs.Options{Dir: s.dir(sb.ID), IDMap: s.idmapOf(sb), DiskBytes: sb.Resources.DiskMB << 20, Pool: s.disks}); err != nil {
		s.rollback(sb, log)
		return store.Sandbox{}, fmt.Errorf("creating sandbox: %w", err)
	}
	ph.mark("disk")
	if err := s.start(ctx, &sb, img, ph); err != nil {
		s.rollback(sb, log)
		return store.Sandbox{}, fmt.Errorf("creating sandbox: %w", err)
	}
	log.Info("sandbox created", "image", ref, "runtime", class, "network", orNone(sb.Network.Mode), ph.group())
	return sb, nil
}

// insert allocates a uid slot and writes the record.
func (s *Service) insert(ctx context.Context, sb *store.Sandbox, userns bool) error {
	s.slotMu.Lock()
	defer s.slotMu.Unlock()
	if userns {
		used, err := s.st.UsedUIDSlots(ctx)
		if err != nil {
			return err
		}
		sb.UIDSlot = idmap.FirstFree(used)
		if sb.UIDSlot > s.cfg.Ranges.MaxSlot() {
			return errdefs.Public(errdefs.ErrResourceExhausted, "no free user-namespace id range")
		}
	}
	if err := s.allocateIP(ctx, sb); err != nil {
		return err
	}
	if err := s.st.CreateSandbox(ctx, *sb); err != nil {
		return fmt.Errorf("creating sandbox: %w", err)
	}
	return nil
}

// rollback undoes a failed create: it must leave nothing behind.
func (s *Service) rollback(sb store.Sandbox, log *slog.Logger) {
	ctx := context.WithoutCancel(s.ctx)
	if err := s.teardown(ctx, sb); err != nil {
		log.Error("rolling back a failed create", "err", err)
		s.setState(&sb, store.StateError, "create failed and cleanup failed: "+errdefs.Message(err))
		return
	}
	if err := s.st.DeleteSandbox(ctx, sb.ID); err != nil {
		log.Error("deleting the record of a failed create", "err", err)
	}
}

func (s *Service) idmapOf(sb store.Sandbox) *idmap.Map {
	if sb.UIDSlot < 0 {
		return nil
	}
	m := s.cfg.Ranges.Slot(sb.UIDSlot)
	return &m
}

// start mounts the root filesystem, runs the container and waits for its
// agent. The caller holds the sandbox's lock. On failure the state is left
// for the caller to decide (rollback on create, error on start).
func (s *Service) start(ctx context.Context, sb *store.Sandbox, img image.Image, ph *phases) error {
	rc, ok := s.cfg.Runtimes[sb.Runtime]
	if !ok {
		return errdefs.Publicf(errdefs.ErrUnavailable, "runtime class %q is not configured on this host", sb.Runtime)
	}
	dir := s.dir(sb.ID)
	ro := rootfs.Options{Dir: dir, Layers: img.Layers, IDMap: s.idmapOf(*sb)}
	if ro.IDMap != nil {
		ns, err := idmap.NamespaceFD(*ro.IDMap)
		if err != nil {
			return err
		}
		defer ns.Close()
		ro.UserNS = ns
		ph.mark("userns")
	}
	if err := rootfs.Mount(ctx, ro); err != nil {
		return err
	}
	ph.mark("rootfs")
	att, err := s.setupNetwork(ctx, *sb)
	if err != nil {
		return err
	}
	if att != nil {
		ph.mark("network")
	}
	spec, err := s.spec(*sb, img)
	if err != nil {
		return err
	}
	if err := s.attach(ctx, spec, *sb, att); err != nil {
		return err
	}
	vm, err := s.mountVolumes(ctx, *sb, ro.UserNS)
	defer s.unstageVolumes(*sb)
	if err != nil {
		return err
	}
	if len(vm) > 0 {
		spec.Mounts = append(spec.Mounts, vm...)
		ph.mark("volumes")
	}
	if err := prepareRoot(rootfs.RootfsDir(dir), spec.Process.Cwd, ro.IDMap); err != nil {
		return err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		return err
	}
	sock := s.socket(sb.ID)
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return fmt.Errorf("agent socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the socket outlives our copy of the listener
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		return err
	}
	ph.mark("bundle")
	pid, err := rc.Runtime.Run(ctx, sb.ID, dir, []*os.File{lf})
	lf.Close()
	if err != nil {
		return err
	}
	ph.mark("runtime")
	in, err := s.adopt(ctx, *sb, pid)
	if err != nil {
		rc.Runtime.Kill(context.WithoutCancel(ctx), sb.ID, syscall.SIGKILL)
		return err
	}
	now := time.Now().UTC()
	sb.StartedAt = &now
	sb.ErrorReason = ""
	sb.ExitCode = nil
	ph.mark("agent")
	s.setState(sb, store.StateStarted, "")
	s.watch(*sb, in)
	ph.mark("record")
	return nil
}

// adopt opens the init's pidfd and waits until the agent answers.
func (s *Service) adopt(ctx context.Context, sb store.Sandbox, pid int) (*instance, error) {
	proc, err := runtime.OpenProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("sandbox init: %w", err)
	}
	in := &instance{proc: proc, agent: agent.NewClient(s.socket(sb.ID)), done: make(chan struct{})}
	hctx, cancel := context.WithTimeout(ctx, s.cfg.AgentTimeout)
	defer cancel()
	if _, err := in.agent.Health(hctx); err != nil {
		in.agent.Close()
		proc.Close()
		if hctx.Err() != nil && ctx.Err() == nil {
			return nil, errdefs.Publicf(errdefs.ErrUnavailable, "the sandbox's agent did not answer within %s", s.cfg.AgentTimeout)
		}
		return nil, fmt.Errorf("sandbox agent: %w", err)
	}
	return in, nil
}

// watch registers a running instance and follows its init until it exits.
func (s *Service) watch(sb store.Sandbox, in *instance) {
	s.mu.Lock()
	s.live[sb.ID] = in
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		exit, err := in.proc.Wait(s.ctx)
		if err != nil {
			return // the service is closing; the sandbox keeps running
		}
		in.exit = exit
		close(in.done)
		s.exited(sb.ID, in)
	}()
}

// exited handles an init that ended. When nobody asked for it, the
// sandbox moves to error with the reason, and its runtime container and
// mounts are released so that it can be started again.
func (s *Service) exited(id string, in *instance) {
	unlock := s.lock(id)
	defer unlock()
	s.mu.Lock()
	if s.live[id] == in {
		delete(s.live, id)
	}
	s.mu.Unlock()
	in.agent.Close()
	in.proc.Close()
	if in.stopping {
		return
	}
	ctx := context.WithoutCancel(s.ctx)
	sb, err := s.st.GetSandbox(ctx, "", id)
	if err != nil || sb.State != store.StateStarted {
		return
	}
	reason := "the sandbox's init exited"
	if in.exit.Known {
		reason = fmt.Sprintf("the sandbox's init exited with code %d", in.exit.Code)
		code := in.exit.Code
		sb.ExitCode = &code
	}
	if st, err := s.cfg.Cgroups.Stats(s.cgroupPath(id)); err == nil && st.OOMKills > int64(sb.OOMKills) {
		sb.OOMKills = int(st.OOMKills)
		reason += " after running out of memory"
	}
	s.log.Warn("sandbox exited on its own", "sandbox", id, "reason", reason)
	if err := s.release(ctx, sb); err != nil {
		s.log.Error("releasing an exited sandbox", "sandbox", id, "err", err)
	}
	s.setState(&sb, store.StateError, reason)
}

// release deletes the runtime container and unmounts the root filesystem,
// keeping the sandbox's files.
func (s *Service) release(ctx context.Context, sb store.Sandbox) error {
	if rc, ok := s.cfg.Runtimes[sb.Runtime]; ok {
		if err := rc.Runtime.Delete(ctx, sb.ID); err != nil {
			return err
		}
	}
	os.Remove(s.socket(sb.ID))
	s.cfg.Cgroups.Remove(s.cgroupPath(sb.ID))
	if err := s.releaseVolumes(sb); err != nil {
		return err
	}
	return rootfs.Unmount(s.dir(sb.ID))
}

// kill ends a running sandbox: SIGTERM, then SIGKILL after grace (at once
// when grace is 0), and waits for its init to exit.
func (s *Service) kill(ctx context.Context, sb store.Sandbox, grace time.Duration) error {
	in := s.instance(sb.ID)
	if in == nil {
		return nil
	}
	in.stopping = true
	if grace > 0 {
		if err := in.proc.Signal(syscall.SIGTERM); err == nil {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-in.done:
				return nil
			case <-t.C:
			case <-ctx.Done():
			}
		}
	}
	in.proc.Signal(syscall.SIGKILL) // an error means it is already gone
	select {
	case <-in.done:
		return nil
	case <-time.After(30 * time.Second):
		return errdefs.Public(errdefs.ErrUnavailable, "the sandbox did not exit after SIGKILL")
	}
}

// teardown stops everything and removes the sandbox's files. It is
// idempotent and works from any state, including half-made ones.
func (s *Service) teardown(ctx context.Context, sb store.Sandbox) error {
	if err := s.kill(ctx, sb, 0); err != nil {
		return err
	}
	// Without a live instance (e.g. a crash mid-create), ask the runtime.
	if rc, ok := s.cfg.Runtimes[sb.Runtime]; ok {
		if st, err := rc.Runtime.State(ctx, sb.ID); err == nil && st.Status == runtime.StatusRunning {
			s.killContainer(ctx, sb, st.Pid)
		}
	}
	if err := s.release(ctx, sb); err != nil {
		return err
	}
	if err := s.teardownNetwork(ctx, sb); err != nil {
		return err
	}
	if s.cfg.Archive != nil {
		if err := s.cfg.Archive.Delete(ctx, archiveKey(sb.ID)); err != nil {
			return err
		}
	}
	return rootfs.Remove(s.dir(sb.ID))
}

// killContainer SIGKILLs a container the service does not watch (found
// through the runtime) and waits up to 30 s for its init to exit.
func (s *Service) killContainer(ctx context.Context, sb store.Sandbox, pid int) {
	p, err := runtime.OpenProcess(pid)
	if err != nil {
		return // already gone
	}
	defer p.Close()
	if rc, ok := s.cfg.Runtimes[sb.Runtime]; ok {
		rc.Runtime.Kill(ctx, sb.ID, syscall.SIGKILL)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p.Wait(wctx)
}

// setState records a transition. A failed write is logged; callers for
// whom the record is a commit point use commitState instead.
func (s *Service) setState(sb *store.Sandbox, to store.State, reason string) {
	s.commitState(sb, to, reason)
}

// commitState is setState that reports whether the record was written.
func (s *Service) commitState(sb *store.Sandbox, to store.State, reason string) error {
	from := sb.State
	sb.State = to
	if to == store.StateError {
		sb.ErrorReason = reason
	}
	sb.UpdatedAt = time.Now().UTC()
	switch to {
	case store.StateStopped, store.StateError:
		// At rest: auto-archive and auto-delete count from here (a
		// round trip through archiving keeps the first time).
		if from != to && from != store.StateArchiving && from != store.StateRestoring || sb.Lifecycle.StoppedAt == nil {
			t := s.now()
			sb.Lifecycle.StoppedAt = &t
		}
	case store.StateStarted:
		sb.Lifecycle.StoppedAt = nil
	}
	ctx := context.WithoutCancel(s.ctx)
	if err := s.st.UpdateSandbox(ctx, *sb); err != nil {
		s.log.Error("recording sandbox state", "sandbox", sb.ID, "state", to, "err", err)
		return fmt.Errorf("recording sandbox state %s: %w", to, err)
	}
	if from != to {
		s.event(*sb, "state", from, to, reason)
	}
	return nil
}

func (s *Service) event(sb store.Sandbox, typ string, from, to store.State, msg string) {
	_, err := s.st.AddEvent(context.WithoutCancel(s.ctx), store.Event{
		SandboxID: sb.ID, TenantID: sb.TenantID, Type: typ, From: from, To: to, Message: msg, Time: time.Now().UTC(),
	})
	if err != nil {
		s.log.Error("recording event", "sandbox", sb.ID, "err", err)
	}
}

// Get returns a live sandbox of the tenant by ID or name.
func (s *Service) Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	sb, err := s.st.GetSandbox(ctx, tenantID, idOrName)
	if errors.Is(err, errdefs.ErrNotFound) {
		sb, err = s.st.GetSandboxByName(ctx, tenantID, idOrName)
	}
	if err == nil && sb.State == store.StateDestroyed {
		err = errdefs.ErrNotFound
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		return store.Sandbox{}, errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", idOrName)
	}
	sb.Lifecycle.LastActivity = s.LastActivity(sb)
	return sb, err
}

// liveStates are every state but destroyed.
var liveStates = []store.State{store.StateCreating, store.StateStarting, store.StateStarted, store.StateStopping,
	store.StateStopped, store.StateArchiving, store.StateArchived, store.StateRestoring,
	store.StateDestroying, store.StateError, store.StateUnknown}

// List lists sandboxes; destroyed ones only when asked for by state.
func (s *Service) List(ctx context.Context, f store.SandboxFilter) ([]store.Sandbox, string, error) {
	if len(f.States) == 0 {
		f.States = liveStates
	}
	items, next, err := s.st.ListSandboxes(ctx, f)
	for i := range items {
		items[i].Lifecycle.LastActivity = s.LastActivity(items[i])
	}
	return items, next, err
}

// getLocked looks a sandbox up and takes its lock; the record is re-read
// under the lock so it is current.
func (s *Service) getLocked(ctx context.Context, tenantID, idOrName string) (store.Sandbox, func(), error) {
	sb, err := s.Get(ctx, tenantID, idOrName)
	if err != nil {
		return sb, nil, err
	}
	unlock := s.lock(sb.ID)
	sb, err = s.st.GetSandbox(ctx, tenantID, sb.ID)
	if err == nil && sb.State == store.StateDestroyed {
		err = errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", idOrName)
	}
	if err != nil {
		unlock()
		return sb, nil, err
	}
	return sb, unlock, nil
}

// Start starts a stopped (or failed) sandbox. Starting a started one is a no-op.
func (s *Service) Start(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	switch sb.State {
	case store.StateStarted:
		return sb, nil
	case store.StateStopped, store.StateError, store.StateArchived:
	default:
		return sb, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s", sb.ID, sb.State)
	}
	img, err := s.images.Resolve(ctx, sb.TenantID, sb.ImageDigest)
	if err != nil {
		return sb, fmt.Errorf("starting sandbox: image %s: %w", sb.Image, err)
	}
	if sb.State == store.StateArchived {
		if err := s.restore(ctx, &sb); err != nil {
			return sb, err
		}
	}
	s.Touch(sb.ID)
	sb.Desired = store.StateStarted
	s.setState(&sb, store.StateStarting, "")
	ph := newPhases()
	if err := s.start(ctx, &sb, img, ph); err != nil {
		s.release(context.WithoutCancel(ctx), sb)
		s.setState(&sb, store.StateError, "start failed: "+errdefs.Message(err))
		return sb, fmt.Errorf("starting sandbox: %w", err)
	}
	s.log.Info("sandbox started", "sandbox", sb.ID, ph.group())
	return sb, nil
}

// Stop stops a sandbox: SIGTERM, then SIGKILL after grace (0 = the
// configured default). Its files are kept.
func (s *Service) Stop(ctx context.Context, tenantID, idOrName string, grace time.Duration) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	return sb, s.stop(ctx, &sb, grace)
}

func (s *Service) stop(ctx context.Context, sb *store.Sandbox, grace time.Duration) error {
	switch sb.State {
	case store.StateStopped:
		return nil
	case store.StateStarted, store.StateError, store.StateStopping:
	default:
		return errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s", sb.ID, sb.State)
	}
	if grace <= 0 {
		grace = s.cfg.StopGrace
	}
	sb.Desired = store.StateStopped
	s.setState(sb, store.StateStopping, "")
	if err := s.kill(ctx, *sb, grace); err != nil {
		return err
	}
	if err := s.release(context.WithoutCancel(ctx), *sb); err != nil {
		s.setState(sb, store.StateError, "stop failed: "+errdefs.Message(err))
		return fmt.Errorf("stopping sandbox: %w", err)
	}
	s.setState(sb, store.StateStopped, "")
	s.kick()
	return nil
}

// Restart stops and starts a sandbox (RestartWith, reset.go, also
// changes its env and resources).
func (s *Service) Restart(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	return s.RestartWith(ctx, tenantID, idOrName, RestartOptions{})
}

// Delete destroys a sandbox and everything it holds.
func (s *Service) Delete(ctx context.Context, tenantID, idOrName string) error {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return err
	}
	defer unlock()
	return s.destroy(ctx, &sb)
}

func (s *Service) destroy(ctx context.Context, sb *store.Sandbox) error {
	sb.Desired = store.StateDestroyed
	s.setState(sb, store.StateDestroying, "")
	if err := s.teardown(context.WithoutCancel(ctx), *sb); err != nil {
		s.setState(sb, store.StateError, "delete failed: "+errdefs.Message(err))
		return fmt.Errorf("deleting sandbox: %w", err)
	}
	s.setState(sb, store.StateDestroyed, "")
	s.removeSnapshots(context.WithoutCancel(ctx), *sb)
	s.mu.Lock()
	delete(s.locks, sb.ID)
	s.mu.Unlock()
	s.log.Info("sandbox destroyed", "sandbox", sb.ID)
	return nil
}

// nextResources returns sb's resources with r put over them, checked
// against the maximums of sb's tenant. Resize and RestartWith share it so
// both apply the same rules as create.
func (s *Service) nextResources(ctx context.Context, sb store.Sandbox, r store.Resources) (store.Resources, error) {
	tenant, err := s.st.GetTenant(ctx, sb.TenantID)
	if err != nil {
		return store.Resources{}, err
	}
	next := sb.Resources.With(r)
	if err := checkMax(next, tenantMax(s.cfg.Maximums, tenant.Limits)); err != nil {
		return store.Resources{}, err
	}
	return next, nil
}

// Resize changes a sandbox's limits: CPU, memory and pids live; the disk
// may only grow, and only while the sandbox is stopped.
func (s *Service) Resize(ctx context.Context, tenantID, idOrName string, r ResizeOptions) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	if r.CPU < 0 || r.MemoryMB < 0 || r.DiskMB < 0 || r.Pids < 0 {
		return sb, invalid("resources must not be negative")
	}
	next, err := s.nextResources(ctx, sb, store.Resources(r))
	if err != nil {
		return sb, err
	}
	if next.DiskMB != sb.Resources.DiskMB {
		if next.DiskMB < sb.Resources.DiskMB {
			return sb, invalid("the disk cannot shrink (%d MiB now)", sb.Resources.DiskMB)
		}
		if sb.State != store.StateStopped {
			return sb, errdefs.Public(errdefs.ErrConflict, "the disk can only grow while the sandbox is stopped")
		}
		if err := rootfs.Grow(ctx, s.dir(sb.ID), next.DiskMB<<20); err != nil {
			return sb, fmt.Errorf("growing disk: %w", err)
		}
	}
	if sb.State == store.StateStarted {
		lim := limitsOf(next)
		spec := runtime.LimitResources(lim)
		if err := s.cfg.Runtimes[sb.Runtime].Runtime.Update(ctx, sb.ID, spec); err != nil {
			return sb, fmt.Errorf("resizing sandbox: %w", err)
		}
	}
	old := sb.Resources
	sb.Resources = next
	s.setState(&sb, sb.State, "")
	s.event(sb, "resize", "", "", fmt.Sprintf("cpu %g→%g, memory %d→%d MiB, disk %d→%d MiB, pids %d→%d",
		old.CPU, next.CPU, old.MemoryMB, next.MemoryMB, old.DiskMB, next.DiskMB, old.Pids, next.Pids))
	return sb, nil
}

// SetLabels replaces a sandbox's labels.
func (s *Service) SetLabels(ctx context.Context, tenantID, idOrName string, labels map[string]string) (store.Sandbox, error) {
	if err := ValidateLabels(labels); err != nil {
		return store.Sandbox{}, err
	}
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	sb.Labels = labels
	s.setState(&sb, sb.State, "")
	return sb, nil
}

// SetPublic makes a sandbox's preview URLs need a token (false) or not
// (true). It takes effect on the next preview request.
func (s *Service) SetPublic(ctx context.Context, tenantID, idOrName string, public bool) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	if sb.Public == public {
		return sb, nil
	}
	sb.Public = public
	s.setState(&sb, sb.State, "")
	s.event(sb, "public", "", "", fmt.Sprintf("public=%t", public))
	return sb, nil
}

// agentOf returns the agent of a started sandbox.
func (s *Service) agentOf(ctx context.Context, tenantID, idOrName string) (store.Sandbox, *instance, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, nil, err
	}
	defer unlock()
	in := s.instance(sb.ID)
	if sb.State != store.StateStarted || in == nil {
		return sb, nil, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s, not started", sb.ID, sb.State)
	}
	s.Touch(sb.ID)
	return sb, in, nil
}

// Agent returns the agent of a started sandbox, for the toolbox calls
// (files, code, sessions, terminals) that need no lifecycle work. A
// sandbox that is not started answers ErrConflict.
func (s *Service) Agent(ctx context.Context, tenantID, idOrName string) (*agent.Client, error) {
	_, in, err := s.agentOf(ctx, tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	return in.agent, nil
}

// Process is a command running in a sandbox.
type Process struct {
	*agent.Process
	s        *Service
	sb       store.Sandbox
	oomBase  int64
	in       *instance
	released sync.Once
}

// release gives the exec's slot back, once.
func (p *Process) release() { p.released.Do(func() { p.in.execs.Add(-1) }) }

// Close abandons the stream (killing the command if it still runs) and
// gives its slot back.
func (p *Process) Close() error {
	p.release()
	return p.Process.Close()
}

// Recv returns the next frame; an exit by SIGKILL is checked against the
// sandbox's OOM-kill counter so that OOM kills are reported as such.
func (p *Process) Recv() (agent.Frame, error) {
	f, err := p.Process.Recv()
	if err != nil || f.Kind == agent.FrameExit || f.Kind == agent.FrameError {
		p.release() // the command is over
	}
	if err == nil && f.Kind == agent.FrameExit && f.Exit != nil && f.Exit.Signal == "SIGKILL" && !f.Exit.TimedOut {
		if st, err := p.s.cfg.Cgroups.Stats(p.s.cgroupPath(p.sb.ID)); err == nil && st.OOMKills > p.oomBase {
			f.Exit.OOMKilled = true
			p.s.noteOOM(p.sb.ID, st.OOMKills)
		}
	}
	return f, err
}

func (s *Service) noteOOM(id string, kills int64) {
	unlock := s.lock(id)
	defer unlock()
	sb, err := s.st.GetSandbox(context.WithoutCancel(s.ctx), "", id)
	if err != nil || int64(sb.OOMKills) >= kills {
		return
	}
	sb.OOMKills = int(kills)
	s.setState(&sb, sb.State, "")
	s.event(sb, "oom", "", "", "a process was killed for running out of memory")
}

// Exec starts a command in a started sandbox and streams it.
func (s *Service) Exec(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (*Process, error) {
	if err := validateArgs("argv", req.Argv); err != nil {
		return nil, err
	}
	if (len(req.Argv) == 0) == (req.Shell == "") {
		return nil, invalid("exactly one of argv and shell must be given")
	}
	if req.Timeout < 0 {
		return nil, invalid("timeout must not be negative")
	}
	sb, in, err := s.agentOf(ctx, tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	if req.User == "" {
		req.User = sb.User
	}
	var base int64
	if st, err := s.cfg.Cgroups.Stats(s.cgroupPath(sb.ID)); err == nil {
		base = st.OOMKills
	}
	max := s.cfg.MaxExecs
	if max <= 0 {
		max = DefaultMaxExecs
	}
	if in.execs.Add(1) > int32(max) {
		in.execs.Add(-1)
		return nil, errdefs.Publicf(errdefs.ErrResourceExhausted,
			"sandbox %s already runs %d commands, the limit: wait for one to end", sb.ID, max)
	}
	p, err := in.agent.Exec(ctx, req)
	if err != nil {
		in.execs.Add(-1)
		return nil, fmt.Errorf("exec in sandbox %s: %w", sb.ID, err)
	}
	return &Process{Process: p, s: s, sb: sb, oomBase: base, in: in}, nil
}

// Logs returns the entrypoint's output; with follow it stays open.
func (s *Service) Logs(ctx context.Context, tenantID, idOrName string, follow bool) (io.ReadCloser, error) {
	_, in, err := s.agentOf(ctx, tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	return in.agent.Logs(ctx, follow)
}

// Events lists a sandbox's events after a sequence number.
func (s *Service) Events(ctx context.Context, tenantID, idOrName string, afterSeq int64) ([]store.Event, error) {
	sb, err := s.Get(ctx, tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	return s.st.ListEvents(ctx, tenantID, sb.ID, afterSeq, 1000)
}

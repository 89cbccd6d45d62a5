package apitest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/httpapi"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/network"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

// Fake is an in-memory stand-in for the services behind the API (the
// lifecycle service, the image store and auth), deterministic so that
// answers can be compared with golden files: IDs count up and the clock
// advances one second per change from Epoch.
//
// Exec runs a tiny built-in command set instead of real programs:
//
//	echo ARGS...      ARGS joined by spaces and a newline on stdout
//	cat               stdin to stdout
//	warn ARGS...      ARGS on stderr
//	exit N            exit code N (also "sh -c 'exit N'"-style shell lines)
//	yes N             N bytes of "y\n" on stdout, in 64 KiB frames
//	sleep             runs until the client goes away
//	oom | timeout     killed by SIGKILL for memory / for its timeout
//	anything else     the agent's "executable file not found" error frame
//
// A shell line is split on spaces and run the same way.
type Fake struct {
	mu        sync.Mutex
	now       time.Time
	seq       int
	tenants   map[string]store.Tenant
	keys      map[string]store.APIKey // by secret
	sandboxes map[string]store.Sandbox
	events    []store.Event
	logs      map[string]string
	images    map[string]map[string]image.Image // tenant -> ref -> image
	errs      map[string]error
	closed    []string // IDs of sandboxes whose exec was abandoned
	agents    map[string]*fakeAgent
	touches   map[string]int
	// AdminID is the admin tenant's ID.
	AdminID string
}

// AdminKey is the admin tenant's key in every Fake.
const AdminKey = "sbx_admin_key_for_tests"

// Epoch is the fake clock's start.
var Epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// DefaultImage is present in every Fake, owned by the admin tenant.
const DefaultImage = "sbx/default:latest"

var _ httpapi.Sandboxes = (*Fake)(nil)
var _ httpapi.ProcessExecer = (*Fake)(nil)
var _ httpapi.Images = fakeImages{}
var _ httpapi.Auth = (*Fake)(nil)

// NewFake returns a fake with an admin tenant (key AdminKey) and the
// default image.
func NewFake() *Fake {
	f := &Fake{
		now: Epoch, tenants: map[string]store.Tenant{}, keys: map[string]store.APIKey{},
		sandboxes: map[string]store.Sandbox{}, logs: map[string]string{},
		images: map[string]map[string]image.Image{}, errs: map[string]error{},
		agents: map[string]*fakeAgent{}, touches: map[string]int{},
	}
	admin := f.addTenant("admin", store.Limits{}, true)
	f.AdminID = admin.ID
	f.addKey(admin.ID, "admin", AdminKey)
	f.putImage(admin.ID, DefaultImage, 123456789)
	return f
}

func (f *Fake) tick() time.Time {
	f.now = f.now.Add(time.Second)
	return f.now
}

func (f *Fake) nextID(prefix string) string {
	f.seq++
	return fmt.Sprintf("%s%04d", prefix, f.seq)
}

// SetError makes every later call of the named method ("Get", "Create",
// "Pull", ...) fail with err; nil clears it.
func (f *Fake) SetError(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err == nil {
		delete(f.errs, method)
	} else {
		f.errs[method] = err
	}
}

func (f *Fake) fail(method string) error { return f.errs[method] }

// SetLogs sets the entrypoint output Logs returns for a sandbox.
func (f *Fake) SetLogs(id, text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs[id] = text
}

// Abandoned returns the IDs of sandboxes whose running exec was closed
// before it ended (the client went away), in order.
func (f *Fake) Abandoned() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.closed)
}

// AddTenant creates a tenant with one key and returns it with the key.
func (f *Fake) AddTenant(name string, admin bool) (store.Tenant, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.addTenant(name, store.Limits{}, admin)
	secret := "sbx_" + name + "_key"
	f.addKey(t.ID, name, secret)
	return t, secret
}

func (f *Fake) addTenant(name string, l store.Limits, admin bool) store.Tenant {
	t := store.Tenant{ID: f.nextID("tn-"), Name: name, Admin: admin, CreatedAt: f.tick(), Limits: l}
	f.tenants[t.ID] = t
	return t
}

func (f *Fake) addKey(tenantID, name, secret string) store.APIKey {
	k := store.APIKey{ID: f.nextID("key-"), TenantID: tenantID, Name: name, Prefix: secret[:min(8, len(secret))], CreatedAt: f.tick()}
	f.keys[secret] = k
	return k
}

// --- Auth ---

// Authenticate implements httpapi.Auth.
func (f *Fake) Authenticate(ctx context.Context, secret string) (store.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[secret]
	if !ok {
		return store.Tenant{}, errdefs.Public(errdefs.ErrUnauthenticated, "invalid API key")
	}
	return f.tenants[k.TenantID], nil
}

// CreateTenant implements httpapi.Auth.
func (f *Fake) CreateTenant(ctx context.Context, name string, limits store.Limits) (store.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("CreateTenant"); err != nil {
		return store.Tenant{}, err
	}
	if name == "" {
		return store.Tenant{}, errdefs.Public(errdefs.ErrInvalidArgument, "tenant name is required")
	}
	for _, t := range f.tenants {
		if t.Name == name {
			return store.Tenant{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "tenant %q already exists", name)
		}
	}
	return f.addTenant(name, limits, false), nil
}

// ListTenants implements httpapi.Auth.
func (f *Fake) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Collect(maps.Values(f.tenants))
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// GetTenant implements httpapi.Auth.
func (f *Fake) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.tenants[id]
	if !ok {
		return t, errdefs.Publicf(errdefs.ErrNotFound, "tenant %q not found", id)
	}
	return t, nil
}

// CreateKey implements httpapi.Auth.
func (f *Fake) CreateKey(ctx context.Context, tenantID, name string) (string, store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.tenants[tenantID]; !ok {
		return "", store.APIKey{}, errdefs.Publicf(errdefs.ErrNotFound, "tenant %q not found", tenantID)
	}
	secret := fmt.Sprintf("sbx_secret_%04d", f.seq+1)
	return secret, f.addKey(tenantID, name, secret), nil
}

// ListKeys implements httpapi.Auth.
func (f *Fake) ListKeys(ctx context.Context, tenantID string) ([]store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.APIKey
	for _, k := range f.keys {
		if k.TenantID == tenantID {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// DeleteKey implements httpapi.Auth.
func (f *Fake) DeleteKey(ctx context.Context, tenantID, keyID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s, k := range f.keys {
		if k.TenantID == tenantID && k.ID == keyID {
			delete(f.keys, s)
			return nil
		}
	}
	return errdefs.Publicf(errdefs.ErrNotFound, "key %q not found", keyID)
}

// --- Sandboxes ---

func (f *Fake) event(sb store.Sandbox, from, to store.State, msg string) {
	f.events = append(f.events, store.Event{Seq: int64(len(f.events) + 1), SandboxID: sb.ID, TenantID: sb.TenantID,
		Type: "state", From: from, To: to, Message: msg, Time: f.now})
}

// get finds a sandbox of the tenant ("" = of any tenant, as the store).
func (f *Fake) get(tenantID, idOrName string) (store.Sandbox, error) {
	if sb, ok := f.sandboxes[idOrName]; ok && (tenantID == "" || sb.TenantID == tenantID) {
		return sb, nil
	}
	for _, sb := range f.sandboxes {
		if (tenantID == "" || sb.TenantID == tenantID) && sb.Name == idOrName {
			return sb, nil
		}
	}
	return store.Sandbox{}, errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", idOrName)
}

func (f *Fake) resolve(tenantID, ref string) (image.Image, error) {
	if i, ok := f.images[tenantID][ref]; ok {
		return i, nil
	}
	if i, ok := f.images[f.AdminID][ref]; ok {
		i.Shared = tenantID != f.AdminID
		return i, nil
	}
	return image.Image{}, errdefs.Publicf(errdefs.ErrNotFound, "image %q not found", ref)
}

// Create implements httpapi.Sandboxes.
func (f *Fake) Create(ctx context.Context, o sandbox.CreateOptions) (store.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Create"); err != nil {
		return store.Sandbox{}, err
	}
	t := f.tenants[o.TenantID]
	if t.Limits.MaxSandboxes > 0 {
		n := 0
		for _, sb := range f.sandboxes {
			if sb.TenantID == o.TenantID {
				n++
			}
		}
		if n >= t.Limits.MaxSandboxes {
			return store.Sandbox{}, errdefs.Publicf(errdefs.ErrResourceExhausted, "tenant already has %d sandboxes, its limit", n)
		}
	}
	if o.Name != "" {
		if _, err := f.get(o.TenantID, o.Name); err == nil {
			return store.Sandbox{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "a sandbox named %q already exists", o.Name)
		}
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	img, err := f.resolve(o.TenantID, o.Image)
	if err != nil {
		return store.Sandbox{}, err
	}
	if o.Runtime == "" {
		o.Runtime = "crun"
	}
	if o.Runtime != "crun" && o.Runtime != "runc" {
		return store.Sandbox{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "unknown runtime %q", o.Runtime)
	}
	r := o.Resources
	if r.CPU == 0 {
		r.CPU = 1
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = 512
	}
	if r.DiskMB == 0 {
		r.DiskMB = 1024
	}
	if r.Pids == 0 {
		r.Pids = 512
	}
	now := f.tick()
	sb := store.Sandbox{
		ID: f.nextID("sb-"), TenantID: o.TenantID, Name: o.Name, Image: o.Image, ImageDigest: img.Digest,
		Runtime: o.Runtime, State: store.StateStarted, Desired: store.StateStarted,
		Env: o.Env, Labels: o.Labels, Resources: r, User: o.User, Workdir: o.Workdir,
		Entrypoint: o.Entrypoint, Cmd: o.Cmd, UIDSlot: f.seq, CreatedAt: now, UpdatedAt: now, StartedAt: &now,
		Network: store.Network{Mode: "none"}, Public: o.Public,
	}
	if n := o.Network; n != nil && n.Mode == "bridge" {
		p, err := network.ParsePolicy(n.BlockAll, n.Allow, n.Deny)
		if err != nil {
			return store.Sandbox{}, err
		}
		sb.Network = store.Network{Mode: "bridge", IP: fmt.Sprintf("10.88.0.%d", f.seq+1), BlockAll: p.BlockAll}
		sb.Network.Allow, sb.Network.Deny = p.Strings()
	} else if n != nil && n.Mode != "" && n.Mode != "none" {
		return store.Sandbox{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "network mode must be none or bridge")
	}
	sb.Lifecycle = store.Lifecycle{AutoDelete: -1, LastActivity: now}
	if err := (sandbox.LifecycleConfig{}).Apply(&sb.Lifecycle, o.Lifecycle); err != nil {
		return store.Sandbox{}, err
	}
	if sb.Name == "" {
		sb.Name = sb.ID
	}
	f.sandboxes[sb.ID] = sb
	f.event(sb, store.StateCreating, store.StateStarted, "")
	return sb, nil
}

// Get implements httpapi.Sandboxes.
func (f *Fake) Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Get"); err != nil {
		return store.Sandbox{}, err
	}
	return f.get(tenantID, idOrName)
}

// List implements httpapi.Sandboxes; the cursor is the last ID of a page.
func (f *Fake) List(ctx context.Context, flt store.SandboxFilter) ([]store.Sandbox, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("List"); err != nil {
		return nil, "", err
	}
	limit := flt.Limit
	if limit == 0 {
		limit = 100
	}
	var all []store.Sandbox
	for _, sb := range f.sandboxes {
		if sb.TenantID != flt.TenantID || sb.ID <= flt.Cursor {
			continue
		}
		if len(flt.States) > 0 && !slices.Contains(flt.States, sb.State) {
			continue
		}
		ok := true
		for k, v := range flt.Labels {
			if got, has := sb.Labels[k]; !has || got != v {
				ok = false
			}
		}
		if ok {
			all = append(all, sb)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	next := ""
	if len(all) > limit {
		all = all[:limit]
		next = all[limit-1].ID
	}
	return all, next, nil
}

func (f *Fake) transition(tenantID, idOrName, method string, fn func(sb *store.Sandbox) error) (store.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail(method); err != nil {
		return store.Sandbox{}, err
	}
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	from := sb.State
	if err := fn(&sb); err != nil {
		return store.Sandbox{}, err
	}
	sb.UpdatedAt = f.tick()
	f.sandboxes[sb.ID] = sb
	if from != sb.State {
		f.event(sb, from, sb.State, "")
	}
	return sb, nil
}

// Start implements httpapi.Sandboxes.
func (f *Fake) Start(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "Start", func(sb *store.Sandbox) error {
		sb.State, sb.Desired = store.StateStarted, store.StateStarted
		now := f.now.Add(time.Second)
		sb.StartedAt = &now
		sb.Lifecycle.Archive = nil // an archived one is restored
		return nil
	})
}

// Stop implements httpapi.Sandboxes.
func (f *Fake) Stop(ctx context.Context, tenantID, idOrName string, grace time.Duration) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "Stop", func(sb *store.Sandbox) error {
		sb.State, sb.Desired = store.StateStopped, store.StateStopped
		if grace > 0 {
			f.events = append(f.events, store.Event{Seq: int64(len(f.events) + 1), SandboxID: sb.ID, TenantID: sb.TenantID,
				Type: "stop", Message: "grace " + grace.String(), Time: f.now})
		}
		return nil
	})
}

// Archive implements httpapi.Sandboxes: a stopped sandbox becomes archived.
func (f *Fake) Archive(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "Archive", func(sb *store.Sandbox) error {
		switch sb.State {
		case store.StateArchived:
			return nil
		case store.StateStopped:
		default:
			return errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s: only a stopped sandbox can be archived", sb.ID, sb.State)
		}
		sb.State = store.StateArchived
		sb.Lifecycle.Archive = &store.ArchiveInfo{Key: "sandboxes/" + sb.ID + ".sbxa", Size: 1 << 20, SHA256: "00",
			DiskSize: sb.Resources.DiskMB << 20, Data: 2 << 20, CreatedAt: f.now}
		return nil
	})
}

// SetLifecycle implements httpapi.Sandboxes (no operator caps).
func (f *Fake) SetLifecycle(ctx context.Context, tenantID, idOrName string, o sandbox.LifecycleOptions) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "SetLifecycle", func(sb *store.Sandbox) error {
		return sandbox.LifecycleConfig{}.Apply(&sb.Lifecycle, &o)
	})
}

// Keepalive implements httpapi.Sandboxes.
func (f *Fake) Keepalive(ctx context.Context, tenantID, idOrName string, d time.Duration) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "Keepalive", func(sb *store.Sandbox) error {
		sb.Lifecycle.LastActivity = f.now
		sb.Lifecycle.KeepaliveUntil = nil
		if d > 0 {
			t := f.now.Add(d)
			sb.Lifecycle.KeepaliveUntil = &t
		}
		return nil
	})
}

// Metrics implements httpapi.Sandboxes with fixed figures.
func (f *Fake) Metrics(ctx context.Context, tenantID, idOrName string) (sandbox.Metrics, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return sandbox.Metrics{}, err
	}
	if sb.State != store.StateStarted {
		return sandbox.Metrics{}, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s, not started", sb.ID, sb.State)
	}
	m := sandbox.Metrics{Time: f.now, CPUSeconds: 1.5, MemoryBytes: 64 << 20, MemoryLimitBytes: sb.Resources.MemoryMB << 20,
		Pids: 3, PidsLimit: sb.Resources.Pids, DiskUsedBytes: 5 << 20, DiskLimitBytes: sb.Resources.DiskMB << 20}
	if sb.Network.Mode == "bridge" {
		m.Network = &network.Counters{RxBytes: 1000, RxPackets: 10, TxBytes: 2000, TxPackets: 20}
	}
	return m, nil
}

// Restart implements httpapi.Sandboxes.
func (f *Fake) Restart(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	return f.Start(ctx, tenantID, idOrName)
}

// Delete implements httpapi.Sandboxes.
func (f *Fake) Delete(ctx context.Context, tenantID, idOrName string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Delete"); err != nil {
		return err
	}
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return err
	}
	delete(f.sandboxes, sb.ID)
	return nil
}

// Resize implements httpapi.Sandboxes: disk may only grow, while stopped.
func (f *Fake) Resize(ctx context.Context, tenantID, idOrName string, r sandbox.ResizeOptions) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "Resize", func(sb *store.Sandbox) error {
		if r.DiskMB != 0 {
			if r.DiskMB < sb.Resources.DiskMB {
				return errdefs.Public(errdefs.ErrInvalidArgument, "disk can only grow")
			}
			if sb.State != store.StateStopped {
				return errdefs.Public(errdefs.ErrConflict, "disk can only grow while the sandbox is stopped")
			}
			sb.Resources.DiskMB = r.DiskMB
		}
		if r.CPU != 0 {
			sb.Resources.CPU = r.CPU
		}
		if r.MemoryMB != 0 {
			sb.Resources.MemoryMB = r.MemoryMB
		}
		if r.Pids != 0 {
			sb.Resources.Pids = r.Pids
		}
		return nil
	})
}

// SetLabels implements httpapi.Sandboxes.
func (f *Fake) SetLabels(ctx context.Context, tenantID, idOrName string, labels map[string]string) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "SetLabels", func(sb *store.Sandbox) error {
		sb.Labels = labels
		return nil
	})
}

// SetPublic implements httpapi.Sandboxes.
func (f *Fake) SetPublic(ctx context.Context, tenantID, idOrName string, public bool) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "SetPublic", func(sb *store.Sandbox) error {
		sb.Public = public
		return nil
	})
}

// Touch records activity (preview.Sandboxes); Touches counts it.
func (f *Fake) Touch(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.touches[id]++
}

// Touches is how many times Touch was called for id.
func (f *Fake) Touches(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.touches[id]
}

// SetNetworkPolicy implements httpapi.Sandboxes.
func (f *Fake) SetNetworkPolicy(ctx context.Context, tenantID, idOrName string, blockAll bool, allow, deny []string) (store.Sandbox, error) {
	p, err := network.ParsePolicy(blockAll, allow, deny)
	if err != nil {
		return store.Sandbox{}, err
	}
	return f.transition(tenantID, idOrName, "SetNetworkPolicy", func(sb *store.Sandbox) error {
		if sb.Network.Mode != "bridge" {
			return errdefs.Publicf(errdefs.ErrConflict, "sandbox %s has no network", sb.ID)
		}
		sb.Network.BlockAll = p.BlockAll
		sb.Network.Allow, sb.Network.Deny = p.Strings()
		return nil
	})
}

// Events implements httpapi.Sandboxes.
func (f *Fake) Events(ctx context.Context, tenantID, idOrName string, after int64) ([]store.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	var out []store.Event
	for _, e := range f.events {
		if e.SandboxID == sb.ID && e.Seq > after {
			out = append(out, e)
		}
	}
	return out, nil
}

// Logs implements httpapi.Sandboxes: the text set with SetLogs; with
// follow the reader then blocks until ctx ends.
func (f *Fake) Logs(ctx context.Context, tenantID, idOrName string, follow bool) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateStarted {
		return nil, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s, not started", sb.ID, sb.State)
	}
	pr, pw := io.Pipe()
	text := f.logs[sb.ID]
	go func() {
		pw.Write([]byte(text))
		if follow {
			<-ctx.Done()
		}
		pw.Close()
	}()
	return pr, nil
}

// fakeAgent is a real agent server (agent.Serve) for one fake sandbox,
// rooted at a temporary directory that stands for the sandbox's root.
type fakeAgent struct {
	dir    string
	client *agent.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// Agent implements httpapi.Sandboxes: a real agent server per started
// sandbox, listening on a unix socket in a temporary directory, with its
// files rooted at AgentRoot(id). The toolbox routes thus run the real
// agent code without a sandbox; Close stops the servers.
func (f *Fake) Agent(ctx context.Context, tenantID, idOrName string) (*agent.Client, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Agent"); err != nil {
		return nil, err
	}
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateStarted {
		return nil, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s, not started", sb.ID, sb.State)
	}
	if a, ok := f.agents[sb.ID]; ok {
		return a.client, nil
	}
	dir, err := os.MkdirTemp("", "sbxfake")
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o755); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	actx, cancel := context.WithCancel(context.Background())
	a := &fakeAgent{dir: dir, client: agent.NewClient(sock), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		agent.Serve(actx, ln, agent.ServerConfig{Dir: root, FilesRoot: root})
	}()
	f.agents[sb.ID] = a
	return a.client, nil
}

// AgentRoot is the directory that stands for sandbox id's root in its
// fake agent ("" before the first toolbox call).
func (f *Fake) AgentRoot(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.agents[id]; ok {
		return filepath.Join(a.dir, "root")
	}
	return ""
}

// Close stops the fake agents and removes their directories.
func (f *Fake) Close() {
	f.mu.Lock()
	agents := f.agents
	f.agents = map[string]*fakeAgent{}
	f.mu.Unlock()
	for _, a := range agents {
		a.cancel()
		<-a.done
		a.client.Close()
		os.RemoveAll(a.dir)
	}
}

// Exec implements httpapi.ProcessExecer with the built-in command set.
func (f *Fake) Exec(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (httpapi.Process, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Exec"); err != nil {
		return nil, err
	}
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateStarted {
		return nil, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s, not started", sb.ID, sb.State)
	}
	argv := req.Argv
	if req.Shell != "" {
		argv = strings.Fields(req.Shell)
	}
	p := &fakeProc{ctx: ctx, f: f, id: sb.ID, frames: make(chan agent.Frame, 16), done: make(chan struct{}), sigs: make(chan syscall.Signal, 1)}
	p.stdinR, p.stdinW = io.Pipe()
	if !req.Stdin {
		p.stdinW.Close()
	}
	go p.run(ctx, argv, req.Env)
	return p, nil
}

type fakeProc struct {
	ctx            context.Context
	f              *Fake
	id             string
	frames         chan agent.Frame
	stdinR         *io.PipeReader
	stdinW         *io.PipeWriter
	done           chan struct{}
	closeOnce      sync.Once
	ended, stopped bool
	mu             sync.Mutex
	sigs           chan syscall.Signal
}

// Signal ends a running "sleep" as the signal would.
func (p *fakeProc) Signal(sig syscall.Signal) error {
	select {
	case p.sigs <- sig:
	default:
	}
	return nil
}

func (p *fakeProc) emit(fr agent.Frame) bool {
	select {
	case p.frames <- fr:
		return true
	case <-p.done:
		return false
	}
}

func (p *fakeProc) exit(code int, signal string, timedOut, oom bool) {
	p.emit(agent.Frame{Kind: agent.FrameExit, Exit: &agent.ExitStatus{Code: code, Signal: signal, TimedOut: timedOut,
		OOMKilled: oom, Duration: 12 * time.Millisecond}})
	close(p.frames)
}

func (p *fakeProc) run(ctx context.Context, argv, env []string) {
	name, args := "", []string(nil)
	if len(argv) > 0 {
		name, args = argv[0], argv[1:]
	}
	switch name {
	case "echo":
		p.emit(agent.Frame{Kind: agent.FrameStdout, Data: []byte(strings.Join(args, " ") + "\n")})
		p.exit(0, "", false, false)
	case "env":
		p.emit(agent.Frame{Kind: agent.FrameStdout, Data: []byte(strings.Join(env, "\n") + "\n")})
		p.exit(0, "", false, false)
	case "warn":
		p.emit(agent.Frame{Kind: agent.FrameStderr, Data: []byte(strings.Join(args, " ") + "\n")})
		p.exit(0, "", false, false)
	case "cat":
		buf := make([]byte, 32<<10)
		for {
			n, err := p.stdinR.Read(buf)
			if n > 0 && !p.emit(agent.Frame{Kind: agent.FrameStdout, Data: bytes.Clone(buf[:n])}) {
				return
			}
			if err != nil {
				break
			}
		}
		p.exit(0, "", false, false)
	case "exit":
		code := 0
		if len(args) > 0 {
			code, _ = strconv.Atoi(args[0])
		}
		p.exit(code, "", false, false)
	case "yes":
		n := 0
		if len(args) > 0 {
			n, _ = strconv.Atoi(args[0])
		}
		chunk := bytes.Repeat([]byte("y\n"), 32<<10)
		for n > 0 {
			c := chunk[:min(n, len(chunk))]
			if !p.emit(agent.Frame{Kind: agent.FrameStdout, Data: c}) {
				return
			}
			n -= len(c)
		}
		p.exit(0, "", false, false)
	case "sleep":
		select {
		case <-ctx.Done():
		case <-p.done:
		case sig := <-p.sigs:
			p.exit(128+int(sig), unix.SignalName(sig), false, false)
			return
		}
		close(p.frames) // the stream ends without an exit frame
	case "oom":
		p.exit(137, "SIGKILL", false, true)
	case "timeout":
		p.exit(137, "SIGKILL", true, false)
	default:
		p.emit(agent.Frame{Kind: agent.FrameError, Data: []byte(fmt.Sprintf("exec: %q: executable file not found in $PATH", name))})
		close(p.frames)
	}
}

func (p *fakeProc) Recv() (agent.Frame, error) {
	var fr agent.Frame
	var ok bool
	select {
	case fr, ok = <-p.frames:
	case <-p.ctx.Done():
		return agent.Frame{}, p.ctx.Err()
	case <-p.done:
		return agent.Frame{}, errors.New("process closed")
	}
	if !ok {
		return agent.Frame{}, io.EOF
	}
	if fr.Kind == agent.FrameExit || fr.Kind == agent.FrameError {
		p.mu.Lock()
		p.ended = true
		p.mu.Unlock()
	}
	return fr, nil
}

func (p *fakeProc) Write(b []byte) (int, error) { return p.stdinW.Write(b) }
func (p *fakeProc) CloseStdin() error           { return p.stdinW.Close() }

func (p *fakeProc) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		ended := p.ended
		p.mu.Unlock()
		if !ended {
			p.f.mu.Lock()
			p.f.closed = append(p.f.closed, p.id)
			p.f.mu.Unlock()
		}
		close(p.done)
		p.stdinR.Close()
	})
	return nil
}

// --- Images ---

func (f *Fake) putImage(tenantID, ref string, size int64) image.Image {
	if f.images[tenantID] == nil {
		f.images[tenantID] = map[string]image.Image{}
	}
	sum := sha256.Sum256([]byte(ref))
	i := image.Image{Ref: ref, Digest: fmt.Sprintf("sha256:%x", sum), Size: size, CreatedAt: f.tick()}
	i.Config.Cmd = []string{"/bin/sh"}
	i.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	i.Config.WorkingDir = "/"
	f.images[tenantID][ref] = i
	return i
}

// Resolve implements httpapi.Images.
func (f *Fake) Resolve(ctx context.Context, tenantID, ref string) (image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.resolve(tenantID, ref)
}

// fakeImages is the Fake seen as an image store: its List lists images.
type fakeImages struct{ *Fake }

// ImageStore returns the fake's image side, for Config.Images.
func (f *Fake) ImageStore() httpapi.Images { return fakeImages{f} }

// Handler returns the API handler over the fake.
func (f *Fake) Handler(version string) http.Handler {
	return httpapi.New(httpapi.Config{Sandboxes: f, Images: f.ImageStore(), Auth: f, Version: version, Log: nil})
}

// List implements httpapi.Images: the tenant's images, then the shared ones.
func (fi fakeImages) List(ctx context.Context, tenantID string) ([]image.Image, error) {
	f := fi.Fake
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("ListImages"); err != nil {
		return nil, err
	}
	var out []image.Image
	for _, t := range []string{tenantID, f.AdminID} {
		refs := slices.Sorted(maps.Keys(f.images[t]))
		for _, r := range refs {
			i := f.images[t][r]
			i.Shared = t != tenantID
			if t == f.AdminID && tenantID != f.AdminID {
				if _, own := f.images[tenantID][r]; own {
					continue
				}
			}
			out = append(out, i)
		}
		if tenantID == f.AdminID {
			break
		}
	}
	return out, nil
}

// Pull implements httpapi.Images. A ref containing "missing" is not found,
// one containing "private" needs the user name "user".
func (f *Fake) Pull(ctx context.Context, tenantID, ref string, o image.PullOptions) (image.Image, error) {
	if strings.Contains(ref, "missing") {
		return image.Image{}, errdefs.Publicf(errdefs.ErrNotFound, "image %q not found in its registry", ref)
	}
	if strings.Contains(ref, "private") && o.Username != "user" {
		return image.Image{}, errdefs.Publicf(errdefs.ErrPermissionDenied, "the registry refused access to %q", ref)
	}
	const total = 3000
	for done := int64(1000); done <= total; done += 1000 {
		if o.Progress != nil {
			o.Progress(image.Progress{Complete: done, Total: total, Done: done == total})
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Pull"); err != nil {
		return image.Image{}, err
	}
	return f.putImage(tenantID, ref, total), nil
}

// Import implements httpapi.Images: it reads the whole body and records one
// image named ref (or "imported:<bytes>").
func (f *Fake) Import(ctx context.Context, tenantID string, r io.Reader, ref string) ([]image.Image, error) {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return nil, fmt.Errorf("reading archive: %w", err)
	}
	if n == 0 {
		return nil, errdefs.Public(errdefs.ErrInvalidArgument, "the archive is empty")
	}
	if ref == "" {
		ref = fmt.Sprintf("imported:%d", n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return []image.Image{f.putImage(tenantID, ref, n)}, nil
}

// Remove implements httpapi.Images: an image a sandbox uses is in conflict.
func (f *Fake) Remove(ctx context.Context, tenantID, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.images[tenantID][ref]; !ok {
		return errdefs.Publicf(errdefs.ErrNotFound, "image %q not found", ref)
	}
	for _, sb := range f.sandboxes {
		if sb.TenantID == tenantID && sb.Image == ref {
			return errdefs.Publicf(errdefs.ErrConflict, "image %q is used by sandbox %s", ref, sb.ID)
		}
	}
	delete(f.images[tenantID], ref)
	return nil
}

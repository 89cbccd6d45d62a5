package sandbox

// Clone: a new sandbox from another's current filesystem.
//
// The clone is recorded first (state creating, its own uid slot and
// address), then the source's writable layer is copied into the clone's
// directory as a snapshot is taken (frozen while it runs), the source's
// lock is let go, the copied layer's owners are shifted from the source's
// host id range to the clone's, and the clone is started. A crash at any
// point leaves a record in creating, which Recover rolls back like any
// create cut short; the source is never modified.
//
// Why the shift and not an idmapped mount: the layer's files are owned on
// disk by the source's host ids; an idmapped mount of the upper dir onto
// the clone's range would work for reading, but every file the clone then
// writes would land on disk in the source's range too, so the layer could
// never be told apart from the source's (nor archived, cloned again or
// moved on its own). One walk of the upper dir at clone time costs
// milliseconds per thousand files and leaves the clone an ordinary sandbox.

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
)

// CloneOptions are a clone's overrides of its source's configuration.
type CloneOptions struct {
	Name string            // optional; default: the clone's ID
	Env  map[string]string // merged over the source's
	// Labels replace the source's when not nil.
	Labels map[string]string
	// Resources: zero fields keep the source's. The disk may only grow.
	Resources store.Resources
	// Runtime: "" keeps the source's runtime class.
	Runtime string
}

// Clone creates a started sandbox from a started or stopped sandbox's
// current filesystem, with the same image and the overrides applied. The
// source keeps running (frozen for the copy only).
func (s *Service) Clone(ctx context.Context, tenantID, idOrName string, o CloneOptions) (store.Sandbox, CopyStats, error) {
	ph := newPhases()
	if o.Name != "" {
		if err := validateName(o.Name); err != nil {
			return store.Sandbox{}, CopyStats{}, err
		}
	}
	if err := ValidateLabels(o.Labels); err != nil {
		return store.Sandbox{}, CopyStats{}, err
	}
	if err := validateEnv(o.Env); err != nil {
		return store.Sandbox{}, CopyStats{}, err
	}
	r := o.Resources
	if r.CPU < 0 || r.MemoryMB < 0 || r.DiskMB < 0 || r.Pids < 0 {
		return store.Sandbox{}, CopyStats{}, invalid("resources must not be negative")
	}
	src, unlockSrc, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return store.Sandbox{}, CopyStats{}, err
	}
	srcLocked := true
	defer func() {
		if srcLocked {
			unlockSrc()
		}
	}()
	switch src.State {
	case store.StateStarted, store.StateStopped:
	default:
		return store.Sandbox{}, CopyStats{}, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s: only started or stopped sandboxes can be cloned", src.ID, src.State)
	}
	s.Touch(src.ID)
	tenant, err := s.st.GetTenant(ctx, src.TenantID)
	if err != nil {
		return store.Sandbox{}, CopyStats{}, err
	}
	if r.DiskMB > 0 && r.DiskMB < src.Resources.DiskMB {
		return store.Sandbox{}, CopyStats{}, invalid("a clone's disk cannot be smaller than its source's (%d MiB)", src.Resources.DiskMB)
	}
	res := src.Resources.With(r)
	if err := checkMax(res, tenantMax(s.cfg.Maximums, tenant.Limits)); err != nil {
		return store.Sandbox{}, CopyStats{}, err
	}
	class := o.Runtime
	if class == "" {
		class = src.Runtime
	}
	rc, ok := s.cfg.Runtimes[class]
	if !ok {
		return store.Sandbox{}, CopyStats{}, invalid("unknown runtime class %q", class)
	}
	img, err := s.images.Resolve(ctx, src.TenantID, src.ImageDigest)
	if err != nil {
		return store.Sandbox{}, CopyStats{}, fmt.Errorf("cloning sandbox: image %s: %w", src.Image, err)
	}
	if max := tenant.Limits.MaxSandboxes; max > 0 {
		items, _, err := s.List(ctx, store.SandboxFilter{TenantID: src.TenantID, Limit: max + 1})
		if err != nil {
			return store.Sandbox{}, CopyStats{}, err
		}
		if len(items) >= max {
			return store.Sandbox{}, CopyStats{}, errdefs.Publicf(errdefs.ErrResourceExhausted, "the tenant's limit of %d sandboxes is reached", max)
		}
	}
	env := mergeEnv(src.Env, o.Env)
	labels := maps.Clone(src.Labels)
	if o.Labels != nil {
		labels = o.Labels
	}
	now := time.Now().UTC()
	cl := store.Sandbox{
		ID: newID(), TenantID: src.TenantID, Name: o.Name,
		Image: src.Image, ImageDigest: src.ImageDigest, Runtime: class,
		State: store.StateCreating, Desired: store.StateStarted,
		Env: env, Labels: labels, Resources: res,
		User: src.User, Entrypoint: src.Entrypoint, Cmd: src.Cmd, Workdir: src.Workdir,
		UIDSlot: -1,
		Network: store.Network{Mode: src.Network.Mode, BlockAll: src.Network.BlockAll,
			Allow: src.Network.Allow, Deny: src.Network.Deny},
		// The same volumes, shared (volumes are not part of the layer:
		// their contents are not copied).
		Volumes: slices.Clone(src.Volumes),
		// The source's policy; the clone's own timers start now.
		Lifecycle: store.Lifecycle{AutoStop: src.Lifecycle.AutoStop, AutoArchive: src.Lifecycle.AutoArchive,
			AutoDelete: src.Lifecycle.AutoDelete, LastActivity: s.now()},
		CreatedAt: now, UpdatedAt: now,
	}
	if cl.Name == "" {
		cl.Name = cl.ID
	}
	ph.mark("resolve")
	if err := s.insert(ctx, &cl, rc.UserNS); err != nil {
		return store.Sandbox{}, CopyStats{}, err
	}
	unlock := s.lock(cl.ID)
	defer unlock()
	s.event(cl, "state", "", store.StateCreating, "")
	log := s.log.With("sandbox", cl.ID)
	fail := func(err error) (store.Sandbox, CopyStats, error) {
		s.rollback(cl, log)
		s.event(src, "clone", "", "", "clone failed: "+errdefs.Message(err))
		return store.Sandbox{}, CopyStats{}, fmt.Errorf("cloning sandbox %s: %w", src.ID, err)
	}
	dir := s.dir(cl.ID)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fail(err)
	}
	_, st, err := s.copyLayer(ctx, src, rootfs.DiskImage(dir))
	if err != nil {
		return fail(err)
	}
	ph.mark("copy")
	unlockSrc()
	srcLocked = false
	if res.DiskMB > src.Resources.DiskMB {
		if err := rootfs.Grow(ctx, dir, res.DiskMB<<20); err != nil {
			return fail(fmt.Errorf("growing disk: %w", err))
		}
	} else if size, err := rootfs.DiskSize(dir); err == nil && size>>20 != cl.Resources.DiskMB {
		cl.Resources.DiskMB = size >> 20
	}
	if err := rootfs.MountLayer(dir); err != nil {
		return fail(err)
	}
	n, err := rootfs.ShiftOwners(ctx, dir, s.idmapOf(src), s.idmapOf(cl))
	if err != nil {
		return fail(err)
	}
	ph.mark("shift")
	if err := s.start(ctx, &cl, img, ph); err != nil {
		return fail(err)
	}
	s.event(src, "clone", "", "", fmt.Sprintf("cloned to %s (paused %s)", cl.ID, st.Pause.Round(time.Millisecond)))
	s.event(cl, "clone", "", "", "cloned from "+src.ID)
	log.Info("sandbox cloned", "source", src.ID, "files_shifted", n, "copy_bytes", st.Bytes, "pause", st.Pause, ph.group())
	return cl, st, nil
}

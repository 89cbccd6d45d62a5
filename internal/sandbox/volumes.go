package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/runtime"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/volume"
)

// Volumes is the volume manager as sandboxes use it; *volume.Manager
// implements it.
type Volumes interface {
	Get(ctx context.Context, tenantID, idOrName string) (store.Volume, error)
	Acquire(ctx context.Context, volumeID, holder string) error
	Release(volumeID, holder string) error
	Stage(volumeID, subpath, holder string, n int, readOnly bool, userns *os.File) (string, error)
	Unstage(holder string) error
	Recover(ctx context.Context) error
}

// VolumeOptions mount a volume into a new sandbox.
type VolumeOptions struct {
	Volume    string // ID or name, of the sandbox's tenant
	MountPath string // absolute, clean, not / nor under /proc, /sys, /dev
	Subpath   string // directory inside the volume, created if missing; "" = its root
	ReadOnly  bool
}

// maxVolumeMounts bounds a sandbox's mounts.
const maxVolumeMounts = 16

// reservedPaths cannot be mount paths, nor lie under one.
var reservedPaths = []string{"/proc", "/sys", "/dev", runtime.AgentDir, "/etc/resolv.conf", "/etc/hostname", "/etc/hosts"}

func validateMountPath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" || len(p) > 4096 {
		return invalid("mount_path %q: want a clean absolute path other than /", p)
	}
	for _, r := range reservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") || strings.HasPrefix(r, p+"/") {
			return invalid("mount_path %q: %s is reserved", p, r)
		}
	}
	return nil
}

// resolveVolumes validates a create's mounts and looks their volumes up in
// the tenant's.
func (s *Service) resolveVolumes(ctx context.Context, tenantID string, reqs []VolumeOptions) ([]store.VolumeMount, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	if s.cfg.Volumes == nil {
		return nil, errdefs.Public(errdefs.ErrUnavailable, "volumes are disabled on this host")
	}
	if len(reqs) > maxVolumeMounts {
		return nil, invalid("at most %d volume mounts", maxVolumeMounts)
	}
	seen := map[string]bool{}
	out := make([]store.VolumeMount, 0, len(reqs))
	for _, r := range reqs {
		if r.Volume == "" {
			return nil, invalid("a volume mount needs a volume")
		}
		if err := validateMountPath(r.MountPath); err != nil {
			return nil, err
		}
		if seen[r.MountPath] {
			return nil, invalid("two volumes are mounted at %s", r.MountPath)
		}
		seen[r.MountPath] = true
		if err := volume.ValidateSubpath(r.Subpath); err != nil {
			return nil, err
		}
		v, err := s.cfg.Volumes.Get(ctx, tenantID, r.Volume)
		if err != nil {
			return nil, err
		}
		if v.State != store.VolumeReady {
			return nil, errdefs.Publicf(errdefs.ErrConflict, "volume %q is %s", v.Name, v.State)
		}
		out = append(out, store.VolumeMount{VolumeID: v.ID, Volume: v.Name, MountPath: r.MountPath, Subpath: r.Subpath, ReadOnly: r.ReadOnly})
	}
	return out, nil
}

// mountVolumes acquires the sandbox's volumes and stages its views of
// them (idmapped onto userns, nil without a user namespace) for the
// runtime, returning the spec's bind mounts, parents before children.
// The caller unstages once the runtime has started the container.
func (s *Service) mountVolumes(ctx context.Context, sb store.Sandbox, userns *os.File) ([]specs.Mount, error) {
	if len(sb.Volumes) == 0 {
		return nil, nil
	}
	if s.cfg.Volumes == nil {
		return nil, errdefs.Public(errdefs.ErrUnavailable, "volumes are disabled on this host")
	}
	var mounts []specs.Mount
	for i, m := range sb.Volumes {
		if err := s.cfg.Volumes.Acquire(ctx, m.VolumeID, sb.ID); err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				err = errdefs.Publicf(errdefs.ErrNotFound, "volume %q (%s) mounted at %s has been deleted", m.Volume, m.VolumeID, m.MountPath)
			}
			return nil, err
		}
		stage, err := s.cfg.Volumes.Stage(m.VolumeID, m.Subpath, sb.ID, i, m.ReadOnly, userns)
		if err != nil {
			return nil, fmt.Errorf("volume %q at %s: %w", m.Volume, m.MountPath, err)
		}
		opts := []string{"bind", "nosuid", "nodev"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, specs.Mount{Destination: m.MountPath, Type: "bind", Source: stage, Options: opts})
	}
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(mounts[i].Destination, "/") < strings.Count(mounts[j].Destination, "/")
	})
	return mounts, nil
}

// unstageVolumes drops the stages of a start (the container holds its
// own mounts now).
func (s *Service) unstageVolumes(sb store.Sandbox) {
	if len(sb.Volumes) == 0 || s.cfg.Volumes == nil {
		return
	}
	if err := s.cfg.Volumes.Unstage(sb.ID); err != nil {
		s.log.Warn("removing volume stages", "sandbox", sb.ID, "err", err)
	}
}

// releaseVolumes gives up the sandbox's hold on its volumes; idempotent.
func (s *Service) releaseVolumes(sb store.Sandbox) error {
	if len(sb.Volumes) == 0 || s.cfg.Volumes == nil {
		return nil
	}
	s.unstageVolumes(sb)
	var errs []error
	for _, m := range sb.Volumes {
		errs = append(errs, s.cfg.Volumes.Release(m.VolumeID, sb.ID))
	}
	return errors.Join(errs...)
}

// readoptVolumes re-takes the hold of a sandbox adopted at start-up (its
// container still has its mounts).
func (s *Service) readoptVolumes(ctx context.Context, sb store.Sandbox) {
	if s.cfg.Volumes == nil {
		return
	}
	for _, m := range sb.Volumes {
		if err := s.cfg.Volumes.Acquire(ctx, m.VolumeID, sb.ID); err != nil {
			s.log.Warn("re-adopting a volume", "sandbox", sb.ID, "volume", m.VolumeID, "err", err)
		}
	}
}

// recoverVolumes lets the manager finish its own interrupted work, once
// every adopted sandbox holds its volumes again.
func (s *Service) recoverVolumes(ctx context.Context) {
	if s.cfg.Volumes == nil {
		return
	}
	if err := s.cfg.Volumes.Recover(ctx); err != nil {
		s.log.Warn("recovering volumes", "err", err)
	}
}

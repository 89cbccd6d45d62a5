// Package volume manages named, tenant-owned persistent volumes: ext4
// image files that outlive the sandboxes mounting them, each with a size
// limit the kernel enforces (the image's size), shared by any number of
// sandboxes at once.
//
// Layout under the manager's directory (dir):
//
//	dir/<id>/disk.img      sparse ext4 image; files on it keep in-sandbox
//	                       ids (0-based), whichever sandbox wrote them
//	dir/<id>/disk/         its mount point, mounted while at least one
//	                       sandbox uses the volume (reference counted)
//	dir/.stage/<sb>-<n>    a sandbox's view of its n-th mount (the subpath,
//	                       idmapped onto the sandbox's user namespace,
//	                       read-only if asked), only while its runtime
//	                       starts it: the runtime binds it into the
//	                       container, then it is detached
//
// Ids: every user-namespaced sandbox has its own host id range, so a plain
// bind would store files with that range's host ids and other sandboxes
// would see them as nobody. The stage is an idmapped mount with the
// sandbox's user namespace instead, so sandbox root writes uid 0 to disk
// and every sandbox sees the same owners.
//
// Concurrency: one mutex serializes the reference counts, the limit
// checks of creates, and deletes; mkfs and staging run outside it. Crash safety: a volume's record is
// written (creating) before its files, and removed (after deleting) only
// once they are gone; Recover rolls creates back, finishes deletes, drops
// stages and unmounts the volumes no sandbox holds, so every step can be
// redone after a kill -9. The reference counts live in memory: at start-up
// the sandbox service re-acquires the volumes of the sandboxes it adopts
// before it calls Recover.
package volume

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Defaults of Config's limits.
const (
	DefaultMaxSizeMB    = 100 << 10 // 100 GiB per volume
	DefaultMaxPerTenant = 100
	// MinSizeMB is the smallest volume (ext4 needs room for its journal).
	MinSizeMB = 16
)

// Config configures the manager.
type Config struct {
	Dir string // volumes live in Dir/<id>
	// MaxSizeMB caps one volume; 0 means DefaultMaxSizeMB.
	MaxSizeMB int64
	// MaxPerTenant caps a tenant's volumes; 0 means DefaultMaxPerTenant.
	MaxPerTenant int
	// MaxTotalMBPerTenant caps the sum of a tenant's volume sizes; 0 means
	// no cap beyond MaxPerTenant × MaxSizeMB.
	MaxTotalMBPerTenant int64
}

// Manager creates, mounts and deletes volumes. It is safe for concurrent use.
type Manager struct {
	cfg Config
	st  store.Store
	log *slog.Logger

	mu      sync.Mutex
	holders map[string]map[string]bool // volume ID → sandbox IDs that use it
	// orphans are force-deleted volumes that started sandboxes still
	// write to: they count against their tenant's limits until the last
	// holder lets go.
	orphans map[string]store.Volume
	// recovered is set by Recover. Before it, Release never unmounts: at
	// start-up a stopped sandbox may be released before a running one
	// that shares its volume is re-adopted, and the running one's mount
	// must not be cut from the host meanwhile (Recover unmounts what is
	// still unheld).
	recovered bool
}

// New returns a manager; call Recover once the sandboxes are re-adopted
// (until then, volumes stay mounted when released).
func New(cfg Config, st store.Store, log *slog.Logger) (*Manager, error) {
	if cfg.Dir == "" {
		return nil, errors.New("volume: no directory")
	}
	if cfg.MaxSizeMB <= 0 {
		cfg.MaxSizeMB = DefaultMaxSizeMB
	}
	if cfg.MaxPerTenant <= 0 {
		cfg.MaxPerTenant = DefaultMaxPerTenant
	}
	// 0711: sandboxes' runtimes, running as unprivileged host uids,
	// must traverse to the stages.
	for _, d := range []string{cfg.Dir, stageRoot(cfg.Dir)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, err
		}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{cfg: cfg, st: st, log: log, holders: map[string]map[string]bool{}, orphans: map[string]store.Volume{}}, nil
}

func stageRoot(dir string) string          { return filepath.Join(dir, ".stage") }
func (m *Manager) volDir(id string) string { return filepath.Join(m.cfg.Dir, id) }

// StagePath is where the n-th mount of sandbox sb is staged.
func (m *Manager) StagePath(sb string, n int) string {
	return filepath.Join(stageRoot(m.cfg.Dir), fmt.Sprintf("%s-%d", sb, n))
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return "vol-" + idEncoding.EncodeToString(b)
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// ValidateName checks a volume name: 1 to 63 letters, digits, '_', '.' or
// '-', starting with a letter or digit.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return errdefs.Publicf(errdefs.ErrInvalidArgument,
			"volume name %q: want 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

// Create makes a volume of sizeMB MiB for the tenant.
func (m *Manager) Create(ctx context.Context, tenantID, name string, sizeMB int64) (store.Volume, error) {
	if err := ValidateName(name); err != nil {
		return store.Volume{}, err
	}
	if sizeMB < MinSizeMB || sizeMB > m.cfg.MaxSizeMB {
		return store.Volume{}, errdefs.Publicf(errdefs.ErrInvalidArgument,
			"size_mb must be between %d and %d", MinSizeMB, m.cfg.MaxSizeMB)
	}
	v, err := m.reserve(ctx, tenantID, name, sizeMB)
	if err != nil {
		return store.Volume{}, err
	}
	// mkfs runs outside the lock: the record (creating) holds the name,
	// and nothing else touches a volume in that state.
	if err := rootfs.CreateDisk(ctx, m.volDir(v.ID), sizeMB<<20, "0:0"); err != nil {
		m.mu.Lock()
		m.remove(context.WithoutCancel(ctx), v)
		m.mu.Unlock()
		return store.Volume{}, fmt.Errorf("creating volume %s: %w", name, err)
	}
	v.State = store.VolumeReady
	if err := m.st.UpdateVolume(ctx, v); err != nil {
		m.mu.Lock()
		m.remove(context.WithoutCancel(ctx), v)
		m.mu.Unlock()
		return store.Volume{}, err
	}
	m.log.Info("volume created", "volume", v.ID, "name", name, "tenant", tenantID, "size_mb", sizeMB)
	return v, nil
}

// reserve checks the tenant's limits and writes the volume's record
// (creating), under the lock so that two creates cannot both pass a limit.
func (m *Manager) reserve(ctx context.Context, tenantID, name string, sizeMB int64) (store.Volume, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	existing, err := m.st.ListVolumes(ctx, tenantID)
	if err != nil {
		return store.Volume{}, err
	}
	var total int64
	for _, v := range existing {
		total += v.SizeMB
		if v.Name == name {
			return store.Volume{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "volume %q already exists", name)
		}
	}
	count := len(existing)
	for _, o := range m.orphans {
		if o.TenantID == tenantID {
			total += o.SizeMB
			count++
		}
	}
	if count >= m.cfg.MaxPerTenant {
		return store.Volume{}, errdefs.Publicf(errdefs.ErrResourceExhausted, "the tenant's limit of %d volumes is reached", m.cfg.MaxPerTenant)
	}
	if max := m.cfg.MaxTotalMBPerTenant; max > 0 && total+sizeMB > max {
		return store.Volume{}, errdefs.Publicf(errdefs.ErrResourceExhausted,
			"the tenant's volumes would total %d MiB, over its limit of %d MiB", total+sizeMB, max)
	}
	now := time.Now().UTC()
	v := store.Volume{ID: newID(), TenantID: tenantID, Name: name, SizeMB: sizeMB, State: store.VolumeCreating,
		CreatedAt: now, UpdatedAt: now}
	if err := m.st.CreateVolume(ctx, v); err != nil {
		return store.Volume{}, err
	}
	return v, nil
}

// Get returns the tenant's volume by ID or name.
func (m *Manager) Get(ctx context.Context, tenantID, idOrName string) (store.Volume, error) {
	v, err := m.st.GetVolume(ctx, tenantID, idOrName)
	if errors.Is(err, errdefs.ErrNotFound) {
		v, err = m.st.GetVolumeByName(ctx, tenantID, idOrName)
	}
	if errors.Is(err, errdefs.ErrNotFound) {
		return store.Volume{}, errdefs.Publicf(errdefs.ErrNotFound, "volume %q not found", idOrName)
	}
	return v, err
}

// List returns the tenant's volumes, oldest first.
func (m *Manager) List(ctx context.Context, tenantID string) ([]store.Volume, error) {
	return m.st.ListVolumes(ctx, tenantID)
}

// Users lists the live sandboxes that mount the volume.
func (m *Manager) Users(ctx context.Context, volumeID string) ([]string, error) {
	return m.st.VolumeUsers(ctx, volumeID)
}

// Delete deletes the tenant's volume and its data. A volume that a live
// sandbox mounts (started or not) is refused with ErrConflict unless
// force is set; then the sandboxes that run keep their mounts until they
// stop (the kernel frees the space after the last one; until then the
// volume still counts against the tenant's limits), and their next start
// fails.
func (m *Manager) Delete(ctx context.Context, tenantID, idOrName string, force bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.Get(ctx, tenantID, idOrName)
	if err != nil {
		return err
	}
	if v.State != store.VolumeReady {
		return errdefs.Publicf(errdefs.ErrConflict, "volume %q is %s", v.Name, v.State)
	}
	users, err := m.st.VolumeUsers(ctx, v.ID)
	if err != nil {
		return err
	}
	if len(users) > 0 && !force {
		return errdefs.Publicf(errdefs.ErrConflict,
			"volume %q is mounted by sandbox %s: delete the sandboxes first, or force", v.Name, strings.Join(users, ", "))
	}
	v.State = store.VolumeDeleting
	if err := m.st.UpdateVolume(ctx, v); err != nil {
		return err
	}
	held := m.holders[v.ID]
	if err := m.remove(context.WithoutCancel(ctx), v); err != nil {
		return fmt.Errorf("deleting volume %s: %w", v.Name, err)
	}
	if len(held) > 0 {
		m.holders[v.ID] = held
		m.orphans[v.ID] = v
	}
	m.log.Info("volume deleted", "volume", v.ID, "name", v.Name, "forced_users", users)
	return nil
}

// remove unmounts the volume, deletes its files, then its record. The
// caller holds mu. The directory is never removed recursively: a mount
// left in it would take the volume's data (or worse) with it.
func (m *Manager) remove(ctx context.Context, v store.Volume) error {
	dir := m.volDir(v.ID)
	if err := rootfs.UnmountDisk(dir); err != nil {
		return err
	}
	if mounted, err := rootfs.IsMountPoint(rootfs.DiskDir(dir)); err != nil || mounted {
		return fmt.Errorf("volume %s is still mounted (%v)", v.ID, err)
	}
	for _, p := range []string{rootfs.DiskImage(dir) + ".tmp", rootfs.DiskImage(dir) + ".loop", rootfs.DiskImage(dir), rootfs.DiskDir(dir), dir} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", p, err)
		}
	}
	delete(m.holders, v.ID)
	if err := m.st.DeleteVolume(ctx, v.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	return nil
}

// Acquire mounts the volume on the host (if it is not yet) for sandbox
// holder. Acquiring twice for one holder counts once.
func (m *Manager) Acquire(ctx context.Context, volumeID, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := m.st.GetVolume(ctx, "", volumeID)
	if errors.Is(err, errdefs.ErrNotFound) || (err == nil && v.State != store.VolumeReady) {
		return errdefs.Publicf(errdefs.ErrNotFound, "volume %s has been deleted", volumeID)
	}
	if err != nil {
		return err
	}
	if err := rootfs.MountDisk(m.volDir(v.ID)); err != nil {
		return fmt.Errorf("mounting volume %s: %w", v.Name, err)
	}
	h := m.holders[v.ID]
	if h == nil {
		h = map[string]bool{}
		m.holders[v.ID] = h
	}
	h[holder] = true
	return nil
}

// Release drops holder's use of the volume and unmounts it from the host
// when no sandbox uses it any more. Releasing what is not held (or a
// deleted volume) is not an error.
func (m *Manager) Release(volumeID, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.holders[volumeID]
	delete(h, holder)
	if len(h) > 0 {
		return nil
	}
	delete(m.holders, volumeID)
	if _, ok := m.orphans[volumeID]; ok {
		delete(m.orphans, volumeID) // its files went at the delete
		return nil
	}
	if !m.recovered {
		return nil
	}
	return rootfs.UnmountDisk(m.volDir(volumeID))
}

// Holders returns how many sandboxes hold the volume.
func (m *Manager) Holders(volumeID string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.holders[volumeID])
}

// Stage makes sandbox holder's view of an acquired volume at
// StagePath(holder, n): the directory subpath of the volume (created if
// missing; "" is the volume's root), resolved so that nothing in the
// volume (which sandboxes write) can lead it out, idmapped onto userns
// (nil: no user namespace), read-only if asked.
func (m *Manager) Stage(volumeID, subpath, holder string, n int, readOnly bool, userns *os.File) (string, error) {
	if err := ValidateSubpath(subpath); err != nil {
		return "", err
	}
	root := rootfs.DiskDir(m.volDir(volumeID))
	if mounted, err := rootfs.IsMountPoint(root); err != nil || !mounted {
		return "", fmt.Errorf("volume %s is not mounted (%v)", volumeID, err)
	}
	fd, err := openSubdir(root, subpath)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	target := m.StagePath(holder, n)
	if err := unstage(target); err != nil {
		return "", err
	}
	if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	attr := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
	if readOnly {
		attr |= unix.MOUNT_ATTR_RDONLY
	}
	if err := idmap.MountClone(fd, "", target, userns, attr); err != nil {
		os.Remove(target)
		return "", fmt.Errorf("staging volume %s: %w", volumeID, err)
	}
	return target, nil
}

// Unstage detaches every stage of sandbox holder (the runtime has bound
// them into the container by now, or failed).
func (m *Manager) Unstage(holder string) error {
	ents, err := os.ReadDir(stageRoot(m.cfg.Dir))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), holder+"-") {
			errs = append(errs, unstage(filepath.Join(stageRoot(m.cfg.Dir), e.Name())))
		}
	}
	return errors.Join(errs...)
}

func unstage(p string) error {
	for {
		mounted, err := rootfs.IsMountPoint(p)
		if err != nil {
			return err
		}
		if !mounted {
			break
		}
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", p, err)
		}
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// ValidateSubpath checks a mount's subpath: relative, clean, without "..".
func ValidateSubpath(p string) error {
	if p == "" {
		return nil
	}
	if strings.HasPrefix(p, "/") || filepath.Clean(p) != p || p == "." || p == ".." ||
		strings.HasPrefix(p, "../") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || len(p) > 1024 {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "subpath %q: want a clean relative path inside the volume, without '..'", p)
	}
	return nil
}

// openSubdir opens the directory sub of root as an O_PATH descriptor,
// creating it if missing. Resolution stays inside root whatever symlinks
// the volume holds (RESOLVE_IN_ROOT: an absolute link or a ".." resolves
// against root, as in a chroot) and on its filesystem.
func openSubdir(root, sub string) (int, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(rfd)
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	path := sub
	if path == "" {
		path = "."
	}
	fd, err := unix.Openat2(rfd, path, &how)
	if errors.Is(err, unix.ENOENT) {
		// os.Root never follows a link out of root; a link that would
		// lead out is an error, not a host path.
		r, rerr := os.OpenRoot(root)
		if rerr != nil {
			return -1, rerr
		}
		rerr = r.MkdirAll(sub, 0o755)
		r.Close()
		if rerr != nil {
			return -1, errdefs.Publicf(errdefs.ErrInvalidArgument, "subpath %q cannot be created in the volume: %v", sub, stripRoot(rerr, root))
		}
		fd, err = unix.Openat2(rfd, path, &how)
	}
	if err != nil {
		if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ELOOP) {
			return -1, errdefs.Publicf(errdefs.ErrInvalidArgument, "subpath %q is not a directory in the volume", sub)
		}
		return -1, fmt.Errorf("opening subpath %q: %w", sub, err)
	}
	return fd, nil
}

// stripRoot keeps host paths out of user-facing messages.
func stripRoot(err error, root string) string {
	return strings.ReplaceAll(err.Error(), root+"/", "")
}

// Recover finishes what a crash cut short: creates roll back, deletes
// complete, stages go, and volumes that no sandbox holds (the sandbox
// service has re-acquired those of the sandboxes it adopted) are unmounted.
// Call it once at start-up, before any sandbox starts.
func (m *Manager) Recover(ctx context.Context) error {
	ents, _ := os.ReadDir(stageRoot(m.cfg.Dir))
	for _, e := range ents {
		if err := unstage(filepath.Join(stageRoot(m.cfg.Dir), e.Name())); err != nil {
			m.log.Warn("removing a leftover volume stage", "stage", e.Name(), "err", err)
		}
	}
	all, err := m.st.ListVolumes(ctx, "")
	if err != nil {
		return fmt.Errorf("recovering volumes: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recovered = true
	var errs []error
	for _, v := range all {
		switch v.State {
		case store.VolumeCreating, store.VolumeDeleting:
			m.log.Info("finishing an interrupted volume create or delete", "volume", v.ID, "state", v.State)
			errs = append(errs, m.remove(ctx, v))
		default:
			if len(m.holders[v.ID]) == 0 {
				errs = append(errs, rootfs.UnmountDisk(m.volDir(v.ID)))
			}
		}
	}
	return errors.Join(errs...)
}

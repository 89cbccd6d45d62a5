// Package rootfs builds and tears down a sandbox's root filesystem: an
// overlay of the image's read-only layers under the sandbox's own writable
// layer, which lives on a per-sandbox ext4 image so that its size limit is
// enforced by the kernel (the host filesystems here have no project quotas).
//
// Layout of a sandbox directory (dir):
//
//	dir/disk.img   sparse ext4 image holding the writable layer (size = disk limit)
//	dir/disk/      mount point of disk.img (a loop device, auto-cleared on unmount)
//	dir/disk/upper overlay upper dir: every file the sandbox wrote
//	dir/disk/work  overlay work dir
//	dir/lower/N    idmapped mounts of the image layers, only while mounting a
//	               user-namespaced sandbox (detached once the overlay holds them)
//	dir/rootfs/    the overlay: the sandbox's /
//
// With a user namespace, the image layers (owned by 0:0 on disk, shared by
// every sandbox) are mounted idmapped onto the sandbox's host id range, and
// the writable layer's root is owned by the range's first id, so files keep
// their in-sandbox owners while on the host they belong to an unprivileged
// range unique to the sandbox.
//
// Mount and Unmount are idempotent: each step checks whether it is already
// done, so a create or start cut short by a crash can simply be run again.
package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/idmap"
)

// Options describe a sandbox's root filesystem.
type Options struct {
	Dir    string     // the sandbox's directory
	Layers []string   // image layer dirs, lowest first
	IDMap  *idmap.Map // nil: no user namespace
	// UserNS is an open user-namespace file with IDMap's mapping, used for
	// the idmapped layer mounts. Required when IDMap is set.
	UserNS *os.File
	// DiskBytes is the size of the writable layer.
	DiskBytes int64
	// Pool, if set, supplies ready-made disk images of its size.
	Pool *DiskPool
}

// Paths inside a sandbox directory.
func diskImage(dir string) string { return filepath.Join(dir, "disk.img") }
func diskMount(dir string) string { return filepath.Join(dir, "disk") }

// RootfsDir is the mount point of the sandbox's root filesystem.
func RootfsDir(dir string) string { return filepath.Join(dir, "rootfs") }

// UpperDir is the sandbox's writable layer (valid while mounted).
func UpperDir(dir string) string { return filepath.Join(dir, "disk", "upper") }

// Create makes the sandbox's writable layer: a sparse ext4 image of
// o.DiskBytes whose root is owned by the sandbox's root.
func Create(ctx context.Context, o Options) error {
	if o.DiskBytes < MinDiskBytes {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "disk must be at least %d MiB", MinDiskBytes>>20)
	}
	// 0711: the sandbox's runtime, running as the sandbox's host uid, must
	// reach dir/rootfs.
	if err := os.MkdirAll(o.Dir, 0o711); err != nil {
		return err
	}
	img := diskImage(o.Dir)
	if _, err := os.Stat(img); err == nil {
		return nil // made before a crash; mkfs finished (see rename below)
	}
	if o.Pool != nil && o.Pool.take(o.DiskBytes, img) {
		return nil
	}
	owner := "0:0"
	if o.IDMap != nil {
		owner = fmt.Sprintf("%d:%d", o.IDMap.HostID, o.IDMap.HostID)
	}
	return makeDisk(ctx, img, o.DiskBytes, owner)
}

// makeDisk makes a sparse ext4 image of size bytes at img (through a
// temporary file, so img is either whole or absent).
func makeDisk(ctx context.Context, img string, size int64, owner string) error {
	tmp := img + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("creating disk image: %w", err)
	}
	err = f.Truncate(size)
	f.Close()
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("sizing disk image: %w", diskErr(err))
	}
	cmd := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard,root_owner="+owner, tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mkfs.ext4: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// MinDiskBytes is the smallest writable layer.
const MinDiskBytes = 16 << 20

func diskErr(err error) error {
	if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
		return fmt.Errorf("%w: %w", errdefs.Public(errdefs.ErrResourceExhausted, "the host is out of disk space"), err)
	}
	return err
}

// Mount mounts the writable layer and the overlay at RootfsDir(o.Dir).
func Mount(ctx context.Context, o Options) error {
	if len(o.Layers) == 0 {
		return fmt.Errorf("rootfs: no layers")
	}
	if o.IDMap != nil && o.UserNS == nil {
		return fmt.Errorf("rootfs: user namespace file required with an id map")
	}
	root := RootfsDir(o.Dir)
	if mounted, err := isMountPoint(root); err != nil {
		return err
	} else if mounted {
		return nil
	}
	if err := mountDisk(o.Dir); err != nil {
		return err
	}
	upper, work := UpperDir(o.Dir), filepath.Join(diskMount(o.Dir), "work")
	for _, d := range []string{upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if o.IDMap != nil {
			if err := os.Lchown(d, int(o.IDMap.HostID), int(o.IDMap.HostID)); err != nil {
				return err
			}
		}
	}
	lowers := make([]string, len(o.Layers))
	var idmapped []string
	for i, l := range o.Layers {
		lowers[len(o.Layers)-1-i] = l // overlay lists the top layer first
	}
	if o.IDMap != nil {
		ldir := filepath.Join(o.Dir, "lower")
		for i, l := range o.Layers {
			target := filepath.Join(ldir, strconv.Itoa(i))
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
			if err := idmapMount(l, target, o.UserNS); err != nil {
				unmountAll(idmapped)
				return err
			}
			idmapped = append(idmapped, target)
			lowers[len(o.Layers)-1-i] = target
		}
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		unmountAll(idmapped)
		return err
	}
	data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(data) >= unix.Getpagesize() {
		unmountAll(idmapped)
		return fmt.Errorf("rootfs: %d layers make the overlay options too long", len(lowers))
	}
	err := unix.Mount("overlay", root, "overlay", unix.MS_NODEV, data)
	// The overlay keeps private clones of its layers: the idmapped mounts
	// are no longer needed either way.
	unmountAll(idmapped)
	if err != nil {
		return fmt.Errorf("mounting overlay: %w", err)
	}
	return nil
}

func idmapMount(src, target string, userns *os.File) error {
	return idmap.MountClone(unix.AT_FDCWD, src, target, userns, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV)
}

func unmountAll(paths []string) {
	for _, p := range paths {
		unix.Unmount(p, unix.MNT_DETACH)
	}
}

// Unmount unmounts the overlay and the writable layer. Unmounting what is
// not mounted is not an error.
func Unmount(dir string) error {
	for _, p := range []string{RootfsDir(dir), diskMount(dir)} {
		if err := unmount(p); err != nil {
			return err
		}
	}
	// Leftover idmapped layer mounts from a crash mid-Mount.
	ents, _ := os.ReadDir(filepath.Join(dir, "lower"))
	for _, e := range ents {
		if err := unmount(filepath.Join(dir, "lower", e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func unmount(p string) error {
	for {
		mounted, err := isMountPoint(p)
		if err != nil || !mounted {
			return err
		}
		if err := unix.Unmount(p, 0); err != nil {
			if errors.Is(err, unix.EBUSY) {
				// Something (e.g. a dying container's namespace) still holds
				// it; detach so it goes away when released.
				err = unix.Unmount(p, unix.MNT_DETACH)
			}
			if err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("unmounting %s: %w", p, err)
			}
		}
	}
}

// Remove unmounts everything and deletes the sandbox directory.
func Remove(dir string) error {
	if err := Unmount(dir); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("removing %s: %w", dir, err)
	}
	return nil
}

// Grow enlarges the writable layer to bytes. The sandbox must be stopped
// (the layer unmounted); shrinking is refused.
func Grow(ctx context.Context, dir string, bytes int64) error {
	if mounted, err := isMountPoint(diskMount(dir)); err != nil {
		return err
	} else if mounted {
		return errdefs.Public(errdefs.ErrConflict, "the disk can only grow while the sandbox is stopped")
	}
	img := diskImage(dir)
	fi, err := os.Stat(img)
	if err != nil {
		return err
	}
	if bytes < fi.Size() {
		return errdefs.Public(errdefs.ErrInvalidArgument, "the disk cannot shrink")
	}
	if bytes == fi.Size() {
		return nil
	}
	// A superblock of the last mount may still live in another mount
	// namespace's copy (see remountLive): resizing under it would corrupt
	// the disk. Such copies go within moments; wait for it.
	if err := waitReleased(ctx, dir, 5*time.Second); err != nil {
		return err
	}
	if err := os.Truncate(img, bytes); err != nil {
		return diskErr(err)
	}
	if out, err := exec.CommandContext(ctx, "e2fsck", "-f", "-y", img).CombinedOutput(); err != nil {
		// Exit code 1 means "errors corrected", which is fine.
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() > 1 {
			return fmt.Errorf("e2fsck: %w: %s", err, strings.TrimSpace(string(out)))
		}
	}
	if out, err := exec.CommandContext(ctx, "resize2fs", img).CombinedOutput(); err != nil {
		return fmt.Errorf("resize2fs: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// DiskSize returns the size of the writable layer's image.
func DiskSize(dir string) (int64, error) {
	fi, err := os.Stat(diskImage(dir))
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// isMountPoint reports whether p is a mount point (by comparing its mount
// id with its parent's).
func isMountPoint(p string) (bool, error) {
	var st, pst unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("stat %s: %w", p, err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
	}
	if err := unix.Statx(unix.AT_FDCWD, filepath.Dir(p), 0, unix.STATX_MNT_ID, &pst); err != nil {
		return false, err
	}
	return st.Mnt_id != pst.Mnt_id, nil
}

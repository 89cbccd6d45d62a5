package rootfs

import (
	"context"
	"os"
)

// The writable layer's disk handling, for other owners of ext4 image files
// with the same layout (dir/disk.img mounted at dir/disk): named volumes.

// CreateDisk makes dir/disk.img, a sparse ext4 image of size bytes whose
// root is owned by owner ("uid:gid"), unless it exists already (the image
// appears whole or not at all).
func CreateDisk(ctx context.Context, dir string, size int64, owner string) error {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	img := diskImage(dir)
	if _, err := os.Stat(img); err == nil {
		return nil
	}
	return makeDisk(ctx, img, size, owner)
}

// MountDisk mounts dir/disk.img at DiskDir(dir); mounting what is mounted
// is a no-op, and the image's live superblock is reused when another mount
// namespace still holds it (see remountLive).
func MountDisk(dir string) error { return mountDisk(dir) }

// UnmountDisk unmounts DiskDir(dir); not mounted is not an error.
func UnmountDisk(dir string) error { return unmount(diskMount(dir)) }

// DiskDir is the mount point of dir/disk.img.
func DiskDir(dir string) string { return diskMount(dir) }

// DiskImage is the path of dir's ext4 image.
func DiskImage(dir string) string { return diskImage(dir) }

// IsMountPoint reports whether p is a mount point.
func IsMountPoint(p string) (bool, error) { return isMountPoint(p) }

package rootfs

import (
	"context"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Settle waits until the kernel holds the stopped sandbox's writable layer
// no more (a mount copy in a dying namespace can keep its superblock,
// with unwritten data, for a moment after the stop), so that the image
// file is whole and at rest.
func Settle(ctx context.Context, dir string) error {
	if mounted, err := isMountPoint(diskMount(dir)); err != nil {
		return err
	} else if mounted {
		return errdefs.Public(errdefs.ErrConflict, "the writable layer is in use: stop the sandbox first")
	}
	return waitReleased(ctx, dir, 5*time.Second)
}

// Trim settles the stopped sandbox's writable layer, then mounts it for a
// moment and discards its free blocks, which the loop device turns into
// holes in the image file: copies and archives of the image then carry
// only live data.
func Trim(ctx context.Context, dir string) error {
	if err := Settle(ctx, dir); err != nil {
		return err
	}
	if err := mountDisk(dir); err != nil {
		return err
	}
	trimErr := fitrim(diskMount(dir))
	if err := unmount(diskMount(dir)); err != nil {
		return err
	}
	if err := waitReleased(ctx, dir, 5*time.Second); err != nil {
		return err
	}
	return trimErr
}

func fitrim(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := fstrimRange{Len: ^uint64(0)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ioctlFITRIM, uintptr(unsafe.Pointer(&r))); errno != 0 {
		if errno == unix.EOPNOTSUPP {
			return nil // no discard: the image keeps its freed blocks
		}
		return fmt.Errorf("trimming the writable layer: %w", errno)
	}
	return nil
}

// struct fstrim_range and FITRIM (_IOWR('X', 121, struct fstrim_range))
// from linux/fs.h, which x/sys/unix does not carry.
type fstrimRange struct{ Start, Len, Minlen uint64 }

const ioctlFITRIM = 0xc0185879

// DiskUsage returns the bytes used on a started sandbox's writable layer
// and its capacity (from statfs of the mounted layer).
func DiskUsage(dir string) (used, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(diskMount(dir), &st); err != nil {
		return 0, 0, err
	}
	bs := int64(st.Bsize)
	return (int64(st.Blocks) - int64(st.Bfree)) * bs, int64(st.Blocks) * bs, nil
}

package idmap

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// MountClone clones the mount at (dirfd, path) — dirfd itself when path is
// "" — sets attr on the clone (with the id mapping of userns when userns is
// not nil: files owned by id N on disk show as the namespace's host id for
// N) and attaches it at target. The clone is a new, detached mount: later
// changes to it do not touch the source's mount, and the source may be
// unmounted while the clone lives on.
func MountClone(dirfd int, path, target string, userns *os.File, attr uint64) error {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	if path == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	fd, err := unix.OpenTree(dirfd, path, uint(flags))
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", path, err)
	}
	defer unix.Close(fd)
	ma := unix.MountAttr{Attr_set: attr}
	if userns != nil {
		ma.Attr_set |= unix.MOUNT_ATTR_IDMAP
		ma.Userns_fd = uint64(userns.Fd())
	}
	if ma.Attr_set != 0 {
		if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &ma); err != nil {
			return fmt.Errorf("setting mount attributes of %s: %w", target, err)
		}
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount %s: %w", target, err)
	}
	return nil
}

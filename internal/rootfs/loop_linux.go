package rootfs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// mountDisk attaches dir/disk.img to a free loop device (auto-cleared, so the
// device goes away with the mount) and mounts it at dir/disk.
func mountDisk(dir string) error {
	target := diskMount(dir)
	if mounted, err := isMountPoint(target); err != nil {
		return err
	} else if mounted {
		return nil
	}
	if err := os.MkdirAll(target, 0o700); err != nil {
		return err
	}
	backing, err := os.OpenFile(diskImage(dir), os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening disk image: %w", err)
	}
	defer backing.Close()
	// The last mount of this image may still be alive though unmounted
	// here: a copy of it in another mount namespace (a container being
	// set up copies the host's mount table) keeps its superblock, with
	// unwritten data, and its loop device. Mounting the image through a
	// second loop device would make a second, stale superblock of the same
	// disk and lose or corrupt files; mounting the same loop device again
	// gets the live superblock back.
	if ok, err := remountLive(dir, backing, target); err != nil || ok {
		return err
	}
	loop, err := attachLoop(backing)
	if err != nil {
		return err
	}
	defer loop.Close()
	if err := mountLoop(loop.Name(), target); err != nil {
		return err
	}
	// Remembered for remountLive; a stale or missing record only costs
	// the check.
	os.WriteFile(loopRecord(dir), []byte(loop.Name()), 0o600)
	return nil
}

func loopRecord(dir string) string { return diskImage(dir) + ".loop" }

func mountLoop(dev, target string) error {
	// noinit_itable: the image is sparse, so its inode tables already read
	// as zeros and need no background initialisation.
	if err := unix.Mount(dev, target, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "noinit_itable"); err != nil {
		return fmt.Errorf("mounting disk image: %w", err)
	}
	return nil
}

// liveLoop returns a check of whether the loop device recorded for dir
// still serves the image file backing (nil when none is recorded).
func liveLoop(dir string, backing *os.File) (string, func() bool, error) {
	name, err := os.ReadFile(loopRecord(dir))
	if err != nil {
		return "", nil, nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(backing.Fd()), &st); err != nil {
		return "", nil, err
	}
	return string(name), func() bool {
		dev, err := os.OpenFile(string(name), os.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		defer dev.Close()
		info, err := unix.IoctlLoopGetStatus64(int(dev.Fd()))
		return err == nil && info.Inode == st.Ino && info.Device == st.Dev
	}, nil
}

// waitReleased waits until no loop device serves dir's image any more.
func waitReleased(ctx context.Context, dir string, timeout time.Duration) error {
	backing, err := os.Open(diskImage(dir))
	if err != nil {
		return err
	}
	defer backing.Close()
	_, serves, err := liveLoop(dir, backing)
	if err != nil || serves == nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for serves() {
		if time.Now().After(deadline) {
			return errdefs.Public(errdefs.ErrUnavailable, "the writable layer is still held by the kernel after the stop: try again shortly")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// remountLive mounts the loop device recorded for dir if it still serves
// this very image file, and reports whether it did.
func remountLive(dir string, backing *os.File, target string) (bool, error) {
	name, serves, err := liveLoop(dir, backing)
	if err != nil || serves == nil {
		return false, err
	}
	if !serves() {
		return false, nil
	}
	if err := mountLoop(name, target); err != nil {
		return false, nil // cleared meanwhile: attach afresh
	}
	// Our mount now holds the device; check it was not cleared and
	// re-attached to another image between the check and the mount.
	if !serves() {
		unix.Unmount(target, unix.MNT_DETACH)
		return false, nil
	}
	return true, nil
}

var errLoopBusy = errors.New("loop device busy")

func attachLoop(backing *os.File) (*os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening loop-control: %w", err)
	}
	defer ctl.Close()
	for attempt := 0; attempt < 64; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("finding a free loop device: %w", err)
		}
		dev, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("opening loop device: %w", err)
		}
		err = configureLoop(dev, backing)
		if err == nil {
			return dev, nil
		}
		dev.Close()
		if !errors.Is(err, errLoopBusy) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("no free loop device")
}

func configureLoop(dev, backing *os.File) error {
	cfg := unix.LoopConfig{
		Fd:   uint32(backing.Fd()),
		Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_DIRECT_IO},
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, dev.Fd(), unix.LOOP_CONFIGURE, uintptr(unsafe.Pointer(&cfg)))
		switch errno {
		case 0:
			return nil
		case unix.EBUSY:
			return errLoopBusy // taken by someone else between GET_FREE and now
		case unix.EINVAL:
			if cfg.Info.Flags&unix.LO_FLAGS_DIRECT_IO != 0 {
				// Direct I/O is not possible on every backing filesystem.
				cfg.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
				continue
			}
			return fmt.Errorf("configuring loop device: %w", errno)
		default:
			return fmt.Errorf("configuring loop device: %w", errno)
		}
	}
}

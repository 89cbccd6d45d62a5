package rootfs

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
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
	loop, err := attachLoop(backing)
	if err != nil {
		return err
	}
	defer loop.Close()
	// noinit_itable: the image is sparse, so its inode tables already read
	// as zeros and need no background initialisation.
	if err := unix.Mount(loop.Name(), target, "ext4", unix.MS_NOSUID|unix.MS_NODEV, "noinit_itable"); err != nil {
		return fmt.Errorf("mounting disk image: %w", err)
	}
	return nil
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

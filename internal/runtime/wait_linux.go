package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SetSubreaper makes the calling process a child subreaper, so container
// inits orphaned by their runtime are re-parented to it and reaped quickly.
func SetSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// Exit is how a container's init ended.
type Exit struct {
	Code   int  // exit code, or 128+signal
	Known  bool // false when the process was not our child and its status is lost
	Signal int
}

// Process watches a container's init through a pidfd.
type Process struct {
	Pid int
	f   *os.File
}

// OpenProcess opens a pidfd for pid. It fails with os.ErrNotExist if the
// process is gone.
func OpenProcess(pid int) (*Process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pid %d: %w", pid, os.ErrNotExist)
		}
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return &Process{Pid: pid, f: os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid))}, nil
}

// Wait blocks until the process exits (or ctx ends) and reaps it if it is
// our child. It uses the runtime's poller, so it holds no thread while
// waiting.
func (p *Process) Wait(ctx context.Context) (Exit, error) {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return Exit{}, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			p.f.SetReadDeadline(deadlinePast)
		case <-done:
		}
	}()
	var exit Exit
	var werr error
	// The callback runs first without waiting and again on each readiness
	// notification; a pidfd becomes readable when its process exits.
	err = rc.Read(func(fd uintptr) bool {
		var info unix.Siginfo
		e := unix.Waitid(unix.P_PIDFD, int(fd), &info, unix.WEXITED|unix.WNOHANG, nil)
		switch {
		case e == nil:
			if pidOf(&info) == 0 {
				return false // our child, still running
			}
			exit = exitOf(&info)
			return true
		case errors.Is(e, unix.ECHILD):
			// Not our child (adopted after a daemon restart): readable means exited.
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, perr := unix.Poll(fds, 0)
			if perr != nil && !errors.Is(perr, unix.EINTR) {
				werr = perr
				return true
			}
			if n > 0 {
				exit = Exit{Known: false}
				return true
			}
			return false
		case errors.Is(e, unix.EINTR):
			return false
		default:
			werr = e
			return true
		}
	})
	if err != nil {
		if ctx.Err() != nil {
			return Exit{}, ctx.Err()
		}
		return Exit{}, err
	}
	return exit, werr
}

// Signal sends sig to the process through its pidfd (no pid reuse races).
func (p *Process) Signal(sig unix.Signal) error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	}); err != nil {
		return err
	}
	return serr
}

// Close releases the pidfd.
func (p *Process) Close() error { return p.f.Close() }

package testutil

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NewNetns makes a throwaway network namespace bind-mounted at path and
// removes it when the test ends. Only the goroutine that makes it enters
// it, on a locked thread that is switched back afterwards.
func NewNetns(t testing.TB, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	err = onThread(func() error { return unix.Unshare(unix.CLONE_NEWNET) }, func() error {
		return unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
	})
	if err != nil {
		os.Remove(path)
		t.Fatalf("making network namespace %s: %v", path, err)
	}
	t.Cleanup(func() {
		unix.Unmount(path, unix.MNT_DETACH)
		os.Remove(path)
	})
}

// InNetns runs fn on a locked thread inside the namespace at path, then
// switches the thread back. Sockets fn opens stay in that namespace.
func InNetns(path string, fn func() error) error {
	h, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer h.Close()
	return onThread(func() error { return netns.Set(h) }, fn)
}

// onThread runs enter then fn on a locked thread of a new goroutine and
// restores the thread's namespace; only if that fails does the thread
// stay locked, to be discarded with the goroutine.
func onThread(enter, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err = enter(); err == nil {
			err = fn()
		}
		if rerr := netns.Set(orig); rerr != nil {
			errc <- errors.Join(err, rerr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

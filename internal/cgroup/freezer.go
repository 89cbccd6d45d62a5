package cgroup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Freeze stops every task of the cgroup at path (v1 freezer.state FROZEN,
// v2 cgroup.freeze 1) and waits until the kernel reports it frozen. The
// state-snapshot code freezes a sandbox while it copies its disk: a
// crash-consistent point in time. Freezing touches no limit: it is the
// one write this package makes.
func (fs FS) Freeze(ctx context.Context, path string) error {
	return fs.setFrozen(ctx, path, true)
}

// Thaw lets the cgroup's tasks run again. Thawing a cgroup that is not
// frozen (or is gone) is not an error.
func (fs FS) Thaw(ctx context.Context, path string) error {
	err := fs.setFrozen(ctx, path, false)
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func (fs FS) setFrozen(ctx context.Context, path string, frozen bool) error {
	var file, value, check string
	var want []byte
	if fs.V2 {
		dir := filepath.Join(fs.Root, path)
		file, check = filepath.Join(dir, "cgroup.freeze"), filepath.Join(dir, "cgroup.events")
		value, want = "0", []byte("frozen 0")
		if frozen {
			value, want = "1", []byte("frozen 1")
		}
	} else {
		file = filepath.Join(fs.Root, "freezer", path, "freezer.state")
		check = file
		value, want = "THAWED", []byte("THAWED")
		if frozen {
			value, want = "FROZEN", []byte("FROZEN")
		}
	}
	if err := os.WriteFile(file, []byte(value), 0); err != nil {
		return err
	}
	// v1 passes through FREEZING; v2 reports in cgroup.events.
	for delay := 50 * time.Microsecond; ; delay = min(delay*2, 10*time.Millisecond) {
		b, err := os.ReadFile(check)
		if err != nil {
			return err
		}
		if bytes.Contains(b, want) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for cgroup %s to be %s: %w", path, value, ctx.Err())
		case <-time.After(delay):
		}
		if !fs.V2 && frozen {
			// v1 can stall in FREEZING; writing again retries.
			os.WriteFile(file, []byte(value), 0)
		}
	}
}

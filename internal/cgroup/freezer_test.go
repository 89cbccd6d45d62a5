package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/testutil"
)

// cpuTicks is the user+system CPU time of a process (/proc/<pid>/stat).
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	var u, s int64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return u + s
}

// TestFreezeThaw freezes a cgroup holding a busy loop on the real kernel:
// while frozen the loop gets no CPU; thawed, it runs again.
func TestFreezeThaw(t *testing.T) {
	testutil.RequireRoot(t)
	fs, err := Detect("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/sbx-freeze-test-%d", os.Getpid())
	var procs string
	if fs.V2 {
		procs = filepath.Join(fs.Root, path, "cgroup.procs")
	} else {
		procs = filepath.Join(fs.Root, "freezer", path, "cgroup.procs")
	}
	if err := os.MkdirAll(filepath.Dir(procs), 0o755); err != nil {
		testutil.Unavailable(t, "no freezer cgroup: "+err.Error())
	}
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		fs.Thaw(t.Context(), path)
		cmd.Process.Kill()
		cmd.Wait()
		os.Remove(filepath.Dir(procs))
	}()
	if err := os.WriteFile(procs, []byte(fmt.Sprint(cmd.Process.Pid)), 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := fs.Freeze(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	t.Logf("freeze took %v", time.Since(start))
	a := cpuTicks(t, cmd.Process.Pid)
	time.Sleep(300 * time.Millisecond)
	if b := cpuTicks(t, cmd.Process.Pid); b != a {
		t.Errorf("a frozen task used CPU: %d -> %d ticks", a, b)
	}
	if err := fs.Thaw(t.Context(), path); err != nil {
		t.Fatal(err)
	}
	a = cpuTicks(t, cmd.Process.Pid)
	time.Sleep(300 * time.Millisecond)
	if b := cpuTicks(t, cmd.Process.Pid); b <= a {
		t.Errorf("a thawed task got no CPU: %d -> %d ticks", a, b)
	}
	if err := fs.Thaw(t.Context(), "/sbx-no-such-cgroup"); err != nil {
		t.Errorf("thawing a missing cgroup: %v", err)
	}
}

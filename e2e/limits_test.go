package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func TestMemoryLimitOOM(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Resources: &sbx.Resources{MemoryMB: 64}})
	// A shell variable that grows past the limit.
	res, err := c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Shell: `x=$(head -c 300000000 /dev/zero | tr '\0' a); echo survived ${#x}`})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OOMKilled || strings.Contains(res.Stdout, "survived") {
		t.Errorf("memory hog: %+v, want it OOM-killed", res)
	}
	// The sandbox itself survives and reports the kill.
	execOK(t, c, sb.ID, "true")
	got, err := c.GetSandbox(t.Context(), sb.ID)
	if err != nil || got.OOMKills < 1 {
		t.Errorf("sandbox after OOM: %+v, %v", got, err)
	}
}

func TestPidsLimit(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Resources: &sbx.Resources{Pids: 32}})
	// A fork storm: the shell starts sleepers until the pids limit stops it.
	res, err := c.Exec(t.Context(), sb.ID, sbx.ExecRequest{
		Shell:          `for i in $(seq 100); do sleep 3 & done; echo finished`,
		TimeoutSeconds: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	cg := filepath.Join("/sys/fs/cgroup/pids", daemon.CgroupParent, sb.ID)
	cur, _ := os.ReadFile(filepath.Join(cg, "pids.current"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(cur)))
	if n < 16 || n > 32 {
		t.Errorf("tasks during the storm = %d, want up to the limit of 32", n)
	}
	if !strings.Contains(res.Stderr, "fork") && !strings.Contains(res.Stderr, "resource") {
		t.Errorf("the storm was not stopped by the limit: %+v", res)
	}
	if max, _ := os.ReadFile(filepath.Join(cg, "pids.max")); strings.TrimSpace(string(max)) != "32" {
		t.Errorf("pids.max = %q", max)
	}
}

func TestDiskQuota(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Resources: &sbx.Resources{DiskMB: 64}})
	res, err := c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Shell: "dd if=/dev/zero of=/fill bs=1M count=200"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode == 0 || !strings.Contains(res.Stdout+res.Stderr, "No space left on device") {
		t.Errorf("filling a 64 MiB disk: %+v, want ENOSPC", res)
	}
	// Deleting the file frees the space again.
	execOK(t, c, sb.ID, "sh", "-c", "rm /fill && dd if=/dev/zero of=/small bs=1M count=8 2>/dev/null")
}

func TestCPULimitAndResize(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Resources: &sbx.Resources{CPU: 0.5, MemoryMB: 128}})
	cg := func(ctrl, file string) string {
		b, _ := os.ReadFile(filepath.Join("/sys/fs/cgroup", ctrl, daemon.CgroupParent, sb.ID, file))
		return strings.TrimSpace(string(b))
	}
	if q := cg("cpu", "cpu.cfs_quota_us"); q != "50000" {
		t.Errorf("cpu quota = %q, want 50000", q)
	}
	got, err := c.ResizeSandbox(t.Context(), sb.ID, sbx.ResizeRequest{CPU: 1.5, MemoryMB: 256})
	if err != nil {
		t.Fatal(err)
	}
	if got.Resources.CPU != 1.5 || got.Resources.MemoryMB != 256 {
		t.Errorf("resources after resize: %+v", got.Resources)
	}
	if q := cg("cpu", "cpu.cfs_quota_us"); q != "150000" {
		t.Errorf("cpu quota after resize = %q", q)
	}
	if m := cg("memory", "memory.limit_in_bytes"); m != strconv.Itoa(256<<20) {
		t.Errorf("memory limit after resize = %q", m)
	}
	// The disk grows only while stopped.
	if _, err := c.ResizeSandbox(t.Context(), sb.ID, sbx.ResizeRequest{DiskMB: 20480}); !sbx.IsConflict(err) {
		t.Errorf("growing the disk of a running sandbox: %v, want conflict", err)
	}
	if _, err := c.StopSandbox(t.Context(), sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ResizeSandbox(t.Context(), sb.ID, sbx.ResizeRequest{DiskMB: 1024}); err == nil {
		t.Error("shrinking the disk succeeded")
	}
	if _, err := c.ResizeSandbox(t.Context(), sb.ID, sbx.ResizeRequest{DiskMB: 12288}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	df := execOK(t, c, sb.ID, "df", "-m", "/")
	f := strings.Fields(strings.Split(strings.TrimSpace(df), "\n")[1])
	if total, _ := strconv.Atoi(f[1]); total < 11000 {
		t.Errorf("disk after growing to 12 GiB: %s", df)
	}
}

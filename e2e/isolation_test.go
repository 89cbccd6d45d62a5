package e2e

import (
	"os"
	"strconv"
	"strings"
	"testing"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// probe runs inside a sandbox; every line must end "blocked" except the
// informational ones.
const probe = `
r(){ name=$1; shift; if out=$("$@" 2>&1); then echo "ALLOWED $name :: $out"; else echo "blocked $name"; fi; }
r unshare-user unshare -U true
r unshare-user-mount unshare -Urm true
r unshare-net unshare -n true
r mount-tmpfs mount -t tmpfs none /mnt
r mount-cgroup sh -c 'mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg'
r core_pattern sh -c 'echo "|/tmp/x" > /proc/sys/kernel/core_pattern'
r sysrq sh -c 'echo h > /proc/sysrq-trigger'
r uevent_helper sh -c 'echo x > /sys/kernel/uevent_helper'
r proc-self-exe-write sh -c 'echo x >> /proc/self/exe'
r agent-write sh -c 'echo x >> /.sbx/sbx-agent'
r kcore-read sh -c '[ -s /proc/kcore ] && head -c1 /proc/kcore >/dev/null'
r keys-read sh -c '[ -n "$(cat /proc/keys)" ]'
r mknod-block sh -c 'mknod /tmp/sda b 8 0 && head -c1 /tmp/sda >/dev/null'
r sethostname hostname evil
r sysfs-cgroup-write sh -c 'echo 1 > /sys/fs/cgroup/memory/memory.limit_in_bytes'
`

func TestIsolationProbe(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{})
	before, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	res, err := c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Shell: probe})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		if !strings.HasPrefix(line, "blocked ") {
			t.Errorf("probe: %s", line)
		}
	}
	if after, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); string(after) != string(before) {
		t.Errorf("host core_pattern changed to %q", after)
	}
	status := execOK(t, c, sb.ID, "cat", "/proc/self/status")
	for _, want := range []string{"NoNewPrivs:\t1", "Seccomp:\t2"} {
		if !strings.Contains(status, want) {
			t.Errorf("/proc/self/status lacks %q", want)
		}
	}
	// Root inside is an unprivileged, non-identity uid outside.
	uidMap := strings.Fields(execOK(t, c, sb.ID, "cat", "/proc/self/uid_map"))
	if len(uidMap) != 3 || uidMap[0] != "0" || uidMap[1] == "0" {
		t.Fatalf("uid_map = %v, want 0 → a non-zero host uid", uidMap)
	}
	if host, _ := strconv.Atoi(uidMap[1]); host < 100000 {
		t.Errorf("sandbox root maps to host uid %d, want >= 100000", host)
	}
	// Another sandbox gets another range.
	sb2 := create(t, c, sbx.CreateSandboxRequest{})
	uidMap2 := strings.Fields(execOK(t, c, sb2.ID, "cat", "/proc/self/uid_map"))
	if len(uidMap2) == 3 && uidMap2[1] == uidMap[1] {
		t.Errorf("two sandboxes share host uid range %s", uidMap[1])
	}
	// Only the sandbox's own processes are visible.
	ps := execOK(t, c, sb.ID, "sh", "-c", "ls /proc | grep -c '^[0-9]'")
	if n, _ := strconv.Atoi(strings.TrimSpace(ps)); n > 6 {
		t.Errorf("%d processes visible inside a fresh sandbox", n)
	}
	// No network but loopback.
	if out := execOK(t, c, sb.ID, "sh", "-c", "ls /sys/class/net"); strings.TrimSpace(out) != "lo" {
		t.Errorf("network interfaces: %q", out)
	}
	// The cgroup namespace hides the host's cgroup paths.
	if out := execOK(t, c, sb.ID, "cat", "/proc/self/cgroup"); strings.Contains(out, "sbx") {
		t.Errorf("/proc/self/cgroup shows host paths: %q", out)
	}
}

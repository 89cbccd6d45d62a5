package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

var runtimes = []string{"crun", "runc"}

// volumeSetup is setup for the tests that use runc too: runc sets a
// user-namespaced sandbox's mounts up from inside its namespace, as an
// unprivileged host uid, which must traverse the daemon's directory
// (the shared work directory is made 0700).
func volumeSetup(t *testing.T) {
	t.Helper()
	setup(t)
	if err := os.Chmod(workDir, 0o711); err != nil {
		t.Fatal(err)
	}
}

func createVolume(t *testing.T, c *sbx.Client, name string, mb int64) sbx.Volume {
	t.Helper()
	v, err := c.CreateVolume(t.Context(), sbx.CreateVolumeRequest{Name: name, SizeMB: mb})
	if err != nil {
		t.Fatalf("create volume %s: %v", name, err)
	}
	t.Cleanup(func() { c.DeleteVolume(context.WithoutCancel(t.Context()), v.ID, true) })
	return v
}

func execAs(t *testing.T, c *sbx.Client, id, user, script string) sbx.ExecResult {
	t.Helper()
	// The busybox image's workdir, /root, is closed to other users.
	res, err := c.Exec(t.Context(), id, sbx.ExecRequest{Shell: script, User: user, Cwd: "/tmp"})
	if err != nil {
		t.Fatalf("exec %q: %v", script, err)
	}
	return res
}

func shOK(t *testing.T, c *sbx.Client, id, user, script string) string {
	t.Helper()
	res := execAs(t, c, id, user, script)
	if res.ExitCode != 0 {
		t.Fatalf("exec %q as %q: exit %d, stdout %q, stderr %q", script, user, res.ExitCode, res.Stdout, res.Stderr)
	}
	return res.Stdout
}

// volumeMounts lists the mounts under the daemon's volumes directory: no
// stage may outlive a start, and a volume no sandbox uses must not stay
// mounted.
func volumeMounts() []string {
	var out []string
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	prefix := filepath.Join(daemon.StateDir, "volumes") + "/"
	for _, line := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], prefix) {
			out = append(out, strings.TrimPrefix(f[4], prefix))
		}
	}
	return out
}

// volumeLoops lists loop devices backed by the daemon's volume images;
// they are auto-cleared a moment after their last mount goes.
func volumeLoops() []string {
	prefix := filepath.Join(daemon.StateDir, "volumes") + "/"
	var out []string
	for range 50 {
		out = out[:0]
		files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, f := range files {
			if b, _ := os.ReadFile(f); strings.HasPrefix(string(b), prefix) {
				out = append(out, f+" → "+strings.TrimSpace(string(b)))
			}
		}
		if len(out) == 0 {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return out
}

func stages() []string {
	var out []string
	for _, m := range volumeMounts() {
		if strings.HasPrefix(m, ".stage/") {
			out = append(out, m)
		}
	}
	return out
}

// TestVolumeSharedAndPersistent: a file written by sandbox A, as root and
// as a non-root user, is read by B (started alongside, sharing the volume)
// and by C after A is deleted, with the same owners, across runtimes;
// on disk the owners are the in-sandbox ids.
func TestVolumeSharedAndPersistent(t *testing.T) {
	volumeSetup(t)
	c := admin
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			v := createVolume(t, c, "shared-"+rt, 64)
			a := create(t, c, sbx.CreateSandboxRequest{Runtime: rt, Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/data"}}})
			if len(a.Volumes) != 1 || a.Volumes[0].VolumeID != v.ID || a.Volumes[0].Volume != v.Name || a.Volumes[0].MountPath != "/data" {
				t.Fatalf("sandbox volumes %+v", a.Volumes)
			}
			shOK(t, c, a.ID, "", "echo from-root > /data/root.txt && mkdir /data/home && chown 1000:1000 /data/home")
			shOK(t, c, a.ID, "sbx", "echo from-user > /data/home/user.txt")

			other := "runc"
			if rt == "runc" {
				other = "crun"
			}
			b := create(t, c, sbx.CreateSandboxRequest{Runtime: other, Volumes: []sbx.VolumeMount{{Volume: v.ID, MountPath: "/mnt/vol"}}})
			// Both run at once: a write by one is seen by the other.
			got := shOK(t, c, b.ID, "", "cat /mnt/vol/root.txt /mnt/vol/home/user.txt; stat -c '%u:%g %n' /mnt/vol/root.txt /mnt/vol/home/user.txt")
			want := "from-root\nfrom-user\n0:0 /mnt/vol/root.txt\n1000:1000 /mnt/vol/home/user.txt\n"
			if got != want {
				t.Errorf("B reads:\n%s\nwant:\n%s", got, want)
			}
			shOK(t, c, b.ID, "sbx", "echo from-b >> /mnt/vol/home/user.txt")
			if got := shOK(t, c, a.ID, "", "tail -n1 /data/home/user.txt"); got != "from-b\n" {
				t.Errorf("A does not see B's write: %q", got)
			}
			// The volume lists both users.
			if got, err := c.GetVolume(t.Context(), v.Name); err != nil || len(got.UsedBy) != 2 {
				t.Errorf("used_by = %+v, %v", got.UsedBy, err)
			}

			if err := c.DeleteSandbox(t.Context(), a.ID); err != nil {
				t.Fatal(err)
			}
			if err := c.DeleteSandbox(t.Context(), b.ID); err != nil {
				t.Fatal(err)
			}
			if m := volumeMounts(); len(m) != 0 {
				t.Errorf("mounts left with no sandbox using the volume: %v", m)
			}
			cs := create(t, c, sbx.CreateSandboxRequest{Runtime: rt, Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/data"}}})
			got = shOK(t, c, cs.ID, "", "cat /data/root.txt /data/home/user.txt; stat -c '%u:%g' /data/root.txt /data/home/user.txt")
			if want := "from-root\nfrom-user\nfrom-b\n0:0\n1000:1000\n"; got != want {
				t.Errorf("after A and B are deleted, C reads:\n%s\nwant:\n%s", got, want)
			}
			// The host sees in-sandbox ids on the volume's own filesystem.
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(daemon.StateDir, "volumes", v.ID, "disk", "home", "user.txt"), &st); err != nil || st.Uid != 1000 {
				t.Errorf("on the volume's disk: uid %d, %v; want 1000", st.Uid, err)
			}
			// Stop/start remounts it.
			if _, err := c.StopSandbox(t.Context(), cs.ID, time.Second); err != nil {
				t.Fatal(err)
			}
			if m := volumeMounts(); len(m) != 0 {
				t.Errorf("mounts left after the last user stopped: %v", m)
			}
			if _, err := c.StartSandbox(t.Context(), cs.ID); err != nil {
				t.Fatal(err)
			}
			if got := shOK(t, c, cs.ID, "", "cat /data/root.txt"); got != "from-root\n" {
				t.Errorf("after restart: %q", got)
			}
			if s := stages(); len(s) != 0 {
				t.Errorf("stages outlive the start: %v", s)
			}
		})
	}
	leakCheck(t)
}

func TestVolumeReadOnlySubpathAndLimit(t *testing.T) {
	volumeSetup(t)
	c := admin
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			v := createVolume(t, c, "ro-"+rt, 16)
			sb := create(t, c, sbx.CreateSandboxRequest{Runtime: rt, Volumes: []sbx.VolumeMount{
				{Volume: v.Name, MountPath: "/rw"},
				{Volume: v.Name, MountPath: "/ro", ReadOnly: true},
				{Volume: v.Name, MountPath: "/sub", Subpath: "deep/dir"},
			}})
			shOK(t, c, sb.ID, "", "echo hi > /rw/f && echo deep > /sub/g")
			if got := shOK(t, c, sb.ID, "", "cat /ro/f /rw/deep/dir/g"); got != "hi\ndeep\n" {
				t.Errorf("views: %q", got)
			}
			res := execAs(t, c, sb.ID, "", "echo x > /ro/new")
			if res.ExitCode == 0 || !strings.Contains(res.Stderr, "Read-only file system") {
				t.Errorf("write to a read-only mount: exit %d, %q", res.ExitCode, res.Stderr)
			}
			// Root inside cannot make it writable.
			res = execAs(t, c, sb.ID, "", "mount -o remount,rw /ro && echo x > /ro/new")
			if res.ExitCode == 0 {
				t.Errorf("remounted read-write from inside")
			}
			// The size limit holds inside the sandbox.
			res = execAs(t, c, sb.ID, "", "dd if=/dev/zero of=/rw/big bs=1M count=64 2>&1; sync")
			if !strings.Contains(res.Stdout, "No space left") {
				t.Errorf("a 64 MiB write into a 16 MiB volume: %q", res.Stdout)
			}
			sz := shOK(t, c, sb.ID, "", "du -m /rw/big | cut -f1")
			if n := strings.TrimSpace(sz); n == "" || len(n) > 2 {
				t.Errorf("file size after ENOSPC: %q MiB", n)
			}
			shOK(t, c, sb.ID, "", "rm /rw/big")
		})
	}
	leakCheck(t)
}

// TestVolumeSubpathEscape: a symlink a sandbox leaves in a volume cannot
// make another sandbox's subpath mount a host directory.
func TestVolumeSubpathEscape(t *testing.T) {
	setup(t)
	c := admin
	canary := t.TempDir()
	if err := os.WriteFile(filepath.Join(canary, "secret"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := createVolume(t, c, "evil", 16)
	a := create(t, c, sbx.CreateSandboxRequest{Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/data"}}})
	shOK(t, c, a.ID, "", "ln -s "+canary+" /data/abs && ln -s ../../../../../../.."+canary+" /data/rel && ln -s / /data/root")
	for _, sub := range []string{"abs", "rel", "abs/x", "root/etc"} {
		sb, err := c.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{Image: testImage,
			Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/x", Subpath: sub}}})
		if err == nil {
			// Resolved inside the volume, if at all.
			res := execAs(t, c, sb.ID, "", "ls /x; echo pwned > /x/pwned")
			if strings.Contains(res.Stdout, "secret") {
				t.Errorf("subpath %q shows the host's directory", sub)
			}
			c.DeleteSandbox(t.Context(), sb.ID)
			continue
		}
		if !sbx.IsInvalidArgument(err) {
			t.Errorf("subpath %q: %v (want 400 or a mount inside the volume)", sub, err)
		}
		t.Logf("subpath %q: %v", sub, err)
	}
	ents, _ := os.ReadDir(canary)
	if len(ents) != 1 || ents[0].Name() != "secret" {
		t.Errorf("the host canary changed: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(canary, "secret")); string(b) != "host" {
		t.Errorf("the host canary file changed: %q", b)
	}
	if err := c.DeleteSandbox(t.Context(), a.ID); err != nil {
		t.Fatal(err)
	}
	leakCheck(t)
}

func TestVolumeDeleteAndErrors(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	v := createVolume(t, c, "busy", 16)
	sb := create(t, c, sbx.CreateSandboxRequest{Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/data"}}})
	if err := c.DeleteVolume(ctx, v.Name, false); !sbx.IsConflict(err) {
		t.Errorf("delete while a started sandbox mounts it: %v", err)
	}
	if _, err := c.StopSandbox(ctx, sb.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, v.Name, false); !sbx.IsConflict(err) {
		t.Errorf("delete while a stopped sandbox mounts it: %v", err)
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteVolume(ctx, v.Name, false); err != nil {
		t.Errorf("delete after the sandbox is gone: %v", err)
	}

	// Forced while a sandbox runs: it keeps its mount, cannot start again.
	f := createVolume(t, c, "forced", 16)
	sb = create(t, c, sbx.CreateSandboxRequest{Volumes: []sbx.VolumeMount{{Volume: f.Name, MountPath: "/data"}}})
	if err := c.DeleteVolume(ctx, f.Name, true); err != nil {
		t.Fatalf("forced delete: %v", err)
	}
	shOK(t, c, sb.ID, "", "echo still > /data/x && cat /data/x")
	if _, err := c.StopSandbox(ctx, sb.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartSandbox(ctx, sb.ID); !sbx.IsNotFound(err) || !strings.Contains(err.Error(), "deleted") {
		t.Errorf("start with a deleted volume: %v", err)
	}
	c.DeleteSandbox(ctx, sb.ID)

	// Bad mounts.
	ok := createVolume(t, c, "ok", 16)
	for _, tc := range []struct {
		m    []sbx.VolumeMount
		want func(error) bool
	}{
		{[]sbx.VolumeMount{{Volume: "nope", MountPath: "/data"}}, sbx.IsNotFound},
		{[]sbx.VolumeMount{{Volume: ok.Name, MountPath: "data"}}, sbx.IsInvalidArgument},
		{[]sbx.VolumeMount{{Volume: ok.Name, MountPath: "/"}}, sbx.IsInvalidArgument},
		{[]sbx.VolumeMount{{Volume: ok.Name, MountPath: "/proc/x"}}, sbx.IsInvalidArgument},
		{[]sbx.VolumeMount{{Volume: ok.Name, MountPath: "/.sbx"}}, sbx.IsInvalidArgument},
		{[]sbx.VolumeMount{{Volume: ok.Name, MountPath: "/a/../b"}}, sbx.IsInvalidArgument},
		{[]sbx.VolumeMount{{Volume: ok.Name, MountPath: "/a"}, {Volume: ok.Name, MountPath: "/a"}}, sbx.IsInvalidArgument},
		{[]sbx.VolumeMount{{Volume: ok.Name, MountPath: "/a", Subpath: "../x"}}, sbx.IsInvalidArgument},
	} {
		if _, err := c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: testImage, Volumes: tc.m}); !tc.want(err) {
			t.Errorf("create with %+v: %v", tc.m, err)
		}
	}
	// Another tenant's volume is not found.
	tn, err := c.CreateTenant(ctx, sbx.CreateTenantRequest{Name: "vol-other"})
	if err != nil {
		t.Fatal(err)
	}
	key, err := c.CreateKey(ctx, tn.ID, "k")
	if err != nil {
		t.Fatal(err)
	}
	oc := sbx.New(daemon.URL, key.Key)
	if _, err := oc.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: testImage, Volumes: []sbx.VolumeMount{{Volume: ok.Name, MountPath: "/data"}}}); !sbx.IsNotFound(err) {
		t.Errorf("another tenant's volume: %v", err)
	}
	if _, err := oc.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: testImage, Volumes: []sbx.VolumeMount{{Volume: ok.ID, MountPath: "/data"}}}); !sbx.IsNotFound(err) {
		t.Errorf("another tenant's volume by ID: %v", err)
	}
	leakCheck(t)
}

// TestVolumeKill9 kills the daemon while sandboxes use a volume; after the
// restart the mounts still work, a new sandbox shares the volume, and
// deleting everything leaves no mount behind.
func TestVolumeKill9(t *testing.T) {
	volumeSetup(t)
	c := admin
	v := createVolume(t, c, "crash", 32)
	var ids []string
	for _, rt := range runtimes {
		sb := create(t, c, sbx.CreateSandboxRequest{Runtime: rt, Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/data"}}})
		shOK(t, c, sb.ID, "", "echo "+rt+" > /data/"+rt)
		ids = append(ids, sb.ID)
	}
	daemon.Kill9()
	if err := daemon.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if got := shOK(t, c, id, "", "head -qn1 /data/crun /data/runc && echo again >> /data/"+runtimes[i]); got != "crun\nrunc\n" {
			t.Errorf("after the restart, %s reads %q", runtimes[i], got)
		}
	}
	n := create(t, c, sbx.CreateSandboxRequest{Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/v", ReadOnly: true}}})
	if got := shOK(t, c, n.ID, "", "cat /v/crun /v/runc"); got != "crun\nagain\nrunc\nagain\n" {
		t.Errorf("a new sandbox after the restart reads %q", got)
	}
	if s := stages(); len(s) != 0 {
		t.Errorf("stages after the restart: %v", s)
	}
	for _, id := range append(ids, n.ID) {
		if err := c.DeleteSandbox(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	if m := volumeMounts(); len(m) != 0 {
		t.Errorf("mounts left after every user is deleted: %v", m)
	}
	if err := c.DeleteVolume(t.Context(), v.Name, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(daemon.StateDir, "volumes", v.ID)); !os.IsNotExist(err) {
		t.Errorf("volume files after delete: %v", err)
	}
	if l := volumeLoops(); len(l) != 0 {
		t.Errorf("loop devices left: %v", l)
	}
	leakCheck(t)
}

// TestDaytonaVolumes runs the official Daytona SDK's volume calls against
// the daemon's Daytona API (testdata/daytona/volumes.cjs).
func TestDaytonaVolumes(t *testing.T) {
	setup(t)
	runDaytonaScript(t, "volumes.cjs", testImage, 3*time.Minute)
	if m := volumeMounts(); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if l := volumeLoops(); len(l) != 0 {
		t.Errorf("loop devices left: %v", l)
	}
	leakCheck(t)
}

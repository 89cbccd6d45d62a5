package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// The tree the snapshot tests write: a random blob, small files, a
// hardlink, a symlink, a file of a non-root user, and their checksums.
const writeTree = `set -e
mkdir -p /srv/data /home/u
dd if=/dev/urandom of=/srv/data/blob bs=64k count=64 2>/dev/null
echo alpha > /srv/data/a
echo beta > /srv/data/b
ln /srv/data/a /srv/data/a.hard
ln -s a /srv/data/a.sym
echo private > /home/u/notes
chown -R 1000:1000 /home/u
chmod 600 /home/u/notes
`

const sumTree = `cd /srv/data && md5sum blob a b a.hard && readlink a.sym && stat -c '%u:%g %a %h' /home/u/notes /srv/data/a`

func flipByte(t *testing.T, path string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off, err := unix.Seek(int(f.Fd()), 0, unix.SEEK_DATA)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1<<16)
	n, _ := f.ReadAt(b, off)
	for i := range n {
		if b[i] != 0 {
			if _, err := f.WriteAt([]byte{b[i] ^ 0x5a}, off+int64(i)); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("no data to corrupt")
}

func snapshotFile(sandboxID, snapshotID string) string {
	return filepath.Join(daemon.StateDir, "sandboxes", sandboxID, "snapshots", snapshotID+".img")
}

func eventMessages(t *testing.T, c *sbx.Client, id, typ string) []string {
	t.Helper()
	evs, err := c.Events(t.Context(), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e.Message)
		}
	}
	return out
}

// TestSnapshotRestore: write files → snapshot → change and delete files →
// restore → the original files and checksums are back; a corrupted
// snapshot is refused with a clear error and the sandbox is unchanged.
func TestSnapshotRestore(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	execOK(t, c, sb.ID, "sh", "-c", writeTree)
	want := execOK(t, c, sb.ID, "sh", "-c", sumTree)

	sn, err := c.CreateSnapshot(ctx, sb.ID, "base")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot: %d KiB, paused %.1f ms, took %.1f ms", sn.Size>>10, sn.PauseMS, sn.TookMS)
	if !strings.HasPrefix(sn.Checksum, "sha256:") || sn.PauseMS <= 0 {
		t.Errorf("snapshot %+v", sn)
	}
	execOK(t, c, sb.ID, "sh", "-c", "echo changed > /srv/data/a; rm /srv/data/blob /home/u/notes; echo new > /srv/data/new")
	got, err := c.RestoreSnapshot(ctx, sb.ID, "base")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "started" {
		t.Errorf("state after restore %s", got.State)
	}
	if after := execOK(t, c, sb.ID, "sh", "-c", sumTree); after != want {
		t.Errorf("after restore:\n%s\nwant:\n%s", after, want)
	}
	if out, _ := c.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"test", "-e", "/srv/data/new"}}); out.ExitCode == 0 {
		t.Error("a file written after the snapshot survived the restore")
	}

	// Corrupt the stored copy: the restore is refused, nothing changes.
	execOK(t, c, sb.ID, "sh", "-c", "echo later > /srv/data/a")
	flipByte(t, snapshotFile(sb.ID, sn.ID))
	_, err = c.RestoreSnapshot(ctx, sb.ID, sn.ID)
	if !sbx.IsConflict(err) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("restore of a corrupted snapshot: %v", err)
	}
	t.Logf("refused: %v", err)
	if a := execOK(t, c, sb.ID, "cat", "/srv/data/a"); a != "later\n" {
		t.Errorf("the sandbox changed after a refused restore: %q", a)
	}
	msgs := eventMessages(t, c, sb.ID, "snapshot")
	if len(msgs) != 3 || strings.Contains(msgs[0], "failed") || strings.Contains(msgs[1], "failed") || !strings.Contains(msgs[2], "failed") {
		t.Errorf("snapshot events: %q", msgs)
	}
	list, err := c.ListSnapshots(ctx, sb.ID)
	if err != nil || len(list) != 1 || list[0].ID != sn.ID {
		t.Errorf("list %+v %v", list, err)
	}
	if err := c.DeleteSnapshot(ctx, sb.ID, sn.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(snapshotFile(sb.ID, sn.ID)); !os.IsNotExist(err) {
		t.Errorf("the deleted snapshot's file: %v", err)
	}
	// Deleting the sandbox removes its snapshots.
	if _, err := c.CreateSnapshot(ctx, sb.ID, "last"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(daemon.StateDir, "sandboxes", sb.ID)); !os.IsNotExist(err) {
		t.Errorf("the deleted sandbox's directory: %v", err)
	}
	leakCheck(t)
}

// TestCloneStarted: a clone of a started sandbox has its files, owned
// correctly for a non-root user; writes in the clone do not show in the
// source, which keeps running.
func TestCloneStarted(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	src := create(t, c, sbx.CreateSandboxRequest{Env: map[string]string{"FROM": "src"}, Labels: map[string]string{"role": "src"}})
	execOK(t, c, src.ID, "sh", "-c", writeTree)
	execOK(t, c, src.ID, "sh", "-c", "(while true; do sleep 1; done) > /dev/null 2>&1 &")
	want := execOK(t, c, src.ID, "sh", "-c", sumTree)

	start := time.Now()
	cl, err := c.CloneSandbox(ctx, src.ID, sbx.CloneRequest{Name: "e2e-clone", Env: map[string]string{"EXTRA": "1"},
		Labels: map[string]string{"role": "clone"}, Resources: &sbx.Resources{MemoryMB: 192}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("clone took %v", time.Since(start))
	t.Cleanup(func() { c.DeleteSandbox(context.WithoutCancel(ctx), cl.ID) })
	if cl.State != "started" || cl.ID == src.ID || cl.Labels["role"] != "clone" || cl.Resources.MemoryMB != 192 {
		t.Errorf("clone %+v", cl)
	}
	if got := execOK(t, c, cl.ID, "sh", "-c", sumTree); got != want {
		t.Errorf("the clone's files:\n%s\nwant:\n%s", got, want)
	}
	if env := execOK(t, c, cl.ID, "sh", "-c", "echo $FROM $EXTRA"); env != "src 1\n" {
		t.Errorf("the clone's env: %q", env)
	}
	// The non-root user owns and can write its files in the clone.
	res, err := c.Exec(ctx, cl.ID, sbx.ExecRequest{Argv: []string{"sh", "-c", "id -u && cat /home/u/notes && echo mine > /home/u/notes"}, User: "1000:1000", Cwd: "/home/u"})
	if err != nil || res.ExitCode != 0 || res.Stdout != "1000\nprivate\n" {
		t.Errorf("uid 1000 in the clone: %+v %v", res, err)
	}
	execOK(t, c, cl.ID, "sh", "-c", "echo clone > /srv/data/only-clone; echo gamma > /srv/data/a")
	// The source is untouched and still running its background loop.
	if got := execOK(t, c, src.ID, "sh", "-c", sumTree); got != want {
		t.Errorf("the source after the clone's writes:\n%s", got)
	}
	if out := execOK(t, c, src.ID, "sh", "-c", "ls /srv/data; ps | grep -c '[s]leep 1'"); strings.Contains(out, "only-clone") || strings.HasSuffix(out, "\n0\n") {
		t.Errorf("the source after the clone: %q", out)
	}
	if _, err := c.CloneSandbox(ctx, src.ID, sbx.CloneRequest{Resources: &sbx.Resources{DiskMB: 1}}); !sbx.IsInvalidArgument(err) {
		t.Errorf("a clone with a smaller disk: %v", err)
	}
	if _, err := c.CloneSandbox(ctx, "nope", sbx.CloneRequest{}); !sbx.IsNotFound(err) {
		t.Errorf("a clone of a missing sandbox: %v", err)
	}
}

// TestReset: hard reset gives the image's pristine tree; soft reset keeps
// files but kills a background process. Restart with new env shows it.
func TestResetAndRestart(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	pristine := execOK(t, c, sb.ID, "sh", "-c", "find / -xdev | grep -v '^/proc\\|^/sys\\|^/dev' | sort | md5sum")
	execOK(t, c, sb.ID, "sh", "-c", "echo kept > /root/f; rm /bin/ls; (sleep 1000) > /dev/null 2>&1 &")
	if n := execOK(t, c, sb.ID, "sh", "-c", "ps | grep -c '[s]leep 1000'"); n != "1\n" {
		t.Fatalf("the background process does not run: %q", n)
	}
	if _, err := c.ResetSandbox(ctx, sb.ID, sbx.ResetSoft); err != nil {
		t.Fatal(err)
	}
	if out := execOK(t, c, sb.ID, "sh", "-c", "cat /root/f; ps | grep -c '[s]leep 1000' || true"); out != "kept\n0\n" {
		t.Errorf("after a soft reset: %q", out)
	}
	if _, err := c.ResetSandbox(ctx, sb.ID, sbx.ResetHard); err != nil {
		t.Fatal(err)
	}
	if out, _ := c.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"test", "-e", "/root/f"}}); out.ExitCode == 0 {
		t.Error("/root/f survived a hard reset")
	}
	execOK(t, c, sb.ID, "ls", "/")
	if got := execOK(t, c, sb.ID, "sh", "-c", "find / -xdev | grep -v '^/proc\\|^/sys\\|^/dev' | sort | md5sum"); got != pristine {
		t.Errorf("the tree after a hard reset differs from the image's")
	}
	if msgs := eventMessages(t, c, sb.ID, "reset"); len(msgs) != 2 || msgs[0] != "soft reset" || msgs[1] != "hard reset" {
		t.Errorf("reset events: %q", msgs)
	}

	got, err := c.RestartSandboxWith(ctx, sb.ID, sbx.RestartRequest{Env: map[string]string{"MODE": "two"}, Resources: &sbx.Resources{CPU: 0.5, Pids: 200}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Env["MODE"] != "two" || got.Resources.CPU != 0.5 || got.Resources.Pids != 200 {
		t.Errorf("after restart: %+v", got)
	}
	if env := execOK(t, c, sb.ID, "sh", "-c", "echo $MODE"); env != "two\n" {
		t.Errorf("env after the restart: %q", env)
	}
	if _, err := c.RestartSandboxWith(ctx, sb.ID, sbx.RestartRequest{Resources: &sbx.Resources{MemoryMB: 1 << 30}}); !sbx.IsInvalidArgument(err) {
		t.Errorf("restart over the maximum: %v", err)
	}
	if got, _ := c.GetSandbox(ctx, sb.ID); got.State != "started" {
		t.Errorf("a refused restart left the sandbox %s", got.State)
	}
}

// waitFor polls until cond holds (or fails the test after 20 s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func globAny(pattern string) func() bool {
	return func() bool { m, _ := filepath.Glob(pattern); return len(m) > 0 }
}

// TestSnapshotKill9: a daemon killed with -9 in the middle of a snapshot
// (while the sandbox is frozen), a restore and a clone leaves every
// sandbox whole: thawed, with one whole layer, temporary files swept, the
// clone rolled back.
func TestSnapshotKill9(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{Name: "kill9-snap"})
	// Enough data that a copy takes a while.
	execOK(t, c, sb.ID, "sh", "-c", writeTree+"dd if=/dev/urandom of=/srv/big bs=1M count=200 2>/dev/null")
	want := execOK(t, c, sb.ID, "sh", "-c", sumTree)
	dir := filepath.Join(daemon.StateDir, "sandboxes", sb.ID)
	restart := func() {
		t.Helper()
		if err := daemon.Restart(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// 1. Mid-snapshot, frozen.
	go c.CreateSnapshot(context.WithoutCancel(ctx), sb.ID, "interrupted")
	waitFor(t, "the snapshot's copy", globAny(filepath.Join(dir, "snapshots", "*.img.tmp")))
	frozen := func() bool { _, err := os.Stat(filepath.Join(dir, "freeze")); return err == nil }()
	daemon.Kill9()
	restart()
	if !frozen {
		t.Error("the daemon was not killed while the sandbox was frozen: the test missed its moment")
	}
	if got := execOK(t, c, sb.ID, "sh", "-c", sumTree); got != want {
		t.Errorf("after a crash mid-snapshot:\n%s", got)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "snapshots", "*")); len(m) != 0 {
		t.Errorf("left after a crash mid-snapshot: %v", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "freeze")); !os.IsNotExist(err) {
		t.Errorf("freeze marker after recovery: %v", err)
	}
	if list, _ := c.ListSnapshots(ctx, sb.ID); len(list) != 0 {
		t.Errorf("snapshots after a crash mid-snapshot: %+v", list)
	}

	// 2. Mid-restore: the staged copy is being made.
	sn, err := c.CreateSnapshot(ctx, sb.ID, "good")
	if err != nil {
		t.Fatal(err)
	}
	execOK(t, c, sb.ID, "sh", "-c", "echo after > /srv/data/a")
	go c.RestoreSnapshot(context.WithoutCancel(ctx), sb.ID, sn.ID)
	waitFor(t, "the restore's staged copy", globAny(filepath.Join(dir, "disk.img.rollback*")))
	daemon.Kill9()
	restart()
	got, err := c.GetSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != "started" {
		if _, err := c.StartSandbox(ctx, sb.ID); err != nil {
			t.Fatalf("starting after a crash mid-restore (%s): %v", got.State, err)
		}
	}
	if a := execOK(t, c, sb.ID, "cat", "/srv/data/a"); a != "after\n" && a != "alpha\n" {
		t.Errorf("after a crash mid-restore: %q", a)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "disk.img.*")); len(m) > 1 {
		t.Errorf("left after a crash mid-restore: %v", m)
	}
	// The snapshot is whole and restores.
	if _, err := c.RestoreSnapshot(ctx, sb.ID, sn.ID); err != nil {
		t.Fatal(err)
	}
	if got := execOK(t, c, sb.ID, "sh", "-c", sumTree); got != want {
		t.Errorf("after the restore that followed the crash:\n%s", got)
	}

	// 3. Mid-clone: the clone's copy is being made.
	before, _ := c.ListAllSandboxes(ctx, sbx.ListOptions{})
	go c.CloneSandbox(context.WithoutCancel(ctx), sb.ID, sbx.CloneRequest{Name: "kill9-clone"})
	waitFor(t, "the clone's copy", globAny(filepath.Join(daemon.StateDir, "sandboxes", "*", "disk.img.tmp")))
	daemon.Kill9()
	restart()
	if _, err := c.GetSandbox(ctx, "kill9-clone"); !sbx.IsNotFound(err) {
		t.Errorf("the clone cut short: %v, want it rolled back", err)
	}
	after, _ := c.ListAllSandboxes(ctx, sbx.ListOptions{})
	if len(after) != len(before) {
		t.Errorf("%d sandboxes before the crashed clone, %d after", len(before), len(after))
	}
	if got := execOK(t, c, sb.ID, "sh", "-c", sumTree); got != want {
		t.Errorf("the source after a crash mid-clone:\n%s", got)
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	leakCheck(t)
}

// TestCloneSharesVolumes: a clone mounts its source's volumes (shared, not
// copied): what one writes there the other reads.
func TestCloneSharesVolumes(t *testing.T) {
	volumeSetup(t)
	c := admin
	ctx := t.Context()
	v := createVolume(t, c, "clone-shared", 32)
	src := create(t, c, sbx.CreateSandboxRequest{Volumes: []sbx.VolumeMount{{Volume: v.Name, MountPath: "/data"}}})
	execOK(t, c, src.ID, "sh", "-c", "echo from-src > /data/f")
	cl, err := c.CloneSandbox(ctx, src.ID, sbx.CloneRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DeleteSandbox(context.WithoutCancel(ctx), cl.ID) })
	if len(cl.Volumes) != 1 || cl.Volumes[0].MountPath != "/data" {
		t.Errorf("the clone's volumes: %+v", cl.Volumes)
	}
	if got := execOK(t, c, cl.ID, "sh", "-c", "cat /data/f; echo from-clone > /data/g"); got != "from-src\n" {
		t.Errorf("the volume in the clone: %q", got)
	}
	if got := execOK(t, c, src.ID, "cat", "/data/g"); got != "from-clone\n" {
		t.Errorf("the clone's write in the shared volume, from the source: %q", got)
	}
}

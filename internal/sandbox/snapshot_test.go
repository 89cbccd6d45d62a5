package sandbox_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

// flipDataByte corrupts one byte of an image's first non-zero data.
func flipDataByte(t *testing.T, path string) {
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
	for i := 0; i < n; i++ {
		if b[i] != 0 {
			f.WriteAt([]byte{b[i] ^ 0xff}, off+int64(i))
			return
		}
	}
	t.Fatal("no data to corrupt")
}

func snapshotEvents(t *testing.T, st store.Store, id string) []string {
	t.Helper()
	evs, err := st.ListEvents(t.Context(), "t1", id, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.Type == "snapshot" {
			out = append(out, e.Message)
		}
	}
	return out
}

func TestServiceSnapshotRestore(t *testing.T) {
	svc, st, dir := newService(t, "crun", true)
	ctx := t.Context()
	sb, err := svc.Create(ctx, sandbox.CreateOptions{TenantID: "t1", Name: "snap"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Delete(context.WithoutCancel(ctx), "t1", sb.ID)
	run(t, svc, sb.ID, "sh", "-c", "echo one > /root/a && mkdir -p /srv && dd if=/dev/urandom of=/srv/blob bs=64k count=16 2>/dev/null && md5sum /srv/blob > /root/sum")
	sum0, _ := run(t, svc, sb.ID, "md5sum", "/srv/blob")

	sn, stats, err := svc.CreateSnapshot(ctx, "t1", sb.ID, "first")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("snapshot of a started sandbox: %d KiB, pause %v, took %v", stats.Bytes>>10, stats.Pause, stats.Took)
	if !strings.HasPrefix(sn.Checksum, "sha256:") || sn.Size <= 0 || sn.Name != "first" {
		t.Errorf("snapshot %+v", sn)
	}
	if stats.Pause <= 0 {
		t.Error("a started sandbox was not frozen for its snapshot")
	}
	if _, _, err := svc.CreateSnapshot(ctx, "t1", sb.ID, "first"); !errorsIs(err, errdefs.ErrAlreadyExists) {
		t.Errorf("duplicate name: %v", err)
	}
	if _, _, err := svc.CreateSnapshot(ctx, "t1", sb.ID, "../x"); !errorsIs(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad name: %v", err)
	}
	// The sandbox runs on after the freeze.
	if out, _ := run(t, svc, sb.ID, "cat", "/root/a"); out != "one\n" {
		t.Fatalf("after the snapshot: %q", out)
	}
	run(t, svc, sb.ID, "sh", "-c", "echo two > /root/a && rm /srv/blob && echo new > /root/b")

	got, err := svc.RestoreSnapshot(ctx, "t1", sb.ID, "first")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.StateStarted {
		t.Errorf("state after restore: %s", got.State)
	}
	out, _ := run(t, svc, sb.ID, "sh", "-c", "cat /root/a; ls /root")
	if out != "one\na\nsum\n" {
		t.Errorf("after restore: %q", out)
	}
	if sum, _ := run(t, svc, sb.ID, "md5sum", "/srv/blob"); sum != sum0 {
		t.Errorf("blob after restore %q, want %q", sum, sum0)
	}

	// A corrupted snapshot is refused and nothing changes.
	run(t, svc, sb.ID, "sh", "-c", "echo three > /root/a")
	flipDataByte(t, filepath.Join(dir, "state", "sandboxes", sb.ID, "snapshots", sn.ID+".img"))
	_, err = svc.RestoreSnapshot(ctx, "t1", sb.ID, sn.ID)
	if !errorsIs(err, errdefs.ErrConflict) || !strings.Contains(errdefs.Message(err), "corrupt") {
		t.Fatalf("restore of a corrupt snapshot: %v", err)
	}
	if out, _ := run(t, svc, sb.ID, "cat", "/root/a"); out != "three\n" {
		t.Errorf("after a refused restore: %q", out)
	}
	if ents, _ := filepath.Glob(filepath.Join(dir, "state", "sandboxes", sb.ID, "disk.img.*")); len(ents) > 1 {
		t.Errorf("temporary files left: %v", ents) // disk.img.loop only
	}
	evs := snapshotEvents(t, st, sb.ID)
	if len(evs) != 5 || !strings.Contains(evs[4], "failed") || strings.Contains(evs[3], "failed") || !strings.Contains(evs[2], "failed") {
		t.Errorf("snapshot events: %q", evs)
	}

	// A stopped sandbox's snapshot; delete; the sandbox's delete takes the rest.
	if _, err := svc.Stop(ctx, "t1", sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	sn2, stats, err := svc.CreateSnapshot(ctx, "t1", sb.ID, "")
	if err != nil || stats.Pause != 0 || sn2.Name != sn2.ID {
		t.Fatalf("snapshot of a stopped sandbox: %+v %+v %v", sn2, stats, err)
	}
	if got, err := svc.RestoreSnapshot(ctx, "t1", sb.ID, sn2.ID); err != nil || got.State != store.StateStopped {
		t.Fatalf("restore of a stopped sandbox: %s %v", got.State, err)
	}
	if err := svc.DeleteSnapshot(ctx, "t1", sb.ID, sn2.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "sandboxes", sb.ID, "snapshots", sn2.ID+".img")); !os.IsNotExist(err) {
		t.Errorf("deleted snapshot's file: %v", err)
	}
	if list, _ := svc.ListSnapshots(ctx, "t1", sb.ID); len(list) != 1 {
		t.Errorf("%d snapshots left, want 1", len(list))
	}
	if err := svc.Delete(ctx, "t1", sb.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := st.ListSnapshots(ctx, "", sb.ID); len(list) != 0 {
		t.Errorf("a deleted sandbox keeps %d snapshot records", len(list))
	}
}

func TestServiceClone(t *testing.T) {
	svc, _, dir := newService(t, "crun", true)
	ctx := t.Context()
	src, err := svc.Create(ctx, sandbox.CreateOptions{TenantID: "t1", Name: "src", Env: map[string]string{"A": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Delete(context.WithoutCancel(ctx), "t1", src.ID)
	run(t, svc, src.ID, "sh", "-c", "mkdir -p /home/u && echo mine > /home/u/f && chown -R 1000:1000 /home/u && cp /bin/busybox /root/suid && chmod 4755 /root/suid && ln /home/u/f /root/hard && ln -s /home/u/f /root/sym")
	cl, stats, err := svc.Clone(ctx, "t1", src.ID, sandbox.CloneOptions{Name: "copy", Env: map[string]string{"B": "2"}, Labels: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Delete(context.WithoutCancel(ctx), "t1", cl.ID)
	t.Logf("clone: copy pause %v, took %v", stats.Pause, stats.Took)
	if cl.UIDSlot == src.UIDSlot || cl.State != store.StateStarted || cl.Labels["k"] != "v" {
		t.Fatalf("clone %+v", cl)
	}
	out, _ := run(t, svc, cl.ID, "sh", "-c", "echo $A$B; stat -c '%u:%g %a' /home/u/f /root/suid; cat /root/hard /root/sym")
	if out != "12\n1000:1000 644\n0:0 4755\nmine\nmine\n" {
		t.Errorf("in the clone: %q", out)
	}
	// On the host the clone's files belong to its own range.
	var st syscall.Stat_t
	upper := filepath.Join(dir, "state", "sandboxes", cl.ID, "disk", "upper", "home", "u", "f")
	if err := syscall.Lstat(upper, &st); err != nil {
		t.Fatal(err)
	}
	if want := uint32(5<<20 + cl.UIDSlot*65536 + 1000); st.Uid != want {
		t.Errorf("host owner of the clone's file %d, want %d", st.Uid, want)
	}
	// The non-root user can write its files in the clone; writes stay there.
	p, err := svc.Exec(ctx, "t1", cl.ID, agent.ExecRequest{Argv: []string{"sh", "-c", "id -u; echo changed > /home/u/f"}, User: "1000:1000"})
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := p.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if f.Kind == agent.FrameStderr || f.Kind == agent.FrameError {
			t.Errorf("as uid 1000 in the clone: %s", f.Data)
		}
		if f.Kind == agent.FrameExit {
			if f.Exit.Code != 0 {
				t.Errorf("uid 1000 cannot write its file in the clone: %+v", f.Exit)
			}
			break
		}
	}
	p.Close()
	if out, _ := run(t, svc, cl.ID, "cat", "/home/u/f"); out != "changed\n" {
		t.Errorf("the clone's file after uid 1000 wrote it: %q", out)
	}
	run(t, svc, cl.ID, "sh", "-c", "echo only-clone > /root/new")
	if out, _ := run(t, svc, src.ID, "sh", "-c", "cat /home/u/f; ls /root"); out != "mine\nhard\nsuid\nsym\n" {
		t.Errorf("the source after the clone's writes: %q", out)
	}
	if _, _, err := svc.Clone(ctx, "t1", src.ID, sandbox.CloneOptions{Resources: store.Resources{DiskMB: 1}}); !errorsIs(err, errdefs.ErrInvalidArgument) {
		t.Errorf("clone with a smaller disk: %v", err)
	}
	if _, _, err := svc.Clone(ctx, "t1", src.ID, sandbox.CloneOptions{Name: "copy"}); !errorsIs(err, errdefs.ErrAlreadyExists) {
		t.Errorf("clone with a taken name: %v", err)
	}
	// A stopped source: copied as it lies, the clone started, the source left stopped.
	if _, err := svc.Stop(ctx, "t1", src.ID, 0); err != nil {
		t.Fatal(err)
	}
	cl2, stats, err := svc.Clone(ctx, "t1", src.ID, sandbox.CloneOptions{Resources: store.Resources{DiskMB: 128}})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Delete(context.WithoutCancel(ctx), "t1", cl2.ID)
	if stats.Pause != 0 || cl2.Resources.DiskMB != 128 {
		t.Errorf("clone of a stopped sandbox: pause %v, disk %d", stats.Pause, cl2.Resources.DiskMB)
	}
	if out, _ := run(t, svc, cl2.ID, "sh", "-c", "stat -c '%u:%g' /home/u/f; df -m / | awk 'NR==2 {print ($2 > 100)}'"); out != "1000:1000\n1\n" {
		t.Errorf("in the clone of a stopped sandbox (owner; disk grown to 128 MiB): %q", out)
	}
	if got, _ := svc.Get(ctx, "t1", src.ID); got.State != store.StateStopped {
		t.Errorf("the stopped source is now %s", got.State)
	}
}

func TestServiceReset(t *testing.T) {
	svc, _, _ := newService(t, "crun", true)
	ctx := t.Context()
	sb, err := svc.Create(ctx, sandbox.CreateOptions{TenantID: "t1", Name: "rst"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Delete(context.WithoutCancel(ctx), "t1", sb.ID)
	run(t, svc, sb.ID, "sh", "-c", "echo kept > /root/f; (sleep 1000) > /dev/null 2>&1 < /dev/null &")
	if out, _ := run(t, svc, sb.ID, "sh", "-c", "ps; ps | grep -c '[s]leep 1000'"); !strings.HasSuffix(out, "\n1\n") {
		t.Fatalf("background sleep not running: %q", out)
	}
	if _, err := svc.Reset(ctx, "t1", sb.ID, sandbox.ResetSoft); err != nil {
		t.Fatal(err)
	}
	out, _ := run(t, svc, sb.ID, "sh", "-c", "cat /root/f; ps | grep -c '[s]leep 1000'")
	if out != "kept\n0\n" {
		t.Errorf("after a soft reset: %q", out)
	}
	if _, err := svc.Reset(ctx, "t1", sb.ID, sandbox.ResetHard); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, svc, sb.ID, "sh", "-c", "ls -A /root; ls /"); strings.Contains(out, "f\n") && strings.HasPrefix(out, "f") {
		t.Errorf("after a hard reset: %q", out)
	}
	if out, ex := run(t, svc, sb.ID, "test", "-e", "/root/f"); ex.Code == 0 {
		t.Errorf("/root/f survived a hard reset: %q", out)
	}
	if _, err := svc.Reset(ctx, "t1", sb.ID, "medium"); !errorsIs(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad mode: %v", err)
	}

	got, err := svc.RestartWith(ctx, "t1", sb.ID, sandbox.RestartOptions{Env: map[string]string{"NEW": "yes"}, Resources: store.Resources{MemoryMB: 300}})
	if err != nil {
		t.Fatal(err)
	}
	if got.Resources.MemoryMB != 300 || got.Env["NEW"] != "yes" {
		t.Errorf("after restart: %+v", got)
	}
	if out, _ := run(t, svc, sb.ID, "sh", "-c", "echo $NEW"); out != "yes\n" {
		t.Errorf("env after restart: %q", out)
	}
	if _, err := svc.RestartWith(ctx, "t1", sb.ID, sandbox.RestartOptions{Resources: store.Resources{MemoryMB: 1 << 20}}); !errorsIs(err, errdefs.ErrInvalidArgument) {
		t.Errorf("restart over the maximum: %v", err)
	}
}

// TestServiceRecoverInterruptedRestore: a daemon that died after a
// restore stopped the sandbox but before it put the verified copy in place
// and started it again (the state the restore leaves at that instant, made
// here by hand): Recover finishes the restore.
func TestServiceRecoverInterruptedRestore(t *testing.T) {
	svc, st, dir := newService(t, "crun", true)
	ctx := t.Context()
	sb, err := svc.Create(ctx, sandbox.CreateOptions{TenantID: "t1", Name: "resume"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Delete(context.WithoutCancel(ctx), "t1", sb.ID)
	run(t, svc, sb.ID, "sh", "-c", "echo old > /root/f")
	sn, _, err := svc.CreateSnapshot(ctx, "t1", sb.ID, "s")
	if err != nil {
		t.Fatal(err)
	}
	run(t, svc, sb.ID, "sh", "-c", "echo new > /root/f")
	if _, err := svc.Stop(ctx, "t1", sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	sdir := filepath.Join(dir, "state", "sandboxes", sb.ID)
	if _, err := rootfs.CopyImage(ctx, filepath.Join(sdir, "disk.img.rollback"), filepath.Join(sdir, "snapshots", sn.ID+".img"), sn.Checksum); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(sdir, "leftover.tmp"), []byte("x"), 0o600)
	rec, err := st.GetSandbox(ctx, "t1", sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec.Desired = store.StateStarted // what markResuming records after the stop
	if err := st.UpdateSandbox(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Get(ctx, "t1", sb.ID)
	if err != nil || got.State != store.StateStarted {
		t.Fatalf("after recovery: %s %v", got.State, err)
	}
	if out, _ := run(t, svc, sb.ID, "cat", "/root/f"); out != "old\n" {
		t.Errorf("the restore was not finished: /root/f = %q", out)
	}
	for _, p := range []string{"disk.img.rollback", "leftover.tmp"} {
		if _, err := os.Stat(filepath.Join(sdir, p)); !os.IsNotExist(err) {
			t.Errorf("%s after recovery: %v", p, err)
		}
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// manifestPy prints, for every entry under its arguments, what an archive
// must keep: type and mode bits, owner, size, link count and hard-link
// group, mtime, content digest, whether the file is sparse,
// symlink target and extended attributes.
const manifestPy = `
import os, sys, stat, hashlib, json
out, first = [], {}
for top in sys.argv[1:]:
    for dp, dns, fns in os.walk(top):
        for n in sorted(dns + fns):
            p = os.path.join(dp, n)
            st = os.lstat(p)
            # Inode numbers of image directories change between mounts:
            # a hard link is shown as the first path of its inode.
            link = first.setdefault((st.st_dev, st.st_ino), p) if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode) else ''
            e = [p, oct(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_nlink, link, st.st_mtime_ns]
            if stat.S_ISREG(st.st_mode):
                h = hashlib.sha256()
                with open(p, 'rb') as f:
                    for b in iter(lambda: f.read(1 << 20), b''):
                        h.update(b)
                e += [h.hexdigest(), st.st_blocks * 512 < st.st_size // 2]
            elif stat.S_ISLNK(st.st_mode):
                e.append(os.readlink(p))
            try:
                e.append(sorted([k, os.getxattr(p, k, follow_symlinks=False).hex()] for k in os.listxattr(p, follow_symlinks=False)))
            except OSError as err:
                e.append(str(err))
            out.append(e)
print(json.dumps(out))
`

// treeSh makes a tree with every kind of thing a writable layer holds:
// modes (setuid too), owners, hard links, symlinks (dangling too), a
// FIFO, xattrs, a sparse file, random data, a deleted image file (a
// whiteout) and a replaced image directory (an opaque dir).
const treeSh = `set -e
mkdir -p /data/d1/d2
echo hello > /data/d1/f
chmod 640 /data/d1/f
chown 1000:1000 /data/d1/f
ln /data/d1/f /data/d1/hard
ln -s ../f /data/d1/d2/link
ln -s /nonexistent /data/dangling
mkfifo /data/fifo
cp /bin/true /data/suid
chmod 4755 /data/suid
head -c 8388608 /dev/urandom > /data/random
python3 -c "
import os
os.setxattr('/data/d1/f', 'user.color', b'blue')
os.setxattr('/data/d1', 'user.empty', b'')
with open('/data/sparse', 'wb') as f:
    f.truncate(1 << 30)
    f.seek(500 << 20)
    f.write(b'x' * 4096)
"
rm -f /etc/issue
rm -rf /usr/share/doc
mkdir /usr/share/doc
echo new > /usr/share/doc/only
`

func manifest(t *testing.T, id string) []any {
	t.Helper()
	out := execOK(t, admin, id, "python3", "-c", manifestPy, "/data", "/etc", "/usr/share/doc")
	var m []any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	return m
}

// TestArchiveRoundTrip archives a stopped sandbox and starts it again:
// every file, mode, owner, xattr, hard link, symlink, FIFO and sparse
// file comes back, the local disk is freed while archived, and the archive
// object goes once the sandbox is restored.
func TestArchiveRoundTrip(t *testing.T) {
	setup(t)
	needCodeImage(t)
	ctx := t.Context()
	sb := create(t, admin, sbx.CreateSandboxRequest{Image: codeImage, Lifecycle: &sbx.LifecyclePolicy{AutoDeleteSeconds: sbx.Never(true)}})
	execOK(t, admin, sb.ID, "sh", "-c", treeSh)
	before := manifest(t, sb.ID)
	if _, err := admin.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err := admin.ArchiveSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	a := got.Lifecycle.Archive
	if got.State != "archived" || a == nil {
		t.Fatalf("after archive: state %s, archive %+v", got.State, a)
	}
	t.Logf("archived %d MiB of data into %d MiB in %v", a.DataBytes>>20, a.StoredBytes>>20, took)
	// 8 MiB random + the rest; never the 1 GiB sparse file's holes.
	if a.DataBytes < 8<<20 || a.DataBytes > 200<<20 || a.StoredBytes > a.DataBytes {
		t.Errorf("archive sizes: %+v", a)
	}
	dir := filepath.Join(daemon.StateDir, "sandboxes", sb.ID)
	obj := filepath.Join(daemon.StateDir, "archive", "sandboxes", sb.ID+".sbxa")
	if _, err := os.Stat(filepath.Join(dir, "disk.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the local disk image is still there while archived: %v", err)
	}
	if fi, err := os.Stat(obj); err != nil || fi.Size() != a.StoredBytes {
		t.Errorf("archive object: %v %v", fi, err)
	}
	// Archived sandboxes are listed, refuse toolbox calls, and archiving
	// again is a no-op.
	if _, err := admin.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"true"}}); !sbx.IsConflict(err) {
		t.Errorf("exec in an archived sandbox: %v", err)
	}
	if _, err := admin.ArchiveSandbox(ctx, sb.ID); err != nil {
		t.Errorf("archiving again: %v", err)
	}
	list, err := admin.ListSandboxes(ctx, sbx.ListOptions{States: []string{"archived"}})
	if err != nil || len(list.Items) == 0 {
		t.Errorf("list archived: %v %v", list, err)
	}

	// A corrupted object is refused, and the sandbox stays archived.
	b, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), b...)
	bad[len(bad)/2] ^= 0x40
	if err := os.WriteFile(obj, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.StartSandbox(ctx, sb.ID); sbx.ErrorCode(err) != sbx.CodeDataLoss {
		t.Errorf("start from a corrupted archive: %v, want data_loss", err)
	}
	if got, _ := admin.GetSandbox(ctx, sb.ID); got.State != "archived" {
		t.Errorf("after a failed restore: %s, want archived", got.State)
	}
	if err := os.WriteFile(obj, b, 0o600); err != nil {
		t.Fatal(err)
	}

	start = time.Now()
	got, err = admin.StartSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restored and started in %v", time.Since(start))
	if got.State != "started" || got.Lifecycle.Archive != nil {
		t.Errorf("after start: %s %+v", got.State, got.Lifecycle.Archive)
	}
	after := manifest(t, sb.ID)
	if len(after) < 10 {
		t.Fatalf("manifest too small: %v", after)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("tree changed by archive and restore (-before +after):\n%s", diff)
	}
	if _, err := os.Stat(obj); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the archive object outlived the restore: %v", err)
	}
	if out := execOK(t, admin, sb.ID, "sh", "-c", "test ! -e /etc/issue && cat /usr/share/doc/only && ls /usr/share/doc | wc -l"); out != "new\n1\n" {
		t.Errorf("whiteout/opaque dir after restore: %q", out)
	}
	events, _ := admin.Events(ctx, sb.ID, 0)
	var seen []string
	for _, e := range events {
		if e.Type == "archive" || e.Type == "restore" {
			seen = append(seen, e.Type+": "+e.Message)
		}
	}
	if len(seen) < 3 { // archive, failed restore, restore
		t.Errorf("archive events: %q", seen)
	}
}

// TestArchiveKilledMidway kills the daemon with SIGKILL while it archives:
// after the restart the sandbox is stopped and whole, and archives fine.
func TestArchiveKilledMidway(t *testing.T) {
	setup(t)
	ctx := t.Context()
	sb := create(t, admin, sbx.CreateSandboxRequest{Resources: &sbx.Resources{DiskMB: 2048}})
	execOK(t, admin, sb.ID, "sh", "-c", "head -c 629145600 /dev/urandom > /root/big && sha256sum /root/big > /root/big.sum")
	sum := execOK(t, admin, sb.ID, "cat", "/root/big.sum")
	if _, err := admin.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := admin.ArchiveSandbox(context.WithoutCancel(ctx), sb.ID)
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got, err := admin.GetSandbox(ctx, sb.ID)
		if err == nil && got.State == "archiving" {
			break
		}
		if err == nil && got.State == "archived" || time.Now().After(deadline) {
			t.Fatalf("never saw the archive under way: %s %v", got.State, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // well into the copy
	daemon.Kill9()
	if err := <-done; err == nil {
		t.Log("the archive call answered before the kill")
	}
	if err := daemon.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := admin.GetSandbox(ctx, sb.ID)
	if err != nil || got.State != "stopped" {
		t.Fatalf("after the restart: %s %v, want stopped", got.State, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(daemon.StateDir, "archive", "sandboxes")); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the archive store holds %v after an interrupted archive", names)
	}
	if _, err := admin.StartSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if out := execOK(t, admin, sb.ID, "sha256sum", "/root/big"); out != sum {
		t.Errorf("file after the interrupted archive: %q, want %q", out, sum)
	}
	// And the whole round trip works afterwards.
	if _, err := admin.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	got, err = admin.ArchiveSandbox(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Since(start)
	start = time.Now()
	if _, err := admin.StartSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	rt := time.Since(start)
	t.Logf("600 MiB layer: archive %v (%.0f MiB/s), restore+start %v (%.0f MiB/s)", at, 600/at.Seconds(), rt, 600/rt.Seconds())
	if out := execOK(t, admin, sb.ID, "sha256sum", "/root/big"); out != sum {
		t.Errorf("file after archive and restore: %q, want %q", out, sum)
	}
}

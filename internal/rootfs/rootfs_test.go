package rootfs

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/testutil"
)

func TestMountIdmappedOverlay(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	l0 := filepath.Join(base, "l0")
	l1 := filepath.Join(base, "l1")
	for _, d := range []string{l0, l1} {
		if err := os.MkdirAll(filepath.Join(d, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(l0, "etc", "a"), []byte("from l0"), 0o644)
	os.WriteFile(filepath.Join(l0, "etc", "b"), []byte("old"), 0o644)
	os.WriteFile(filepath.Join(l1, "etc", "b"), []byte("new"), 0o644)
	os.Chown(filepath.Join(l1, "etc", "b"), 1000, 1000)

	m := idmap.Map{HostID: 3 << 20, Size: 65536}
	ns, err := idmap.NamespaceFD(m)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	dir := filepath.Join(base, "sb")
	o := Options{Dir: dir, Layers: []string{l0, l1}, IDMap: &m, UserNS: ns, DiskBytes: 64 << 20}
	if err := Create(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if err := Mount(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Remove(dir) })
	// Idempotent.
	if err := Mount(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	root := RootfsDir(dir)
	check := func(name, want string, uid uint32) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil || string(b) != want {
			t.Errorf("%s = %q, %v; want %q", name, b, err, want)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(root, name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != uid {
			t.Errorf("%s owned by host uid %d, want %d", name, st.Uid, uid)
		}
	}
	check("etc/a", "from l0", m.HostID)
	check("etc/b", "new", m.HostID+1000)
	var st syscall.Stat_t
	syscall.Stat(root, &st)
	if st.Uid != m.HostID {
		t.Errorf("root dir owned by %d, want %d", st.Uid, m.HostID)
	}
	// Writes go to the upper layer, never to the shared layers.
	if err := os.WriteFile(filepath.Join(root, "etc", "a"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(l0, "etc", "a")); string(b) != "from l0" {
		t.Errorf("lower layer modified: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(UpperDir(dir), "etc", "a")); string(b) != "changed" {
		t.Errorf("upper has %q", b)
	}
	// The disk limit holds: filling the writable layer ends in ENOSPC.
	f, err := os.Create(filepath.Join(root, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{1}, 1<<20)
	var werr error
	written := 0
	for i := 0; i < 200 && werr == nil; i++ {
		var n int
		n, werr = f.Write(chunk)
		written += n
	}
	f.Close()
	if !errors.Is(werr, unix.ENOSPC) {
		t.Errorf("filling a 64 MiB disk: wrote %d MiB, err %v; want ENOSPC", written>>20, werr)
	}
	// Unmount + remount keeps the files (stop/start).
	if err := Unmount(dir); err != nil {
		t.Fatal(err)
	}
	if err := Mount(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	check("etc/a", "changed", m.HostID)
	if err := Remove(dir); err != nil {
		t.Fatal(err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), dir) {
		t.Errorf("mounts left behind under %s", dir)
	}
}

func TestGrow(t *testing.T) {
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "sb")
	o := Options{Dir: dir, DiskBytes: 32 << 20}
	if err := Create(t.Context(), o); err != nil {
		t.Fatal(err)
	}
	if err := Grow(t.Context(), dir, 16<<20); err == nil {
		t.Error("shrinking succeeded")
	}
	if err := Grow(t.Context(), dir, 96<<20); err != nil {
		t.Fatal(err)
	}
	if err := mountDisk(dir); err != nil {
		t.Fatal(err)
	}
	defer Remove(dir)
	var fs unix.Statfs_t
	unix.Statfs(diskMount(dir), &fs)
	if total := int64(fs.Blocks) * fs.Bsize; total < 80<<20 {
		t.Errorf("after growing to 96 MiB the filesystem has %d MiB", total>>20)
	}
	if err := Grow(t.Context(), dir, 128<<20); err == nil {
		t.Error("growing while mounted succeeded")
	}
}

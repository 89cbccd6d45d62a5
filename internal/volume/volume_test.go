package volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/store/sqlite"
	"github.com/sbx-sh/sbx/internal/testutil"
)

type env struct {
	dir string
	st  store.Store
	m   *Manager
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	testutil.RequireRoot(t)
	base := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(base, "sbx.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg.Dir = filepath.Join(base, "volumes")
	m, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(t.Context()); err != nil {
		t.Fatal(err)
	}
	e := &env{dir: cfg.Dir, st: st, m: m}
	t.Cleanup(func() { e.checkClean(t) })
	return e
}

// checkClean fails the test if a mount or loop device of its volumes is
// left (after removing them, so one failure does not leak into others).
func (e *env) checkClean(t *testing.T) {
	t.Helper()
	if leaks := e.leaks(); len(leaks) > 0 {
		t.Errorf("leaked: %v", leaks)
	}
}

func (e *env) leaks() []string {
	var out []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		out = out[:0]
		mi, _ := os.ReadFile("/proc/self/mountinfo")
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], e.dir+"/") {
				out = append(out, "mount "+f[4])
				unix.Unmount(f[4], unix.MNT_DETACH)
			}
		}
		loops, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
		for _, l := range loops {
			if b, _ := os.ReadFile(l); strings.HasPrefix(string(b), e.dir+"/") {
				out = append(out, "loop "+l+" → "+strings.TrimSpace(string(b)))
			}
		}
		// Auto-cleared loop devices go a moment after their last unmount.
		if len(out) == 0 || time.Now().After(deadline) {
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustCreate(t *testing.T, e *env, tenant, name string, mb int64) store.Volume {
	t.Helper()
	v, err := e.m.Create(t.Context(), tenant, name, mb)
	if err != nil {
		t.Fatalf("Create %s: %v", name, err)
	}
	return v
}

func mounted(t *testing.T, p string) bool {
	t.Helper()
	ok, err := rootfs.IsMountPoint(p)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestCreateGetListDelete(t *testing.T) {
	e := newEnv(t, Config{MaxPerTenant: 3, MaxTotalMBPerTenant: 100})
	ctx := t.Context()
	v := mustCreate(t, e, "t1", "data", 32)
	if v.State != store.VolumeReady || v.SizeMB != 32 || !strings.HasPrefix(v.ID, "vol-") {
		t.Fatalf("created %+v", v)
	}
	fi, err := os.Stat(filepath.Join(e.dir, v.ID, "disk.img"))
	if err != nil || fi.Size() != 32<<20 {
		t.Fatalf("disk image: %v, %v", fi, err)
	}
	for _, key := range []string{v.ID, "data"} {
		if got, err := e.m.Get(ctx, "t1", key); err != nil || got.ID != v.ID {
			t.Errorf("Get(%s) = %+v, %v", key, got, err)
		}
	}
	if _, err := e.m.Get(ctx, "t2", "data"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Get from another tenant: %v", err)
	}
	for _, tc := range []struct {
		name string
		mb   int64
		kind error
	}{
		{"data", 32, errdefs.ErrAlreadyExists},
		{"bad name", 32, errdefs.ErrInvalidArgument},
		{"", 32, errdefs.ErrInvalidArgument},
		{"tiny", 1, errdefs.ErrInvalidArgument},
		{"huge", DefaultMaxSizeMB + 1, errdefs.ErrInvalidArgument},
		{"over-total", 80, errdefs.ErrResourceExhausted},
	} {
		if _, err := e.m.Create(ctx, "t1", tc.name, tc.mb); !errors.Is(err, tc.kind) {
			t.Errorf("Create(%q, %d) = %v, want %v", tc.name, tc.mb, err, tc.kind)
		}
	}
	mustCreate(t, e, "t1", "b", 16)
	mustCreate(t, e, "t1", "c", 16)
	if _, err := e.m.Create(ctx, "t1", "d", 16); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("fourth volume: %v", err)
	}
	// Another tenant has its own names and limits.
	mustCreate(t, e, "t2", "data", 16)
	l, err := e.m.List(ctx, "t1")
	if err != nil || len(l) != 3 || l[0].Name != "data" {
		t.Fatalf("List = %+v, %v", l, err)
	}
	for _, vol := range append(l, store.Volume{Name: "data", TenantID: "t2"}) {
		if err := e.m.Delete(ctx, vol.TenantID, vol.Name, false); err != nil {
			t.Fatalf("Delete %s: %v", vol.Name, err)
		}
	}
	if err := e.m.Delete(ctx, "t1", "data", false); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Delete again: %v", err)
	}
	if ents, _ := os.ReadDir(e.dir); len(ents) != 1 || ents[0].Name() != ".stage" {
		t.Errorf("left in the volumes directory: %v", ents)
	}
}

func TestDeleteRefusedWhileMounted(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	v := mustCreate(t, e, "t1", "data", 16)
	sb := store.Sandbox{ID: "sb1", TenantID: "t1", Name: "sb1", State: store.StateStopped, UIDSlot: -1,
		Volumes: []store.VolumeMount{{VolumeID: v.ID, Volume: v.Name, MountPath: "/data"}}}
	if err := e.st.CreateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	err := e.m.Delete(ctx, "t1", "data", false)
	if !errors.Is(err, errdefs.ErrConflict) || !strings.Contains(errdefs.Message(err), "sb1") {
		t.Fatalf("Delete while a sandbox mounts it: %v", err)
	}
	// Once the sandbox is gone, it goes.
	sb.State = store.StateDestroyed
	if err := e.st.UpdateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Delete(ctx, "t1", "data", false); err != nil {
		t.Fatalf("Delete after the sandbox: %v", err)
	}

	// Forced, while held and mounted: the holder's view lives on.
	v = mustCreate(t, e, "t1", "forced", 16)
	sb2 := store.Sandbox{ID: "sb2", TenantID: "t1", Name: "sb2", State: store.StateStarted, UIDSlot: -1,
		Volumes: []store.VolumeMount{{VolumeID: v.ID, Volume: v.Name, MountPath: "/data"}}}
	if err := e.st.CreateSandbox(ctx, sb2); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Acquire(ctx, v.ID, "sb2"); err != nil {
		t.Fatal(err)
	}
	stage, err := e.m.Stage(v.ID, "", "sb2", 0, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.m.Delete(ctx, "t1", "forced", true); err != nil {
		t.Fatalf("forced Delete: %v", err)
	}
	if err := os.WriteFile(filepath.Join(stage, "still"), []byte("here"), 0o644); err != nil {
		t.Errorf("writing through a live view of a force-deleted volume: %v", err)
	}
	if err := e.m.Acquire(ctx, v.ID, "sb3"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Acquire of a deleted volume: %v", err)
	}
	// Still written to, it still counts against the tenant's total.
	live, _ := e.m.List(ctx, "t1")
	var sum int64
	for _, l := range live {
		sum += l.SizeMB
	}
	saved := e.m.cfg.MaxTotalMBPerTenant
	e.m.cfg.MaxTotalMBPerTenant = sum + 16 + 8 // room for the orphan, not for another 16 MiB
	if _, err := e.m.Create(ctx, "t1", "over", 16); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("a create past the total with a force-deleted volume still held: %v", err)
	}
	if err := e.m.Unstage("sb2"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Release(v.ID, "sb2"); err != nil {
		t.Fatal(err)
	}
	// Released: it counts no more.
	if o, err := e.m.Create(ctx, "t1", "over", 16); err != nil {
		t.Errorf("create once the orphan is released: %v", err)
	} else if err := e.m.Delete(ctx, "t1", o.Name, false); err != nil {
		t.Error(err)
	}
	e.m.cfg.MaxTotalMBPerTenant = saved
}

func TestAcquireReleaseRefcount(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	v := mustCreate(t, e, "t1", "shared", 16)
	disk := filepath.Join(e.dir, v.ID, "disk")
	if mounted(t, disk) {
		t.Fatal("mounted before use")
	}
	for _, h := range []string{"a", "b", "a"} {
		if err := e.m.Acquire(ctx, v.ID, h); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.m.Holders(v.ID); n != 2 || !mounted(t, disk) {
		t.Fatalf("after two holders: %d holders, mounted %v", n, mounted(t, disk))
	}
	if err := e.m.Release(v.ID, "a"); err != nil {
		t.Fatal(err)
	}
	if !mounted(t, disk) {
		t.Fatal("unmounted while b holds it")
	}
	if err := e.m.Release(v.ID, "a"); err != nil { // twice: no effect
		t.Fatal(err)
	}
	if !mounted(t, disk) {
		t.Fatal("a second release of a unmounted it")
	}
	if err := e.m.Release(v.ID, "b"); err != nil {
		t.Fatal(err)
	}
	if mounted(t, disk) {
		t.Fatal("still mounted with no holder")
	}
	// Mounted again, the data is still there.
	e.m.Acquire(ctx, v.ID, "c")
	os.WriteFile(filepath.Join(disk, "f"), []byte("kept"), 0o644)
	e.m.Release(v.ID, "c")
	e.m.Acquire(ctx, v.ID, "d")
	if b, err := os.ReadFile(filepath.Join(disk, "f")); string(b) != "kept" {
		t.Errorf("after remount: %q, %v", b, err)
	}
	e.m.Release(v.ID, "d")
	if err := e.m.Delete(ctx, "t1", "shared", false); err != nil {
		t.Fatal(err)
	}
}

func TestSizeLimit(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	v := mustCreate(t, e, "t1", "small", 16)
	if err := e.m.Acquire(ctx, v.ID, "a"); err != nil {
		t.Fatal(err)
	}
	defer e.m.Release(v.ID, "a")
	f, err := os.Create(filepath.Join(e.dir, v.ID, "disk", "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := bytes.Repeat([]byte{1}, 1<<20)
	var written int64
	for written < 64<<20 {
		n, err := f.Write(buf)
		written += int64(n)
		if err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("write error %v, want ENOSPC", err)
			}
			break
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if written >= 16<<20 {
		t.Fatalf("wrote %d bytes to a 16 MiB volume", written)
	}
	t.Logf("16 MiB volume: ENOSPC after %d MiB", written>>20)
	f.Close()
	os.Remove(f.Name())
}

func TestStageIdmappedSubpathReadOnly(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	v := mustCreate(t, e, "t1", "ids", 16)
	if err := e.m.Acquire(ctx, v.ID, "sb"); err != nil {
		t.Fatal(err)
	}
	defer e.m.Release(v.ID, "sb")
	m := idmap.Map{HostID: 5 << 20, Size: 65536}
	ns, err := idmap.NamespaceFD(m)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	disk := filepath.Join(e.dir, v.ID, "disk")

	stage, err := e.m.Stage(v.ID, "a/b", "sb", 0, false, ns)
	if err != nil {
		t.Fatal(err)
	}
	// The subpath was made inside the volume, owned by (in-sandbox) root.
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(disk, "a", "b"), &st); err != nil || st.Uid != 0 {
		t.Fatalf("subpath on disk: uid %d, %v", st.Uid, err)
	}
	// Through the stage, disk id N shows as the sandbox's host id for N,
	// and a chown to the sandbox's host id 1000 stores 1000.
	if err := unix.Stat(stage, &st); err != nil || st.Uid != m.HostID {
		t.Fatalf("stage root: uid %d (%v), want %d", st.Uid, err, m.HostID)
	}
	os.WriteFile(filepath.Join(disk, "a", "b", "f"), []byte("x"), 0o644)
	if err := os.Lchown(filepath.Join(stage, "f"), int(m.HostID)+1000, int(m.HostID)+1000); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Join(disk, "a", "b", "f"), &st); err != nil || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("on disk after the chown through the stage: %d:%d, %v; want 1000:1000", st.Uid, st.Gid, err)
	}

	ro, err := e.m.Stage(v.ID, "a", "sb", 1, true, ns)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Errorf("write to a read-only stage: %v, want EROFS", err)
	}
	if _, err := os.Stat(filepath.Join(ro, "b", "f")); err != nil {
		t.Errorf("read-only stage does not show the subpath's files: %v", err)
	}
	if err := e.m.Unstage("sb"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stage, ro} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stage %s left: %v", p, err)
		}
	}
	for _, bad := range []string{"/abs", "../up", "a/../../b", "a/./b", "a/", ".."} {
		if _, err := e.m.Stage(v.ID, bad, "sb", 2, false, nil); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("Stage(subpath %q) = %v, want invalid argument", bad, err)
		}
	}
}

func TestSubpathSymlinkEscape(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	v := mustCreate(t, e, "t1", "evil", 16)
	if err := e.m.Acquire(ctx, v.ID, "sb"); err != nil {
		t.Fatal(err)
	}
	defer e.m.Release(v.ID, "sb")
	defer e.m.Unstage("sb")
	canary := t.TempDir()
	os.WriteFile(filepath.Join(canary, "secret"), []byte("host"), 0o600)
	disk := filepath.Join(e.dir, v.ID, "disk")
	// What a sandbox could leave in the volume: links to a host path,
	// absolute and relative.
	os.Symlink(canary, filepath.Join(disk, "abs"))
	os.Symlink("../../../../../../../.."+canary, filepath.Join(disk, "rel"))
	os.MkdirAll(filepath.Join(disk, "in", "real"), 0o755)
	os.Symlink("/in/real", filepath.Join(disk, "inside"))

	for i, sub := range []string{"abs", "rel", "abs/new", "rel/new"} {
		stage, err := e.m.Stage(v.ID, sub, "sb", i, false, nil)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) || strings.Contains(errdefs.Message(err), e.dir) {
				t.Errorf("Stage(%q): %v (want a public invalid-argument error without host paths)", sub, err)
			}
			t.Logf("Stage(%q): %v", sub, errdefs.Message(err))
			continue
		}
		// Resolved inside the volume: never the canary.
		if _, err := os.Stat(filepath.Join(stage, "secret")); err == nil {
			t.Errorf("Stage(%q) shows the host's canary", sub)
		}
		os.WriteFile(filepath.Join(stage, "pwned"), nil, 0o644)
	}
	ents, _ := os.ReadDir(canary)
	if len(ents) != 1 || ents[0].Name() != "secret" {
		t.Errorf("the canary directory changed: %v", ents)
	}
	// A link that stays inside the volume resolves inside it.
	stage, err := e.m.Stage(v.ID, "inside", "sb", 9, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(stage, "ok"), nil, 0o644)
	if _, err := os.Stat(filepath.Join(disk, "in", "real", "ok")); err != nil {
		t.Errorf("in-volume link: %v", err)
	}
}

// TestRecoverAfterCrash simulates a daemon killed at each step: a create
// cut short, a delete cut short, a volume left mounted with no holder and
// a leftover stage; a new manager's Recover cleans each one up, and the
// ready volumes work again.
func TestRecoverAfterCrash(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := t.Context()
	kept := mustCreate(t, e, "t1", "kept", 16)
	held := mustCreate(t, e, "t1", "held", 16)
	if err := e.m.Acquire(ctx, kept.ID, "gone"); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(e.dir, kept.ID, "disk", "f"), []byte("data"), 0o644)
	if _, err := e.m.Stage(kept.ID, "", "gone", 0, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Acquire(ctx, held.ID, "alive"); err != nil {
		t.Fatal(err)
	}
	// A create cut short after mkfs had begun.
	half := store.Volume{ID: "vol-half", TenantID: "t1", Name: "half", SizeMB: 16, State: store.VolumeCreating}
	if err := e.st.CreateVolume(ctx, half); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(e.dir, half.ID), 0o711)
	os.WriteFile(filepath.Join(e.dir, half.ID, "disk.img.tmp"), []byte("partial"), 0o600)
	// A delete cut short with the volume still mounted.
	del := mustCreate(t, e, "t1", "del", 16)
	if err := e.m.Acquire(ctx, del.ID, "gone"); err != nil {
		t.Fatal(err)
	}
	del.State = store.VolumeDeleting
	e.st.UpdateVolume(ctx, del)

	// The daemon dies; a new one starts on the same state and re-acquires
	// for the sandbox it adopts ("alive").
	m2, err := New(e.m.cfg, e.st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Acquire(ctx, held.ID, "alive"); err != nil {
		t.Fatal(err)
	}
	// A release before Recover (a stopped sandbox recovered first) does
	// not unmount a volume that a sandbox still to be re-adopted uses.
	if err := m2.Acquire(ctx, kept.ID, "stopped"); err != nil {
		t.Fatal(err)
	}
	if err := m2.Release(kept.ID, "stopped"); err != nil {
		t.Fatal(err)
	}
	if !mounted(t, filepath.Join(e.dir, kept.ID, "disk")) {
		t.Error("a release before Recover unmounted the volume")
	}
	for range 2 { // idempotent
		if err := m2.Recover(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.m = m2
	for _, id := range []string{half.ID, del.ID} {
		if _, err := e.st.GetVolume(ctx, "", id); !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("volume %s after recovery: %v", id, err)
		}
		if _, err := os.Lstat(filepath.Join(e.dir, id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("files of %s after recovery: %v", id, err)
		}
	}
	if mounted(t, filepath.Join(e.dir, kept.ID, "disk")) {
		t.Error("a volume no sandbox holds is still mounted")
	}
	if !mounted(t, filepath.Join(e.dir, held.ID, "disk")) {
		t.Error("a volume an adopted sandbox holds was unmounted")
	}
	if ents, _ := os.ReadDir(stageRoot(e.dir)); len(ents) != 0 {
		t.Errorf("stages left: %v", ents)
	}
	if err := m2.Acquire(ctx, kept.ID, "new"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(e.dir, kept.ID, "disk", "f")); string(b) != "data" {
		t.Errorf("kept volume's data after recovery: %q", b)
	}
	m2.Release(kept.ID, "new")
	m2.Release(held.ID, "alive")
	for _, n := range []string{"kept", "held"} {
		if err := m2.Delete(context.WithoutCancel(ctx), "t1", n, false); err != nil {
			t.Fatal(err)
		}
	}
}

// TestConcurrentCreates: one name is taken once, and a tenant limit holds
// against creates racing each other.
func TestConcurrentCreates(t *testing.T) {
	e := newEnv(t, Config{MaxPerTenant: 3})
	ctx := t.Context()
	run := func(names func(i int) string) (ok int, kinds map[string]int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		kinds = map[string]int{}
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := e.m.Create(ctx, "t1", names(i), 16)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					ok++
				} else {
					kinds[fmt.Sprint(errdefs.Kind(err))]++
				}
			}()
		}
		wg.Wait()
		return ok, kinds
	}
	if ok, kinds := run(func(int) string { return "same" }); ok != 1 || kinds[fmt.Sprint(errdefs.ErrAlreadyExists)] != 7 {
		t.Errorf("8 creates of one name: %d succeeded, errors %v", ok, kinds)
	}
	if ok, kinds := run(func(i int) string { return fmt.Sprintf("v%d", i) }); ok != 2 || kinds[fmt.Sprint(errdefs.ErrResourceExhausted)] != 6 {
		t.Errorf("8 creates against a limit of 3 (1 made): %d succeeded, errors %v", ok, kinds)
	}
	l, _ := e.m.List(ctx, "t1")
	for _, v := range l {
		if v.State != store.VolumeReady {
			t.Errorf("volume %s is %s", v.Name, v.State)
		}
		if err := e.m.Delete(ctx, "t1", v.ID, false); err != nil {
			t.Fatal(err)
		}
	}
}

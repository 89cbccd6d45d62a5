package image

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/store/sqlite"
	"github.com/sbx-sh/sbx/internal/testutil"
)

type entry struct {
	name, link, body string
	typ              byte
	mode             int64
	pax              map[string]string
}

func mkTar(t testing.TB, entries []entry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body)), PAXRecords: e.pax}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// TestUnpackAttacks: no entry may create or change anything outside the
// destination, whatever it tries.
func TestUnpackAttacks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries []entry
	}{
		{"dotdot", []entry{{name: "../canary/x", typ: tar.TypeReg, body: "p"}}},
		{"deep dotdot", []entry{{name: "a/../../../canary/x", typ: tar.TypeReg, body: "p"}}},
		{"absolute", []entry{{name: "/canary/x", typ: tar.TypeReg, body: "p"}}},
		{"write through absolute symlink", []entry{{name: "l", link: "CANARY", typ: tar.TypeSymlink}, {name: "l/x", typ: tar.TypeReg, body: "p"}}},
		{"write through relative symlink", []entry{{name: "l", link: "../canary", typ: tar.TypeSymlink}, {name: "l/x", typ: tar.TypeReg, body: "p"}}},
		{"symlink chain", []entry{{name: "a", link: "b", typ: tar.TypeSymlink}, {name: "b", link: "../canary", typ: tar.TypeSymlink}, {name: "a/x", typ: tar.TypeReg, body: "p"}}},
		{"overwrite through file symlink", []entry{{name: "f", link: "CANARY/keep", typ: tar.TypeSymlink}, {name: "f", typ: tar.TypeReg, body: "p"}}},
		{"hardlink outside", []entry{{name: "h", link: "../canary/keep", typ: tar.TypeLink}}},
		{"hardlink through symlink", []entry{{name: "l", link: "CANARY", typ: tar.TypeSymlink}, {name: "h", link: "l/keep", typ: tar.TypeLink}}},
		{"whiteout through symlink", []entry{{name: "l", link: "CANARY", typ: tar.TypeSymlink}, {name: "l/.wh.keep", typ: tar.TypeReg}}},
		{"opaque through symlink", []entry{{name: "l", link: "CANARY", typ: tar.TypeSymlink}, {name: "l/.wh..wh..opq", typ: tar.TypeReg}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			canary := filepath.Join(base, "canary")
			os.Mkdir(canary, 0o755)
			os.WriteFile(filepath.Join(canary, "keep"), []byte("k"), 0o644)
			dest := filepath.Join(base, "dest")
			os.Mkdir(dest, 0o755)
			for i := range tc.entries {
				tc.entries[i].link = strings.ReplaceAll(tc.entries[i].link, "CANARY", canary)
			}
			Unpack(bytes.NewReader(mkTar(t, tc.entries)), dest) // an error is fine; escaping is not
			ents, _ := os.ReadDir(canary)
			if len(ents) != 1 {
				t.Errorf("canary dir now holds %d entries", len(ents))
			}
			if b, err := os.ReadFile(filepath.Join(canary, "keep")); err != nil || string(b) != "k" {
				t.Errorf("canary file changed: %q %v", b, err)
			}
			if ents, _ := os.ReadDir(base); len(ents) != 2 {
				t.Errorf("something was created beside the destination: %d entries", len(ents))
			}
		})
	}
}

func TestUnpackWhiteoutsAndModes(t *testing.T) {
	testutil.RequireRoot(t)
	dest := t.TempDir()
	err := Unpack(bytes.NewReader(mkTar(t, []entry{
		{name: "d/", typ: tar.TypeDir, mode: 0o755},
		{name: "d/.wh..wh..opq", typ: tar.TypeReg},
		{name: "d/.wh.gone", typ: tar.TypeReg},
		{name: "suid", typ: tar.TypeReg, body: "x", mode: 0o4755},
		{name: "link", link: "/etc/passwd", typ: tar.TypeSymlink},
		{name: "hard", link: "suid", typ: tar.TypeLink},
		{name: "x", typ: tar.TypeReg, body: "y", pax: map[string]string{"SCHILY.xattr.user.k": "v"}},
	})), dest)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]byte, 8)
	if n, err := unix.Getxattr(filepath.Join(dest, "d"), "trusted.overlay.opaque", v); err != nil || string(v[:n]) != "y" {
		t.Errorf("opaque xattr: %q %v", v[:n], err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dest, "d", "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout: %+v %v", st, err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "suid")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("setuid lost: %v", fi.Mode())
	}
	if l, _ := os.Readlink(filepath.Join(dest, "link")); l != "/etc/passwd" {
		t.Errorf("symlink target %q", l)
	}
	var a, b unix.Stat_t
	unix.Stat(filepath.Join(dest, "suid"), &a)
	unix.Stat(filepath.Join(dest, "hard"), &b)
	if a.Ino != b.Ino {
		t.Error("hardlink not preserved")
	}
	if n, err := unix.Getxattr(filepath.Join(dest, "x"), "user.k", v); err != nil || string(v[:n]) != "v" {
		t.Errorf("xattr: %v", err)
	}
}

func FuzzUnpack(f *testing.F) {
	f.Add(mkTar(f, []entry{{name: "../x", typ: tar.TypeReg, body: "p"}}))
	f.Add(mkTar(f, []entry{{name: "l", link: "/", typ: tar.TypeSymlink}, {name: "l/x", typ: tar.TypeReg}}))
	f.Add(mkTar(f, []entry{{name: "h", link: "../../x", typ: tar.TypeLink}}))
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		dest := filepath.Join(base, "dest")
		os.Mkdir(dest, 0o755)
		Unpack(bytes.NewReader(data), dest)
		if ents, _ := os.ReadDir(base); len(ents) != 1 {
			t.Fatalf("unpack created %d entries beside the destination", len(ents))
		}
	})
}

func newStore(t *testing.T) (*Store, store.Store) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(dir, "db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, tn := range []string{"admin", "a", "b"} {
		st.CreateTenant(t.Context(), store.Tenant{ID: tn, Name: tn, Admin: tn == "admin"})
	}
	s, err := Open(t.Context(), filepath.Join(dir, "images"), st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.SetAdminTenant("admin")
	return s, st
}

func TestPullAndTenants(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := BuildBusyboxRootfs(ctx, rootfs); err != nil {
		testutil.Unavailable(t, err.Error())
	}
	img, err := RootfsImage(rootfs, BusyboxConfig)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	authed := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "secret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, r)
	})
	open := httptest.NewServer(reg)
	defer open.Close()
	priv := httptest.NewServer(authed)
	defer priv.Close()
	host := func(u string) string { return strings.TrimPrefix(u, "http://") }
	for _, srv := range []string{host(open.URL), host(priv.URL)} {
		ref, _ := name.ParseReference(srv+"/test/busybox:1", name.Insecure)
		var opts []remote.Option
		if srv == host(priv.URL) {
			opts = append(opts, remote.WithAuth(&basic{"u", "secret"}))
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			t.Fatal(err)
		}
	}
	var progress []Progress
	got, err := s.Pull(ctx, "a", host(open.URL)+"/test/busybox:1", PullOptions{Progress: func(p Progress) { progress = append(progress, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Layers) != 1 || got.Config.Cmd[0] != "/bin/sh" || len(progress) == 0 || !progress[len(progress)-1].Done {
		t.Errorf("pulled %+v, progress %d", got, len(progress))
	}
	if _, err := os.Stat(filepath.Join(got.Layers[0], "bin", "busybox")); err != nil {
		t.Error("layer not unpacked")
	}
	if _, err := s.Pull(ctx, "a", host(priv.URL)+"/test/busybox:1", PullOptions{Username: "u", Password: "secret"}); err != nil {
		t.Errorf("basic auth pull: %v", err)
	}
	if _, err := s.Pull(ctx, "a", host(priv.URL)+"/test/busybox:1", PullOptions{Username: "u", Password: "wrong"}); !errors.Is(err, errdefs.ErrPermissionDenied) {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := s.Pull(ctx, "a", host(open.URL)+"/test/nothing:1", PullOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("unknown image: %v", err)
	}
	// Tenants: b does not see a's image, everybody sees the admin's.
	if _, err := s.Resolve(ctx, "b", host(open.URL)+"/test/busybox:1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("b resolved a's image: %v", err)
	}
	if _, err := s.ImportRootfs(ctx, "admin", rootfs, "sbx/busybox", BusyboxConfig); err != nil {
		t.Fatal(err)
	}
	if im, err := s.Resolve(ctx, "b", "sbx/busybox:latest"); err != nil || !im.Shared {
		t.Errorf("b resolving the admin's image: %+v %v", im, err)
	}
	if im, err := s.Resolve(ctx, "a", got.Digest); err != nil || im.Digest != got.Digest {
		t.Errorf("resolve by digest: %v", err)
	}
	// The same layer content is unpacked once.
	layers, _ := os.ReadDir(filepath.Join(s.root, "layers", "sha256"))
	if len(layers) != 1 {
		t.Errorf("%d unpacked layers, want 1 shared", len(layers))
	}
	// Remove, then the unreferenced layers go.
	for _, r := range []struct{ tenant, ref string }{{"a", host(open.URL) + "/test/busybox:1"}, {"a", host(priv.URL) + "/test/busybox:1"}, {"admin", "sbx/busybox"}} {
		if err := s.Remove(ctx, r.tenant, r.ref); err != nil {
			t.Fatal(err)
		}
	}
	if layers, _ := os.ReadDir(filepath.Join(s.root, "layers", "sha256")); len(layers) != 0 {
		t.Errorf("%d layers left after removing every image", len(layers))
	}
}

type basic struct{ u, p string }

func (b *basic) Authorization() (*authConfig, error) {
	return &authConfig{Username: b.u, Password: b.p}, nil
}

func TestImportArchives(t *testing.T) {
	s, st := newStore(t)
	ctx := t.Context()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := BuildBusyboxRootfs(ctx, rootfs); err != nil {
		testutil.Unavailable(t, err.Error())
	}
	dir := t.TempDir()
	docker := filepath.Join(dir, "docker.tar")
	if err := WriteRootfsArchive(rootfs, "example/bb:2", docker, BusyboxConfig); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(docker)
	imgs, err := s.Import(ctx, "a", f, "")
	f.Close()
	if err != nil || len(imgs) != 1 || imgs[0].Ref != "example/bb:2" {
		t.Fatalf("docker-archive import: %+v %v", imgs, err)
	}
	// An OCI layout, tarred.
	img, _ := RootfsImage(rootfs, BusyboxConfig)
	lp, err := layout.Write(filepath.Join(dir, "oci"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "example/oci:1"})); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := TarDir(filepath.Join(dir, "oci"), &buf); err != nil {
		t.Fatal(err)
	}
	imgs, err = s.Import(ctx, "a", &buf, "")
	if err != nil || len(imgs) != 1 || imgs[0].Ref != "example/oci:1" {
		t.Fatalf("OCI layout import: %+v %v", imgs, err)
	}
	if _, err := s.Import(ctx, "a", strings.NewReader("not a tar"), "x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("garbage import: %v", err)
	}
	// Remove is refused while a sandbox uses the image.
	st.CreateSandbox(ctx, store.Sandbox{ID: "s1", TenantID: "a", Name: "s1", ImageDigest: imgs[0].Digest, State: store.StateStarted, UIDSlot: -1})
	if err := s.Remove(ctx, "a", "example/oci:1"); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("removing an image in use: %v", err)
	}
}

func TestHostMirror(t *testing.T) {
	m, err := HostMirror()
	if err != nil {
		testutil.Unavailable(t, "no apt sources on this host")
	}
	if !strings.HasPrefix(m, "http") {
		t.Errorf("mirror %q", m)
	}
}

// TestBuildDebian debootstraps a small Debian (about a minute, needs the
// Debian mirror); run with SBX_TEST_BOOTSTRAP=1.
func TestBuildDebian(t *testing.T) {
	if os.Getenv("SBX_TEST_BOOTSTRAP") != "1" {
		t.Skip("set SBX_TEST_BOOTSTRAP=1 to debootstrap (about a minute)")
	}
	testutil.RequireRoot(t)
	s, _ := newStore(t)
	dir := filepath.Join(t.TempDir(), "rootfs")
	cache := t.TempDir()
	var log bytes.Buffer
	o := BootstrapOptions{Packages: []string{"python3"}, CacheDir: cache, Log: &log}
	if err := BuildDebian(t.Context(), dir, o); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "usr/bin/python3")); err != nil {
		t.Fatal("no python3 in the rootfs")
	}
	img, err := s.ImportRootfs(t.Context(), "a", dir, "test/debian", DefaultConfig)
	if err != nil || len(img.Layers) != 1 {
		t.Fatalf("import: %+v %v", img, err)
	}
	// The second build comes from the cache.
	dir2 := filepath.Join(t.TempDir(), "rootfs")
	log.Reset()
	if err := BuildDebian(t.Context(), dir2, o); err != nil || !strings.Contains(log.String(), "cached") {
		t.Fatalf("cached build: %v\n%s", err, log.String())
	}
}

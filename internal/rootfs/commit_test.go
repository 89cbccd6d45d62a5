package rootfs

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/testutil"
)

// TestCommitLayer changes a user-namespaced sandbox's tree through its real
// overlay, commits the upper dir, and checks the tar entry by entry and by
// a round trip: the image's layer plus the committed layer, unpacked by the
// image store's unpacker and mounted as a new sandbox's lowers, must show
// exactly the tree the first sandbox saw.
func TestCommitLayer(t *testing.T) {
	testutil.RequireRoot(t)
	base := t.TempDir()
	l0 := filepath.Join(base, "l0")
	for _, d := range []string{"etc", "dir/sub", "keep"} {
		if err := os.MkdirAll(filepath.Join(l0, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"etc/a": "a", "etc/gone": "gone", "dir/old": "old", "dir/sub/deep": "deep", "keep/x": "x"} {
		if err := os.WriteFile(filepath.Join(l0, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := idmap.Map{HostID: 5 << 20, Size: 65536}
	ns, err := idmap.NamespaceFD(m)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	mount := func(dir string, layers ...string) string {
		t.Helper()
		o := Options{Dir: dir, Layers: layers, IDMap: &m, UserNS: ns, DiskBytes: 64 << 20}
		if err := Create(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		if err := Mount(t.Context(), o); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { Remove(dir) })
		return RootfsDir(dir)
	}
	dir := filepath.Join(base, "sb")
	root := mount(dir, l0)
	host := func(id int) int { return int(m.HostID) + id }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// What the sandbox does.
	p := func(s string) string { return filepath.Join(root, s) }
	must(os.WriteFile(p("etc/new"), []byte("new file"), 0o640))
	must(os.Lchown(p("etc/new"), host(1000), host(1000)))
	must(os.Remove(p("etc/gone")))  // → whiteout
	must(os.RemoveAll(p("dir")))    // …
	must(os.Mkdir(p("dir"), 0o750)) // → opaque dir
	must(os.WriteFile(p("dir/fresh"), []byte("f"), 0o600))
	must(os.Lchown(p("dir"), host(0), host(0)))
	must(os.WriteFile(p("hl1"), []byte("linked"), 0o644))
	must(os.Link(p("hl1"), p("etc/hl2")))       // hard link
	must(os.Symlink("../etc/a", p("keep/sym"))) // symlink
	must(os.Lchown(p("keep/sym"), host(7), host(8)))
	must(os.WriteFile(p("suid"), []byte("#!/bin/sh\n"), 0o755))
	must(os.Lchown(p("suid"), host(0), host(0)))
	must(os.Chmod(p("suid"), 0o4755|fs.ModeSetuid))
	must(unix.Lsetxattr(p("etc/new"), "user.note", []byte("hello"), 0))
	must(unix.Mkfifo(p("fifo"), 0o600))
	must(os.WriteFile(p("etc/a"), []byte("changed a"), 0o644)) // copy-up

	// The test writes as the host's root; a sandbox's own processes
	// could only write as ids of its range.
	for _, f := range []string{"hl1", "fifo", "etc/a", "dir/fresh"} {
		must(os.Lchown(p(f), host(0), host(0)))
	}
	want := snapshot(t, root)
	must(Unmount(dir))

	upper, umount, err := MountWritable(dir)
	must(err)
	var buf bytes.Buffer
	err = CommitLayer(t.Context(), upper, &m, &buf)
	must(umount())
	must(err)

	// The tar itself.
	got := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		got[strings.TrimSuffix(h.Name, "/")] = h
	}
	checks := []struct {
		name string
		ok   func(h *tar.Header) bool
	}{
		{"etc/.wh.gone", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg && h.Size == 0 }},
		{"dir/.wh..wh..opq", func(h *tar.Header) bool { return h.Typeflag == tar.TypeReg }},
		{"etc/new", func(h *tar.Header) bool {
			return h.Uid == 1000 && h.Gid == 1000 && h.Mode == 0o640 && h.PAXRecords["SCHILY.xattr.user.note"] == "hello"
		}},
		// Lexical order: etc/hl2 is met first, hl1 links to it.
		{"hl1", func(h *tar.Header) bool { return h.Typeflag == tar.TypeLink && h.Linkname == "etc/hl2" }},
		{"keep/sym", func(h *tar.Header) bool {
			return h.Typeflag == tar.TypeSymlink && h.Linkname == "../etc/a" && h.Uid == 7 && h.Gid == 8
		}},
		{"suid", func(h *tar.Header) bool { return h.Mode == 0o4755 && h.Uid == 0 }},
		{"fifo", func(h *tar.Header) bool { return h.Typeflag == tar.TypeFifo }},
		{"dir", func(h *tar.Header) bool { return h.Typeflag == tar.TypeDir && h.Mode == 0o750 }},
	}
	for _, c := range checks {
		h, ok := got[c.name]
		if !ok {
			t.Errorf("no entry %s in the layer", c.name)
			continue
		}
		if !c.ok(h) {
			t.Errorf("entry %s: %+v", c.name, *h)
		}
	}
	for name, h := range got {
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.trusted.overlay.") {
				t.Errorf("%s carries the overlay's own xattr %s", name, k)
			}
		}
	}
	if _, ok := got["keep/x"]; ok {
		t.Errorf("an unchanged lower file is in the layer")
	}

	// Round trip through the store's unpacker.
	l1 := filepath.Join(base, "l1")
	must(os.Mkdir(l1, 0o755))
	must(image.Unpack(bytes.NewReader(buf.Bytes()), l1))
	root2 := mount(filepath.Join(base, "sb2"), l0, l1)
	if diff := cmp.Diff(want, snapshot(t, root2)); diff != "" {
		t.Errorf("tree after the round trip differs (-sandbox +committed):\n%s", diff)
	}
	// Deterministic: the same upper gives the same bytes.
	upper, umount, err = MountWritable(dir)
	must(err)
	var again bytes.Buffer
	err = CommitLayer(t.Context(), upper, &m, &again)
	must(umount())
	must(err)
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("committing the same upper twice gave different layers")
	}
}

// snapshot describes every file under root: type, mode, owner, size,
// content hash, link target, user xattrs, and the hard-link group.
func snapshot(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x mtime=%d", sha256.Sum256(b), st.Mtim.Nano())
			inodes[st.Ino] = append(inodes[st.Ino], rel)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			line += " -> " + l
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			if v, err := getXattr(p, "user.note"); err == nil {
				line += " user.note=" + string(v)
			}
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range inodes {
		if len(names) > 1 {
			sort.Strings(names)
			out = append(out, "link "+strings.Join(names, "="))
		}
	}
	sort.Strings(out)
	return out
}

package rootfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/testutil"
)

func blocks(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}

// sparseImage writes a 64 MiB file with data at a few places, a run of
// explicitly written zeros (allocated, but no data) and holes elsewhere.
func sparseImage(t *testing.T, p string) {
	t.Helper()
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	pattern := bytes.Repeat([]byte("sbx-data"), 512) // 4 KiB
	for _, off := range []int64{0, 5 << 20, 5<<20 + 4096, 33<<20 + 100, 64<<20 - 4096} {
		if _, err := f.WriteAt(pattern, off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.WriteAt(make([]byte, 2<<20), 10<<20); err != nil { // allocated zeros
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestCopyImageSparse(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
	sparseImage(t, src)
	res, err := CopyImage(t.Context(), dst, src, "")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("the copy's contents differ from the source's")
	}
	if res.Size != 64<<20 {
		t.Errorf("size %d", res.Size)
	}
	sb, db := blocks(t, src), blocks(t, dst)
	t.Logf("source %d KiB allocated, copy %d KiB (reflinked %v)", sb/2, db/2, res.Reflinked)
	if !res.Reflinked {
		// 5 data blocks of 4 KiB (one crosses a block boundary: 6 blocks),
		// and none of the 2 MiB of zeros.
		if db > 8*8 {
			t.Errorf("copy has %d blocks of 512 bytes: holes or zero blocks were written", db)
		}
		if db >= sb {
			t.Errorf("copy (%d) not sparser than the source (%d) with its written zeros", db, sb)
		}
	}
	if _, err := os.Stat(dst + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left: %v", err)
	}
	for _, p := range []string{src, dst} {
		sum, size, err := Checksum(t.Context(), p)
		if err != nil || sum != res.Checksum || size != res.Size {
			t.Errorf("Checksum(%s) = %s, %d, %v; the copy said %s", filepath.Base(p), sum, size, err, res.Checksum)
		}
	}
	// Same contents laid out differently (no allocated zeros) hash the same.
	again := filepath.Join(dir, "again.img")
	if _, err := CopyImage(t.Context(), again, dst, res.Checksum); err != nil {
		t.Fatalf("copy with the right checksum: %v", err)
	}

	// One flipped byte: the checksum differs, and a verified copy refuses.
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{'X'}, 5<<20+7)
	f.Close()
	if sum, _, _ := Checksum(t.Context(), dst); sum == res.Checksum {
		t.Fatal("a flipped byte left the checksum unchanged")
	}
	bad := filepath.Join(dir, "bad.img")
	_, err = CopyImage(t.Context(), bad, dst, res.Checksum)
	if !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("verified copy of a corrupt image: %v, want a conflict", err)
	}
	if _, err := os.Stat(bad); !errors.Is(err, os.ErrNotExist) {
		t.Error("a copy that failed verification appeared")
	}
	if _, err := os.Stat(bad + ".tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Error("a copy that failed verification left its temporary file")
	}
	// A hole and a written zero block are the same data.
	z1, z2 := filepath.Join(dir, "z1"), filepath.Join(dir, "z2")
	os.WriteFile(z1, make([]byte, 8192), 0o600)
	f, _ = os.Create(z2)
	f.Truncate(8192)
	f.Close()
	s1, _, _ := Checksum(t.Context(), z1)
	s2, _, _ := Checksum(t.Context(), z2)
	if s1 != s2 {
		t.Errorf("zeros %s != hole %s", s1, s2)
	}
}

func capV3(rootid uint32) []byte {
	b := make([]byte, capV3Size)
	binary.LittleEndian.PutUint32(b[0:], capRevision3)
	binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_BIND_SERVICE) // permitted
	binary.LittleEndian.PutUint32(b[20:], rootid)
	return b
}

func aclUserEntry(id uint32) []byte {
	b := make([]byte, 4+4*8)
	binary.LittleEndian.PutUint32(b, 2) // version
	ent := func(i int, tag, perm uint16, id uint32) {
		off := 4 + i*8
		binary.LittleEndian.PutUint16(b[off:], tag)
		binary.LittleEndian.PutUint16(b[off+2:], perm)
		binary.LittleEndian.PutUint32(b[off+4:], id)
	}
	ent(0, 0x01, 6, ^uint32(0)) // user obj
	ent(1, aclUser, 4, id)
	ent(2, 0x04, 4, ^uint32(0)) // group obj
	ent(3, 0x10, 4, ^uint32(0)) // mask
	b = append(b, make([]byte, 8)...)
	off := 4 + 4*8
	binary.LittleEndian.PutUint16(b[off:], 0x20) // other
	binary.LittleEndian.PutUint16(b[off+2:], 4)
	binary.LittleEndian.PutUint32(b[off+4:], ^uint32(0))
	return b
}

func TestShiftOwners(t *testing.T) {
	testutil.RequireRoot(t)
	from := idmap.Map{HostID: 5 << 20, Size: 65536}
	to := idmap.Map{HostID: 7 << 20, Size: 65536}
	root := t.TempDir()
	p := func(n string) string { return filepath.Join(root, n) }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(p("home/u"), 0o750))
	must(os.WriteFile(p("bin-suid"), []byte("x"), 0o644))
	must(os.WriteFile(p("bin-sgid"), []byte("x"), 0o644))
	must(os.WriteFile(p("ping"), []byte("x"), 0o755))
	must(os.WriteFile(p("home/u/file"), []byte("mine"), 0o600))
	must(os.Link(p("home/u/file"), p("hardlink")))
	must(os.Symlink("home/u/file", p("link")))
	must(os.WriteFile(p("foreign"), []byte("x"), 0o644))
	must(os.WriteFile(p("acl"), []byte("x"), 0o644))
	chown := func(n string, uid, gid uint32) { must(os.Lchown(p(n), int(uid), int(gid))) }
	for _, n := range []string{".", "home", "bin-suid", "bin-sgid", "ping", "link", "acl"} {
		chown(n, from.HostID, from.HostID)
	}
	chown("home/u", from.HostID+1000, from.HostID+1000)
	chown("home/u/file", from.HostID+1000, from.HostID+100)
	chown("foreign", 12345, 12345) // outside the range: left alone
	must(unix.Chmod(p("bin-suid"), 0o4755))
	must(unix.Chmod(p("bin-sgid"), 0o2755))
	must(unix.Lsetxattr(p("ping"), xattrCaps, capV3(from.HostID), 0))
	if err := unix.Lsetxattr(p("acl"), xattrACLAccess, aclUserEntry(from.HostID+1000), 0); err != nil {
		t.Fatalf("setting an ACL: %v", err)
	}

	n, err := ShiftTree(t.Context(), root, &from, &to)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]uint32{ // uid, gid, mode bits 07777
		".":           {to.HostID, to.HostID, 0},
		"home/u":      {to.HostID + 1000, to.HostID + 1000, 0o750},
		"home/u/file": {to.HostID + 1000, to.HostID + 100, 0o600},
		"hardlink":    {to.HostID + 1000, to.HostID + 100, 0o600},
		"bin-suid":    {to.HostID, to.HostID, 0o4755},
		"bin-sgid":    {to.HostID, to.HostID, 0o2755},
		"ping":        {to.HostID, to.HostID, 0o755},
		"link":        {to.HostID, to.HostID, 0},
		"foreign":     {12345, 12345, 0o644},
	}
	for name, w := range want {
		var st unix.Stat_t
		must(unix.Lstat(p(name), &st))
		if st.Uid != w[0] || st.Gid != w[1] || (w[2] != 0 && st.Mode&0o7777 != w[2]) {
			t.Errorf("%s: %d:%d mode %o, want %d:%d mode %o", name, st.Uid, st.Gid, st.Mode&0o7777, w[0], w[1], w[2])
		}
	}
	if n != 9 { // every entry but the foreign file and the second name of the hardlink
		t.Errorf("shifted %d entries, want 9", n)
	}
	caps := getxattr(p("ping"), xattrCaps)
	if len(caps) != capV3Size || binary.LittleEndian.Uint32(caps[20:]) != to.HostID ||
		binary.LittleEndian.Uint32(caps[4:]) != 1<<unix.CAP_NET_BIND_SERVICE {
		t.Errorf("capabilities after the shift: %x", caps)
	}
	acl := getxattr(p("acl"), xattrACLAccess)
	if len(acl) < 20 || binary.LittleEndian.Uint32(acl[16:]) != to.HostID+1000 {
		t.Errorf("ACL after the shift: %x", acl)
	}
	// Shifting back restores the originals.
	if _, err := ShiftTree(t.Context(), root, &to, &from); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	must(unix.Lstat(p("home/u/file"), &st))
	if st.Uid != from.HostID+1000 {
		t.Errorf("shifted back to %d", st.Uid)
	}
}

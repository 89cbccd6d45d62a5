package rootfs

import (
	"encoding/binary"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/testutil"
)

func waitLen(t *testing.T, p *DiskPool, n int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if p.Len() == n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pool has %d images, want %d", p.Len(), n)
}

func isExt4(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var magic [2]byte
	f.ReadAt(magic[:], 1024+0x38)
	if binary.LittleEndian.Uint16(magic[:]) != 0xEF53 {
		t.Errorf("%s is not ext4", path)
	}
	if fi, _ := f.Stat(); fi.Size() != size {
		t.Errorf("%s has %d bytes, want %d", path, fi.Size(), size)
	}
}

func TestDiskPool(t *testing.T) {
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		testutil.Unavailable(t, "mkfs.ext4 is not installed")
	}
	dir := t.TempDir()
	const size = 32 << 20
	p, err := NewDiskPool(filepath.Join(dir, "pool"), size, 2, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	waitLen(t, p, 2)
	dst := filepath.Join(dir, "sb", "disk.img")
	os.MkdirAll(filepath.Dir(dst), 0o700)
	if !p.take(size, dst) {
		t.Fatal("take from a full pool failed")
	}
	isExt4(t, dst, size)
	if p.take(size*2, filepath.Join(dir, "other.img")) {
		t.Error("took an image of the wrong size")
	}
	waitLen(t, p, 2) // refilled
	p.Close()
	// A restart keeps the ready images and drops half-made ones.
	os.WriteFile(filepath.Join(dir, "pool", "junk.img.tmp"), []byte("x"), 0o600)
	p, err = NewDiskPool(filepath.Join(dir, "pool"), size, 2, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Len() != 2 {
		t.Errorf("after a restart the pool has %d images", p.Len())
	}
	if _, err := os.Stat(filepath.Join(dir, "pool", "junk.img.tmp")); !os.IsNotExist(err) {
		t.Error("a half-made image was kept")
	}
}

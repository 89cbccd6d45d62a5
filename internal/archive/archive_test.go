package archive

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// sparseFile makes a 64 MiB file with data at a few places and holes in
// between, and returns its path.
func sparseFile(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(64 << 20); err != nil {
		t.Fatal(err)
	}
	for _, at := range []int64{0, 5<<20 + 123, 40 << 20, 64<<20 - 4096} {
		b := make([]byte, 300<<10)
		rand.Read(b)
		if at+int64(len(b)) > 64<<20 {
			b = b[:64<<20-at]
		}
		if _, err := f.WriteAt(b, at); err != nil {
			t.Fatal(err)
		}
	}
	// Zeros written as data: stored as a hole.
	if _, err := f.WriteAt(make([]byte, 2<<20), 20<<20); err != nil {
		t.Fatal(err)
	}
	return p
}

func blocks(t *testing.T, p string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

func TestPackRoundTrip(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := sparseFile(t, dir)
	st, err := NewLocal(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(src)
	pr, pw := io.Pipe()
	var ps PackStats
	go func() {
		var err error
		ps, err = Pack(ctx, pw, f)
		pw.CloseWithError(err)
	}()
	obj, err := st.Put(ctx, "sandboxes/a.sbxa", pr)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if ps.Size != 64<<20 || ps.Data > 2<<20 {
		t.Errorf("stats %+v: want size 64 MiB and about 1.2 MiB of data", ps)
	}
	rc, err := st.Open(ctx, obj)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "restored.img")
	out, _ := os.Create(dst)
	if _, err := Unpack(ctx, out, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	out.Close()
	a, _ := os.ReadFile(src)
	b, _ := os.ReadFile(dst)
	if !bytes.Equal(a, b) {
		t.Fatal("restored image differs")
	}
	if got, max := blocks(t, dst), blocks(t, src); got > max {
		t.Errorf("restored image uses %d bytes of disk, the original %d: holes lost", got, max)
	}
}

func TestOpenDetectsCorruption(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, _ := NewLocal(dir)
	src := sparseFile(t, t.TempDir())
	f, _ := os.Open(src)
	var packed bytes.Buffer
	if _, err := Pack(ctx, &packed, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	obj, err := st.Put(ctx, "x", bytes.NewReader(packed.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(b []byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 1; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-10] }},
		{"appended", func(b []byte) []byte { return append(b, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.change(bytes.Clone(packed.Bytes()))
			if err := os.WriteFile(filepath.Join(dir, "x"), b, 0o600); err != nil {
				t.Fatal(err)
			}
			rc, err := st.Open(ctx, obj)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			out, _ := os.Create(filepath.Join(t.TempDir(), "img"))
			defer out.Close()
			_, err = Unpack(ctx, out, rc)
			if !errors.Is(err, errdefs.ErrDataLoss) {
				t.Fatalf("unpack of a %s object: %v, want data loss", tc.name, err)
			}
		})
	}
	os.Remove(filepath.Join(dir, "x"))
	if _, err := st.Open(ctx, obj); !errors.Is(err, errdefs.ErrDataLoss) {
		t.Errorf("open of a missing object: %v", err)
	}
}

func TestPutIsAtomic(t *testing.T) {
	dir := t.TempDir()
	st, _ := NewLocal(dir)
	ctx := context.Background()
	old, err := st.Put(ctx, "k", strings.NewReader("old"))
	if err != nil {
		t.Fatal(err)
	}
	// A reader that fails mid-way leaves the old object and no temp file.
	_, err = st.Put(ctx, "k", io.MultiReader(strings.NewReader("new-partial"), errReader{}))
	if err == nil {
		t.Fatal("a failed put succeeded")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := st.Put(cctx, "k", strings.NewReader("new")); !errors.Is(err, context.Canceled) {
		t.Fatalf("put with a cancelled context: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "k" {
		t.Errorf("store dir holds %v, want only k", ents)
	}
	rc, err := st.Open(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(b) != "old" {
		t.Errorf("old object: %q %v", b, err)
	}
	// Temp files of a crash are swept on open.
	os.WriteFile(filepath.Join(dir, "k"+tmpMark+"123"), []byte("x"), 0o600)
	if _, err := NewLocal(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "k"+tmpMark+"123")); !os.IsNotExist(err) {
		t.Error("temp file not swept")
	}
}

func TestKeys(t *testing.T) {
	st, _ := NewLocal(t.TempDir())
	for _, k := range []string{"", "/abs", "../up", "a/../../b", "a/./b", "x" + tmpMark + "1", "a//b"} {
		if _, err := st.Put(context.Background(), k, strings.NewReader("x")); err == nil {
			t.Errorf("key %q accepted", k)
		}
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }

// BenchmarkPackUnpack packs and unpacks a 128 MiB image of random data
// (the CPU cost: page-cached reads, no fsync).
func BenchmarkPackUnpack(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "img")
	data := make([]byte, 128<<20)
	rand.Read(data)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		b.Fatal(err)
	}
	var packed bytes.Buffer
	b.Run("pack", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			packed.Reset()
			f, _ := os.Open(p)
			if _, err := Pack(context.Background(), &packed, f); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
	})
	b.Run("unpack", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			out, _ := os.Create(filepath.Join(dir, "out"))
			if _, err := Unpack(context.Background(), out, bytes.NewReader(packed.Bytes())); err != nil {
				b.Fatal(err)
			}
			out.Close()
		}
	})
}

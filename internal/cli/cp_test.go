package cli

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestExtractTarStaysInside feeds the host-side extraction the archive a
// hostile sandbox could send: nothing may be written outside the
// destination.
func TestExtractTarStaysInside(t *testing.T) {
	base := t.TempDir()
	dest := filepath.Join(base, "dest")
	outside := filepath.Join(base, "outside")
	os.Mkdir(dest, 0o755)
	os.Mkdir(outside, 0o755)
	entries := []struct {
		hdr  tar.Header
		body string
	}{
		{tar.Header{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "top/out", Typeflag: tar.TypeSymlink, Linkname: outside}, ""},
		{tar.Header{Name: "top/out/pwned", Typeflag: tar.TypeReg, Mode: 0o644}, "x"},
		{tar.Header{Name: "top/rel", Typeflag: tar.TypeSymlink, Linkname: "../../outside"}, ""},
		{tar.Header{Name: "top/rel/pwned2", Typeflag: tar.TypeReg, Mode: 0o644}, "x"},
		{tar.Header{Name: "top/hard", Typeflag: tar.TypeLink, Linkname: "../outside/x"}, ""},
		{tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}, "x"},
		// A link to the destination's parent, then a mode through it.
		{tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: ".."}, ""},
		{tar.Header{Name: "up", Typeflag: tar.TypeDir, Mode: 0o777}, ""},
		{tar.Header{Name: "up/pwned3", Typeflag: tar.TypeReg, Mode: 0o644}, "x"},
		// A hard link to a file the archive did not create.
		{tar.Header{Name: "hard2", Typeflag: tar.TypeLink, Linkname: "top/out/pwned"}, ""},
	}
	// One archive per entry, into the same destination: what an entry
	// planted (a symlink) is there for the next, and every entry is tried
	// even when an earlier one is refused.
	for _, e := range entries {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		h := e.hdr
		h.Size = int64(len(e.body))
		tw.WriteHeader(&h)
		tw.Write([]byte(e.body))
		tw.Close()
		extractTar(&buf, dest)
	}
	if _, err := os.Lstat(filepath.Join(dest, "top", "out")); err != nil {
		t.Fatalf("the harmless symlink entry was not extracted: %v", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("extraction wrote outside the destination: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(base, "escape")); err == nil {
		t.Fatal("../escape was written")
	}
	if _, err := os.Stat(filepath.Join(base, "pwned3")); err == nil {
		t.Fatal("a file was written through a link to the parent")
	}
	if fi, _ := os.Stat(base); fi.Mode().Perm() == 0o777 {
		t.Fatal("the destination's parent was chmodded through a link")
	}
}

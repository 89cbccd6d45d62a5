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
	}
	for i := range entries {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		// Entries one archive each: extraction stops at the first error.
		for _, e := range entries[:i+1] {
			h := e.hdr
			h.Size = int64(len(e.body))
			tw.WriteHeader(&h)
			tw.Write([]byte(e.body))
		}
		tw.Close()
		extractTar(&buf, dest, "")
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("extraction wrote outside the destination: %v", ents)
	}
	if _, err := os.Stat(filepath.Join(base, "escape")); err == nil {
		t.Fatal("../escape was written")
	}
}

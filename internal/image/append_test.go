package image

import (
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestAppend(t *testing.T) {
	s, _ := newStore(t)
	ctx := t.Context()
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "base"), []byte("base"), 0o644)
	base, err := s.ImportRootfs(ctx, "a", root, "base:1", ispec.ImageConfig{Env: []string{"PATH=/bin"}})
	if err != nil {
		t.Fatal(err)
	}
	layer := filepath.Join(t.TempDir(), "layer.tar")
	if err := os.WriteFile(layer, mkTar(t, []entry{{name: "added", body: "hi", typ: '0'}, {name: ".wh.base", typ: '0'}}), 0o644); err != nil {
		t.Fatal(err)
	}
	edit := func(c *v1.Config) { c.Env = append(c.Env, "A=1"); c.WorkingDir = "/w" }
	img, err := s.Append(ctx, "a", base.Digest, []string{layer}, edit, "derived:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 2 || img.Layers[0] != base.Layers[0] {
		t.Fatalf("layers %v, want the base's plus one", img.Layers)
	}
	if b, err := os.ReadFile(filepath.Join(img.Layers[1], "added")); err != nil || string(b) != "hi" {
		t.Errorf("added file: %q, %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(img.Layers[1], "base")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("whiteout not unpacked: %v, %v", fi, err)
	}
	if img.Config.WorkingDir != "/w" || len(img.Config.Env) != 2 {
		t.Errorf("config %+v", img.Config)
	}
	// Deterministic, and recorded under the ref for the tenant only.
	again, err := s.Append(ctx, "a", base.Digest, []string{layer}, edit, "derived:2")
	if err != nil || again.Digest != img.Digest {
		t.Errorf("same inputs gave %s, %v; want %s", again.Digest, err, img.Digest)
	}
	if ids := LayerIDs(img); len(ids) != 2 || ids[1][:7] != "sha256:" {
		t.Errorf("LayerIDs = %v", ids)
	}
	if _, err := s.Resolve(ctx, "b", "derived:1"); err == nil {
		t.Errorf("another tenant resolves the derived image")
	}
	if _, err := s.Tag(ctx, "b", img.Digest, "copy:1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Untag(ctx, "b", "copy:1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "a", "sha256:0000000000000000000000000000000000000000000000000000000000000000", nil, nil, "x:1"); err == nil {
		t.Errorf("appending to a missing image worked")
	}
}

package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// ConfigEdit changes an image's config (env, workdir, entrypoint, cmd,
// user) while a new image is made from an old one.
type ConfigEdit func(*v1.Config)

// Append makes a new image from the stored image base (a manifest digest),
// the uncompressed layer tars at the paths in layers added on top (each
// gzipped into the store and unpacked once, like a pulled layer), and its
// config changed by edit (nil: unchanged). The result is recorded for the
// tenant as ref. No timestamp or history text is added, so the same base,
// layer bytes and edit always give the same digest: a build whose steps
// hit the cache ends with the image it ended with before.
//
// The caller checks that the tenant may use base (by resolving it first).
func (s *Store) Append(ctx context.Context, tenantID, base string, layers []string, edit ConfigEdit, ref string) (Image, error) {
	h, err := v1.NewHash(base)
	if err != nil {
		return Image{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid digest %q", base)
	}
	vimg, err := s.path.Image(h)
	if err != nil {
		return Image{}, errdefs.Publicf(errdefs.ErrNotFound, "image %s is not in the store", base)
	}
	for _, p := range layers {
		p := p
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return os.Open(p) })
		if err != nil {
			return Image{}, fmt.Errorf("layer %s: %w", filepath.Base(p), err)
		}
		if vimg, err = mutate.AppendLayers(vimg, l); err != nil {
			return Image{}, err
		}
	}
	if edit != nil {
		cf, err := vimg.ConfigFile()
		if err != nil {
			return Image{}, err
		}
		cf = cf.DeepCopy()
		edit(&cf.Config)
		if vimg, err = mutate.ConfigFile(vimg, cf); err != nil {
			return Image{}, err
		}
	}
	return s.ingest(ctx, tenantID, ref, vimg)
}

// Tag records the stored image with manifest digest for the tenant under
// ref as well, unpacking any of its layers that were garbage-collected.
// ErrNotFound if the store no longer holds the image.
func (s *Store) Tag(ctx context.Context, tenantID, digest, ref string) (Image, error) {
	return s.Append(ctx, tenantID, digest, nil, nil, ref)
}

// Untag removes the tenant's record of ref without garbage-collecting
// (the blobs stay; the next Remove collects what nothing needs).
func (s *Store) Untag(ctx context.Context, tenantID, ref string) error {
	ref, err := Normalize(ref)
	if err != nil {
		return err
	}
	return s.st.DeleteImage(ctx, tenantID, ref)
}

// LayerIDs returns the diff IDs ("sha256:...") of an image's layers,
// lowest first.
func LayerIDs(img Image) []string {
	out := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		out[i] = filepath.Base(filepath.Dir(l)) + ":" + filepath.Base(l)
	}
	return out
}

// Collect removes unpacked layers that no image record (and no live
// sandbox) needs, as Remove does after deleting a reference.
func (s *Store) Collect(ctx context.Context) error { return s.gc(ctx) }

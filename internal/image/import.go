package image

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Import reads an OCI-layout tarball (index.json + blobs) or a docker-archive
// tarball (`docker save`: manifest.json + layers) from r. With a single image
// in the archive, ref names it; otherwise names come from the archive.
func (s *Store) Import(ctx context.Context, tenantID string, r io.Reader, ref string) ([]Image, error) {
	f, err := s.spool(r)
	if err != nil {
		return nil, fmt.Errorf("receiving archive: %w", err)
	}
	defer f.Close()
	names, err := tarNames(f)
	if err != nil {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "not a tar archive: %v", err)
	}
	switch {
	case names["index.json"] && names["oci-layout"]:
		return s.importOCI(ctx, tenantID, f, ref)
	case names["manifest.json"]:
		return s.importDocker(ctx, tenantID, f, ref)
	}
	return nil, errdefs.Public(errdefs.ErrInvalidArgument, "the archive is neither an OCI layout nor a docker-archive (no index.json or manifest.json)")
}

func tarNames(f *os.File) (map[string]bool, error) {
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, err
		}
		names[filepath.Clean(h.Name)] = true
	}
}

func (s *Store) importDocker(ctx context.Context, tenantID string, f *os.File, ref string) ([]Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd())) }
	// manifest.json lists the images and their tags.
	var manifest []struct{ RepoTags []string }
	if err := readTarJSON(f, "manifest.json", &manifest); err != nil {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "reading manifest.json: %v", err)
	}
	var out []Image
	for i, m := range manifest {
		var tag *name.Tag
		refs := m.RepoTags
		if len(manifest) == 1 && ref != "" {
			refs = []string{ref}
		}
		if len(refs) == 0 {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "image %d of the archive has no name: give one", i)
		}
		if len(manifest) > 1 {
			if len(m.RepoTags) == 0 {
				return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "image %d of the archive has no tag", i)
			}
			t, err := name.NewTag(m.RepoTags[0], name.WeakValidation)
			if err != nil {
				return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "bad tag %q in the archive", m.RepoTags[0])
			}
			tag = &t
		}
		vimg, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "reading image %d of the archive: %v", i, err)
		}
		for _, r := range refs {
			img, err := s.ingest(ctx, tenantID, r, vimg)
			if err != nil {
				return nil, err
			}
			out = append(out, img)
		}
	}
	return out, nil
}

func (s *Store) importOCI(ctx context.Context, tenantID string, f *os.File, ref string) ([]Image, error) {
	dir, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "oci-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if _, err := f.Seek(0, 0); err != nil {
		return nil, err
	}
	if err := Unpack(f, dir); err != nil {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "unpacking the OCI layout: %v", err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "reading the OCI layout: %v", err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []Image
	for i, desc := range im.Manifests {
		r := desc.Annotations["org.opencontainers.image.ref.name"]
		if len(im.Manifests) == 1 && ref != "" {
			r = ref
		}
		if r == "" {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "image %d of the layout has no name: give one", i)
		}
		vimg, err := idx.Image(desc.Digest)
		if err != nil {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "image %d of the layout: %v", i, err)
		}
		img, err := s.ingest(ctx, tenantID, r, vimg)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

func readTarJSON(f *os.File, name string, v any) error {
	if _, err := f.Seek(0, 0); err != nil {
		return err
	}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			return err
		}
		if filepath.Clean(h.Name) == name {
			return json.NewDecoder(io.LimitReader(tr, 16<<20)).Decode(v)
		}
	}
}

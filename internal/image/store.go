package image

// On-disk layout under root (<state-dir>/images):
//
//	root/oci-layout, root/index.json   an OCI image layout …
//	root/blobs/sha256/<hex>            … holding every manifest, config and layer blob
//	root/layers/sha256/<diffid-hex>/   each layer unpacked once, shared read-only by
//	                                   every image and sandbox that uses it
//	root/tmp/                          spooled uploads and half-unpacked layers
//	                                   (emptied at Open: a crash leaves nothing half-done
//	                                   in layers/, which is only ever renamed into)
//
// References are per tenant, in the store (store.Image); the blobs are
// shared by content address. Images of the admin tenant are shared read-only
// with every tenant.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Store is the local image store.
type Store struct {
	root  string
	st    store.Store
	log   *slog.Logger
	path  layout.Path
	admin string

	mu       sync.Mutex
	resolved map[string]Image       // by manifest digest
	locks    map[string]*sync.Mutex // per layer diff ID
}

// Open opens (creating if needed) the store under root.
func Open(ctx context.Context, root string, st store.Store, log *slog.Logger) (*Store, error) {
	for _, d := range []string{root, filepath.Join(root, "layers", "sha256")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, err
		}
	}
	os.RemoveAll(filepath.Join(root, "tmp"))
	if err := os.MkdirAll(filepath.Join(root, "tmp"), 0o700); err != nil {
		return nil, err
	}
	p, err := layout.FromPath(root)
	if err != nil {
		if p, err = layout.Write(root, empty.Index); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return &Store{root: root, st: st, log: log, path: p, resolved: map[string]Image{}, locks: map[string]*sync.Mutex{}}, nil
}

// SetAdminTenant names the tenant whose images every tenant sees.
func (s *Store) SetAdminTenant(id string) { s.admin = id }

// Normalize returns the canonical form of a reference: a tag defaults to
// "latest"; digests and explicit registries are kept as written.
func Normalize(ref string) (string, error) {
	if strings.HasPrefix(ref, "sha256:") {
		if len(ref) != 71 {
			return "", errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid digest %q", ref)
		}
		return ref, nil
	}
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return "", errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid image reference %q", ref)
	}
	if _, ok := r.(name.Digest); ok {
		return ref, nil
	}
	if strings.Contains(ref[strings.LastIndex(ref, "/")+1:], ":") {
		return ref, nil
	}
	return ref + ":latest", nil
}

// Resolve finds a tenant's image (or the admin's) by reference or digest.
func (s *Store) Resolve(ctx context.Context, tenantID, ref string) (Image, error) {
	ref, err := Normalize(ref)
	if err != nil {
		return Image{}, err
	}
	rec, shared, err := s.record(ctx, tenantID, ref)
	if err != nil {
		return Image{}, err
	}
	img, err := s.load(rec)
	img.Shared = shared
	return img, err
}

func (s *Store) record(ctx context.Context, tenantID, ref string) (store.Image, bool, error) {
	tenants := []string{tenantID}
	if s.admin != "" && s.admin != tenantID {
		tenants = append(tenants, s.admin)
	}
	for i, t := range tenants {
		if strings.HasPrefix(ref, "sha256:") {
			imgs, err := s.st.ListImages(ctx, t)
			if err != nil {
				return store.Image{}, false, err
			}
			for _, im := range imgs {
				if im.Digest == ref {
					return im, i > 0, nil
				}
			}
			continue
		}
		im, err := s.st.GetImage(ctx, t, ref)
		if err == nil {
			return im, i > 0, nil
		}
		if !errors.Is(err, errdefs.ErrNotFound) {
			return store.Image{}, false, err
		}
	}
	return store.Image{}, false, errdefs.Publicf(errdefs.ErrNotFound, "image %q not found", ref)
}

// load reads an image's config and layer paths (cached by digest).
func (s *Store) load(rec store.Image) (Image, error) {
	s.mu.Lock()
	img, ok := s.resolved[rec.Digest]
	s.mu.Unlock()
	if !ok {
		h, err := v1.NewHash(rec.Digest)
		if err != nil {
			return Image{}, err
		}
		vimg, err := s.path.Image(h)
		if err != nil {
			return Image{}, fmt.Errorf("image %s: %w", rec.Digest, err)
		}
		if img, err = s.describe(vimg); err != nil {
			return Image{}, err
		}
		s.mu.Lock()
		s.resolved[rec.Digest] = img
		s.mu.Unlock()
	}
	img.Ref, img.CreatedAt, img.Size = rec.Ref, rec.CreatedAt, rec.Size
	return img, nil
}

func (s *Store) describe(vimg v1.Image) (Image, error) {
	d, err := vimg.Digest()
	if err != nil {
		return Image{}, err
	}
	cf, err := vimg.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	img := Image{Digest: d.String(), Config: ispec.ImageConfig{
		User: cf.Config.User, Env: cf.Config.Env, Entrypoint: cf.Config.Entrypoint,
		Cmd: cf.Config.Cmd, WorkingDir: cf.Config.WorkingDir,
	}}
	for _, id := range cf.RootFS.DiffIDs {
		dir := s.layerDir(id)
		if _, err := os.Stat(dir); err != nil {
			return Image{}, fmt.Errorf("layer %s of %s is not unpacked", id, d)
		}
		img.Layers = append(img.Layers, dir)
	}
	if len(img.Layers) == 0 {
		return Image{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "image %s has no layers", d)
	}
	return img, nil
}

func (s *Store) layerDir(diffID v1.Hash) string {
	return filepath.Join(s.root, "layers", diffID.Algorithm, diffID.Hex)
}

// ingest writes an image's blobs, unpacks its layers (each once) and
// records the (normalized) reference for the tenant.
func (s *Store) ingest(ctx context.Context, tenantID, ref string, vimg v1.Image) (Image, error) {
	ref, err := Normalize(ref)
	if err != nil {
		return Image{}, err
	}
	d, err := vimg.Digest()
	if err != nil {
		return Image{}, err
	}
	s.mu.Lock() // index.json is rewritten as a whole
	err = s.path.ReplaceImage(vimg, match.Digests(d))
	s.mu.Unlock()
	if err != nil {
		return Image{}, fmt.Errorf("storing image: %w", err)
	}
	// Unpack from the local blobs, not the source (which may be remote).
	if vimg, err = s.path.Image(d); err != nil {
		return Image{}, err
	}
	layers, err := vimg.Layers()
	if err != nil {
		return Image{}, err
	}
	// The diff IDs come from the config: asking a stored layer for its
	// own would decompress and hash it (seconds for a big image), and
	// unpackLayer checks them against the content when it unpacks.
	cf, err := vimg.ConfigFile()
	if err != nil {
		return Image{}, err
	}
	if len(cf.RootFS.DiffIDs) != len(layers) {
		return Image{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "image %s has %d layers but %d diff IDs", d, len(layers), len(cf.RootFS.DiffIDs))
	}
	var size int64
	for i, l := range layers {
		if err := s.unpackLayer(ctx, l, cf.RootFS.DiffIDs[i]); err != nil {
			return Image{}, err
		}
		if n, err := l.Size(); err == nil {
			size += n
		}
	}
	rec := store.Image{TenantID: tenantID, Ref: ref, Digest: d.String(), Size: size, CreatedAt: time.Now().UTC()}
	if err := s.st.PutImage(ctx, rec); err != nil {
		return Image{}, err
	}
	return s.load(rec)
}

// unpackLayer unpacks a layer (once) under its diff ID id, checking that
// the content matches it.
func (s *Store) unpackLayer(ctx context.Context, l v1.Layer, id v1.Hash) error {
	if id.Algorithm != "sha256" || len(id.Hex) != 64 {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "unsupported diff ID %s", id)
	}
	s.mu.Lock()
	lk, ok := s.locks[id.String()]
	if !ok {
		lk = &sync.Mutex{}
		s.locks[id.String()] = lk
	}
	s.mu.Unlock()
	lk.Lock()
	defer lk.Unlock()
	dir := s.layerDir(id)
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(s.root, "tmp"), "layer-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	tee := io.TeeReader(rc, h)
	if err := Unpack(tee, tmp); err != nil {
		return fmt.Errorf("layer %s: %w", id, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil { // padding after the end of the archive
		return fmt.Errorf("layer %s: %w", id, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != id.Hex {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "layer content (sha256:%s) does not match its diff ID %s", got, id)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// List lists the tenant's images and the shared (admin) ones.
func (s *Store) List(ctx context.Context, tenantID string) ([]Image, error) {
	var out []Image
	seen := map[string]bool{}
	for i, t := range []string{tenantID, s.admin} {
		if t == "" || (i == 1 && t == tenantID) {
			continue
		}
		recs, err := s.st.ListImages(ctx, t)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if seen[r.Ref] {
				continue
			}
			seen[r.Ref] = true
			img, err := s.load(r)
			if err != nil {
				s.log.Warn("listing image", "ref", r.Ref, "err", err)
				continue
			}
			img.Shared = i == 1
			out = append(out, img)
		}
	}
	return out, nil
}

// Remove deletes a tenant's reference, refusing while a sandbox of the
// tenant uses the image, and garbage-collects what no reference needs.
func (s *Store) Remove(ctx context.Context, tenantID, ref string) error {
	ref, err := Normalize(ref)
	if err != nil {
		return err
	}
	rec, err := s.st.GetImage(ctx, tenantID, ref)
	if err != nil {
		return err
	}
	inUse, err := s.st.ImageDigestInUse(ctx, tenantID, rec.Digest)
	if err != nil {
		return err
	}
	if inUse {
		return errdefs.Publicf(errdefs.ErrConflict, "image %q is used by a sandbox", ref)
	}
	if err := s.st.DeleteImage(ctx, tenantID, ref); err != nil {
		return err
	}
	return s.gc(ctx)
}

// gc removes unpacked layers that no referenced (or in-use) image needs.
func (s *Store) gc(ctx context.Context) error {
	keep := map[string]bool{}
	tenants, err := s.st.ListTenants(ctx)
	if err != nil {
		return err
	}
	for _, t := range tenants {
		recs, err := s.st.ListImages(ctx, t.ID)
		if err != nil {
			return err
		}
		for _, r := range recs {
			img, err := s.load(r)
			if err != nil {
				return err // unsure what is needed: keep everything
			}
			for _, l := range img.Layers {
				keep[l] = true
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Join(s.root, "layers", "sha256"))
	for _, e := range ents {
		dir := filepath.Join(s.root, "layers", "sha256", e.Name())
		if keep[dir] {
			continue
		}
		if used, err := s.layerInUse(ctx, dir); err != nil || used {
			continue
		}
		s.log.Info("removing unreferenced layer", "layer", e.Name())
		os.RemoveAll(dir)
	}
	return nil
}

// layerInUse is conservative: a layer of an image a live sandbox still
// uses stays even after its reference is gone.
func (s *Store) layerInUse(ctx context.Context, dir string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for digest, img := range s.resolved {
		for _, l := range img.Layers {
			if l == dir {
				used, err := s.st.ImageDigestInUse(ctx, "", digest)
				if err != nil || used {
					return true, err
				}
			}
		}
	}
	return false, nil
}

// spool copies r into a temporary file under the store.
func (s *Store) spool(r io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "upload-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // anonymous: gone when closed, even after a crash
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

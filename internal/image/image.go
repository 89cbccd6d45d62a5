// Package image is sbx's local image store: a content-addressed OCI layout
// of blobs, the layers unpacked once each, and per-tenant references.
//
// CONTRACT (other packages rely on exactly these names and meanings; the
// implementation may add more):
//
//	Open(ctx, root, st, log) (*Store, error)  root = <state-dir>/images
//	(*Store).Resolve(ctx, tenantID, ref) (Image, error)
//	(*Store).Pull(ctx, tenantID, ref, PullOptions) (Image, error)
//	(*Store).Import(ctx, tenantID, r io.Reader, ref string) ([]Image, error)
//	(*Store).ImportRootfs(ctx, tenantID, dir, ref string, cfg v1.ImageConfig) (Image, error)
//	(*Store).List(ctx, tenantID) ([]Image, error)
//	(*Store).Remove(ctx, tenantID, ref) error
//
// Images of the admin tenant are shared read-only with every tenant:
// Resolve looks in the caller's own references first, then the admin's.
package image

import (
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a locally available, fully unpacked image.
type Image struct {
	Ref       string         `json:"ref"`    // normalized reference
	Digest    string         `json:"digest"` // manifest digest, "sha256:..."
	Size      int64          `json:"size"`   // compressed bytes of all layers
	CreatedAt time.Time      `json:"created_at"`
	Config    v1.ImageConfig `json:"config"` // Entrypoint, Cmd, Env, WorkingDir, User
	// Layers are the unpacked layer directories, lowest first, ready to
	// be used as overlay lower dirs. They are owned by the store and must
	// never be written to.
	Layers []string `json:"-"`
	// Shared is true when the image belongs to the admin tenant and is
	// seen by another tenant.
	Shared bool `json:"shared"`
}

// PullOptions configure a pull from a registry.
type PullOptions struct {
	Username string // basic auth, or the user name for token auth
	Password string
	// Insecure allows plain HTTP. Loopback registries are always allowed
	// plain HTTP.
	Insecure bool
	// Progress, when set, is called as bytes arrive (possibly from several
	// goroutines, never concurrently).
	Progress func(Progress)
}

// Progress reports a pull's progress.
type Progress struct {
	Layer    string // digest of the layer being fetched; "" for the manifest/config
	Complete int64  // bytes fetched so far over all layers
	Total    int64  // total bytes to fetch over all layers
	Done     bool
}

package image

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Pull fetches an image from its registry (anonymous, basic or token auth;
// plain HTTP for loopback registries or with Insecure), stores it and
// records the reference for the tenant.
func (s *Store) Pull(ctx context.Context, tenantID, ref string, opts PullOptions) (Image, error) {
	norm, err := Normalize(ref)
	if err != nil {
		return Image{}, err
	}
	nopts := []name.Option{name.WeakValidation}
	if opts.Insecure || loopback(norm) {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(norm, nopts...)
	if err != nil {
		return Image{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid image reference %q", ref)
	}
	auth := authn.Anonymous
	if opts.Username != "" || opts.Password != "" {
		auth = &authn.Basic{Username: opts.Username, Password: opts.Password}
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(auth), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "amd64"})}
	vimg, err := remote.Image(r, ropts...)
	if err != nil {
		return Image{}, registryErr(ref, err)
	}
	if opts.Progress != nil {
		vimg = &progressImage{Image: vimg, report: opts.Progress}
	}
	img, err := s.ingest(ctx, tenantID, norm, vimg)
	if err != nil {
		return Image{}, registryErr(ref, err)
	}
	if opts.Progress != nil {
		opts.Progress(Progress{Complete: img.Size, Total: img.Size, Done: true})
	}
	return img, nil
}

func loopback(ref string) bool {
	host, _, _ := strings.Cut(ref, "/")
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func registryErr(ref string, err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return errdefs.Publicf(errdefs.ErrPermissionDenied, "registry refused access to %q", ref)
		case http.StatusNotFound:
			return errdefs.Publicf(errdefs.ErrNotFound, "image %q not found in its registry", ref)
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return errdefs.Publicf(errdefs.ErrNotFound, "image %q not found in its registry", ref)
			}
			if d.Code == transport.UnauthorizedErrorCode || d.Code == transport.DeniedErrorCode {
				return errdefs.Publicf(errdefs.ErrPermissionDenied, "registry refused access to %q", ref)
			}
		}
	}
	var ne net.Error
	if errors.As(err, &ne) || strings.Contains(err.Error(), "connection refused") {
		return fmt.Errorf("%w: %w", errdefs.Publicf(errdefs.ErrUnavailable, "registry of %q is unreachable", ref), err)
	}
	return err
}

// progressImage reports bytes as layers are read.
type progressImage struct {
	v1.Image
	report   func(Progress)
	complete int64
}

func (p *progressImage) Layers() ([]v1.Layer, error) {
	ls, err := p.Image.Layers()
	if err != nil {
		return nil, err
	}
	var total int64
	for _, l := range ls {
		if n, err := l.Size(); err == nil {
			total += n
		}
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = &progressLayer{Layer: l, img: p, total: total}
	}
	return out, nil
}

type progressLayer struct {
	v1.Layer
	img   *progressImage
	total int64
}

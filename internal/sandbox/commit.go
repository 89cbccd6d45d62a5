package sandbox

import (
	"context"
	"fmt"
	"io"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Templates resolves a tenant's template names to the image references
// sandboxes are created from (implemented by *template.Service).
type Templates interface {
	// TemplateImage returns the image reference of an active template;
	// ErrNotFound for an unknown one, ErrConflict while it is not active.
	TemplateImage(ctx context.Context, tenantID, name string) (string, error)
}

// SetTemplates enables CreateOptions.Template. (The template service builds
// in sandboxes of this service, so it is made after it and set here.)
func (s *Service) SetTemplates(t Templates) { s.templates = t }

func (s *Service) templateImage(ctx context.Context, opts CreateOptions) (string, error) {
	if opts.Image != "" {
		return "", invalid("give an image or a template, not both")
	}
	if s.templates == nil {
		return "", errdefs.Public(errdefs.ErrUnavailable, "templates are not enabled on this server")
	}
	return s.templates.TemplateImage(ctx, opts.TenantID, opts.Template)
}

// CommitLayer writes a stopped sandbox's writable layer to w as an OCI
// layer tar (rootfs.CommitLayer: ids shifted back to the sandbox's own,
// overlay whiteouts and opaque dirs as OCI ones) and returns the sandbox,
// whose ImageDigest is the image the layer goes on top of. The sandbox's
// lock is held throughout, so it cannot be started meanwhile; a sandbox
// that is not stopped is refused (stop it first: its files are then
// complete and nothing writes them while they are read).
func (s *Service) CommitLayer(ctx context.Context, tenantID, idOrName string, w io.Writer) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	if sb.State != store.StateStopped {
		return sb, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s: stop it before committing its filesystem", sb.ID, sb.State)
	}
	upper, umount, err := rootfs.MountWritable(s.dir(sb.ID))
	if err != nil {
		return sb, fmt.Errorf("committing sandbox %s: %w", sb.ID, err)
	}
	err = rootfs.CommitLayer(ctx, upper, s.idmapOf(sb), w)
	if uerr := umount(); err == nil && uerr != nil {
		err = uerr
	}
	if err != nil {
		return sb, fmt.Errorf("committing sandbox %s: %w", sb.ID, err)
	}
	return sb, nil
}

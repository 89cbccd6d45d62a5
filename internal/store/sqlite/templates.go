package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Templates.

const templateCols = `id, tenant_id, name, source, spec, state, error_reason, image_ref, image_digest, build_log, created_at, updated_at`

func scanTemplate(sc rowScanner) (store.Template, error) {
	var (
		t                store.Template
		spec             string
		state            string
		created, updated int64
	)
	if err := sc.Scan(&t.ID, &t.TenantID, &t.Name, &t.Source, &spec, &state, &t.ErrorReason,
		&t.ImageRef, &t.ImageDigest, &t.BuildLog, &created, &updated); err != nil {
		return store.Template{}, err
	}
	if spec != "" {
		t.Spec = json.RawMessage(spec)
	}
	t.State = store.TemplateState(state)
	t.CreatedAt, t.UpdatedAt = fromNanos(created), fromNanos(updated)
	return t, nil
}

func specText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	if !json.Valid(raw) {
		return "", errdefs.Public(errdefs.ErrInvalidArgument, "template spec is not valid JSON")
	}
	return string(raw), nil
}

// CreateTemplate inserts t; zero times are set to now.
func (db *DB) CreateTemplate(ctx context.Context, t store.Template) error {
	if t.ID == "" || t.Name == "" || t.TenantID == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "template id, tenant and name are required")
	}
	spec, err := specText(t.Spec)
	if err != nil {
		return err
	}
	now := db.now()
	_, err = db.w.ExecContext(ctx, `INSERT INTO templates (`+templateCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.ID, t.TenantID, t.Name, t.Source, spec, string(t.State), t.ErrorReason, t.ImageRef, t.ImageDigest, t.BuildLog,
		nanos(orNow(t.CreatedAt, now)), nanos(orNow(t.UpdatedAt, now)))
	if isUnique(err) {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "template %q already exists", t.Name)
	}
	if err != nil {
		return fmt.Errorf("creating template %s: %w", t.Name, err)
	}
	return nil
}

// GetTemplate returns the tenant's ("" = any tenant's) template by name or ID.
func (db *DB) GetTemplate(ctx context.Context, tenantID, name string) (store.Template, error) {
	t, err := scanTemplate(db.r.QueryRowContext(ctx,
		`SELECT `+templateCols+` FROM templates WHERE (name = ? OR id = ?) AND (? = '' OR tenant_id = ?)
		 ORDER BY name = ? DESC LIMIT 1`,
		name, name, tenantID, tenantID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Template{}, errdefs.Publicf(errdefs.ErrNotFound, "template %q not found", name)
	}
	if err != nil {
		return store.Template{}, fmt.Errorf("getting template %s: %w", name, err)
	}
	return t, nil
}

// ListTemplates returns the tenant's ("" = all) templates by name.
func (db *DB) ListTemplates(ctx context.Context, tenantID string) ([]store.Template, error) {
	return queryAll(ctx, db.r, nil, scanTemplate, "listing templates",
		`SELECT `+templateCols+` FROM templates WHERE ? = '' OR tenant_id = ? ORDER BY name, tenant_id`, tenantID, tenantID)
}

// UpdateTemplate replaces t's mutable fields and sets UpdatedAt.
func (db *DB) UpdateTemplate(ctx context.Context, t store.Template) error {
	spec, err := specText(t.Spec)
	if err != nil {
		return err
	}
	res, err := db.w.ExecContext(ctx, `
		UPDATE templates SET spec = ?, state = ?, error_reason = ?, image_digest = ?, build_log = ?, updated_at = ?
		WHERE id = ?`,
		spec, string(t.State), t.ErrorReason, t.ImageDigest, t.BuildLog, nanos(db.now()), t.ID)
	if err != nil {
		return fmt.Errorf("updating template %s: %w", t.Name, err)
	}
	return checkAffected(res, "template %q not found", t.Name)
}

// DeleteTemplate removes the tenant's template by name.
func (db *DB) DeleteTemplate(ctx context.Context, tenantID, name string) error {
	res, err := db.w.ExecContext(ctx,
		`DELETE FROM templates WHERE name = ? AND (? = '' OR tenant_id = ?)`, name, tenantID, tenantID)
	if err != nil {
		return fmt.Errorf("deleting template %s: %w", name, err)
	}
	return checkAffected(res, "template %q not found", name)
}

// ImageRefInUse reports whether a live sandbox of the tenant ("" = any)
// was created from ref.
func (db *DB) ImageRefInUse(ctx context.Context, tenantID, ref string) (bool, error) {
	var used bool
	err := db.r.QueryRowContext(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM sandboxes WHERE image = ? AND state != 'destroyed' AND (? = '' OR tenant_id = ?)
		)`, ref, tenantID, tenantID).Scan(&used)
	if err != nil {
		return false, fmt.Errorf("checking use of image %s: %w", ref, err)
	}
	return used, nil
}

// PutBuildCache inserts or replaces the entry for (TenantID, Key).
func (db *DB) PutBuildCache(ctx context.Context, e store.BuildCacheEntry) error {
	if e.Key == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "build cache key is empty")
	}
	_, err := db.w.ExecContext(ctx, `
		INSERT INTO build_cache (tenant_id, key, image_digest, layer, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, key) DO UPDATE SET
			image_digest = excluded.image_digest, layer = excluded.layer, created_at = excluded.created_at`,
		e.TenantID, e.Key, e.ImageDigest, e.Layer, nanos(orNow(e.CreatedAt, db.now())))
	if err != nil {
		return fmt.Errorf("putting build cache entry: %w", err)
	}
	return nil
}

// GetBuildCache returns the tenant's entry for key.
func (db *DB) GetBuildCache(ctx context.Context, tenantID, key string) (store.BuildCacheEntry, error) {
	e := store.BuildCacheEntry{TenantID: tenantID, Key: key}
	var created int64
	err := db.r.QueryRowContext(ctx,
		`SELECT image_digest, layer, created_at FROM build_cache WHERE tenant_id = ? AND key = ?`, tenantID, key).
		Scan(&e.ImageDigest, &e.Layer, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return store.BuildCacheEntry{}, errdefs.Public(errdefs.ErrNotFound, "no build cache entry")
	}
	if err != nil {
		return store.BuildCacheEntry{}, fmt.Errorf("getting build cache entry: %w", err)
	}
	e.CreatedAt = fromNanos(created)
	return e, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Tenants.

const tenantCols = `id, name, admin, limits, created_at`

func scanTenant(sc rowScanner) (store.Tenant, error) {
	var (
		t       store.Tenant
		limits  string
		created int64
	)
	if err := sc.Scan(&t.ID, &t.Name, &t.Admin, &limits, &created); err != nil {
		return store.Tenant{}, err
	}
	if err := fromJSON(limits, &t.Limits); err != nil {
		return store.Tenant{}, err
	}
	t.CreatedAt = fromNanos(created)
	return t, nil
}

// CreateTenant inserts t; a zero CreatedAt is set to now.
func (db *DB) CreateTenant(ctx context.Context, t store.Tenant) error {
	if t.ID == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "tenant id is empty")
	}
	limits, err := jsonText(t.Limits)
	if err != nil {
		return err
	}
	_, err = db.w.ExecContext(ctx,
		`INSERT INTO tenants (`+tenantCols+`) VALUES (?, ?, ?, ?, ?)`,
		t.ID, t.Name, t.Admin, limits, nanos(orNow(t.CreatedAt, db.now())))
	if isUnique(err) {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "tenant %q already exists", t.Name)
	}
	if err != nil {
		return fmt.Errorf("creating tenant %s: %w", t.ID, err)
	}
	return nil
}

// GetTenant returns the tenant with the ID.
func (db *DB) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	t, err := scanTenant(db.r.QueryRowContext(ctx, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Tenant{}, errdefs.Publicf(errdefs.ErrNotFound, "tenant %q not found", id)
	}
	if err != nil {
		return store.Tenant{}, fmt.Errorf("getting tenant %s: %w", id, err)
	}
	return t, nil
}

// ListTenants returns all tenants, oldest first.
func (db *DB) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	return queryAll(ctx, db.r, nil, scanTenant, "listing tenants",
		`SELECT `+tenantCols+` FROM tenants ORDER BY created_at, id`)
}

// UpdateTenant replaces the name, admin flag and limits of t.ID.
func (db *DB) UpdateTenant(ctx context.Context, t store.Tenant) error {
	limits, err := jsonText(t.Limits)
	if err != nil {
		return err
	}
	res, err := db.w.ExecContext(ctx,
		`UPDATE tenants SET name = ?, admin = ?, limits = ? WHERE id = ?`,
		t.Name, t.Admin, limits, t.ID)
	if isUnique(err) {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "tenant %q already exists", t.Name)
	}
	if err != nil {
		return fmt.Errorf("updating tenant %s: %w", t.ID, err)
	}
	return checkAffected(res, "tenant %q not found", t.ID)
}

// API keys.

const keyCols = `id, tenant_id, name, hash, prefix, created_at`

func scanKey(sc rowScanner) (store.APIKey, error) {
	var (
		k       store.APIKey
		created int64
	)
	if err := sc.Scan(&k.ID, &k.TenantID, &k.Name, &k.Hash, &k.Prefix, &created); err != nil {
		return store.APIKey{}, err
	}
	k.CreatedAt = fromNanos(created)
	return k, nil
}

// CreateAPIKey inserts k. Its tenant must exist (else ErrNotFound); a key
// with the same ID or hash gives ErrAlreadyExists.
func (db *DB) CreateAPIKey(ctx context.Context, k store.APIKey) error {
	if k.ID == "" || k.Hash == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "api key id or hash is empty")
	}
	_, err := db.w.ExecContext(ctx,
		`INSERT INTO api_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, k.TenantID, k.Name, k.Hash, k.Prefix, nanos(orNow(k.CreatedAt, db.now())))
	switch {
	case isUnique(err):
		return errdefs.Public(errdefs.ErrAlreadyExists, "api key already exists")
	case isForeignKey(err):
		return errdefs.Publicf(errdefs.ErrNotFound, "tenant %q not found", k.TenantID)
	case err != nil:
		return fmt.Errorf("creating api key %s: %w", k.ID, err)
	}
	return nil
}

// APIKeyByHash finds a key by the hex SHA-256 of its secret.
func (db *DB) APIKeyByHash(ctx context.Context, hash string) (store.APIKey, error) {
	k, err := scanKey(db.r.QueryRowContext(ctx, `SELECT `+keyCols+` FROM api_keys WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return store.APIKey{}, errdefs.Public(errdefs.ErrNotFound, "api key not found")
	}
	if err != nil {
		return store.APIKey{}, fmt.Errorf("looking up api key: %w", err)
	}
	return k, nil
}

// ListAPIKeys returns the tenant's keys ("" = all), oldest first.
func (db *DB) ListAPIKeys(ctx context.Context, tenantID string) ([]store.APIKey, error) {
	return queryAll(ctx, db.r, nil, scanKey, "listing api keys",
		`SELECT `+keyCols+` FROM api_keys WHERE ? = '' OR tenant_id = ? ORDER BY created_at, id`,
		tenantID, tenantID)
}

// DeleteAPIKey removes the key id of the tenant ("" = any).
func (db *DB) DeleteAPIKey(ctx context.Context, tenantID, id string) error {
	res, err := db.w.ExecContext(ctx,
		`DELETE FROM api_keys WHERE id = ? AND (? = '' OR tenant_id = ?)`, id, tenantID, tenantID)
	if err != nil {
		return fmt.Errorf("deleting api key %s: %w", id, err)
	}
	return checkAffected(res, "api key %q not found", id)
}

// Images.

const imageCols = `tenant_id, ref, digest, size, created_at`

func scanImage(sc rowScanner) (store.Image, error) {
	var (
		img     store.Image
		created int64
	)
	if err := sc.Scan(&img.TenantID, &img.Ref, &img.Digest, &img.Size, &created); err != nil {
		return store.Image{}, err
	}
	img.CreatedAt = fromNanos(created)
	return img, nil
}

// PutImage inserts or replaces the record for (TenantID, Ref); a zero
// CreatedAt is set to now.
func (db *DB) PutImage(ctx context.Context, img store.Image) error {
	if img.Ref == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "image reference is empty")
	}
	_, err := db.w.ExecContext(ctx, `
		INSERT INTO images (`+imageCols+`) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, ref) DO UPDATE SET
			digest = excluded.digest,
			size = excluded.size,
			created_at = excluded.created_at`,
		img.TenantID, img.Ref, img.Digest, img.Size, nanos(orNow(img.CreatedAt, db.now())))
	if err != nil {
		return fmt.Errorf("putting image %s: %w", img.Ref, err)
	}
	return nil
}

// GetImage returns the tenant's ("" = any tenant's) record for ref.
func (db *DB) GetImage(ctx context.Context, tenantID, ref string) (store.Image, error) {
	img, err := scanImage(db.r.QueryRowContext(ctx,
		`SELECT `+imageCols+` FROM images WHERE ref = ? AND (? = '' OR tenant_id = ?)
		 ORDER BY tenant_id LIMIT 1`,
		ref, tenantID, tenantID))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Image{}, errdefs.Publicf(errdefs.ErrNotFound, "image %q not found", ref)
	}
	if err != nil {
		return store.Image{}, fmt.Errorf("getting image %s: %w", ref, err)
	}
	return img, nil
}

// ListImages returns the tenant's ("" = all) image records by ref.
func (db *DB) ListImages(ctx context.Context, tenantID string) ([]store.Image, error) {
	return queryAll(ctx, db.r, nil, scanImage, "listing images",
		`SELECT `+imageCols+` FROM images WHERE ? = '' OR tenant_id = ? ORDER BY ref, tenant_id`,
		tenantID, tenantID)
}

// DeleteImage removes the tenant's record for ref. With tenantID "" it
// removes every tenant's record for ref.
func (db *DB) DeleteImage(ctx context.Context, tenantID, ref string) error {
	res, err := db.w.ExecContext(ctx,
		`DELETE FROM images WHERE ref = ? AND (? = '' OR tenant_id = ?)`, ref, tenantID, tenantID)
	if err != nil {
		return fmt.Errorf("deleting image %s: %w", ref, err)
	}
	return checkAffected(res, "image %q not found", ref)
}

// ImageDigestInUse reports whether a live sandbox of the tenant ("" = any)
// uses the manifest digest.
func (db *DB) ImageDigestInUse(ctx context.Context, tenantID, digest string) (bool, error) {
	var used bool
	err := db.r.QueryRowContext(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM sandboxes
			WHERE image_digest = ? AND state != 'destroyed' AND (? = '' OR tenant_id = ?)
		)`, digest, tenantID, tenantID).Scan(&used)
	if err != nil {
		return false, fmt.Errorf("checking use of image %s: %w", digest, err)
	}
	return used, nil
}

// ImageDigestReferenced reports whether any image record points at digest.
func (db *DB) ImageDigestReferenced(ctx context.Context, digest string) (bool, error) {
	var ref bool
	err := db.r.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM images WHERE digest = ?)`, digest).Scan(&ref)
	if err != nil {
		return false, fmt.Errorf("checking references to image %s: %w", digest, err)
	}
	return ref, nil
}

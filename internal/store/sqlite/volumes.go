package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

const volumeCols = `id, tenant_id, name, size_mb, state, created_at, updated_at`

func scanVolume(sc rowScanner) (store.Volume, error) {
	var (
		v                store.Volume
		created, updated int64
	)
	if err := sc.Scan(&v.ID, &v.TenantID, &v.Name, &v.SizeMB, &v.State, &created, &updated); err != nil {
		return store.Volume{}, err
	}
	v.CreatedAt, v.UpdatedAt = fromNanos(created), fromNanos(updated)
	return v, nil
}

// CreateVolume inserts v. A zero CreatedAt is set to now, a zero UpdatedAt
// to CreatedAt.
func (db *DB) CreateVolume(ctx context.Context, v store.Volume) error {
	if v.ID == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "volume id is empty")
	}
	v.CreatedAt = orNow(v.CreatedAt, db.now())
	v.UpdatedAt = orNow(v.UpdatedAt, v.CreatedAt)
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO volumes (`+volumeCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			v.ID, v.TenantID, v.Name, v.SizeMB, v.State, nanos(v.CreatedAt), nanos(v.UpdatedAt))
		return err
	})
	if isUnique(err) {
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "volume %q already exists", v.Name)
	}
	if err != nil {
		return fmt.Errorf("creating volume %s: %w", v.ID, err)
	}
	return nil
}

func (db *DB) getVolume(ctx context.Context, what, where string, args ...any) (store.Volume, error) {
	v, err := scanVolume(db.r.QueryRowContext(ctx, `SELECT `+volumeCols+` FROM volumes WHERE `+where, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Volume{}, errdefs.Publicf(errdefs.ErrNotFound, "volume %q not found", what)
	}
	if err != nil {
		return store.Volume{}, fmt.Errorf("getting volume %s: %w", what, err)
	}
	return v, nil
}

// GetVolume returns the volume id of the tenant ("" = any).
func (db *DB) GetVolume(ctx context.Context, tenantID, id string) (store.Volume, error) {
	return db.getVolume(ctx, id, `id = ? AND (? = '' OR tenant_id = ?)`, id, tenantID, tenantID)
}

// GetVolumeByName returns the tenant's volume with the name; with tenantID
// "" the oldest match wins.
func (db *DB) GetVolumeByName(ctx context.Context, tenantID, name string) (store.Volume, error) {
	return db.getVolume(ctx, name, `name = ? AND (? = '' OR tenant_id = ?) ORDER BY created_at, id LIMIT 1`,
		name, tenantID, tenantID)
}

// ListVolumes lists the tenant's ("" = all) volumes, oldest first.
func (db *DB) ListVolumes(ctx context.Context, tenantID string) ([]store.Volume, error) {
	return queryAll(ctx, db.r, []store.Volume{}, scanVolume, "listing volumes", `SELECT `+volumeCols+` FROM volumes
		WHERE (? = '' OR tenant_id = ?) ORDER BY created_at, id`, tenantID, tenantID)
}

// UpdateVolume sets v's state and size, and UpdatedAt to now.
func (db *DB) UpdateVolume(ctx context.Context, v store.Volume) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE volumes SET state = ?, size_mb = ?, updated_at = ?
			WHERE id = ? AND (? = '' OR tenant_id = ?)`,
			v.State, v.SizeMB, nanos(db.now()), v.ID, v.TenantID, v.TenantID)
		if err != nil {
			return err
		}
		return checkAffected(res, "volume %q not found", v.ID)
	})
	if err != nil {
		return fmt.Errorf("updating volume %s: %w", v.ID, err)
	}
	return nil
}

// DeleteVolume removes the volume's record.
func (db *DB) DeleteVolume(ctx context.Context, id string) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM volumes WHERE id = ?`, id)
		if err != nil {
			return err
		}
		return checkAffected(res, "volume %q not found", id)
	})
	if err != nil {
		return fmt.Errorf("deleting volume %s: %w", id, err)
	}
	return nil
}

// VolumeUsers lists the live sandboxes whose mounts name the volume.
func (db *DB) VolumeUsers(ctx context.Context, volumeID string) ([]string, error) {
	rows, err := db.r.QueryContext(ctx, `
		SELECT id FROM sandboxes
		WHERE state != 'destroyed' AND volumes != 'null'
		  AND EXISTS (SELECT 1 FROM json_each(sandboxes.volumes) m
		              WHERE json_extract(m.value, '$.volume_id') = ?)
		ORDER BY created_at, id`, volumeID)
	if err != nil {
		return nil, fmt.Errorf("listing the users of volume %s: %w", volumeID, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("listing the users of volume %s: %w", volumeID, err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing the users of volume %s: %w", volumeID, err)
	}
	return out, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// State snapshots.

const snapshotCols = `id, sandbox_id, tenant_id, name, size, checksum, created_at`

func scanSnapshot(sc rowScanner) (store.Snapshot, error) {
	var (
		sn      store.Snapshot
		created int64
	)
	if err := sc.Scan(&sn.ID, &sn.SandboxID, &sn.TenantID, &sn.Name, &sn.Size, &sn.Checksum, &created); err != nil {
		return store.Snapshot{}, err
	}
	sn.CreatedAt = fromNanos(created)
	return sn, nil
}

// CreateSnapshot inserts a snapshot record; a zero CreatedAt is set to now.
func (db *DB) CreateSnapshot(ctx context.Context, sn store.Snapshot) error {
	if sn.ID == "" || sn.SandboxID == "" || sn.Name == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "snapshot id, sandbox and name are required")
	}
	_, err := db.w.ExecContext(ctx,
		`INSERT INTO sandbox_snapshots (`+snapshotCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		sn.ID, sn.SandboxID, sn.TenantID, sn.Name, sn.Size, sn.Checksum, nanos(orNow(sn.CreatedAt, db.now())))
	switch {
	case isUnique(err):
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "sandbox %s already has a snapshot named %q", sn.SandboxID, sn.Name)
	case isForeignKey(err):
		return errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", sn.SandboxID)
	case err != nil:
		return fmt.Errorf("creating snapshot %s: %w", sn.ID, err)
	}
	return nil
}

// GetSnapshot finds a snapshot of a sandbox by ID, else by name.
func (db *DB) GetSnapshot(ctx context.Context, tenantID, sandboxID, idOrName string) (store.Snapshot, error) {
	q := `SELECT ` + snapshotCols + ` FROM sandbox_snapshots WHERE sandbox_id = ? AND (id = ? OR name = ?)`
	args := []any{sandboxID, idOrName, idOrName}
	if tenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	q += ` ORDER BY id = ? DESC LIMIT 1` // an ID match wins over a name match
	args = append(args, idOrName)
	sn, err := scanSnapshot(db.r.QueryRowContext(ctx, q, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return store.Snapshot{}, errdefs.Publicf(errdefs.ErrNotFound, "snapshot %q not found", idOrName)
	}
	if err != nil {
		return store.Snapshot{}, fmt.Errorf("getting snapshot %s: %w", idOrName, err)
	}
	return sn, nil
}

// ListSnapshots lists a sandbox's snapshots, oldest first.
func (db *DB) ListSnapshots(ctx context.Context, tenantID, sandboxID string) ([]store.Snapshot, error) {
	q := `SELECT ` + snapshotCols + ` FROM sandbox_snapshots WHERE sandbox_id = ?`
	args := []any{sandboxID}
	if tenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	return queryAll(ctx, db.r, []store.Snapshot{}, scanSnapshot, "listing snapshots", q+` ORDER BY created_at, id`, args...)
}

// DeleteSnapshot removes one snapshot record.
func (db *DB) DeleteSnapshot(ctx context.Context, tenantID, sandboxID, id string) error {
	q := `DELETE FROM sandbox_snapshots WHERE sandbox_id = ? AND id = ?`
	args := []any{sandboxID, id}
	if tenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	res, err := db.w.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("deleting snapshot %s: %w", id, err)
	}
	return checkAffected(res, "snapshot %q not found", id)
}

// DeleteSandboxSnapshots removes every snapshot record of a sandbox.
func (db *DB) DeleteSandboxSnapshots(ctx context.Context, sandboxID string) error {
	if _, err := db.w.ExecContext(ctx, `DELETE FROM sandbox_snapshots WHERE sandbox_id = ?`, sandboxID); err != nil {
		return fmt.Errorf("deleting snapshots of %s: %w", sandboxID, err)
	}
	return nil
}

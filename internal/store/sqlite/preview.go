package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// RevokePreviewToken implements store.Store.
func (db *DB) RevokePreviewToken(ctx context.Context, r store.PreviewRevocation) error {
	if r.TokenID == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "preview token id is empty")
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM preview_revocations WHERE expires_at < ?`, nanos(db.now())); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `
			INSERT INTO preview_revocations (token_id, sandbox_id, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (token_id) DO NOTHING`,
			r.TokenID, r.SandboxID, nanos(r.ExpiresAt))
		return err
	})
	if err != nil {
		return fmt.Errorf("revoking preview token: %w", err)
	}
	return nil
}

// PreviewTokenRevoked implements store.Store.
func (db *DB) PreviewTokenRevoked(ctx context.Context, tokenID string) (bool, error) {
	var one int
	err := db.r.QueryRowContext(ctx, `SELECT 1 FROM preview_revocations WHERE token_id = ?`, tokenID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("checking preview token: %w", err)
	}
	return true, nil
}

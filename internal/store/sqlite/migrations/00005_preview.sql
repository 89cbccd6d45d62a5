-- Preview URLs: whether a sandbox's ports are served without a token, and
-- the revoked signed preview tokens (kept until they would have expired
-- anyway, then pruned).

-- +goose Up
ALTER TABLE sandboxes ADD COLUMN public INTEGER NOT NULL DEFAULT 0;
CREATE TABLE preview_revocations (
    token_id   TEXT PRIMARY KEY,
    sandbox_id TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX preview_revocations_expiry ON preview_revocations (expires_at);

-- +goose Down
DROP TABLE preview_revocations;
ALTER TABLE sandboxes DROP COLUMN public;

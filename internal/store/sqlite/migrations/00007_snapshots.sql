-- State snapshots of sandboxes: point-in-time copies of a sandbox's
-- writable layer (the files live in the sandbox's directory). A name is
-- unique among the snapshots of one sandbox; the rows go with the sandbox.

-- +goose Up
CREATE TABLE sandbox_snapshots (
    id         TEXT    PRIMARY KEY,
    sandbox_id TEXT    NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    tenant_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    size       INTEGER NOT NULL, -- bytes the copy occupies
    checksum   TEXT    NOT NULL, -- sha256:<hex> of the image's data
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX sandbox_snapshots_name ON sandbox_snapshots (sandbox_id, name);
CREATE INDEX sandbox_snapshots_tenant ON sandbox_snapshots (tenant_id);

-- +goose Down
DROP TABLE sandbox_snapshots;

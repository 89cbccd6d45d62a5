-- Named persistent volumes, and the volumes each sandbox mounts.
--
-- A volume's row lives from its create until its delete has finished
-- (state 'deleting' while the files go), so its name is held that long.
-- A sandbox's mounts are a JSON array of store.VolumeMount, naming the
-- volume by ID.

-- +goose Up
CREATE TABLE volumes (
    id         TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    size_mb    INTEGER NOT NULL,
    state      TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX volumes_tenant_name ON volumes (tenant_id, name);
CREATE INDEX volumes_tenant_created ON volumes (tenant_id, created_at, id);

ALTER TABLE sandboxes ADD COLUMN volumes TEXT NOT NULL DEFAULT 'null';

-- +goose Down
ALTER TABLE sandboxes DROP COLUMN volumes;
DROP TABLE volumes;

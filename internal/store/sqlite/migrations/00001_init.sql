-- The first schema of sbx's embedded store.
--
-- Conventions:
--   * times are INTEGER unix nanoseconds (UTC), so they sort, compare and
--     round-trip exactly; 0 stands for the zero time;
--   * maps, slices and small structs (env, labels, resources, limits,
--     entrypoint, cmd) are JSON text, and JSON null keeps a nil map or
--     slice apart from an empty one;
--   * "live" means state != 'destroyed': a destroyed sandbox's row stays
--     until it is deleted, but no longer holds its name or its uid slot.
--
-- Migrations are append-only: change the schema in a new file.

-- +goose Up
CREATE TABLE tenants (
    id         TEXT    PRIMARY KEY,
    name       TEXT    NOT NULL,
    admin      INTEGER NOT NULL DEFAULT 0,   -- boolean
    limits     TEXT    NOT NULL DEFAULT '{}', -- JSON store.Limits
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX tenants_name ON tenants (name);

CREATE TABLE api_keys (
    id         TEXT    PRIMARY KEY,
    tenant_id  TEXT    NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    hash       TEXT    NOT NULL, -- hex SHA-256 of the secret; the secret is never stored
    prefix     TEXT    NOT NULL, -- first characters of the secret, for display
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id, created_at, id);

-- Image records are per tenant; the blobs they point at are shared by digest.
CREATE TABLE images (
    tenant_id  TEXT    NOT NULL,
    ref        TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, ref)
);
CREATE INDEX images_digest ON images (digest);

CREATE TABLE sandboxes (
    id           TEXT    PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    image        TEXT    NOT NULL,
    image_digest TEXT    NOT NULL,
    runtime      TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    desired      TEXT    NOT NULL,
    env          TEXT    NOT NULL, -- JSON object or null
    labels       TEXT    NOT NULL, -- JSON object or null
    resources    TEXT    NOT NULL, -- JSON store.Resources
    run_as       TEXT    NOT NULL, -- Sandbox.User ("user" is an SQL keyword)
    entrypoint   TEXT    NOT NULL, -- JSON array or null
    cmd          TEXT    NOT NULL, -- JSON array or null
    workdir      TEXT    NOT NULL,
    uid_slot     INTEGER NOT NULL, -- -1 without a user namespace
    error_reason TEXT    NOT NULL,
    exit_code    INTEGER,          -- NULL: no exit recorded
    oom_kills    INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    started_at   INTEGER           -- NULL: never started
);
-- Names and uid slots are held only while a sandbox is live.
CREATE UNIQUE INDEX sandboxes_live_name
    ON sandboxes (tenant_id, name) WHERE state != 'destroyed';
CREATE UNIQUE INDEX sandboxes_live_uid_slot
    ON sandboxes (uid_slot) WHERE state != 'destroyed' AND uid_slot >= 0;
-- Listing pages through (created_at, id), with or without a tenant.
CREATE INDEX sandboxes_created ON sandboxes (created_at, id);
CREATE INDEX sandboxes_tenant_created ON sandboxes (tenant_id, created_at, id);
CREATE INDEX sandboxes_image_digest ON sandboxes (image_digest);

CREATE TABLE events (
    -- AUTOINCREMENT so that a sequence number is never reused, even after
    -- the newest events are deleted with their sandbox.
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    sandbox_id TEXT    NOT NULL REFERENCES sandboxes (id) ON DELETE CASCADE,
    tenant_id  TEXT    NOT NULL,
    type       TEXT    NOT NULL,
    from_state TEXT    NOT NULL,
    to_state   TEXT    NOT NULL,
    message    TEXT    NOT NULL,
    time       INTEGER NOT NULL
);
CREATE INDEX events_sandbox ON events (sandbox_id, seq);

-- +goose Down
DROP TABLE events;
DROP TABLE sandboxes;
DROP TABLE images;
DROP TABLE api_keys;
DROP TABLE tenants;

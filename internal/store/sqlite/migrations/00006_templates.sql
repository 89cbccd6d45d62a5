-- Templates: tenant-owned, named images that sandboxes are created from
-- (Daytona calls them snapshots), made from an image reference, from a
-- declarative build spec or from a sandbox's filesystem; and the build
-- cache of declarative builds.

-- +goose Up
CREATE TABLE templates (
    id           TEXT    PRIMARY KEY,
    tenant_id    TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    source       TEXT    NOT NULL, -- image | spec | sandbox
    spec         TEXT    NOT NULL, -- JSON: what it is made from (source-specific)
    state        TEXT    NOT NULL, -- pending | pulling | building | active | error
    error_reason TEXT    NOT NULL,
    image_ref    TEXT    NOT NULL, -- the template's own reference in the image store
    image_digest TEXT    NOT NULL, -- '' until active
    build_log    TEXT    NOT NULL, -- path of the kept build log ('' without one)
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE UNIQUE INDEX templates_tenant_name ON templates (tenant_id, name);

-- A step of a declarative build is not run again when the same step was
-- run on the same parent image: key = sha256(parent manifest digest,
-- canonical step). Per tenant: one tenant's build never serves another's.
CREATE TABLE build_cache (
    tenant_id    TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    image_digest TEXT    NOT NULL, -- the image after the step
    layer        TEXT    NOT NULL, -- diff ID of the step's layer
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, key)
);

-- +goose Down
DROP TABLE build_cache;
DROP TABLE templates;

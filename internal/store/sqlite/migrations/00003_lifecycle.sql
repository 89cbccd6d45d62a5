-- Sandbox lifecycle: auto-stop/archive/delete policy, the persisted last
-- activity, the keep-alive lease, when it came to rest, and where its
-- archived writable layer is (JSON store.Lifecycle). Records from before
-- keep their sandboxes forever: auto-delete -1.

-- +goose Up
ALTER TABLE sandboxes ADD COLUMN lifecycle TEXT NOT NULL DEFAULT '{"auto_delete_seconds":-1}';

-- +goose Down
ALTER TABLE sandboxes DROP COLUMN lifecycle;

-- Sandbox networking: the mode and egress policy (JSON store.Network
-- without the address) and the address on the sbx bridge, which is the
-- IPAM's state: unique among live sandboxes, like uid_slot.

-- +goose Up
ALTER TABLE sandboxes ADD COLUMN network TEXT NOT NULL DEFAULT '{}';
ALTER TABLE sandboxes ADD COLUMN ip TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX sandboxes_live_ip
    ON sandboxes (ip) WHERE state != 'destroyed' AND ip != '';

-- +goose Down
DROP INDEX sandboxes_live_ip;
ALTER TABLE sandboxes DROP COLUMN ip;
ALTER TABLE sandboxes DROP COLUMN network;

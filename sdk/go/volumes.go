package sbx

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Volume is a named persistent volume of the caller's tenant. Its data
// outlives the sandboxes that mount it; SizeMB is a hard limit (writes
// beyond it fail with ENOSPC inside the sandbox).
type Volume struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	SizeMB    int64     `json:"size_mb"`
	State     string    `json:"state"`   // creating, ready, deleting
	UsedBy    []string  `json:"used_by"` // IDs of the live sandboxes that mount it
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CreateVolumeRequest is the body of POST /v1/volumes.
type CreateVolumeRequest struct {
	Name   string `json:"name"`
	SizeMB int64  `json:"size_mb"`
}

// VolumeList is the answer of GET /v1/volumes.
type VolumeList struct {
	Items []Volume `json:"items"`
}

// VolumeMount mounts a volume into a sandbox: Volume (ID or name) at
// MountPath, optionally only its directory Subpath (created if missing),
// optionally read-only. In a sandbox's answer VolumeID names the volume
// the mount resolved to.
type VolumeMount struct {
	Volume    string `json:"volume"`
	VolumeID  string `json:"volume_id,omitempty"`
	MountPath string `json:"mount_path"`
	Subpath   string `json:"subpath,omitempty"`
	ReadOnly  bool   `json:"read_only,omitempty"`
}

func volumePath(id string) string { return "/v1/volumes/" + url.PathEscape(id) }

// CreateVolume creates a volume.
func (c *Client) CreateVolume(ctx context.Context, req CreateVolumeRequest) (Volume, error) {
	var v Volume
	return v, c.do(ctx, http.MethodPost, "/v1/volumes", nil, req, &v)
}

// GetVolume returns a volume by ID or name.
func (c *Client) GetVolume(ctx context.Context, id string) (Volume, error) {
	var v Volume
	return v, c.do(ctx, http.MethodGet, volumePath(id), nil, nil, &v)
}

// ListVolumes lists the tenant's volumes, oldest first.
func (c *Client) ListVolumes(ctx context.Context) ([]Volume, error) {
	var l VolumeList
	return l.Items, c.do(ctx, http.MethodGet, "/v1/volumes", nil, nil, &l)
}

// DeleteVolume deletes a volume and its data. A volume that a sandbox
// mounts is refused (IsConflict) unless force is set; with force, running
// sandboxes keep their mounts until they stop, and cannot start again.
func (c *Client) DeleteVolume(ctx context.Context, id string, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	return c.do(ctx, http.MethodDelete, volumePath(id), q, nil, nil)
}

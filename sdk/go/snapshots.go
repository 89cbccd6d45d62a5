package sbx

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Snapshot is a state snapshot of a sandbox: a point-in-time copy of its
// writable layer (its files), which RestoreSnapshot rolls the sandbox back
// to after verifying Checksum.
type Snapshot struct {
	ID        string    `json:"id"`
	SandboxID string    `json:"sandbox_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	Size      int64     `json:"size"`     // bytes the copy occupies on the server's disk
	Checksum  string    `json:"checksum"` // "sha256:<hex>" of the copy's data
	// PauseMS (only in the answer to a create) is how long a started
	// sandbox was frozen for the copy; TookMS is the whole copy.
	PauseMS float64 `json:"pause_ms,omitempty"`
	TookMS  float64 `json:"took_ms,omitempty"`
}

// SnapshotList is a page of snapshots, oldest first.
type SnapshotList struct {
	Items []Snapshot `json:"items"`
}

// CreateSnapshotRequest is the body of POST /v1/sandboxes/{id}/snapshots.
type CreateSnapshotRequest struct {
	// Name is unique among the sandbox's snapshots; default: the ID.
	Name string `json:"name,omitempty"`
}

// CloneRequest is the body of POST /v1/sandboxes/{id}/clone: the clone's
// overrides of its source's configuration.
type CloneRequest struct {
	Name string `json:"name,omitempty"`
	// Env is merged over the source's environment.
	Env map[string]string `json:"env,omitempty"`
	// Labels, when given, replace the source's.
	Labels map[string]string `json:"labels,omitempty"`
	// Resources: zero fields keep the source's; the disk may only grow.
	Resources *Resources `json:"resources,omitempty"`
	Runtime   string     `json:"runtime,omitempty"`
}

// Reset modes.
const (
	ResetSoft = "soft" // kill every process, start the entrypoint again, keep the files
	ResetHard = "hard" // also discard the writable layer: the image's pristine files
)

// ResetRequest is the body of POST /v1/sandboxes/{id}/reset.
type ResetRequest struct {
	Mode string `json:"mode,omitempty"` // ResetSoft (default) or ResetHard
}

// RestartRequest is the optional body of POST /v1/sandboxes/{id}/restart:
// what changes at the new start.
type RestartRequest struct {
	// Env is merged over the sandbox's environment.
	Env map[string]string `json:"env,omitempty"`
	// Resources: zero fields stay as they are; the disk may only grow.
	Resources *Resources `json:"resources,omitempty"`
}

func snapshotPath(id, sid string, rest ...string) string {
	p := sandboxPath(id, "snapshots")
	if sid != "" {
		p += "/" + url.PathEscape(sid)
	}
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreateSnapshot takes a state snapshot of a started or stopped sandbox;
// name is optional.
func (c *Client) CreateSnapshot(ctx context.Context, id, name string) (Snapshot, error) {
	var s Snapshot
	return s, c.do(ctx, http.MethodPost, snapshotPath(id, ""), nil, CreateSnapshotRequest{Name: name}, &s)
}

// ListSnapshots lists a sandbox's snapshots, oldest first.
func (c *Client) ListSnapshots(ctx context.Context, id string) ([]Snapshot, error) {
	var l SnapshotList
	return l.Items, c.do(ctx, http.MethodGet, snapshotPath(id, ""), nil, nil, &l)
}

// GetSnapshot returns one snapshot, by ID or name.
func (c *Client) GetSnapshot(ctx context.Context, id, snapshot string) (Snapshot, error) {
	var s Snapshot
	return s, c.do(ctx, http.MethodGet, snapshotPath(id, snapshot), nil, nil, &s)
}

// RestoreSnapshot rolls a sandbox's files back to a snapshot (a started
// sandbox is stopped and started again). A snapshot whose data no longer
// matches its checksum is refused (a conflict) and nothing changes.
func (c *Client) RestoreSnapshot(ctx context.Context, id, snapshot string) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, snapshotPath(id, snapshot, "restore"), nil, nil, &s)
}

// DeleteSnapshot deletes a snapshot.
func (c *Client) DeleteSnapshot(ctx context.Context, id, snapshot string) error {
	return c.do(ctx, http.MethodDelete, snapshotPath(id, snapshot), nil, nil, nil)
}

// CloneSandbox creates a started sandbox from a sandbox's current files,
// with the overrides in req. The source keeps running.
func (c *Client) CloneSandbox(ctx context.Context, id string, req CloneRequest) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "clone"), nil, req, &s)
}

// ResetSandbox resets a sandbox (mode ResetSoft or ResetHard) and leaves
// it started.
func (c *Client) ResetSandbox(ctx context.Context, id, mode string) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "reset"), nil, ResetRequest{Mode: mode}, &s)
}

// RestartSandboxWith stops a sandbox and starts it again with req's
// changes applied.
func (c *Client) RestartSandboxWith(ctx context.Context, id string, req RestartRequest) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "restart"), nil, req, &s)
}

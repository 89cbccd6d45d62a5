// Package store persists sbx's records: tenants, API keys, images,
// sandboxes and their events, templates and the build cache.
//
// Store is an interface so that SQLite (embedded, the default) and later
// PostgreSQL (several nodes sharing one database) can back it; both must
// pass the conformance suite in storetest. Errors carry errdefs kinds:
// a missing record is errdefs.ErrNotFound, a unique-key clash is
// errdefs.ErrAlreadyExists.
//
// Every method is safe for concurrent use. Tenant scoping: methods that take
// a tenant ID return ErrNotFound for a record of another tenant, exactly as
// for a missing one, so callers cannot tell the two apart. The empty tenant
// ID means "any tenant" and is used only by the daemon's own internals
// (reconciler, admin).
package store

import (
	"context"
	"encoding/json"
	"time"
)

// Tenant owns objects. The admin tenant is created on first start.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	CreatedAt time.Time `json:"created_at"`
	// Limits are the per-tenant maximums; zero fields mean the operator's defaults.
	Limits Limits `json:"limits"`
}

// Limits caps what one tenant may ask for.
type Limits struct {
	MaxSandboxes int     `json:"max_sandboxes,omitempty"`
	MaxCPU       float64 `json:"max_cpu,omitempty"`
	MaxMemoryMB  int64   `json:"max_memory_mb,omitempty"`
	MaxDiskMB    int64   `json:"max_disk_mb,omitempty"`
	MaxPids      int64   `json:"max_pids,omitempty"`
}

// APIKey is stored by the SHA-256 of its secret, never the secret itself.
type APIKey struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	Hash      string    `json:"-"` // hex SHA-256 of the full key
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
}

// Image is a record of an image in the local content store, per tenant.
// The blobs themselves are shared by content address across tenants.
type Image struct {
	TenantID  string    `json:"tenant_id"`
	Ref       string    `json:"ref"`    // normalized reference, e.g. "docker.io/library/busybox:latest" or "sbx/default:latest"
	Digest    string    `json:"digest"` // manifest digest "sha256:..."
	Size      int64     `json:"size"`   // sum of compressed layer sizes
	CreatedAt time.Time `json:"created_at"`
}

// State is a sandbox's lifecycle state. The names are the seed's.
type State string

// Sandbox states. Build states arrive with templates.
const (
	StateCreating   State = "creating"
	StateStarting   State = "starting"
	StateStarted    State = "started"
	StateStopping   State = "stopping"
	StateStopped    State = "stopped"
	StateArchiving  State = "archiving" // stopped, its writable layer going to the archive store
	StateArchived   State = "archived"  // no local disk: the layer is in the archive store
	StateRestoring  State = "restoring" // archived, its layer coming back; then starting
	StateDestroying State = "destroying"
	StateDestroyed  State = "destroyed"
	StateError      State = "error"
	StateUnknown    State = "unknown"
)

// Resources are a sandbox's limits.
type Resources struct {
	CPU      float64 `json:"cpu"`       // cores, fractional
	MemoryMB int64   `json:"memory_mb"` // hard limit
	DiskMB   int64   `json:"disk_mb"`   // writable layer size
	Pids     int64   `json:"pids"`      // max tasks
}

// With returns r with the non-zero fields of o put over it: what a
// request that leaves a limit at zero to keep it asks for.
func (r Resources) With(o Resources) Resources {
	if o.CPU > 0 {
		r.CPU = o.CPU
	}
	if o.MemoryMB > 0 {
		r.MemoryMB = o.MemoryMB
	}
	if o.DiskMB > 0 {
		r.DiskMB = o.DiskMB
	}
	if o.Pids > 0 {
		r.Pids = o.Pids
	}
	return r
}

// Sandbox is the persisted record of one sandbox.
type Sandbox struct {
	ID          string            `json:"id"`
	TenantID    string            `json:"tenant_id"`
	Name        string            `json:"name"`
	Image       string            `json:"image"`        // the reference the user asked for
	ImageDigest string            `json:"image_digest"` // manifest digest it resolved to
	Runtime     string            `json:"runtime"`      // runtime class: crun, runc, gvisor
	State       State             `json:"state"`
	Desired     State             `json:"desired"` // what the user asked for last: started, stopped, destroyed
	Env         map[string]string `json:"env,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Resources   Resources         `json:"resources"`
	User        string            `json:"user,omitempty"`
	Entrypoint  []string          `json:"entrypoint,omitempty"` // overrides the image's
	Cmd         []string          `json:"cmd,omitempty"`        // overrides the image's
	Workdir     string            `json:"workdir,omitempty"`
	UIDSlot     int               `json:"uid_slot"` // index of the host uid range; -1 without a user namespace
	ErrorReason string            `json:"error_reason,omitempty"`
	ExitCode    *int              `json:"exit_code,omitempty"` // of the last run, when it ended on its own
	OOMKills    int               `json:"oom_kills"`
	Network     Network           `json:"network"`
	Lifecycle   Lifecycle         `json:"lifecycle"`
	Volumes     []VolumeMount     `json:"volumes,omitempty"`
	Public      bool              `json:"public,omitempty"` // preview URLs need no token
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
	StartedAt   *time.Time        `json:"started_at,omitempty"`
}

// Network is a sandbox's networking: its mode, its address and its
// egress policy (CIDRs as strings, normalized).
type Network struct {
	Mode     string   `json:"mode"`         // "none" or "bridge"; "" (records from before networking) is none
	IP       string   `json:"ip,omitempty"` // on the sbx bridge; unique among live sandboxes
	BlockAll bool     `json:"block_all,omitempty"`
	Allow    []string `json:"allow,omitempty"`
	Deny     []string `json:"deny,omitempty"`
}

// Lifecycle is a sandbox's automatic stop, archive and delete, its
// keep-alive lease and where its archived layer is. Durations are in
// seconds.
type Lifecycle struct {
	AutoStop    int64 `json:"auto_stop_seconds"`    // stop after this long without activity; 0 never
	AutoArchive int64 `json:"auto_archive_seconds"` // archive after this long stopped; 0 never
	AutoDelete  int64 `json:"auto_delete_seconds"`  // delete after this long stopped; 0 at once, -1 never
	// LastActivity is the latest activity the daemon has persisted (it
	// flushes its in-memory record periodically and on shutdown).
	LastActivity   time.Time    `json:"last_activity_at"`
	KeepaliveUntil *time.Time   `json:"keepalive_until,omitempty"` // no auto-stop before
	StoppedAt      *time.Time   `json:"stopped_at,omitempty"`      // when it last came to rest (stopped, error, archived)
	Archive        *ArchiveInfo `json:"archive,omitempty"`         // set while archived (and restoring)
}

// ArchiveInfo locates an archived writable layer and says how to check it.
type ArchiveInfo struct {
	Key       string    `json:"key"`
	Size      int64     `json:"size"`      // bytes stored (compressed)
	SHA256    string    `json:"sha256"`    // of the stored bytes
	DiskSize  int64     `json:"disk_size"` // the layer image's apparent size
	Data      int64     `json:"data"`      // bytes of data in the image
	CreatedAt time.Time `json:"created_at"`
}

// VolumeState is a volume's lifecycle state.
type VolumeState string

// Volume states. A volume's row is removed once it is deleted.
const (
	VolumeCreating VolumeState = "creating"
	VolumeReady    VolumeState = "ready"
	VolumeDeleting VolumeState = "deleting"
)

// Volume is a named, tenant-owned persistent volume. Its name is unique
// per tenant.
type Volume struct {
	ID        string      `json:"id"`
	TenantID  string      `json:"tenant_id"`
	Name      string      `json:"name"`
	SizeMB    int64       `json:"size_mb"`
	State     VolumeState `json:"state"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// VolumeMount is one volume mounted into a sandbox.
type VolumeMount struct {
	VolumeID  string `json:"volume_id"`
	Volume    string `json:"volume"`     // the volume's name, for display
	MountPath string `json:"mount_path"` // absolute, inside the sandbox
	Subpath   string `json:"subpath,omitempty"`
	ReadOnly  bool   `json:"read_only,omitempty"`
}

// Event records one transition or notable happening of a sandbox.
type Event struct {
	Seq       int64     `json:"seq"` // assigned by the store, increasing
	SandboxID string    `json:"sandbox_id"`
	TenantID  string    `json:"tenant_id"`
	Type      string    `json:"type"` // "state", "oom", "resize", ...
	From      State     `json:"from,omitempty"`
	To        State     `json:"to,omitempty"`
	Message   string    `json:"message,omitempty"`
	Time      time.Time `json:"time"`
}

// Snapshot is a state snapshot of a sandbox: a point-in-time copy of its
// writable layer, kept in the sandbox's directory.
type Snapshot struct {
	ID        string    `json:"id"`
	SandboxID string    `json:"sandbox_id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`     // unique per sandbox
	Size      int64     `json:"size"`     // bytes the copy occupies on disk
	Checksum  string    `json:"checksum"` // "sha256:<hex>" of the image's data
	CreatedAt time.Time `json:"created_at"`
}

// TemplateState is a template's state (Daytona's snapshot states).
type TemplateState string

// Template states.
const (
	TemplatePending  TemplateState = "pending"  // recorded, work not begun
	TemplatePulling  TemplateState = "pulling"  // pulling its image
	TemplateBuilding TemplateState = "building" // building from a spec or committing a sandbox
	TemplateActive   TemplateState = "active"   // sandboxes can be created from it
	TemplateError    TemplateState = "error"    // ErrorReason says why
)

// Template sources.
const (
	TemplateFromImage   = "image"
	TemplateFromSpec    = "spec"
	TemplateFromSandbox = "sandbox"
)

// Template is a tenant-owned, named image that sandboxes are created from.
type Template struct {
	ID          string          `json:"id"`
	TenantID    string          `json:"tenant_id"`
	Name        string          `json:"name"`   // unique per tenant
	Source      string          `json:"source"` // TemplateFrom*
	Spec        json.RawMessage `json:"spec"`   // what it is made from, source-specific JSON
	State       TemplateState   `json:"state"`
	ErrorReason string          `json:"error_reason,omitempty"`
	ImageRef    string          `json:"image_ref"`    // its reference in the image store
	ImageDigest string          `json:"image_digest"` // "" until active
	BuildLog    string          `json:"build_log"`    // path of the kept log
	CreatedAt   time.Time       `json:"created_at"`
	UpdatedAt   time.Time       `json:"updated_at"`
}

// BuildCacheEntry maps a build step on a parent image to its result.
type BuildCacheEntry struct {
	TenantID    string    `json:"tenant_id"`
	Key         string    `json:"key"`          // hex sha256 of (parent digest, canonical step)
	ImageDigest string    `json:"image_digest"` // the image after the step
	Layer       string    `json:"layer"`        // diff ID of the step's layer
	CreatedAt   time.Time `json:"created_at"`
}

// SandboxFilter selects sandboxes for List.
type SandboxFilter struct {
	TenantID string            // "" = all tenants
	Labels   map[string]string // every pair must match
	States   []State           // any of; empty = all
	Limit    int               // 0 = default 100, capped at 1000
	Cursor   string            // opaque, from a previous page
}

// Store is the persistence interface.
type Store interface {
	CreateTenant(ctx context.Context, t Tenant) error
	GetTenant(ctx context.Context, id string) (Tenant, error)
	ListTenants(ctx context.Context) ([]Tenant, error)
	UpdateTenant(ctx context.Context, t Tenant) error

	CreateAPIKey(ctx context.Context, k APIKey) error
	// APIKeyByHash finds a key by the hex SHA-256 of its secret.
	APIKeyByHash(ctx context.Context, hash string) (APIKey, error)
	ListAPIKeys(ctx context.Context, tenantID string) ([]APIKey, error)
	DeleteAPIKey(ctx context.Context, tenantID, id string) error

	// PutImage inserts or replaces the record for (TenantID, Ref).
	PutImage(ctx context.Context, img Image) error
	GetImage(ctx context.Context, tenantID, ref string) (Image, error)
	ListImages(ctx context.Context, tenantID string) ([]Image, error)
	DeleteImage(ctx context.Context, tenantID, ref string) error
	// ImageDigestInUse reports whether a live (not destroyed) sandbox of
	// the tenant ("" = of any tenant) uses the manifest digest.
	ImageDigestInUse(ctx context.Context, tenantID, digest string) (bool, error)
	// ImageDigestReferenced reports whether any tenant's image record
	// points at the digest (used to garbage-collect blobs and layers).
	ImageDigestReferenced(ctx context.Context, digest string) (bool, error)

	// CreateSandbox inserts a new record; a live (not destroyed) sandbox of
	// the same tenant with the same name gives ErrAlreadyExists, and so does
	// a UIDSlot (>= 0) or a Network.IP already held by a live sandbox.
	CreateSandbox(ctx context.Context, s Sandbox) error
	GetSandbox(ctx context.Context, tenantID, id string) (Sandbox, error)
	GetSandboxByName(ctx context.Context, tenantID, name string) (Sandbox, error)
	ListSandboxes(ctx context.Context, f SandboxFilter) (items []Sandbox, next string, err error)
	// UpdateSandbox replaces the mutable fields of the record with s's and
	// sets UpdatedAt. ErrNotFound if there is no such record.
	UpdateSandbox(ctx context.Context, s Sandbox) error
	// DeleteSandbox removes the record and its events.
	DeleteSandbox(ctx context.Context, id string) error
	// UsedUIDSlots lists the slots held by live sandboxes, ascending.
	UsedUIDSlots(ctx context.Context) ([]int, error)
	// UsedIPs lists the network addresses held by live sandboxes.
	UsedIPs(ctx context.Context) ([]string, error)

	// CreateVolume inserts a volume; a volume of the same tenant with the
	// same name gives ErrAlreadyExists.
	CreateVolume(ctx context.Context, v Volume) error
	GetVolume(ctx context.Context, tenantID, id string) (Volume, error)
	GetVolumeByName(ctx context.Context, tenantID, name string) (Volume, error)
	// ListVolumes lists the tenant's ("" = every tenant's) volumes, oldest
	// first.
	ListVolumes(ctx context.Context, tenantID string) ([]Volume, error)
	// UpdateVolume sets the volume's state and UpdatedAt.
	UpdateVolume(ctx context.Context, v Volume) error
	DeleteVolume(ctx context.Context, id string) error
	// VolumeUsers lists the IDs of the live sandboxes that mount the
	// volume, oldest first.
	VolumeUsers(ctx context.Context, volumeID string) ([]string, error)

	// AddEvent appends an event, assigning Seq.
	AddEvent(ctx context.Context, e Event) (Event, error)
	// ListEvents returns a sandbox's events with Seq > afterSeq, oldest first.
	ListEvents(ctx context.Context, tenantID, sandboxID string, afterSeq int64, limit int) ([]Event, error)

	// CreateTemplate inserts a template; a template of the same tenant
	// with the same name gives ErrAlreadyExists.
	CreateTemplate(ctx context.Context, t Template) error
	// GetTemplate finds the tenant's template by name (or ID).
	GetTemplate(ctx context.Context, tenantID, name string) (Template, error)
	// ListTemplates lists the tenant's ("" = all) templates by name.
	ListTemplates(ctx context.Context, tenantID string) ([]Template, error)
	// UpdateTemplate replaces the mutable fields (state, error reason,
	// image digest, spec, build log) and sets UpdatedAt.
	UpdateTemplate(ctx context.Context, t Template) error
	DeleteTemplate(ctx context.Context, tenantID, name string) error
	// ImageRefInUse reports whether a live sandbox of the tenant was
	// created from the image reference (as recorded in Sandbox.Image).
	ImageRefInUse(ctx context.Context, tenantID, ref string) (bool, error)
	// PutBuildCache inserts or replaces a build-cache entry.
	PutBuildCache(ctx context.Context, e BuildCacheEntry) error
	// GetBuildCache returns the tenant's entry for key (ErrNotFound).
	GetBuildCache(ctx context.Context, tenantID, key string) (BuildCacheEntry, error)
	// RevokePreviewToken records a signed preview token as revoked
	// until its expiry (revoking one twice is no error) and prunes the
	// revocations whose tokens have expired since.
	RevokePreviewToken(ctx context.Context, r PreviewRevocation) error
	// PreviewTokenRevoked reports whether the signed preview token with
	// this ID was revoked.
	PreviewTokenRevoked(ctx context.Context, tokenID string) (bool, error)

	// CreateSnapshot inserts a snapshot record; a name already used by a
	// snapshot of the same sandbox gives ErrAlreadyExists.
	CreateSnapshot(ctx context.Context, sn Snapshot) error
	// GetSnapshot finds a snapshot of a sandbox by ID or by name.
	GetSnapshot(ctx context.Context, tenantID, sandboxID, idOrName string) (Snapshot, error)
	// ListSnapshots lists a sandbox's snapshots, oldest first.
	ListSnapshots(ctx context.Context, tenantID, sandboxID string) ([]Snapshot, error)
	// DeleteSnapshot removes one snapshot record.
	DeleteSnapshot(ctx context.Context, tenantID, sandboxID, id string) error
	// DeleteSandboxSnapshots removes every snapshot record of a sandbox
	// (DeleteSandbox does so too).
	DeleteSandboxSnapshots(ctx context.Context, sandboxID string) error

	Close() error
}

// PreviewRevocation is a revoked signed preview token, kept until it
// would have expired anyway.
type PreviewRevocation struct {
	TokenID   string    `json:"token_id"`
	SandboxID string    `json:"sandbox_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

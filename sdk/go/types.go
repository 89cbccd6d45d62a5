// Package sbx is the Go client of the sbx native HTTP API (/v1).
//
// The types in this package are the wire format: the daemon encodes its
// responses with them, so client and server cannot disagree. The package
// imports nothing from sbx's internal packages (a test enforces it), so it
// can be vendored alone.
//
// Errors returned by the API are *Error values built from the server's
// application/problem+json answers; test them with IsNotFound, IsConflict
// and friends, or compare Code with the Code* constants.
package sbx

import "time"

// Health is the answer of GET /healthz.
type Health struct {
	Status  string `json:"status"`
	Version string `json:"version"`
}

// Resources are a sandbox's limits. Zero fields mean the operator's defaults
// on create and "unchanged" on resize.
type Resources struct {
	CPU      float64 `json:"cpu"`       // cores, fractional
	MemoryMB int64   `json:"memory_mb"` // hard memory limit
	DiskMB   int64   `json:"disk_mb"`   // writable layer size
	Pids     int64   `json:"pids"`      // maximum number of tasks
}

// Sandbox is one sandbox as the API shows it.
type Sandbox struct {
	ID           string            `json:"id"`
	Name         string            `json:"name"`
	TenantID     string            `json:"tenant_id"`
	Image        string            `json:"image"`
	ImageDigest  string            `json:"image_digest"`
	Runtime      string            `json:"runtime"`
	State        string            `json:"state"`
	DesiredState string            `json:"desired_state"`
	Env          map[string]string `json:"env"`
	Labels       map[string]string `json:"labels"`
	Resources    Resources         `json:"resources"`
	User         string            `json:"user"`
	Workdir      string            `json:"workdir"`
	Entrypoint   []string          `json:"entrypoint"`
	Cmd          []string          `json:"cmd"`
	ErrorReason  string            `json:"error_reason"`
	// ExitCode is the exit code of the last run when it ended on its own.
	ExitCode  *int          `json:"exit_code,omitempty"`
	OOMKills  int           `json:"oom_kills"`
	Network   Network       `json:"network"`
	Public    bool          `json:"public"` // preview URLs need no token
	Lifecycle Lifecycle     `json:"lifecycle"`
	Volumes   []VolumeMount `json:"volumes"`
	CreatedAt time.Time     `json:"created_at"`
	UpdatedAt time.Time     `json:"updated_at"`
	StartedAt *time.Time    `json:"started_at,omitempty"`
}

// CreateSandboxRequest is the body of POST /v1/sandboxes. Every field is
// optional.
type CreateSandboxRequest struct {
	Name  string `json:"name,omitempty"`
	Image string `json:"image,omitempty"`
	// Template creates the sandbox from one of the tenant's active
	// templates (by name) instead of an image; exclusive with Image.
	Template   string            `json:"template,omitempty"`
	Runtime    string            `json:"runtime,omitempty"`
	Env        map[string]string `json:"env,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Resources  *Resources        `json:"resources,omitempty"`
	User       string            `json:"user,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	// Network: nil takes the operator's default mode and policy.
	Network *NetworkRequest `json:"network,omitempty"`
	// Lifecycle: unset fields take the operator's defaults.
	Lifecycle *LifecyclePolicy `json:"lifecycle,omitempty"`
	// Volumes are mounted into the sandbox at every start.
	Volumes []VolumeMount `json:"volumes,omitempty"`
	// Public serves the sandbox's preview URLs without a token.
	Public bool `json:"public,omitempty"`
}

// LifecyclePolicy is a sandbox's automatic stop, archive and delete, in
// seconds; nil fields are left as they are (at create: the operator's
// defaults).
type LifecyclePolicy struct {
	// AutoStopSeconds stops a started sandbox after this long without
	// activity (0: never). Exec streams, running session commands and
	// keep-alive leases hold it off.
	AutoStopSeconds *int64 `json:"auto_stop_seconds,omitempty"`
	// AutoArchiveSeconds archives a stopped sandbox after this long (0: never).
	AutoArchiveSeconds *int64 `json:"auto_archive_seconds,omitempty"`
	// AutoDeleteSeconds deletes a stopped sandbox after this long (0: as
	// soon as it stops; -1: never).
	AutoDeleteSeconds *int64 `json:"auto_delete_seconds,omitempty"`
}

// Seconds returns a pointer to d in whole seconds, for LifecyclePolicy.
func Seconds(d time.Duration) *int64 { v := int64(d / time.Second); return &v }

// Never returns the "never" value of a LifecyclePolicy field: 0 for stop
// and archive, -1 for delete (pass true).
func Never(del bool) *int64 {
	v := int64(0)
	if del {
		v = -1
	}
	return &v
}

// Lifecycle is a sandbox's policy and timers.
type Lifecycle struct {
	AutoStopSeconds    int64 `json:"auto_stop_seconds"`
	AutoArchiveSeconds int64 `json:"auto_archive_seconds"`
	AutoDeleteSeconds  int64 `json:"auto_delete_seconds"`
	// LastActivityAt is the latest activity: a toolbox call, an exec,
	// preview traffic, a keep-alive, a start.
	LastActivityAt time.Time  `json:"last_activity_at"`
	KeepaliveUntil *time.Time `json:"keepalive_until,omitempty"`
	// StoppedAt is when the sandbox came to rest; auto-archive and
	// auto-delete count from it.
	StoppedAt *time.Time   `json:"stopped_at,omitempty"`
	Archive   *ArchiveInfo `json:"archive,omitempty"`
}

// ArchiveInfo describes an archived sandbox's writable layer.
type ArchiveInfo struct {
	StoredBytes int64     `json:"stored_bytes"` // in the archive store, compressed
	DataBytes   int64     `json:"data_bytes"`   // data in the layer
	DiskBytes   int64     `json:"disk_bytes"`   // the layer's size limit
	SHA256      string    `json:"sha256"`       // of the stored object; checked at restore
	CreatedAt   time.Time `json:"created_at"`
}

// Metrics is a started sandbox's resource use at one moment
// (GET /v1/sandboxes/{id}/metrics).
type Metrics struct {
	Time             time.Time `json:"time"`
	CPUSeconds       float64   `json:"cpu_seconds"` // CPU time used since the start
	MemoryBytes      int64     `json:"memory_bytes"`
	MemoryLimitBytes int64     `json:"memory_limit_bytes"`
	Pids             int64     `json:"pids"`
	PidsLimit        int64     `json:"pids_limit"`
	OOMKills         int64     `json:"oom_kills"`
	DiskUsedBytes    int64     `json:"disk_used_bytes"` // on the writable layer
	DiskLimitBytes   int64     `json:"disk_limit_bytes"`
	// Network is absent for a sandbox without network; counted since
	// its last start, from the sandbox's side.
	Network *NetworkCounters `json:"network,omitempty"`
}

// NetworkCounters are a sandbox's traffic: Tx what it sent (including
// what its egress policy dropped), Rx what reached it.
type NetworkCounters struct {
	RxBytes   uint64 `json:"rx_bytes"`
	RxPackets uint64 `json:"rx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
}

// AuditEntry is one connection a sandbox opened or tried to open
// (GET /v1/sandboxes/{id}/network/audit).
type AuditEntry struct {
	Seq      int64     `json:"seq"`
	Time     time.Time `json:"time"`
	Verdict  string    `json:"verdict"`  // "allowed" or "blocked"
	Protocol string    `json:"protocol"` // "tcp", "udp", "icmp" or the IP protocol number
	Dst      string    `json:"dst"`
	Port     int       `json:"port,omitempty"`
}

// AuditList is one read of a sandbox's egress audit log.
type AuditList struct {
	Items []AuditEntry `json:"items"`
}

// KeepaliveRequest is the body of POST /v1/sandboxes/{id}/keepalive.
type KeepaliveRequest struct {
	// Seconds of lease: no auto-stop before now+Seconds. 0 ends a lease
	// and only records activity.
	Seconds int64 `json:"seconds"`
}

// Network modes.
const (
	NetworkNone   = "none"   // loopback only: no egress, fastest create
	NetworkBridge = "bridge" // the sbx bridge with NAT and an egress policy
)

// NetworkPolicy is a sandbox's egress policy. BlockAll lets nothing out.
// Otherwise Deny is checked first, then, when Allow is not empty, only its
// CIDRs may pass (an address alone is a /32); DNS to the host's
// resolvers always passes. The host itself, other sandboxes, 127.0.0.0/8
// and 169.254.0.0/16 are never reachable.
type NetworkPolicy struct {
	BlockAll bool     `json:"block_all"`
	Allow    []string `json:"allow"`
	Deny     []string `json:"deny"`
}

// NetworkRequest asks for a sandbox's networking at create. An empty Mode
// is the operator's default; with no policy field set, the operator's
// default policy applies (send Allow ["0.0.0.0/0"] for an open one).
type NetworkRequest struct {
	Mode     string   `json:"mode,omitempty"`
	BlockAll bool     `json:"block_all,omitempty"`
	Allow    []string `json:"allow,omitempty"`
	Deny     []string `json:"deny,omitempty"`
}

// Network is a sandbox's networking as the API shows it.
type Network struct {
	Mode string `json:"mode"`
	// IP is the sandbox's address on the sbx bridge (mode bridge only).
	IP string `json:"ip,omitempty"`
	NetworkPolicy
}

// SandboxList is one page of GET /v1/sandboxes.
type SandboxList struct {
	Items []Sandbox `json:"items"`
	// NextCursor is empty on the last page.
	NextCursor string `json:"next_cursor"`
}

// StopRequest is the optional body of POST /v1/sandboxes/{id}/stop.
type StopRequest struct {
	// GraceSeconds is how long the sandbox has between SIGTERM and SIGKILL;
	// 0 means the operator's default.
	GraceSeconds float64 `json:"grace_seconds,omitempty"`
}

// ResizeRequest is the body of POST /v1/sandboxes/{id}/resize; zero fields
// stay as they are.
type ResizeRequest struct {
	CPU      float64 `json:"cpu,omitempty"`
	MemoryMB int64   `json:"memory_mb,omitempty"`
	DiskMB   int64   `json:"disk_mb,omitempty"`
	Pids     int64   `json:"pids,omitempty"`
}

// LabelsRequest is the body of PUT /v1/sandboxes/{id}/labels. It replaces
// all labels.
type LabelsRequest struct {
	Labels map[string]string `json:"labels"`
}

// Event is one recorded transition or happening of a sandbox.
type Event struct {
	Seq       int64     `json:"seq"`
	SandboxID string    `json:"sandbox_id"`
	Type      string    `json:"type"` // "state", "oom", "resize", ...
	From      string    `json:"from,omitempty"`
	To        string    `json:"to,omitempty"`
	Message   string    `json:"message,omitempty"`
	Time      time.Time `json:"time"`
}

// EventList is the answer of GET /v1/sandboxes/{id}/events.
type EventList struct {
	Items []Event `json:"items"`
}

// ExecRequest is the body of POST /v1/sandboxes/{id}/exec. Exactly one of
// Argv and Shell is set.
type ExecRequest struct {
	Argv  []string          `json:"argv,omitempty"`
	Shell string            `json:"shell,omitempty"` // run as /bin/sh -c Shell
	Cwd   string            `json:"cwd,omitempty"`
	Env   map[string]string `json:"env,omitempty"`
	User  string            `json:"user,omitempty"`
	// TimeoutSeconds kills the command's process group when it expires;
	// 0 means no timeout.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// Stdin is the whole standard input of the command (base64 on the
	// wire); nil means /dev/null.
	Stdin []byte `json:"stdin,omitempty"`
}

// ExitStatus is how a command ended.
type ExitStatus struct {
	Code       int    `json:"code"`   // exit code, or 128+signal
	Signal     string `json:"signal"` // e.g. "SIGKILL" when killed by a signal
	TimedOut   bool   `json:"timed_out"`
	OOMKilled  bool   `json:"oom_killed"`
	DurationMS int64  `json:"duration_ms"`
}

// ExecResult is the buffered answer of an exec. Each stream is capped by the
// server (10 MiB); the rest is dropped and the Truncated flag set.
type ExecResult struct {
	ExitCode        int    `json:"exit_code"`
	Signal          string `json:"signal"`
	TimedOut        bool   `json:"timed_out"`
	OOMKilled       bool   `json:"oom_killed"`
	DurationMS      int64  `json:"duration_ms"`
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	StdoutTruncated bool   `json:"stdout_truncated"`
	StderrTruncated bool   `json:"stderr_truncated"`
}

// Frame types of the NDJSON streams.
const (
	FrameStdout   = "stdout"
	FrameStderr   = "stderr"
	FrameExit     = "exit"
	FrameError    = "error"
	FrameProgress = "progress"
	FrameDone     = "done"
)

// ExecFrame is one line of a streamed exec (Accept: application/x-ndjson).
// The last frame is of type "exit" or "error".
type ExecFrame struct {
	Type    string      `json:"type"`
	Data    []byte      `json:"data,omitempty"` // stdout/stderr bytes, base64 on the wire
	Exit    *ExitStatus `json:"exit,omitempty"`
	Message string      `json:"message,omitempty"` // for "error"
	Code    string      `json:"code,omitempty"`    // for "error": a problem code
}

// ImageConfig is the part of an image's configuration a sandbox uses.
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"working_dir"`
	User       string   `json:"user"`
}

// Image is a locally available image.
type Image struct {
	Ref       string    `json:"ref"`
	Digest    string    `json:"digest"`
	Size      int64     `json:"size"` // compressed bytes of all layers
	CreatedAt time.Time `json:"created_at"`
	// Shared is true for an image of the operator (admin tenant) seen by
	// another tenant: usable, not removable.
	Shared bool        `json:"shared"`
	Config ImageConfig `json:"config"`
}

// ImageList is the answer of GET /v1/images and POST /v1/images/import.
type ImageList struct {
	Items []Image `json:"items"`
}

// PullRequest is the body of POST /v1/images/pull.
type PullRequest struct {
	Ref      string `json:"ref"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	Insecure bool   `json:"insecure,omitempty"` // allow plain HTTP
}

// PullProgress reports the bytes fetched so far.
type PullProgress struct {
	Complete int64 `json:"complete"`
	Total    int64 `json:"total"`
}

// PullFrame is one line of a streamed pull: "progress" frames, then one
// "done" (with Image) or "error" frame.
type PullFrame struct {
	Type     string `json:"type"`
	Complete int64  `json:"complete,omitempty"`
	Total    int64  `json:"total,omitempty"`
	Image    *Image `json:"image,omitempty"`
	Message  string `json:"message,omitempty"`
	Code     string `json:"code,omitempty"`
}

// Limits cap what one tenant may use; zero fields mean the operator's
// defaults.
type Limits struct {
	MaxSandboxes int     `json:"max_sandboxes,omitempty"`
	MaxCPU       float64 `json:"max_cpu,omitempty"`
	MaxMemoryMB  int64   `json:"max_memory_mb,omitempty"`
	MaxDiskMB    int64   `json:"max_disk_mb,omitempty"`
	MaxPids      int64   `json:"max_pids,omitempty"`
}

// Tenant owns sandboxes, images and API keys.
type Tenant struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Admin     bool      `json:"admin"`
	Limits    Limits    `json:"limits"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateTenantRequest is the body of POST /v1/tenants.
type CreateTenantRequest struct {
	Name   string `json:"name"`
	Limits Limits `json:"limits"`
}

// TenantList is the answer of GET /v1/tenants.
type TenantList struct {
	Items []Tenant `json:"items"`
}

// APIKey describes an API key. Key, the secret, is set only in the answer
// to its creation: the server keeps only a hash.
type APIKey struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	Prefix    string    `json:"prefix"`
	CreatedAt time.Time `json:"created_at"`
	Key       string    `json:"key,omitempty"`
}

// CreateKeyRequest is the body of POST /v1/tenants/{id}/keys.
type CreateKeyRequest struct {
	Name string `json:"name,omitempty"`
}

// APIKeyList is the answer of GET /v1/tenants/{id}/keys.
type APIKeyList struct {
	Items []APIKey `json:"items"`
}

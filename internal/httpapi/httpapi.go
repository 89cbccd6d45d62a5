// Package httpapi is sbx's native HTTP transport: the /v1 REST API described
// by api/openapi.yaml. It decodes requests, calls the core services with the
// caller's tenant, and encodes their answers with the public SDK's wire
// types (sdk/go), so that server and client cannot disagree.
//
// Every /v1 request is authenticated by its bearer key; the key's tenant
// scopes every call. Errors are application/problem+json, their status and
// code chosen in exactly one place (statusOf) from the error's errdefs kind.
// Streaming answers (exec and pull as NDJSON, logs as text) are flushed per
// message and end when the request's context ends.
package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"syscall"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/network"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Sandboxes is the lifecycle service as the API uses it; *sandbox.Service
// implements it. Besides these methods the value must have an Exec method of
// one of two shapes (New panics otherwise):
//
//	Exec(ctx, tenantID, idOrName string, req agent.ExecRequest) (*sandbox.Process, error)  // the service
//	Exec(ctx, tenantID, idOrName string, req agent.ExecRequest) (httpapi.Process, error)   // fakes
//
// Go interfaces are not covariant in result types, and the service returns
// its concrete process type; accepting both keeps the service unwrapped and
// lets tests drive exec without a real sandbox.
type Sandboxes interface {
	Create(ctx context.Context, opts sandbox.CreateOptions) (store.Sandbox, error)
	Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	List(ctx context.Context, f store.SandboxFilter) ([]store.Sandbox, string, error)
	Start(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	Stop(ctx context.Context, tenantID, idOrName string, grace time.Duration) (store.Sandbox, error)
	Restart(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	Delete(ctx context.Context, tenantID, idOrName string) error
	Resize(ctx context.Context, tenantID, idOrName string, r sandbox.ResizeOptions) (store.Sandbox, error)
	SetLabels(ctx context.Context, tenantID, idOrName string, labels map[string]string) (store.Sandbox, error)
	SetNetworkPolicy(ctx context.Context, tenantID, idOrName string, blockAll bool, allow, deny []string) (store.Sandbox, error)
	Archive(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	SetLifecycle(ctx context.Context, tenantID, idOrName string, o sandbox.LifecycleOptions) (store.Sandbox, error)
	Keepalive(ctx context.Context, tenantID, idOrName string, d time.Duration) (store.Sandbox, error)
	Metrics(ctx context.Context, tenantID, idOrName string) (sandbox.Metrics, error)
	NetworkAudit(ctx context.Context, tenantID, idOrName string, after int64) ([]network.AuditEntry, <-chan struct{}, error)
	SetPublic(ctx context.Context, tenantID, idOrName string, public bool) (store.Sandbox, error)
	Logs(ctx context.Context, tenantID, idOrName string, follow bool) (io.ReadCloser, error)
	Events(ctx context.Context, tenantID, idOrName string, afterSeq int64) ([]store.Event, error)
	// Agent returns the agent of a started sandbox (ErrConflict when it
	// is not started): the toolbox routes (files, code, sessions,
	// terminals) call it directly.
	Agent(ctx context.Context, tenantID, idOrName string) (*agent.Client, error)
}

// Process is a running command, as exec streams it.
type Process interface {
	// Recv returns the next frame; io.EOF after the exit (or error) frame.
	Recv() (agent.Frame, error)
	// Write sends standard input.
	Write(p []byte) (int, error)
	// CloseStdin ends standard input.
	CloseStdin() error
	// Signal sends a signal to the command's process group.
	Signal(sig syscall.Signal) error
	// Close abandons the stream and kills the command if it still runs.
	Close() error
}

// ProcessExecer is the Exec shape that fakes implement.
type ProcessExecer interface {
	Exec(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (Process, error)
}

// serviceExecer is the Exec shape of *sandbox.Service.
type serviceExecer interface {
	Exec(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (*sandbox.Process, error)
}

// Images is the image store as the API uses it; *image.Store implements it.
type Images interface {
	Resolve(ctx context.Context, tenantID, ref string) (image.Image, error)
	Pull(ctx context.Context, tenantID, ref string, opts image.PullOptions) (image.Image, error)
	Import(ctx context.Context, tenantID string, r io.Reader, ref string) ([]image.Image, error)
	List(ctx context.Context, tenantID string) ([]image.Image, error)
	Remove(ctx context.Context, tenantID, ref string) error
}

// Auth authenticates keys and manages tenants; *auth.Service implements it.
type Auth interface {
	Authenticate(ctx context.Context, secret string) (store.Tenant, error)
	CreateTenant(ctx context.Context, name string, limits store.Limits) (store.Tenant, error)
	ListTenants(ctx context.Context) ([]store.Tenant, error)
	GetTenant(ctx context.Context, id string) (store.Tenant, error)
	CreateKey(ctx context.Context, tenantID, name string) (secret string, key store.APIKey, err error)
	ListKeys(ctx context.Context, tenantID string) ([]store.APIKey, error)
	DeleteKey(ctx context.Context, tenantID, keyID string) error
}

// Defaults of the Config limits.
const (
	DefaultMaxExecOutput = 10 << 20 // per stream of a buffered exec
	DefaultMaxImportSize = 20 << 30 // bytes of an imported tarball
	DefaultMaxUploadSize = 20 << 30 // bytes of one file or archive upload
	maxJSONBody          = 1 << 20
)

// Config configures the handler.
type Config struct {
	Sandboxes Sandboxes
	// Volumes is the volume manager; nil answers 503 on /v1/volumes.
	Volumes Volumes
	// Templates is the template service; nil: the template routes answer 503.
	Templates Templates
	Images    Images
	Auth      Auth
	Log       *slog.Logger // nil: discard
	Version   string       // reported by /healthz
	// Previews mints preview links (nil: the preview routes answer 503).
	Previews Previews
	// PreviewBaseURL is the daemon's address for path-form preview
	// links ("" takes the address each request came to).
	PreviewBaseURL string

	// MaxExecOutput caps each stream of a buffered exec answer; 0 means
	// DefaultMaxExecOutput.
	MaxExecOutput int
	// MaxImportSize caps an imported tarball; 0 means DefaultMaxImportSize.
	MaxImportSize int64
	// MaxUploadSize caps one file or archive upload (the sandbox's disk
	// quota caps it too); 0 means DefaultMaxUploadSize.
	MaxUploadSize int64
}

type handler struct {
	cfg  Config
	log  *slog.Logger
	exec func(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (Process, error)
}

// New returns the API's handler.
func New(cfg Config) http.Handler {
	h := &handler{cfg: cfg, log: cfg.Log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.cfg.MaxExecOutput <= 0 {
		h.cfg.MaxExecOutput = DefaultMaxExecOutput
	}
	if h.cfg.MaxImportSize <= 0 {
		h.cfg.MaxImportSize = DefaultMaxImportSize
	}
	if h.cfg.MaxUploadSize <= 0 {
		h.cfg.MaxUploadSize = DefaultMaxUploadSize
	}
	switch e := cfg.Sandboxes.(type) {
	case serviceExecer:
		h.exec = func(ctx context.Context, tenantID, id string, req agent.ExecRequest) (Process, error) {
			p, err := e.Exec(ctx, tenantID, id, req)
			if err != nil {
				return nil, err // never a typed nil inside the interface
			}
			return p, nil
		}
	case ProcessExecer:
		h.exec = e.Exec
	default:
		panic("httpapi: Config.Sandboxes has no Exec method of a known shape")
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", h.health)
	route := func(pattern string, fn func(http.ResponseWriter, *http.Request, store.Tenant)) {
		mux.Handle(pattern, h.authenticated(fn))
	}
	admin := func(pattern string, fn func(http.ResponseWriter, *http.Request, store.Tenant)) {
		route(pattern, h.adminOnly(fn))
	}
	route("GET /v1/whoami", h.whoAmI)
	admin("POST /v1/tenants", h.createTenant)
	admin("GET /v1/tenants", h.listTenants)
	admin("POST /v1/tenants/{id}/keys", h.createKey)
	admin("GET /v1/tenants/{id}/keys", h.listKeys)
	admin("DELETE /v1/tenants/{id}/keys/{keyID}", h.deleteKey)

	route("POST /v1/sandboxes", h.createSandbox)
	route("GET /v1/sandboxes", h.listSandboxes)
	route("GET /v1/sandboxes/{id}", h.getSandbox)
	route("DELETE /v1/sandboxes/{id}", h.deleteSandbox)
	route("POST /v1/sandboxes/{id}/start", h.startSandbox)
	route("POST /v1/sandboxes/{id}/stop", h.stopSandbox)
	route("POST /v1/sandboxes/{id}/restart", h.restartSandbox)
	route("POST /v1/sandboxes/{id}/resize", h.resizeSandbox)
	route("PUT /v1/sandboxes/{id}/labels", h.setLabels)
	route("POST /v1/sandboxes/{id}/archive", h.archiveSandbox)
	route("PUT /v1/sandboxes/{id}/lifecycle", h.setLifecycle)
	route("POST /v1/sandboxes/{id}/keepalive", h.keepalive)
	route("GET /v1/sandboxes/{id}/metrics", h.metrics)
	route("GET /v1/sandboxes/{id}/network", h.getNetwork)
	route("PUT /v1/sandboxes/{id}/network", h.setNetworkPolicy)
	route("GET /v1/sandboxes/{id}/network/audit", h.networkAudit)
	route("GET /v1/sandboxes/{id}/events", h.events)
	route("GET /v1/sandboxes/{id}/logs", h.logs)
	route("POST /v1/sandboxes/{id}/exec", h.execSandbox)
	route("GET /v1/sandboxes/{id}/exec/ws", h.execWebSocket)
	// The toolbox: one file and one routes function per capability.
	h.fileRoutes(route)

	h.codeRoutes(route)

	h.ptyRoutes(route)

	h.sessionRoutes(route)

	h.templateRoutes(route)
	h.volumeRoutes(route)
	h.previewRoutes(route)
	h.snapshotRoutes(route)

	route("GET /v1/images", h.listImages)
	route("POST /v1/images/pull", h.pullImage)
	route("POST /v1/images/import", h.importImage)
	route("GET /v1/images/{ref...}", h.getImage)
	route("DELETE /v1/images/{ref...}", h.removeImage)

	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "not_found", "no such route: "+r.Method+" "+r.URL.Path)
	})
	return mux
}

func (h *handler) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, sbx.Health{Status: "ok", Version: h.cfg.Version})
}

// Package daytona is sbx's Daytona compatibility layer: it speaks the wire
// protocol of the official Daytona SDKs (the contract is the TypeScript SDK
// @daytonaio/sdk 0.218.0) over sbx's own core, so that code written for
// Daytona runs against `sbx serve` by changing only apiUrl and the key.
//
// It is a translation of shapes and names, never a second implementation:
// every operation is made of calls of the lifecycle service
// (internal/sandbox) or of a started sandbox's agent (internal/agent), the
// ones the native /v1 API makes (a listing of depth n is n levels of List;
// a synchronous session command's interleaved output is read from its log).
//
// Two surfaces, both under the prefix the daemon mounts (Prefix, "/api"):
//
//	/api/sandbox…            the control plane (Daytona's API, apiUrl = http://host:port/api)
//	/api/toolbox/{id}/…      the toolbox (Daytona's in-sandbox daemon); every sandbox
//	                         object carries toolboxProxyUrl = http://host:port/api/toolbox
//
// Both authenticate the SDK's "Authorization: Bearer <key>" with an sbx API
// key, whose tenant is Daytona's organization. X-Daytona-* headers are
// accepted and ignored. Errors are Daytona's JSON shape {statusCode,
// message, error, code[, source]}, their status chosen in one place
// (statusOf in errors.go) from the error's errdefs kind.
//
// Lifecycle calls answer once the operation is done (create and start with
// state "started", stop with "stopped"), so the SDK never has to poll;
// /api/socket.io/ (Daytona's event stream) answers 404, which the SDK
// tolerates.
package daytona

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

// Prefix is where the daemon mounts the handler: Daytona's apiUrl ends in
// /api.
const Prefix = "/api"

// toolboxPath is the toolbox's path under Prefix.
const toolboxPath = "/toolbox"

// Sandboxes is the lifecycle service as the adapter uses it;
// *sandbox.Service implements it.
type Sandboxes interface {
	Create(ctx context.Context, opts sandbox.CreateOptions) (store.Sandbox, error)
	Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	List(ctx context.Context, f store.SandboxFilter) ([]store.Sandbox, string, error)
	Start(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	Stop(ctx context.Context, tenantID, idOrName string, grace time.Duration) (store.Sandbox, error)
	Delete(ctx context.Context, tenantID, idOrName string) error
	Resize(ctx context.Context, tenantID, idOrName string, r sandbox.ResizeOptions) (store.Sandbox, error)
	SetLabels(ctx context.Context, tenantID, idOrName string, labels map[string]string) (store.Sandbox, error)
	Archive(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	SetLifecycle(ctx context.Context, tenantID, idOrName string, o sandbox.LifecycleOptions) (store.Sandbox, error)
	Keepalive(ctx context.Context, tenantID, idOrName string, d time.Duration) (store.Sandbox, error)
	Exec(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (*sandbox.Process, error)
	Logs(ctx context.Context, tenantID, idOrName string, follow bool) (io.ReadCloser, error)
	Agent(ctx context.Context, tenantID, idOrName string) (*agent.Client, error)
}

// Auth authenticates API keys; *auth.Service implements it.
type Auth interface {
	Authenticate(ctx context.Context, secret string) (store.Tenant, error)
}

// Defaults of the Config limits.
const (
	DefaultMaxExecOutput = 10 << 20
	DefaultMaxUploadSize = 20 << 30
	maxJSONBody          = 1 << 20
)

// Config configures the handler.
type Config struct {
	Sandboxes Sandboxes
	// Volumes is the volume manager; nil answers 503 on /volumes.
	Volumes Volumes
	// Templates are Daytona's snapshots; nil: the snapshot routes answer 501.
	Templates Templates
	Auth      Auth
	Log       *slog.Logger // nil: discard
	// MaxExecOutput caps the combined output of process/execute and
	// code-run answers; 0 means DefaultMaxExecOutput.
	MaxExecOutput int
	// MaxUploadSize caps each file of a bulk upload; 0 means
	// DefaultMaxUploadSize.
	MaxUploadSize int64
	// Previews mints preview links (nil: the preview-url routes answer
	// 503).
	Previews Previews
}

type handler struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the handler of everything under Prefix.
func New(cfg Config) http.Handler {
	h := &handler{cfg: cfg, log: cfg.Log, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.cfg.MaxExecOutput <= 0 {
		h.cfg.MaxExecOutput = DefaultMaxExecOutput
	}
	if h.cfg.MaxUploadSize <= 0 {
		h.cfg.MaxUploadSize = DefaultMaxUploadSize
	}
	h.controlRoutes()
	h.snapshotRoutes()
	h.volumeRoutes()
	h.toolboxRoutes()
	// Daytona's event stream: without it the SDK polls GET /sandbox/{id},
	// which answers final states anyway.
	h.mux.HandleFunc(Prefix+"/socket.io/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "NOT_FOUND", "", "sbx serves no socket.io events")
	})
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A Daytona operation sbx does not offer (yet): 501, which the
		// SDK raises as a plain DaytonaError, not as "not found".
		source := sourceAPI
		if isToolbox(r) {
			source = sourceDaemon
		}
		writeError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED", source, "not supported by sbx yet: "+r.Method+" "+r.URL.Path)
	})
	return h.mux
}

// route registers an authenticated handler; pattern is "METHOD /path"
// relative to Prefix.
func (h *handler) route(pattern string, fn func(http.ResponseWriter, *http.Request, store.Tenant)) {
	method, path, _ := strings.Cut(pattern, " ")
	h.mux.Handle(method+" "+Prefix+path, h.authenticated(fn))
}

// authenticated resolves the caller's tenant from its bearer key.
func (h *handler) authenticated(fn func(http.ResponseWriter, *http.Request, store.Tenant)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		secret = strings.TrimSpace(secret)
		if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
			h.fail(w, r, errdefs.Public(errdefs.ErrUnauthenticated, "missing API key: send the header Authorization: Bearer <sbx API key>"))
			return
		}
		t, err := h.cfg.Auth.Authenticate(r.Context(), secret)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if t.ID == "" { // "" means every tenant to the store
			h.fail(w, r, errdefs.Public(errdefs.ErrUnauthenticated, "the API key has no tenant"))
			return
		}
		fn(w, r, t)
	})
}

// baseURL is the scheme and host the client reached us by, so that the
// toolbox URL handed out works from wherever the SDK runs.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}

// toolboxURL is the sandbox objects' toolboxProxyUrl.
func toolboxURL(r *http.Request) string { return baseURL(r) + Prefix + toolboxPath }

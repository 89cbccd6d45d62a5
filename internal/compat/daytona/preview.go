package daytona

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/preview"
	"github.com/sbx-sh/sbx/internal/store"
)

// Previews mints preview links; *preview.Service implements it. The
// proxy is sbx's own (the daemon serves {port}-{id}.{domain} and
// /preview/{id}/{port}/), and it accepts Daytona's X-Daytona-Preview-Token
// header and DAYTONA_SANDBOX_AUTH_KEY query as well as its own.
type Previews interface {
	Link(ctx context.Context, tenantID, idOrName string, port int) (preview.Link, error)
	Sign(ctx context.Context, tenantID, idOrName string, port int, ttl time.Duration) (preview.Link, error)
	Revoke(ctx context.Context, tenantID, idOrName string, port int, token string) error
}

// Daytona's limits of signed preview URLs.
const (
	defaultSignedSeconds = 60
	maxSignedSeconds     = 86400
)

func (h *handler) previewRoutes() {
	h.route("GET /sandbox/{id}/ports/{port}/preview-url", h.previewURL)
	h.route("GET /sandbox/{id}/ports/{port}/signed-preview-url", h.signedPreviewURL)
	h.route("POST /sandbox/{id}/ports/{port}/signed-preview-url/{token}/expire", h.expireSignedPreviewURL)
}

type previewURLDTO struct {
	SandboxID string `json:"sandboxId"`
	URL       string `json:"url"`
	Token     string `json:"token"`
}

type signedPreviewURLDTO struct {
	SandboxID string `json:"sandboxId"`
	Port      int    `json:"port"`
	Token     string `json:"token"`
	URL       string `json:"url"`
}

func (h *handler) previewPort(w http.ResponseWriter, r *http.Request) (int, bool) {
	if h.cfg.Previews == nil {
		h.fail(w, r, errdefs.Public(errdefs.ErrUnavailable, "preview URLs are not served by this daemon"))
		return 0, false
	}
	port, err := agent.ParsePort(r.PathValue("port"))
	if err != nil {
		h.fail(w, r, err)
		return 0, false
	}
	return port, true
}

// linkURL is the host form when the daemon has a preview domain, else the
// path form on the address the SDK reached us by.
func linkURL(r *http.Request, l preview.Link, hostURL string) string {
	if hostURL != "" {
		return hostURL
	}
	return baseURL(r) + l.Path
}

func (h *handler) previewURL(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	port, ok := h.previewPort(w, r)
	if !ok {
		return
	}
	l, err := h.cfg.Previews.Link(r.Context(), t.ID, r.PathValue("id"), port)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, previewURLDTO{SandboxID: l.SandboxID, URL: linkURL(r, l, l.URL), Token: l.Token})
}

func (h *handler) signedPreviewURL(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	port, ok := h.previewPort(w, r)
	if !ok {
		return
	}
	secs := defaultSignedSeconds
	if v := r.URL.Query().Get("expiresInSeconds"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxSignedSeconds {
			h.fail(w, r, invalidf("expiresInSeconds must be from 1 to %d", maxSignedSeconds))
			return
		}
		secs = n
	}
	l, err := h.cfg.Previews.Sign(r.Context(), t.ID, r.PathValue("id"), port, time.Duration(secs)*time.Second)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, signedPreviewURLDTO{SandboxID: l.SandboxID, Port: l.Port, Token: l.Token, URL: linkURL(r, l, l.URL)})
}

func (h *handler) expireSignedPreviewURL(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	port, ok := h.previewPort(w, r)
	if !ok {
		return
	}
	if err := h.cfg.Previews.Revoke(r.Context(), t.ID, r.PathValue("id"), port, r.PathValue("token")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

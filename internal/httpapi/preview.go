package httpapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/preview"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Previews mints preview links; *preview.Service implements it. The proxy
// itself is not behind /v1: the daemon puts preview.Service.Handler in
// front of the whole API, because the host form is chosen by Host.
type Previews interface {
	Link(ctx context.Context, tenantID, idOrName string, port int) (preview.Link, error)
	Sign(ctx context.Context, tenantID, idOrName string, port int, ttl time.Duration) (preview.Link, error)
	Revoke(ctx context.Context, tenantID, idOrName string, port int, token string) error
}

func (h *handler) previewRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	route("PUT /v1/sandboxes/{id}/public", h.setPublic)
	route("GET /v1/sandboxes/{id}/ports/{port}/preview", h.getPreview)
	route("POST /v1/sandboxes/{id}/ports/{port}/signed-preview", h.signPreview)
	route("DELETE /v1/sandboxes/{id}/ports/{port}/signed-preview/{token}", h.revokePreview)
}

func (h *handler) setPublic(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Public *bool `json:"public"`
	}
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	if req.Public == nil {
		h.writeError(w, r, invalidf("public is required (true or false)"))
		return
	}
	sb, err := h.cfg.Sandboxes.SetPublic(r.Context(), t.ID, r.PathValue("id"), *req.Public)
	h.answer(w, r, sb, err)
}

// previewArgs reads the port of a preview route and checks that previews
// are served at all.
func (h *handler) previewArgs(w http.ResponseWriter, r *http.Request) (int, bool) {
	if h.cfg.Previews == nil {
		h.writeError(w, r, errdefs.Public(errdefs.ErrUnavailable, "preview URLs are not served by this daemon"))
		return 0, false
	}
	port, err := agent.ParsePort(r.PathValue("port"))
	if err != nil {
		h.writeError(w, r, err)
		return 0, false
	}
	return port, true
}

// previewBase is the daemon's own address as clients reach it, for the
// path form: the configured one, else the one this request came to.
func (h *handler) previewBase(r *http.Request) string {
	if b := h.cfg.PreviewBaseURL; b != "" {
		return strings.TrimSuffix(b, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (h *handler) getPreview(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	port, ok := h.previewArgs(w, r)
	if !ok {
		return
	}
	l, err := h.cfg.Previews.Link(r.Context(), t.ID, r.PathValue("id"), port)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sbx.PreviewLink{
		SandboxID: l.SandboxID, Port: l.Port, URL: l.URL, PathURL: h.previewBase(r) + l.Path, Token: l.Token, Public: l.Public,
	})
}

func (h *handler) signPreview(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	port, ok := h.previewArgs(w, r)
	if !ok {
		return
	}
	var req sbx.SignPreviewRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	if req.ExpiresInSeconds < 0 || req.ExpiresInSeconds > int(preview.MaxSignedTTL/time.Second) {
		h.writeError(w, r, invalidf("expires_in_seconds must be from 1 to %d (0 or absent: 3600)", int(preview.MaxSignedTTL/time.Second)))
		return
	}
	l, err := h.cfg.Previews.Sign(r.Context(), t.ID, r.PathValue("id"), port, time.Duration(req.ExpiresInSeconds)*time.Second)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, sbx.SignedPreview{
		SandboxID: l.SandboxID, Port: l.Port, URL: l.URL, PathURL: h.previewBase(r) + l.Path, Token: l.Token, ExpiresAt: l.ExpiresAt.UTC(),
	})
}

func (h *handler) revokePreview(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	port, ok := h.previewArgs(w, r)
	if !ok {
		return
	}
	if err := h.cfg.Previews.Revoke(r.Context(), t.ID, r.PathValue("id"), port, r.PathValue("token")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// PreviewErrorWriter answers failed preview requests with the API's
// problem documents and statuses, so the mapping stays in one place: a
// failure to reach the server in the sandbox (*preview.UpstreamError) is
// 502 Bad Gateway, everything else goes by its kind.
func PreviewErrorWriter(log *slog.Logger) func(w http.ResponseWriter, r *http.Request, err error) {
	h := &handler{log: log}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return func(w http.ResponseWriter, r *http.Request, err error) {
		var ue *preview.UpstreamError
		if errors.As(err, &ue) {
			writeProblem(w, http.StatusBadGateway, sbx.CodeUnavailable, ue.Message)
			return
		}
		h.writeError(w, r, err)
	}
}

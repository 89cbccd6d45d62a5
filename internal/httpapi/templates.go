package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/template"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Templates is the template service as the API uses it; *template.Service
// implements it.
type Templates interface {
	Create(ctx context.Context, tenantID string, req template.CreateRequest) (store.Template, error)
	Get(ctx context.Context, tenantID, name string) (store.Template, error)
	List(ctx context.Context, tenantID string) ([]store.Template, error)
	Delete(ctx context.Context, tenantID, name string) error
	BuildLog(ctx context.Context, tenantID, name string, follow bool) (io.ReadCloser, error)
	Image(ctx context.Context, t store.Template) (image.Image, error)
}

func (h *handler) templateRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	route("POST /v1/templates", h.createTemplate)
	route("GET /v1/templates", h.listTemplates)
	route("GET /v1/templates/{name}", h.getTemplate)
	route("DELETE /v1/templates/{name}", h.deleteTemplate)
	route("GET /v1/templates/{name}/build-log", h.templateBuildLog)
}

// templates returns the service, or answers 503 when the server has none.
func (h *handler) templates(w http.ResponseWriter, r *http.Request) Templates {
	if h.cfg.Templates == nil {
		h.writeError(w, r, errdefs.Public(errdefs.ErrUnavailable, "templates are not enabled on this server"))
	}
	return h.cfg.Templates
}

func (h *handler) toTemplate(ctx context.Context, t store.Template) sbx.Template {
	out := sbx.Template{
		ID: t.ID, Name: t.Name, Source: t.Source, State: string(t.State), ErrorReason: t.ErrorReason,
		Image: t.ImageRef, Digest: t.ImageDigest, CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
	var src struct {
		Image   string            `json:"image"`
		Spec    *sbx.TemplateSpec `json:"spec"`
		Sandbox string            `json:"sandbox"`
	}
	if json.Unmarshal(t.Spec, &src) == nil {
		out.SourceImage, out.Spec, out.SourceSandbox = src.Image, src.Spec, src.Sandbox
	}
	if t.State == store.TemplateActive {
		if img, err := h.cfg.Templates.Image(ctx, t); err == nil {
			out.Layers = image.LayerIDs(img)
		}
	}
	return out
}

func (h *handler) createTemplate(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	var req sbx.CreateTemplateRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	creq := template.CreateRequest{
		Name: req.Name, Image: req.Image, Sandbox: req.Sandbox,
		Pull: image.PullOptions{Username: req.Username, Password: req.Password, Insecure: req.Insecure},
	}
	if req.Spec != nil {
		// The SDK's and the core's spec have the same JSON shape.
		b, _ := json.Marshal(req.Spec)
		var sp template.Spec
		if err := json.Unmarshal(b, &sp); err != nil {
			h.writeError(w, r, invalidf("invalid spec: %v", err))
			return
		}
		creq.Spec = &sp
	}
	tpl, err := svc.Create(r.Context(), t.ID, creq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/templates/"+tpl.Name)
	writeJSON(w, http.StatusAccepted, h.toTemplate(r.Context(), tpl))
}

func (h *handler) listTemplates(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	l, err := svc.List(r.Context(), t.ID)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.TemplateList{Items: []sbx.Template{}}
	for _, tpl := range l {
		out.Items = append(out.Items, h.toTemplate(r.Context(), tpl))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getTemplate(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	tpl, err := svc.Get(r.Context(), t.ID, r.PathValue("name"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.toTemplate(r.Context(), tpl))
}

func (h *handler) deleteTemplate(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	if err := svc.Delete(r.Context(), t.ID, r.PathValue("name")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) templateBuildLog(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	follow, ok := h.followParam(w, r)
	if !ok {
		return
	}
	rc, err := svc.BuildLog(r.Context(), t.ID, r.PathValue("name"), follow)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer rc.Close()
	h.streamText(w, r, rc, "streaming a build log")
}

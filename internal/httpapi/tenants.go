package httpapi

import (
	"net/http"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func (h *handler) whoAmI(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	writeJSON(w, http.StatusOK, toTenant(t))
}

func (h *handler) createTenant(w http.ResponseWriter, r *http.Request, _ store.Tenant) {
	var req sbx.CreateTenantRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	l := req.Limits
	if l.MaxSandboxes < 0 || l.MaxCPU < 0 || l.MaxMemoryMB < 0 || l.MaxDiskMB < 0 || l.MaxPids < 0 {
		h.writeError(w, r, errdefs.Public(errdefs.ErrInvalidArgument, "limits must not be negative"))
		return
	}
	t, err := h.cfg.Auth.CreateTenant(r.Context(), req.Name, store.Limits{
		MaxSandboxes: l.MaxSandboxes, MaxCPU: l.MaxCPU, MaxMemoryMB: l.MaxMemoryMB, MaxDiskMB: l.MaxDiskMB, MaxPids: l.MaxPids,
	})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toTenant(t))
}

func (h *handler) listTenants(w http.ResponseWriter, r *http.Request, _ store.Tenant) {
	ts, err := h.cfg.Auth.ListTenants(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.TenantList{Items: make([]sbx.Tenant, 0, len(ts))}
	for _, t := range ts {
		out.Items = append(out.Items, toTenant(t))
	}
	writeJSON(w, http.StatusOK, out)
}

// tenantOf checks that the path's tenant exists, so that key routes of an
// unknown tenant answer 404 rather than an empty list.
func (h *handler) tenantOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if _, err := h.cfg.Auth.GetTenant(r.Context(), id); err != nil {
		h.writeError(w, r, err)
		return "", false
	}
	return id, true
}

func (h *handler) createKey(w http.ResponseWriter, r *http.Request, _ store.Tenant) {
	var req sbx.CreateKeyRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	id, ok := h.tenantOf(w, r)
	if !ok {
		return
	}
	secret, k, err := h.cfg.Auth.CreateKey(r.Context(), id, req.Name)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := toKey(k)
	out.Key = secret
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, out)
}

func (h *handler) listKeys(w http.ResponseWriter, r *http.Request, _ store.Tenant) {
	id, ok := h.tenantOf(w, r)
	if !ok {
		return
	}
	ks, err := h.cfg.Auth.ListKeys(r.Context(), id)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.APIKeyList{Items: make([]sbx.APIKey, 0, len(ks))}
	for _, k := range ks {
		out.Items = append(out.Items, toKey(k))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) deleteKey(w http.ResponseWriter, r *http.Request, _ store.Tenant) {
	id, ok := h.tenantOf(w, r)
	if !ok {
		return
	}
	if err := h.cfg.Auth.DeleteKey(r.Context(), id, r.PathValue("keyID")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

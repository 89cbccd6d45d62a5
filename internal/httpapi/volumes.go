package httpapi

import (
	"context"
	"net/http"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Volumes is the volume manager as the API uses it; *volume.Manager
// implements it.
type Volumes interface {
	Create(ctx context.Context, tenantID, name string, sizeMB int64) (store.Volume, error)
	Get(ctx context.Context, tenantID, idOrName string) (store.Volume, error)
	List(ctx context.Context, tenantID string) ([]store.Volume, error)
	Delete(ctx context.Context, tenantID, idOrName string, force bool) error
	Users(ctx context.Context, volumeID string) ([]string, error)
}

func (h *handler) volumeRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	route("POST /v1/volumes", h.createVolume)
	route("GET /v1/volumes", h.listVolumes)
	route("GET /v1/volumes/{id}", h.getVolume)
	route("DELETE /v1/volumes/{id}", h.deleteVolume)
}

// volumes returns the manager, or writes that volumes are disabled.
func (h *handler) volumes(w http.ResponseWriter, r *http.Request) (Volumes, bool) {
	if h.cfg.Volumes == nil {
		h.writeError(w, r, errdefs.Public(errdefs.ErrUnavailable, "volumes are disabled on this host"))
		return nil, false
	}
	return h.cfg.Volumes, true
}

func (h *handler) toVolume(ctx context.Context, vm Volumes, v store.Volume) (sbx.Volume, error) {
	users, err := vm.Users(ctx, v.ID)
	if err != nil {
		return sbx.Volume{}, err
	}
	return toVolume(v, users), nil
}

func (h *handler) createVolume(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	var req sbx.CreateVolumeRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	if req.Name == "" {
		h.writeError(w, r, invalidf("name is required"))
		return
	}
	v, err := vm.Create(r.Context(), t.ID, req.Name, req.SizeMB)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toVolume(v, nil))
}

func (h *handler) listVolumes(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	l, err := vm.List(r.Context(), t.ID)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.VolumeList{Items: make([]sbx.Volume, 0, len(l))}
	for _, v := range l {
		sv, err := h.toVolume(r.Context(), vm, v)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		out.Items = append(out.Items, sv)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getVolume(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	v, err := vm.Get(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	sv, err := h.toVolume(r.Context(), vm, v)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sv)
}

func (h *handler) deleteVolume(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	var force bool
	switch f := r.URL.Query().Get("force"); f {
	case "", "false":
	case "true":
		force = true
	default:
		h.writeError(w, r, invalidf("force must be true or false, not %q", f))
		return
	}
	if err := vm.Delete(r.Context(), t.ID, r.PathValue("id"), force); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func toVolume(v store.Volume, users []string) sbx.Volume {
	if users == nil {
		users = []string{}
	}
	return sbx.Volume{ID: v.ID, Name: v.Name, SizeMB: v.SizeMB, State: string(v.State), UsedBy: users,
		CreatedAt: v.CreatedAt.UTC(), UpdatedAt: v.UpdatedAt.UTC()}
}

func toVolumeMounts(l []store.VolumeMount) []sbx.VolumeMount {
	out := make([]sbx.VolumeMount, 0, len(l))
	for _, m := range l {
		out = append(out, sbx.VolumeMount{Volume: m.Volume, VolumeID: m.VolumeID, MountPath: m.MountPath, Subpath: m.Subpath, ReadOnly: m.ReadOnly})
	}
	return out
}

func volumeOptions(l []sbx.VolumeMount) []sandbox.VolumeOptions {
	if len(l) == 0 {
		return nil
	}
	out := make([]sandbox.VolumeOptions, 0, len(l))
	for _, m := range l {
		out = append(out, sandbox.VolumeOptions{Volume: m.Volume, MountPath: m.MountPath, Subpath: m.Subpath, ReadOnly: m.ReadOnly})
	}
	return out
}

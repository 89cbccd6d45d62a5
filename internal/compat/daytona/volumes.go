package daytona

import (
	"context"
	"net/http"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

// Volumes is the volume manager as the adapter uses it; *volume.Manager
// implements it.
type Volumes interface {
	Create(ctx context.Context, tenantID, name string, sizeMB int64) (store.Volume, error)
	Get(ctx context.Context, tenantID, idOrName string) (store.Volume, error)
	List(ctx context.Context, tenantID string) ([]store.Volume, error)
	Delete(ctx context.Context, tenantID, idOrName string, force bool) error
}

// DefaultVolumeSizeMB is the size limit of a volume made through the
// Daytona API, whose create names no size (Daytona's volumes are S3
// buckets). The image is sparse: unused space costs nothing.
const DefaultVolumeSizeMB = 10 << 10

// VolumeDTO is Daytona's Volume object.
type VolumeDTO struct {
	ID             string  `json:"id"`
	Name           string  `json:"name"`
	OrganizationID string  `json:"organizationId"`
	State          string  `json:"state"`
	CreatedAt      string  `json:"createdAt"`
	UpdatedAt      string  `json:"updatedAt"`
	LastUsedAt     *string `json:"lastUsedAt"`
	ErrorReason    *string `json:"errorReason"`
}

// VolumeMountDTO is one entry of a Daytona sandbox's volumes.
type VolumeMountDTO struct {
	VolumeID  string `json:"volumeId"`
	MountPath string `json:"mountPath"`
	Subpath   string `json:"subpath,omitempty"`
}

// toVolumeState maps sbx's volume states onto Daytona's names (the same
// three words).
func toVolumeState(s store.VolumeState) string {
	switch s {
	case store.VolumeCreating, store.VolumeReady, store.VolumeDeleting:
		return string(s)
	}
	return "error"
}

func toVolumeDTO(v store.Volume) VolumeDTO {
	return VolumeDTO{ID: v.ID, Name: v.Name, OrganizationID: v.TenantID, State: toVolumeState(v.State),
		CreatedAt: isoTime(v.CreatedAt), UpdatedAt: isoTime(v.UpdatedAt)}
}

func toVolumeMountDTOs(l []store.VolumeMount) []VolumeMountDTO {
	out := make([]VolumeMountDTO, 0, len(l))
	for _, m := range l {
		out = append(out, VolumeMountDTO{VolumeID: m.VolumeID, MountPath: m.MountPath, Subpath: m.Subpath})
	}
	return out
}

// fromVolumeMounts translates a create's volumes; Daytona has no
// read-only mounts.
func fromVolumeMounts(l []VolumeMountDTO) []sandbox.VolumeOptions {
	var out []sandbox.VolumeOptions
	for _, m := range l {
		out = append(out, sandbox.VolumeOptions{Volume: m.VolumeID, MountPath: m.MountPath, Subpath: m.Subpath})
	}
	return out
}

func (h *handler) volumeRoutes() {
	h.route("GET /volumes", h.listVolumes)
	h.route("POST /volumes", h.createVolume)
	h.route("GET /volumes/by-name/{name}", h.getVolumeByName)
	h.route("GET /volumes/{id}", h.getVolume)
	h.route("DELETE /volumes/{id}", h.deleteVolume)
}

func (h *handler) volumes(w http.ResponseWriter, r *http.Request) (Volumes, bool) {
	if h.cfg.Volumes == nil {
		h.fail(w, r, errdefs.Public(errdefs.ErrUnavailable, "volumes are disabled on this host"))
		return nil, false
	}
	return h.cfg.Volumes, true
}

func (h *handler) listVolumes(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	l, err := vm.List(r.Context(), t.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]VolumeDTO, 0, len(l))
	for _, v := range l {
		out = append(out, toVolumeDTO(v))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) createVolume(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.Name == "" {
		h.fail(w, r, invalidf("name is required"))
		return
	}
	v, err := vm.Create(r.Context(), t.ID, req.Name, DefaultVolumeSizeMB)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toVolumeDTO(v))
}

func (h *handler) getVolume(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	h.answerVolume(w, r, t, r.PathValue("id"))
}

func (h *handler) getVolumeByName(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	h.answerVolume(w, r, t, r.PathValue("name"))
}

func (h *handler) answerVolume(w http.ResponseWriter, r *http.Request, t store.Tenant, idOrName string) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	v, err := vm.Get(r.Context(), t.ID, idOrName)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toVolumeDTO(v))
}

// deleteVolume refuses (409) while a sandbox mounts the volume, as
// Daytona does.
func (h *handler) deleteVolume(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	vm, ok := h.volumes(w, r)
	if !ok {
		return
	}
	if err := vm.Delete(r.Context(), t.ID, r.PathValue("id"), false); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

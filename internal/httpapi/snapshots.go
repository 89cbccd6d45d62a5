package httpapi

import (
	"context"
	"net/http"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Snapshots is the state-snapshot, clone, reset and restart-with side of
// the lifecycle service; *sandbox.Service implements it. Config.Sandboxes
// offers these routes when it implements this interface too.
type Snapshots interface {
	CreateSnapshot(ctx context.Context, tenantID, idOrName, name string) (store.Snapshot, sandbox.CopyStats, error)
	ListSnapshots(ctx context.Context, tenantID, idOrName string) ([]store.Snapshot, error)
	GetSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) (store.Snapshot, error)
	RestoreSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) (store.Sandbox, error)
	DeleteSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) error
	Clone(ctx context.Context, tenantID, idOrName string, o sandbox.CloneOptions) (store.Sandbox, sandbox.CopyStats, error)
	Reset(ctx context.Context, tenantID, idOrName string, mode sandbox.ResetMode) (store.Sandbox, error)
	RestartWith(ctx context.Context, tenantID, idOrName string, o sandbox.RestartOptions) (store.Sandbox, error)
}

var _ Snapshots = (*sandbox.Service)(nil)

func toSnapshot(sn store.Snapshot) sbx.Snapshot {
	return sbx.Snapshot{ID: sn.ID, SandboxID: sn.SandboxID, Name: sn.Name, CreatedAt: sn.CreatedAt.UTC(),
		Size: sn.Size, Checksum: sn.Checksum}
}

func (h *handler) snapshotRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	sv, ok := h.cfg.Sandboxes.(Snapshots)
	if !ok {
		return
	}
	route("POST /v1/sandboxes/{id}/snapshots", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		var req sbx.CreateSnapshotRequest
		if !h.decodeOrFail(w, r, &req, true) {
			return
		}
		sn, st, err := sv.CreateSnapshot(r.Context(), t.ID, r.PathValue("id"), req.Name)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		out := toSnapshot(sn)
		out.PauseMS = float64(st.Pause.Microseconds()) / 1000
		out.TookMS = float64(st.Took.Microseconds()) / 1000
		writeJSON(w, http.StatusCreated, out)
	})
	route("GET /v1/sandboxes/{id}/snapshots", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		list, err := sv.ListSnapshots(r.Context(), t.ID, r.PathValue("id"))
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		out := sbx.SnapshotList{Items: make([]sbx.Snapshot, 0, len(list))}
		for _, sn := range list {
			out.Items = append(out.Items, toSnapshot(sn))
		}
		writeJSON(w, http.StatusOK, out)
	})
	route("GET /v1/sandboxes/{id}/snapshots/{sid}", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		sn, err := sv.GetSnapshot(r.Context(), t.ID, r.PathValue("id"), r.PathValue("sid"))
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, toSnapshot(sn))
	})
	route("DELETE /v1/sandboxes/{id}/snapshots/{sid}", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		if err := sv.DeleteSnapshot(r.Context(), t.ID, r.PathValue("id"), r.PathValue("sid")); err != nil {
			h.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	route("POST /v1/sandboxes/{id}/snapshots/{sid}/restore", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		sb, err := sv.RestoreSnapshot(r.Context(), t.ID, r.PathValue("id"), r.PathValue("sid"))
		h.answer(w, r, sb, err)
	})
	route("POST /v1/sandboxes/{id}/clone", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		var req sbx.CloneRequest
		if !h.decodeOrFail(w, r, &req, true) {
			return
		}
		o := sandbox.CloneOptions{Name: req.Name, Env: req.Env, Labels: req.Labels, Runtime: req.Runtime}
		if rs := req.Resources; rs != nil {
			if err := checkResources(rs.CPU, rs.MemoryMB, rs.DiskMB, rs.Pids); err != nil {
				h.writeError(w, r, err)
				return
			}
			o.Resources = store.Resources{CPU: rs.CPU, MemoryMB: rs.MemoryMB, DiskMB: rs.DiskMB, Pids: rs.Pids}
		}
		sb, _, err := sv.Clone(r.Context(), t.ID, r.PathValue("id"), o)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, toSandbox(sb))
	})
	route("POST /v1/sandboxes/{id}/reset", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		var req sbx.ResetRequest
		if !h.decodeOrFail(w, r, &req, true) {
			return
		}
		sb, err := sv.Reset(r.Context(), t.ID, r.PathValue("id"), sandbox.ResetMode(req.Mode))
		h.answer(w, r, sb, err)
	})
}

// restartWith answers a restart that carries changes.
func (h *handler) restartWith(w http.ResponseWriter, r *http.Request, t store.Tenant, req sbx.RestartRequest) {
	sv, ok := h.cfg.Sandboxes.(Snapshots)
	if !ok {
		h.writeError(w, r, errdefs.Public(errdefs.ErrUnavailable, "this server cannot change a sandbox's env or resources at a restart"))
		return
	}
	o := sandbox.RestartOptions{Env: req.Env}
	if rs := req.Resources; rs != nil {
		if err := checkResources(rs.CPU, rs.MemoryMB, rs.DiskMB, rs.Pids); err != nil {
			h.writeError(w, r, err)
			return
		}
		o.Resources = store.Resources{CPU: rs.CPU, MemoryMB: rs.MemoryMB, DiskMB: rs.DiskMB, Pids: rs.Pids}
	}
	sb, err := sv.RestartWith(r.Context(), t.ID, r.PathValue("id"), o)
	h.answer(w, r, sb, err)
}

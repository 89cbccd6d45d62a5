package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

var knownStates = map[string]bool{}

func init() {
	for _, s := range []store.State{store.StateCreating, store.StateStarting, store.StateStarted, store.StateStopping,
		store.StateStopped, store.StateArchiving, store.StateArchived, store.StateRestoring,
		store.StateDestroying, store.StateDestroyed, store.StateError, store.StateUnknown} {
		knownStates[string(s)] = true
	}
}

func invalidf(format string, args ...any) error {
	return errdefs.Publicf(errdefs.ErrInvalidArgument, format, args...)
}

func checkResources(cpu float64, mem, disk, pids int64) error {
	if cpu < 0 || math.IsNaN(cpu) || math.IsInf(cpu, 0) || mem < 0 || disk < 0 || pids < 0 {
		return invalidf("resources must not be negative")
	}
	return nil
}

func (h *handler) createSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.CreateSandboxRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	opts := sandbox.CreateOptions{
		TenantID: t.ID, Name: req.Name, Image: req.Image, Template: req.Template, Runtime: req.Runtime,
		Env: req.Env, Labels: req.Labels, User: req.User, Workdir: req.Workdir,
		Entrypoint: req.Entrypoint, Cmd: req.Cmd, Public: req.Public,
		Volumes: volumeOptions(req.Volumes),
	}
	if n := req.Network; n != nil {
		opts.Network = &sandbox.NetworkOptions{Mode: n.Mode, BlockAll: n.BlockAll, Allow: n.Allow, Deny: n.Deny}
	}
	if l := req.Lifecycle; l != nil {
		opts.Lifecycle = lifecycleOptions(*l)
	}
	if rs := req.Resources; rs != nil {
		if err := checkResources(rs.CPU, rs.MemoryMB, rs.DiskMB, rs.Pids); err != nil {
			h.writeError(w, r, err)
			return
		}
		opts.Resources = store.Resources{CPU: rs.CPU, MemoryMB: rs.MemoryMB, DiskMB: rs.DiskMB, Pids: rs.Pids}
	}
	sb, err := h.cfg.Sandboxes.Create(r.Context(), opts)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toSandbox(sb))
}

func (h *handler) listSandboxes(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	q := r.URL.Query()
	f := store.SandboxFilter{TenantID: t.ID, Cursor: q.Get("cursor")}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			h.writeError(w, r, invalidf("label filter %q: want key=value", l))
			return
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	for _, s := range q["state"] {
		if !knownStates[s] {
			h.writeError(w, r, invalidf("unknown state %q", s))
			return
		}
		f.States = append(f.States, store.State(s))
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			h.writeError(w, r, invalidf("limit must be an integer from 1 to 1000"))
			return
		}
		f.Limit = n
	}
	items, next, err := h.cfg.Sandboxes.List(r.Context(), f)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.SandboxList{Items: make([]sbx.Sandbox, 0, len(items)), NextCursor: next}
	for _, s := range items {
		out.Items = append(out.Items, toSandbox(s))
	}
	writeJSON(w, http.StatusOK, out)
}

// answer writes a sandbox or the error of the operation that produced it.
func (h *handler) answer(w http.ResponseWriter, r *http.Request, sb store.Sandbox, err error) {
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSandbox(sb))
}

func (h *handler) getSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Get(r.Context(), t.ID, r.PathValue("id"))
	h.answer(w, r, sb, err)
}

func (h *handler) deleteSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	if err := h.cfg.Sandboxes.Delete(r.Context(), t.ID, r.PathValue("id")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) startSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Start(r.Context(), t.ID, r.PathValue("id"))
	h.answer(w, r, sb, err)
}

func (h *handler) stopSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.StopRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	if req.GraceSeconds < 0 || math.IsNaN(req.GraceSeconds) || req.GraceSeconds > 24*3600 {
		h.writeError(w, r, invalidf("grace_seconds must be between 0 and 86400"))
		return
	}
	grace := time.Duration(req.GraceSeconds * float64(time.Second))
	sb, err := h.cfg.Sandboxes.Stop(r.Context(), t.ID, r.PathValue("id"), grace)
	h.answer(w, r, sb, err)
}

func (h *handler) restartSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.RestartRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	if len(req.Env) > 0 || req.Resources != nil {
		h.restartWith(w, r, t, req)
		return
	}
	sb, err := h.cfg.Sandboxes.Restart(r.Context(), t.ID, r.PathValue("id"))
	h.answer(w, r, sb, err)
}

func (h *handler) resizeSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.ResizeRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	if err := checkResources(req.CPU, req.MemoryMB, req.DiskMB, req.Pids); err != nil {
		h.writeError(w, r, err)
		return
	}
	sb, err := h.cfg.Sandboxes.Resize(r.Context(), t.ID, r.PathValue("id"),
		sandbox.ResizeOptions{CPU: req.CPU, MemoryMB: req.MemoryMB, DiskMB: req.DiskMB, Pids: req.Pids})
	h.answer(w, r, sb, err)
}

func (h *handler) setLabels(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.LabelsRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	if req.Labels == nil {
		h.writeError(w, r, invalidf("labels is required (send {} to remove every label)"))
		return
	}
	sb, err := h.cfg.Sandboxes.SetLabels(r.Context(), t.ID, r.PathValue("id"), req.Labels)
	h.answer(w, r, sb, err)
}

func (h *handler) getNetwork(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Get(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toNetwork(sb.Network))
}

func (h *handler) setNetworkPolicy(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.NetworkPolicy
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	sb, err := h.cfg.Sandboxes.SetNetworkPolicy(r.Context(), t.ID, r.PathValue("id"), req.BlockAll, req.Allow, req.Deny)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toNetwork(sb.Network))
}

func (h *handler) events(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var after int64
	if a := r.URL.Query().Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			h.writeError(w, r, invalidf("after must be a non-negative integer"))
			return
		}
		after = n
	}
	evs, err := h.cfg.Sandboxes.Events(r.Context(), t.ID, r.PathValue("id"), after)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.EventList{Items: make([]sbx.Event, 0, len(evs))}
	for _, e := range evs {
		out.Items = append(out.Items, toEvent(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) logs(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	follow, ok := h.followParam(w, r)
	if !ok {
		return
	}
	rc, err := h.cfg.Sandboxes.Logs(r.Context(), t.ID, r.PathValue("id"), follow)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer rc.Close()
	// A follower blocks in Read; closing the reader when the client leaves
	// is what ends it.
	stop := context.AfterFunc(r.Context(), func() { rc.Close() })
	defer stop()
	h.streamText(w, r, rc, "streaming logs")
}

// followParam reads the optional follow=true|false of a log request; a
// bad value is answered (400) and ok is false.
func (h *handler) followParam(w http.ResponseWriter, r *http.Request) (follow, ok bool) {
	f := r.URL.Query().Get("follow")
	if f == "" {
		return false, true
	}
	b, err := strconv.ParseBool(f)
	if err != nil {
		h.writeError(w, r, invalidf("follow must be true or false"))
		return false, false
	}
	return b, true
}

// streamText answers 200 with rc as plain text, flushed as it comes, until
// rc ends or fails; what names the stream in the debug log of a failure.
func (h *handler) streamText(w http.ResponseWriter, r *http.Request, rc io.Reader, what string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	fw := flushWriter{w: w, rc: http.NewResponseController(w)}
	fw.rc.Flush()
	if _, err := io.Copy(fw, rc); err != nil && r.Context().Err() == nil {
		h.log.DebugContext(r.Context(), what, "path", r.URL.Path, "err", err)
	}
}

// flushWriter flushes after every write, so that streamed output reaches
// the client as it is produced.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.rc.Flush()
}

func lifecycleOptions(p sbx.LifecyclePolicy) *sandbox.LifecycleOptions {
	return &sandbox.LifecycleOptions{AutoStop: p.AutoStopSeconds, AutoArchive: p.AutoArchiveSeconds, AutoDelete: p.AutoDeleteSeconds}
}

func (h *handler) archiveSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Archive(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSandbox(sb))
}

func (h *handler) setLifecycle(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.LifecyclePolicy
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	sb, err := h.cfg.Sandboxes.SetLifecycle(r.Context(), t.ID, r.PathValue("id"), *lifecycleOptions(req))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSandbox(sb))
}

func (h *handler) keepalive(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.KeepaliveRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	if req.Seconds < 0 {
		h.writeError(w, r, invalidf("seconds must not be negative"))
		return
	}
	sb, err := h.cfg.Sandboxes.Keepalive(r.Context(), t.ID, r.PathValue("id"), time.Duration(req.Seconds)*time.Second)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSandbox(sb))
}

func (h *handler) metrics(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	m, err := h.cfg.Sandboxes.Metrics(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toMetrics(m))
}

// networkAudit answers the egress audit log after ?after=N: a JSON list,
// or with ?follow=true an NDJSON stream of entries as they come (a
// keep-alive newline every 15 s) until the client leaves.
func (h *handler) networkAudit(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	q := r.URL.Query()
	var after int64
	if a := q.Get("after"); a != "" {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n < 0 {
			h.writeError(w, r, invalidf("after must be a non-negative integer"))
			return
		}
		after = n
	}
	follow := q.Get("follow") == "true"
	entries, wake, err := h.cfg.Sandboxes.NetworkAudit(r.Context(), t.ID, r.PathValue("id"), after)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if !follow {
		writeJSON(w, http.StatusOK, sbx.AuditList{Items: toAudit(entries)})
		return
	}
	w.Header().Set("Content-Type", sbx.NDJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	for {
		for _, e := range toAudit(entries) {
			if err := enc.Encode(e); err != nil {
				return
			}
			after = e.Seq
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-tick.C:
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
			entries = nil
			continue
		case <-wake:
		}
		if entries, wake, err = h.cfg.Sandboxes.NetworkAudit(r.Context(), t.ID, r.PathValue("id"), after); err != nil {
			return // the sandbox went away
		}
	}
}

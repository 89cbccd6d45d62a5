package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// fileRoutes serves /v1/sandboxes/{id}/files/…: the sandbox's agent does
// the work (resolving every path inside the sandbox's root); the handlers
// translate shapes and stream bodies through without buffering them.
func (h *handler) fileRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	route("GET /v1/sandboxes/{id}/files/stat", h.statFile)
	route("GET /v1/sandboxes/{id}/files/list", h.listFiles)
	route("GET /v1/sandboxes/{id}/files/content", h.downloadFile)
	route("PUT /v1/sandboxes/{id}/files/content", upload(h, func(ctx context.Context, a *agent.Client, p string, body io.Reader, o agent.WriteOptions) (sbx.FileInfo, error) {
		return toFileInfo(a.WriteFile(ctx, p, body, o))
	}))
	route("GET /v1/sandboxes/{id}/files/archive", h.downloadArchive)
	route("PUT /v1/sandboxes/{id}/files/archive", upload(h, func(ctx context.Context, a *agent.Client, p string, body io.Reader, o agent.WriteOptions) (sbx.ArchiveResult, error) {
		res, err := a.WriteTree(ctx, p, body, o)
		return sbx.ArchiveResult(res), err
	}))
	route("POST /v1/sandboxes/{id}/files/mkdir", jsonCall(h, http.StatusCreated, func(ctx context.Context, a *agent.Client, req sbx.MkdirRequest) (sbx.FileInfo, error) {
		if req.Mode > 0o7777 {
			return sbx.FileInfo{}, invalidf("mode must be at most 07777")
		}
		return toFileInfo(a.Mkdir(ctx, agent.MkdirRequest(req)))
	}))
	route("POST /v1/sandboxes/{id}/files/move", jsonCall(h, http.StatusOK, func(ctx context.Context, a *agent.Client, req sbx.MoveRequest) (sbx.FileInfo, error) {
		return toFileInfo(a.Move(ctx, agent.MoveRequest(req)))
	}))
	route("POST /v1/sandboxes/{id}/files/chmod", jsonCall(h, http.StatusOK, func(ctx context.Context, a *agent.Client, req sbx.ChmodRequest) (sbx.FileInfo, error) {
		return toFileInfo(a.Chmod(ctx, agent.ChmodRequest(req)))
	}))
	route("DELETE /v1/sandboxes/{id}/files", h.removeFile)
	route("POST /v1/sandboxes/{id}/files/find", jsonCall(h, http.StatusOK, func(ctx context.Context, a *agent.Client, req sbx.FindRequest) (sbx.FindResult, error) {
		return toFindResult(a.Find(ctx, agent.FindRequest(req)))
	}))
	route("POST /v1/sandboxes/{id}/files/search", jsonCall(h, http.StatusOK, func(ctx context.Context, a *agent.Client, req sbx.SearchRequest) (sbx.FindResult, error) {
		return toFindResult(a.Search(ctx, agent.SearchRequest(req)))
	}))
	route("POST /v1/sandboxes/{id}/files/replace", jsonCall(h, http.StatusOK, func(ctx context.Context, a *agent.Client, req sbx.ReplaceRequest) ([]sbx.ReplaceResult, error) {
		res, err := a.Replace(ctx, agent.ReplaceRequest(req))
		out := make([]sbx.ReplaceResult, len(res))
		for i, rr := range res {
			out[i] = sbx.ReplaceResult(rr)
		}
		return out, err
	}))
}

// agentOr answers the error itself when the sandbox has no agent to talk
// to (unknown: 404, not started: 409).
func (h *handler) agentOr(w http.ResponseWriter, r *http.Request, t store.Tenant) (*agent.Client, bool) {
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return nil, false
	}
	return a, true
}

// queryBool reads an optional boolean query parameter.
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalidf("query parameter %s must be true or false", name)
	}
	return b, nil
}

// queryPath is the required path parameter.
func queryPath(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", invalidf("the query parameter path is required")
	}
	return p, nil
}

func (h *handler) statFile(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, err := queryPath(r)
	nofollow, err2 := queryBool(r, "nofollow")
	if err = firstErr(err, err2); err != nil {
		h.writeError(w, r, err)
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	fi, err := a.Stat(r.Context(), p, nofollow)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sbx.FileInfo(fi))
}

func (h *handler) listFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, err := queryPath(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	list, err := a.List(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]sbx.FileInfo, len(list))
	for i, fi := range list {
		out[i] = sbx.FileInfo(fi)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) downloadFile(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, err := queryPath(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	rc, fi, err := a.ReadFile(r.Context(), p)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer rc.Close()
	info, _ := json.Marshal(sbx.FileInfo(fi))
	w.Header().Set(sbx.FileInfoHeader, string(info))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
}

func (h *handler) downloadArchive(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	paths := r.URL.Query()["path"]
	if len(paths) == 0 {
		h.writeError(w, r, invalidf("the query parameter path is required (repeat it for several)"))
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	rc, err := a.ReadTree(r.Context(), paths)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
}

// uploadOptions reads the query of an upload.
func uploadOptions(r *http.Request) (agent.WriteOptions, error) {
	var o agent.WriteOptions
	q := r.URL.Query()
	if m := q.Get("mode"); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o7777 {
			return o, invalidf("mode %q is not an octal file mode", m)
		}
		o.Mode = uint32(v)
	}
	o.Owner = q.Get("owner")
	var errs [3]error
	o.Parents, errs[0] = queryBool(r, "parents")
	overwrite := true
	if q.Get("overwrite") != "" {
		overwrite, errs[1] = queryBool(r, "overwrite")
	}
	o.NoOverwrite = !overwrite
	o.PreserveOwner, errs[2] = queryBool(r, "preserve_owner")
	return o, firstErr(errs[:]...)
}

// uploadBody bounds an upload by the configured maximum: a body declared
// larger is refused before a byte is written, one that grows past it is
// cut (the agent then discards its temporary file).
func (h *handler) uploadBody(w http.ResponseWriter, r *http.Request) (io.Reader, bool) {
	if r.ContentLength > h.cfg.MaxUploadSize {
		h.writeError(w, r, errdefs.Publicf(errdefs.ErrTooLarge, "the upload of %d bytes exceeds the limit of %d bytes", r.ContentLength, h.cfg.MaxUploadSize))
		return nil, false
	}
	return http.MaxBytesReader(w, r.Body, h.cfg.MaxUploadSize), true
}

// upload serves an upload route: the path and options from the query,
// the body bounded by the upload limit, write by the sandbox's agent.
func upload[Out any](h *handler, write func(ctx context.Context, a *agent.Client, path string, body io.Reader, o agent.WriteOptions) (Out, error)) func(http.ResponseWriter, *http.Request, store.Tenant) {
	return func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		p, err := queryPath(r)
		o, err2 := uploadOptions(r)
		if err = firstErr(err, err2); err != nil {
			h.writeError(w, r, err)
			return
		}
		body, ok := h.uploadBody(w, r)
		if !ok {
			return
		}
		a, ok := h.agentOr(w, r, t)
		if !ok {
			return
		}
		out, err := write(r.Context(), a, p, body, o)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, out)
	}
}

func (h *handler) removeFile(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, err := queryPath(r)
	recursive, err2 := queryBool(r, "recursive")
	if err = firstErr(err, err2); err != nil {
		h.writeError(w, r, err)
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	if err := a.Remove(r.Context(), p, recursive); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func toFindResult(res agent.FindResult, err error) (sbx.FindResult, error) {
	out := sbx.FindResult{Truncated: res.Truncated}
	for _, f := range res.Files {
		out.Files = append(out.Files, sbx.FileInfo(f))
	}
	for _, m := range res.Matches {
		out.Matches = append(out.Matches, sbx.SearchMatch(m))
	}
	return out, err
}

func toFileInfo(fi agent.FileInfo, err error) (sbx.FileInfo, error) { return sbx.FileInfo(fi), err }

// jsonCall serves a toolbox route whose request and answer are JSON: it
// decodes In, finds the sandbox's agent, calls fn and writes its answer
// with status.
func jsonCall[In, Out any](h *handler, status int, fn func(ctx context.Context, a *agent.Client, in In) (Out, error)) func(http.ResponseWriter, *http.Request, store.Tenant) {
	return func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		var in In
		if !h.decodeOrFail(w, r, &in, false) {
			return
		}
		a, ok := h.agentOr(w, r, t)
		if !ok {
			return
		}
		out, err := fn(r.Context(), a, in)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, status, out)
	}
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

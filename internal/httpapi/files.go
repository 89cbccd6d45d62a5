package httpapi

import (
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
	route("PUT /v1/sandboxes/{id}/files/content", h.uploadFile)
	route("GET /v1/sandboxes/{id}/files/archive", h.downloadArchive)
	route("PUT /v1/sandboxes/{id}/files/archive", h.uploadArchive)
	route("POST /v1/sandboxes/{id}/files/mkdir", h.mkdir)
	route("POST /v1/sandboxes/{id}/files/move", h.moveFile)
	route("POST /v1/sandboxes/{id}/files/chmod", h.chmod)
	route("DELETE /v1/sandboxes/{id}/files", h.removeFile)
	route("POST /v1/sandboxes/{id}/files/find", h.findFiles)
	route("POST /v1/sandboxes/{id}/files/search", h.searchFiles)
	route("POST /v1/sandboxes/{id}/files/replace", h.replaceInFiles)
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

func (h *handler) uploadFile(w http.ResponseWriter, r *http.Request, t store.Tenant) {
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
	fi, err := a.WriteFile(r.Context(), p, body, o)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sbx.FileInfo(fi))
}

func (h *handler) uploadArchive(w http.ResponseWriter, r *http.Request, t store.Tenant) {
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
	res, err := a.WriteTree(r.Context(), p, body, o)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sbx.ArchiveResult(res))
}

func (h *handler) mkdir(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.MkdirRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	if req.Mode > 0o7777 {
		h.writeError(w, r, invalidf("mode must be at most 07777"))
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	fi, err := a.Mkdir(r.Context(), agent.MkdirRequest(req))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, sbx.FileInfo(fi))
}

func (h *handler) moveFile(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.MoveRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	fi, err := a.Move(r.Context(), agent.MoveRequest(req))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sbx.FileInfo(fi))
}

func (h *handler) chmod(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.ChmodRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	fi, err := a.Chmod(r.Context(), agent.ChmodRequest(req))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sbx.FileInfo(fi))
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

func toFindResult(res agent.FindResult) sbx.FindResult {
	out := sbx.FindResult{Truncated: res.Truncated}
	for _, f := range res.Files {
		out.Files = append(out.Files, sbx.FileInfo(f))
	}
	for _, m := range res.Matches {
		out.Matches = append(out.Matches, sbx.SearchMatch(m))
	}
	return out
}

func (h *handler) findFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.FindRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	res, err := a.Find(r.Context(), agent.FindRequest(req))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toFindResult(res))
}

func (h *handler) searchFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.SearchRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	res, err := a.Search(r.Context(), agent.SearchRequest(req))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toFindResult(res))
}

func (h *handler) replaceInFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.ReplaceRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	res, err := a.Replace(r.Context(), agent.ReplaceRequest(req))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]sbx.ReplaceResult, len(res))
	for i, rr := range res {
		out[i] = sbx.ReplaceResult(rr)
	}
	writeJSON(w, http.StatusOK, out)
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

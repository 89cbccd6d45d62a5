package httpapi

import (
	"encoding/json"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func (h *handler) listImages(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	l, err := h.cfg.Images.List(r.Context(), t.ID)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sbx.ImageList{Items: toImages(l)})
}

func (h *handler) getImage(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	i, err := h.cfg.Images.Resolve(r.Context(), t.ID, r.PathValue("ref"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toImage(i))
}

func (h *handler) removeImage(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	if err := h.cfg.Images.Remove(r.Context(), t.ID, r.PathValue("ref")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// progressEvery throttles streamed pull progress: registries deliver many
// small reads, clients need a few updates a second.
const progressEvery = 100 * time.Millisecond

func (h *handler) pullImage(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.PullRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	if req.Ref == "" {
		h.writeError(w, r, invalidf("ref is required"))
		return
	}
	opts := image.PullOptions{Username: req.Username, Password: req.Password, Insecure: req.Insecure}
	if !wantsNDJSON(r) {
		i, err := h.cfg.Images.Pull(r.Context(), t.ID, req.Ref, opts)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, toImage(i))
		return
	}
	// The stream starts with the first progress report, so that a pull
	// refused up front (bad reference, unknown registry, auth) still gets
	// a proper problem answer.
	var (
		mu       sync.Mutex
		started  bool
		finished bool
		last     time.Time
		enc      = json.NewEncoder(w)
		rc       = http.NewResponseController(w)
	)
	start := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", sbx.NDJSON)
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
		}
	}
	send := func(f sbx.PullFrame) {
		start()
		enc.Encode(f)
		rc.Flush()
	}
	opts.Progress = func(p image.Progress) {
		mu.Lock()
		defer mu.Unlock()
		if finished || r.Context().Err() != nil || (started && !p.Done && time.Since(last) < progressEvery) {
			return
		}
		last = time.Now()
		send(sbx.PullFrame{Type: sbx.FrameProgress, Complete: p.Complete, Total: p.Total})
	}
	i, err := h.cfg.Images.Pull(r.Context(), t.ID, req.Ref, opts)
	mu.Lock()
	defer mu.Unlock()
	finished = true
	if err != nil {
		if !started {
			h.writeError(w, r, err)
			return
		}
		status, code := statusOf(err)
		if status == http.StatusInternalServerError {
			h.log.ErrorContext(r.Context(), "pulling image", "ref", req.Ref, "err", err)
		}
		send(sbx.PullFrame{Type: sbx.FrameError, Code: code, Message: publicMessage(err)})
		return
	}
	img := toImage(i)
	send(sbx.PullFrame{Type: sbx.FrameDone, Image: &img})
}

func (h *handler) importImage(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/octet-stream" && mt != "application/x-tar") {
			writeProblem(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
				"unsupported content type "+ct+"; send the tarball as application/octet-stream or application/x-tar")
			return
		}
	}
	if r.ContentLength > h.cfg.MaxImportSize {
		writeProblem(w, http.StatusRequestEntityTooLarge, sbx.CodeTooLarge, "the archive is larger than the import limit")
		return
	}
	// Streamed straight into the store; MaxBytesReader cuts off a body that
	// did not announce its length.
	body := http.MaxBytesReader(w, r.Body, h.cfg.MaxImportSize)
	imgs, err := h.cfg.Images.Import(r.Context(), t.ID, body, r.URL.Query().Get("ref"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, sbx.ImageList{Items: toImages(imgs)})
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Terminals: REST over the agent's PTY calls, and a WebSocket that
// translates the agent's attach stream. On the socket binary messages are
// the terminal's bytes both ways and text messages are sbx.PTYMessage JSON:
// "connected" first and "exit" (or "error") last from the server,
// "resize" from the client.
func (h *handler) ptyRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	route("POST /v1/sandboxes/{id}/ptys", h.createPTY)
	route("GET /v1/sandboxes/{id}/ptys", h.listPTYs)
	route("GET /v1/sandboxes/{id}/ptys/{ptyID}", h.getPTY)
	route("POST /v1/sandboxes/{id}/ptys/{ptyID}/resize", h.resizePTY)
	route("DELETE /v1/sandboxes/{id}/ptys/{ptyID}", h.killPTY)
	route("GET /v1/sandboxes/{id}/ptys/{ptyID}/connect", h.connectPTY)
}

// ptyConnectTimeout bounds the attach to the agent before the upgrade.
const ptyConnectTimeout = 30 * time.Second

func toPTY(p agent.PTYInfo) sbx.PTY {
	out := sbx.PTY{
		ID: p.ID, PID: p.PID, Argv: p.Argv, Cwd: p.Cwd, Cols: p.Cols, Rows: p.Rows,
		Running: p.Running, Attached: p.Attached, CreatedAt: p.CreatedAt.UTC(),
	}
	if out.Argv == nil {
		out.Argv = []string{}
	}
	for _, kv := range p.Env {
		k, v, _ := strings.Cut(kv, "=")
		if out.Env == nil {
			out.Env = map[string]string{}
		}
		out.Env[k] = v
	}
	if p.Exit != nil {
		out.Exit = toExitStatus(p.Exit)
	}
	return out
}

func (h *handler) createPTY(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.CreatePTYRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	areq := agent.PTYRequest{ID: req.ID, Argv: req.Argv, Cols: req.Cols, Rows: req.Rows, Cwd: req.Cwd, User: req.User}
	keys := make([]string, 0, len(req.Env))
	for k := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			h.writeError(w, r, invalidf("invalid environment variable name %q", k))
			return
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		areq.Env = append(areq.Env, k+"="+req.Env[k])
	}
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	p, err := a.CreatePTY(r.Context(), areq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toPTY(p))
}

func (h *handler) listPTYs(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	list, err := a.ListPTYs(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.PTYList{Items: make([]sbx.PTY, 0, len(list))}
	for _, p := range list {
		out.Items = append(out.Items, toPTY(p))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getPTY(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	p, err := a.GetPTY(r.Context(), r.PathValue("ptyID"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPTY(p))
}

func (h *handler) resizePTY(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.ResizePTYRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	p, err := a.ResizePTY(r.Context(), r.PathValue("ptyID"), agent.PTYSize{Cols: req.Cols, Rows: req.Rows})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPTY(p))
}

func (h *handler) killPTY(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := a.DeletePTY(r.Context(), r.PathValue("ptyID")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// connectPTY attaches to the agent first, so that an unknown sandbox or
// terminal, or a stopped sandbox, is an ordinary problem+json answer; only
// then does it upgrade to a WebSocket.
func (h *handler) connectPTY(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	offset := int64(-1)
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			h.writeError(w, r, invalidf("offset must be a byte offset (a non-negative integer), not %q", v))
			return
		}
		offset = n
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		h.writeError(w, r, invalidf("this route is a WebSocket: send Connection: Upgrade and Upgrade: websocket"))
		return
	}
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	// The stream lives as long as the socket, not the request: after the
	// hijack the request's context says nothing about the client.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	attachCtx, attachDone := context.WithTimeout(r.Context(), ptyConnectTimeout)
	stop := context.AfterFunc(attachCtx, cancel) // a client gone during the attach
	s, err := a.AttachPTY(ctx, r.PathValue("ptyID"), offset)
	stopped := stop()
	attachDone()
	if err != nil || !stopped {
		if err == nil {
			s.Close()
			err = attachCtx.Err()
		}
		h.writeError(w, r, err)
		return
	}
	defer s.Close()

	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		h.log.DebugContext(r.Context(), "terminal websocket", "path", r.URL.Path, "err", err)
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(4 << 20)
	go keepalive(ctx, ws)
	log := h.log.With("path", r.URL.Path)

	info := toPTY(s.Info())
	hello, _ := json.Marshal(sbx.PTYMessage{Type: sbx.PTYConnected, PTY: &info, Offset: s.Offset()})
	if err := ws.Write(ctx, websocket.MessageText, hello); err != nil {
		return
	}

	// Client to terminal; a client that leaves detaches (cancel).
	go func() {
		defer cancel()
		for {
			typ, data, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageBinary {
				if _, err := s.Write(data); err != nil {
					return
				}
				continue
			}
			var m sbx.PTYMessage
			if err := json.Unmarshal(data, &m); err != nil {
				ws.Close(websocket.StatusUnsupportedData, "text messages must be JSON control messages")
				return
			}
			if m.Type == sbx.PTYResize {
				if err := s.Resize(agent.PTYSize{Cols: m.Cols, Rows: m.Rows}); err != nil && errdefs.Kind(err) != errdefs.ErrInvalidArgument {
					return
				}
			}
		}
	}()

	// Terminal to client.
	fail := func(err error) {
		_, code := statusOf(err)
		if code == sbx.CodeInternal {
			log.ErrorContext(ctx, "terminal stream", "err", err)
		}
		msg, _ := json.Marshal(sbx.PTYMessage{Type: sbx.PTYError, Code: code, Message: publicMessage(err)})
		ws.Write(ctx, websocket.MessageText, msg)
		ws.Close(websocket.StatusInternalError, "terminal stream ended")
	}
	for {
		f, err := s.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return // the client left
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("the terminal's stream ended without an exit status")
			}
			if errdefs.Kind(err) == errdefs.ErrUnavailable {
				err = errdefs.Public(errdefs.ErrUnavailable, "the sandbox's agent went away (was the sandbox stopped?)")
			}
			fail(err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout:
			if err := ws.Write(ctx, websocket.MessageBinary, f.Data); err != nil {
				return
			}
		case agent.FrameExit:
			msg, _ := json.Marshal(sbx.PTYMessage{Type: sbx.PTYExit, Exit: toExitStatus(f.Exit)})
			if err := ws.Write(ctx, websocket.MessageText, msg); err != nil {
				return
			}
			ws.Close(websocket.StatusNormalClosure, "")
			return
		case agent.FrameError:
			// Another client took the terminal over.
			fail(f.Err)
			return
		}
	}
}

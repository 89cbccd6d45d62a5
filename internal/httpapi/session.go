package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// sessionRoutes serves /v1/sandboxes/{id}/sessions/…: named shells kept by
// the sandbox's agent, whose commands run sync or async and whose logs
// can be read whole, followed as NDJSON, or followed over a WebSocket.
func (h *handler) sessionRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	route("POST /v1/sandboxes/{id}/sessions", h.createSession)
	route("GET /v1/sandboxes/{id}/sessions", h.listSessions)
	route("GET /v1/sandboxes/{id}/sessions/{sid}", h.getSession)
	route("DELETE /v1/sandboxes/{id}/sessions/{sid}", h.deleteSession)
	route("POST /v1/sandboxes/{id}/sessions/{sid}/exec", h.sessionExec)
	route("GET /v1/sandboxes/{id}/sessions/{sid}/commands/{cid}", h.sessionCommand)
	route("GET /v1/sandboxes/{id}/sessions/{sid}/commands/{cid}/logs", h.sessionLogs)
	route("POST /v1/sandboxes/{id}/sessions/{sid}/commands/{cid}/input", h.sessionInput)
	route("POST /v1/sandboxes/{id}/sessions/{sid}/commands/{cid}/kill", h.sessionKill)
}

func toSessionCommand(c agent.SessionCommand) sbx.SessionCommand { return sbx.SessionCommand(c) }

func toSession(s agent.Session) sbx.Session {
	out := sbx.Session{ID: s.ID, CreatedAt: s.CreatedAt, Alive: s.Alive, Commands: make([]sbx.SessionCommand, len(s.Commands))}
	if s.Exit != nil {
		out.Exit = toExitStatus(s.Exit)
	}
	for i, c := range s.Commands {
		out.Commands[i] = toSessionCommand(c)
	}
	return out
}

func (h *handler) createSession(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.CreateSessionRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	env, err := envList(req.Env)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	s, err := a.CreateSession(r.Context(), agent.SessionRequest{ID: req.ID, Cwd: req.Cwd, Env: env, User: req.User})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toSession(s))
}

func (h *handler) listSessions(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	list, err := a.ListSessions(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := make([]sbx.Session, len(list))
	for i, s := range list {
		out[i] = toSession(s)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getSession(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	s, err := a.GetSession(r.Context(), r.PathValue("sid"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSession(s))
}

func (h *handler) deleteSession(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	if err := a.DeleteSession(r.Context(), r.PathValue("sid")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) sessionExec(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.SessionExecRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	if req.TimeoutSeconds < 0 || math.IsNaN(req.TimeoutSeconds) || req.TimeoutSeconds > 365*24*3600 {
		h.writeError(w, r, invalidf("timeout_seconds must not be negative"))
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	res, err := a.SessionExec(r.Context(), r.PathValue("sid"), agent.SessionExecRequest{
		Command: req.Command, Async: req.Async, Timeout: time.Duration(req.TimeoutSeconds * float64(time.Second)),
	})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	status := http.StatusOK
	if req.Async {
		status = http.StatusAccepted
	}
	writeJSON(w, status, sbx.SessionExecResult{Command: toSessionCommand(res.Command), Stdout: res.Stdout, Stderr: res.Stderr})
}

func (h *handler) sessionCommand(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	c, err := a.SessionCommand(r.Context(), r.PathValue("sid"), r.PathValue("cid"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSessionCommand(c))
}

// sessionLogs answers a command's output: whole as JSON; as NDJSON frames
// (followed until the command ends with follow=true); or as WebSocket text
// messages, one frame each, followed, when the request is an upgrade.
func (h *handler) sessionLogs(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	follow, err := queryBool(r, "follow")
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ws := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	// Only streams follow: a buffered JSON answer is the output so far
	// (bounded by the agent's per-command log), never an endless buffer.
	streamed := ws || wantsNDJSON(r)
	ls, err := a.SessionLogs(r.Context(), r.PathValue("sid"), r.PathValue("cid"), streamed && (follow || ws))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer ls.Close()
	stop := context.AfterFunc(r.Context(), func() { ls.Close() })
	defer stop()
	switch {
	case ws:
		h.sessionLogsWS(w, r, ls)
	case wantsNDJSON(r):
		w.Header().Set("Content-Type", sbx.NDJSON)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		enc := json.NewEncoder(w)
		rc.Flush()
		forwardLogFrames(ls, func(f sbx.ExecFrame) bool {
			return enc.Encode(f) == nil && rc.Flush() == nil
		})
	default:
		var out sbx.SessionLogs
		var stdout, stderr strings.Builder
		forwardLogFrames(ls, func(f sbx.ExecFrame) bool {
			switch f.Type {
			case sbx.FrameStdout:
				stdout.Write(f.Data)
			case sbx.FrameStderr:
				stderr.Write(f.Data)
			case sbx.FrameExit:
				code := f.Exit.Code
				out.ExitCode = &code
			}
			return true
		})
		out.Stdout = strings.ToValidUTF8(stdout.String(), "\uFFFD")
		out.Stderr = strings.ToValidUTF8(stderr.String(), "\uFFFD")
		writeJSON(w, http.StatusOK, out)
	}
}

// forwardLogFrames turns the agent's log frames into API frames until the
// stream ends or send refuses.
func forwardLogFrames(ls *agent.LogStream, send func(sbx.ExecFrame) bool) {
	for {
		f, err := ls.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				send(sbx.ExecFrame{Type: sbx.FrameError, Code: sbx.CodeUnavailable, Message: "the log stream broke: " + err.Error()})
			}
			return
		}
		var out sbx.ExecFrame
		switch f.Kind {
		case agent.FrameStdout:
			out = sbx.ExecFrame{Type: sbx.FrameStdout, Data: f.Data}
		case agent.FrameStderr:
			out = sbx.ExecFrame{Type: sbx.FrameStderr, Data: f.Data}
		case agent.FrameExit:
			out = sbx.ExecFrame{Type: sbx.FrameExit, Exit: toExitStatus(f.Exit)}
		default:
			continue
		}
		if !send(out) {
			return
		}
	}
}

func (h *handler) sessionLogsWS(w http.ResponseWriter, r *http.Request, ls *agent.LogStream) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(r.Context()) // we only send; a client close ends ctx
	go keepalive(ctx, conn)
	stop := context.AfterFunc(ctx, func() { ls.Close() })
	defer stop()
	forwardLogFrames(ls, func(f sbx.ExecFrame) bool {
		b, _ := json.Marshal(f)
		return conn.Write(ctx, websocket.MessageText, b) == nil
	})
	conn.Close(websocket.StatusNormalClosure, "")
}

func (h *handler) sessionInput(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.SessionInputRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	if err := a.SessionInput(r.Context(), r.PathValue("sid"), r.PathValue("cid"), agent.SessionInput{Data: []byte(req.Data), EOF: req.EOF}); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// parseSignal accepts "SIGTERM", "TERM" or "15".
func parseSignal(s string) (int, error) {
	if s == "" {
		return int(unix.SIGKILL), nil
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return n, nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return int(sig), nil
	}
	return 0, invalidf("unknown signal %q", s)
}

func (h *handler) sessionKill(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sig, err := parseSignal(r.URL.Query().Get("signal"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	a, ok := h.agentOr(w, r, t)
	if !ok {
		return
	}
	if err := a.SessionKill(r.Context(), r.PathValue("sid"), r.PathValue("cid"), sig); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

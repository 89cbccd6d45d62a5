package daytona

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/coder/websocket"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/store"
)

// The markers that label each chunk of a followed log: the SDK switches
// to stdout or stderr at each one.
var (
	stdoutMarker = []byte{1, 1, 1}
	stderrMarker = []byte{2, 2, 2}
)

// entrypointSession is the name under which Daytona exposes the image
// entrypoint's output as a session.
const entrypointSession = "entrypoint"

func (h *handler) sessionRoutes() {
	h.tb("POST /process/session", h.createSession)
	h.tb("GET /process/session", h.listSessions)
	h.tb("GET /process/session/{sid}", h.getSession)
	h.tb("DELETE /process/session/{sid}", h.deleteSession)
	h.tb("POST /process/session/{sid}/exec", h.sessionExec)
	h.tb("GET /process/session/{sid}/command/{cid}", h.sessionCommand)
	h.tb("GET /process/session/{sid}/command/{cid}/logs", h.sessionLogs)
	h.tb("POST /process/session/{sid}/command/{cid}/input", h.sessionInput)
	h.tb("GET /process/session/entrypoint/logs", h.entrypointLogs)
}

// Command is Daytona's description of a session command; ExitCode is
// absent while it runs.
type Command struct {
	ID       string `json:"id"`
	Command  string `json:"command"`
	ExitCode *int   `json:"exitCode,omitempty"`
}

// Session is Daytona's description of a session.
type Session struct {
	SessionID string    `json:"sessionId"`
	Commands  []Command `json:"commands"`
}

func toCommand(c agent.SessionCommand) Command {
	return Command{ID: c.ID, Command: c.Command, ExitCode: c.ExitCode}
}

func toSession(s agent.Session) Session {
	out := Session{SessionID: s.ID, Commands: make([]Command, 0, len(s.Commands))}
	for _, c := range s.Commands {
		out.Commands = append(out.Commands, toCommand(c))
	}
	return out
}

func (h *handler) createSession(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		SessionID string `json:"sessionId"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.SessionID == "" {
		h.fail(w, r, invalidf("sessionId is required"))
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if _, err := a.CreateSession(r.Context(), agent.SessionRequest{ID: req.SessionID}); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (h *handler) listSessions(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	l, err := a.ListSessions(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]Session, 0, len(l))
	for _, s := range l {
		out = append(out, toSession(s))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) getSession(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if r.PathValue("sid") == entrypointSession {
		// The entrypoint is no session in sbx: describe it as one
		// without commands.
		writeJSON(w, http.StatusOK, Session{SessionID: entrypointSession, Commands: []Command{}})
		return
	}
	s, err := a.GetSession(r.Context(), r.PathValue("sid"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSession(s))
}

func (h *handler) deleteSession(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if err := a.DeleteSession(r.Context(), r.PathValue("sid")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// execResponse is the answer of a session exec: for an asynchronous one
// only cmdId.
type execResponse struct {
	CmdID    string  `json:"cmdId"`
	Output   *string `json:"output,omitempty"`
	Stdout   *string `json:"stdout,omitempty"`
	Stderr   *string `json:"stderr,omitempty"`
	ExitCode *int    `json:"exitCode,omitempty"`
}

// logsResponse is a command's output so far.
type logsResponse struct {
	Output string `json:"output"` // stdout and stderr in the order written
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

// readLogs collects a command's retained output.
func readLogs(ctx context.Context, a *agent.Client, sid, cid string) (logsResponse, error) {
	ls, err := a.SessionLogs(ctx, sid, cid, false)
	if err != nil {
		return logsResponse{}, err
	}
	defer ls.Close()
	var all, out, errb strings.Builder
	for {
		f, err := ls.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return logsResponse{}, err
		}
		switch f.Kind {
		case agent.FrameStdout:
			all.Write(f.Data)
			out.Write(f.Data)
		case agent.FrameStderr:
			all.Write(f.Data)
			errb.Write(f.Data)
		}
	}
	valid := func(b *strings.Builder) string { return strings.ToValidUTF8(b.String(), "\uFFFD") }
	return logsResponse{Output: valid(&all), Stdout: valid(&out), Stderr: valid(&errb)}, nil
}

func (h *handler) sessionExec(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Command  string `json:"command"`
		RunAsync bool   `json:"runAsync"`
		Async    bool   `json:"async"` // the deprecated name
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.Command) == "" {
		h.fail(w, r, invalidf("command is required"))
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	sid := r.PathValue("sid")
	async := req.RunAsync || req.Async
	res, err := a.SessionExec(r.Context(), sid, agent.SessionExecRequest{Command: req.Command, Async: async})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if async {
		writeJSON(w, http.StatusAccepted, execResponse{CmdID: res.Command.ID})
		return
	}
	// The interleaved output comes from the log; the answer's split
	// streams are the fallback.
	logs, err := readLogs(r.Context(), a, sid, res.Command.ID)
	if err != nil {
		logs = logsResponse{Output: res.Stdout + res.Stderr, Stdout: res.Stdout, Stderr: res.Stderr}
	}
	writeJSON(w, http.StatusOK, execResponse{
		CmdID: res.Command.ID, Output: &logs.Output, Stdout: &logs.Stdout, Stderr: &logs.Stderr, ExitCode: res.Command.ExitCode,
	})
}

func (h *handler) sessionCommand(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	c, err := a.SessionCommand(r.Context(), r.PathValue("sid"), r.PathValue("cid"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toCommand(c))
}

// isWebSocket reports whether the request asks for a WebSocket upgrade.
func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func (h *handler) sessionLogs(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	sid, cid := r.PathValue("sid"), r.PathValue("cid")
	if !isWebSocket(r) {
		logs, err := readLogs(r.Context(), a, sid, cid)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, logs)
		return
	}
	// Open the log before the upgrade, so that an unknown command is a
	// plain 404 the SDK can read.
	ctx := r.Context()
	ls, err := a.SessionLogs(ctx, sid, cid, true)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer ls.Close()
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	// The client sends nothing; reading keeps control frames answered
	// and notices a client that leaves.
	ctx = conn.CloseRead(ctx)
	stop := context.AfterFunc(ctx, func() { ls.Close() })
	defer stop()
	for {
		f, err := ls.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				conn.Close(websocket.StatusNormalClosure, "")
			} else {
				conn.Close(websocket.StatusInternalError, "log stream ended")
			}
			return
		}
		var marker []byte
		switch f.Kind {
		case agent.FrameStdout:
			marker = stdoutMarker
		case agent.FrameStderr:
			marker = stderrMarker
		case agent.FrameExit:
			conn.Close(websocket.StatusNormalClosure, "")
			return
		default:
			continue
		}
		if err := conn.Write(ctx, websocket.MessageBinary, labelled(marker, f.Data)); err != nil {
			return
		}
	}
}

// labelled is one chunk of a followed log: its marker, then its bytes.
func labelled(marker, data []byte) []byte {
	return append(append(make([]byte, 0, len(marker)+len(data)), marker...), data...)
}

func (h *handler) sessionInput(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Data string `json:"data"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if err := a.SessionInput(r.Context(), r.PathValue("sid"), r.PathValue("cid"), agent.SessionInput{Data: []byte(req.Data)}); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// entrypointLogs serves the image entrypoint's output as Daytona's
// entrypoint session log (all of it as stdout: the agent keeps one
// stream).
func (h *handler) entrypointLogs(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	follow := isWebSocket(r)
	rc, err := h.cfg.Sandboxes.Logs(r.Context(), t.ID, r.PathValue("sandbox"), follow)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer rc.Close()
	if !follow {
		b, err := io.ReadAll(io.LimitReader(rc, int64(h.cfg.MaxExecOutput)))
		if err != nil {
			h.fail(w, r, err)
			return
		}
		s := strings.ToValidUTF8(string(b), "\uFFFD")
		writeJSON(w, http.StatusOK, logsResponse{Output: s, Stdout: s})
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(r.Context())
	stop := context.AfterFunc(ctx, func() { rc.Close() })
	defer stop()
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if conn.Write(ctx, websocket.MessageBinary, labelled(stdoutMarker, buf[:n])) != nil {
				return
			}
		}
		if err != nil {
			conn.Close(websocket.StatusNormalClosure, "")
			return
		}
	}
}

package daytona

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/coder/websocket"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// PTY WebSocket subprotocols the SDK offers: the exit-control capability
// (we then send the "exited" control message) and the terminal's
// environment, base64url (no padding) of a JSON object.
const (
	ptyExitControl = "X-Daytona-Pty-Exit-Control"
	ptyEnvsPrefix  = "X-Daytona-Pty-Envs~"
)

func (h *handler) ptyRoutes() {
	h.tb("GET /process/pty/create-connect", h.ptyCreateConnect)
	h.tb("GET /process/pty/{pid}/connect", h.ptyConnect)
	h.tb("POST /process/pty", h.ptyCreate)
	h.tb("GET /process/pty", h.ptyList)
	h.tb("GET /process/pty/{pid}", h.ptyGet)
	h.tb("DELETE /process/pty/{pid}", h.ptyDelete)
	h.tb("POST /process/pty/{pid}/resize", h.ptyResize)
}

// PtyInfo is Daytona's PtySessionInfo.
type PtyInfo struct {
	ID        string            `json:"id"`
	Cwd       string            `json:"cwd"`
	Envs      map[string]string `json:"envs"`
	Cols      int               `json:"cols"`
	Rows      int               `json:"rows"`
	CreatedAt string            `json:"createdAt"`
	Active    bool              `json:"active"`
	LazyStart bool              `json:"lazyStart"`
}

func toPtyInfo(p agent.PTYInfo) PtyInfo {
	envs := map[string]string{}
	for _, kv := range p.Env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			envs[k] = v
		}
	}
	return PtyInfo{ID: p.ID, Cwd: p.Cwd, Envs: envs, Cols: p.Cols, Rows: p.Rows, CreatedAt: isoTime(p.CreatedAt), Active: p.Running}
}

// ptyProtocols reads the offered subprotocols: the one to echo (the ws
// client fails a handshake that echoes none when some were offered, or
// one that was not offered) and the environment.
func ptyProtocols(offered []string) (echo string, env map[string]string, err error) {
	for _, p := range offered {
		p = strings.TrimSpace(p)
		switch {
		case p == ptyExitControl:
			echo = p
		case strings.HasPrefix(p, ptyEnvsPrefix):
			b, derr := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(p, ptyEnvsPrefix))
			if derr != nil || json.Unmarshal(b, &env) != nil {
				return "", nil, invalidf("the %s subprotocol is not base64url JSON", strings.TrimSuffix(ptyEnvsPrefix, "~"))
			}
		}
	}
	if echo == "" && len(offered) > 0 {
		echo = strings.TrimSpace(offered[0])
	}
	return echo, env, nil
}

// offeredProtocols splits Sec-WebSocket-Protocol.
func offeredProtocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// acceptPTY upgrades with the subprotocol to echo.
func acceptPTY(w http.ResponseWriter, r *http.Request, echo string) (*websocket.Conn, error) {
	opts := &websocket.AcceptOptions{}
	if echo != "" {
		opts.Subprotocols = []string{echo}
	}
	return websocket.Accept(w, r, opts)
}

// control is a PTY control message.
type control struct {
	Type       string `json:"type"` // "control"
	Status     string `json:"status"`
	ExitCode   *int   `json:"exitCode,omitempty"`
	ExitReason string `json:"exitReason,omitempty"`
	Error      string `json:"error,omitempty"`
}

func sendControl(ctx context.Context, conn *websocket.Conn, c control) error {
	c.Type = "control"
	b, _ := json.Marshal(c)
	return conn.Write(ctx, websocket.MessageText, b)
}

// closeWithError sends the error control message and closes, the reason
// carrying {"error"} as Daytona's daemon does.
func closeWithError(ctx context.Context, conn *websocket.Conn, err error) {
	msg := publicMessage(err)
	sendControl(ctx, conn, control{Status: "error", Error: msg})
	reason, _ := json.Marshal(map[string]string{"error": msg})
	conn.Close(websocket.StatusInternalError, truncateReason(string(reason)))
}

// truncateReason keeps a close reason within the 123 bytes a close frame
// allows.
func truncateReason(s string) string {
	if len(s) <= 123 {
		return s
	}
	return s[:123]
}

// exitReason names how a terminal's process ended, in Daytona's words.
func exitReason(e agent.ExitStatus) string {
	switch {
	case e.Code == 0:
		return ""
	case e.Signal == "SIGINT":
		return "Ctrl+C"
	case e.Signal == "SIGKILL":
		return "SIGKILL"
	case e.Signal == "SIGTERM":
		return "SIGTERM"
	case e.Signal != "":
		return "signal " + e.Signal
	}
	return "non-zero exit"
}

func sizeParam(r *http.Request, name string, def int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 0xffff {
		return 0, invalidf("%s must be an integer from 1 to 65535", name)
	}
	return n, nil
}

func (h *handler) ptyCreateConnect(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	q := r.URL.Query()
	id := q.Get("id")
	cols, err := sizeParam(r, "cols", 80)
	rows, err2 := sizeParam(r, "rows", 24)
	echo, env, err3 := ptyProtocols(offeredProtocols(r))
	if err = errors.Join(err, err2, err3); err != nil {
		h.fail(w, r, err)
		return
	}
	envs, err := envPairs(env)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	conn, err := acceptPTY(w, r, echo)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := r.Context()
	// Errors after the upgrade travel as Daytona's error control
	// message, which the SDK raises from waitForConnection.
	if _, err := a.CreatePTY(ctx, agent.PTYRequest{ID: id, Cols: cols, Rows: rows, Cwd: q.Get("cwd"), Env: envs}); err != nil {
		closeWithError(ctx, conn, err)
		return
	}
	h.relayPTY(ctx, conn, a, id)
}

func (h *handler) ptyConnect(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	echo, _, err := ptyProtocols(offeredProtocols(r))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if _, err := a.GetPTY(r.Context(), r.PathValue("pid")); err != nil {
		h.fail(w, r, err)
		return
	}
	conn, err := acceptPTY(w, r, echo)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	h.relayPTY(r.Context(), conn, a, r.PathValue("pid"))
}

// relayPTY attaches to a terminal and relays it: the connected control
// message, then output as binary messages and input (binary or text) from
// the client, then the exited control message and a close whose reason
// is {"exitCode","exitReason"}. A client that leaves detaches; the
// terminal keeps running, as in Daytona.
func (h *handler) relayPTY(ctx context.Context, conn *websocket.Conn, a *agent.Client, id string) {
	st, err := a.AttachPTY(ctx, id, -1)
	if err != nil {
		closeWithError(ctx, conn, err)
		return
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := sendControl(ctx, conn, control{Status: "connected"}); err != nil {
		return
	}
	go func() {
		defer cancel()
		for {
			_, msg, err := conn.Read(ctx)
			if err != nil {
				st.Close() // detach
				return
			}
			if _, err := st.Write(msg); err != nil {
				return
			}
		}
	}()
	for {
		f, err := st.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return // the client left
			}
			if errors.Is(err, io.EOF) {
				err = errdefs.Public(errdefs.ErrUnavailable, "the terminal's stream ended without an exit status")
			}
			closeWithError(ctx, conn, err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout:
			if conn.Write(ctx, websocket.MessageBinary, f.Data) != nil {
				return
			}
		case agent.FrameExit:
			code := f.Exit.Code
			reason := exitReason(*f.Exit)
			sendControl(ctx, conn, control{Status: "exited", ExitCode: &code, ExitReason: reason})
			b, _ := json.Marshal(struct {
				ExitCode   int    `json:"exitCode"`
				ExitReason string `json:"exitReason,omitempty"`
			}{code, reason})
			status := websocket.StatusNormalClosure
			if code != 0 {
				status = websocket.StatusInternalError
			}
			conn.Close(status, truncateReason(string(b)))
			return
		case agent.FrameError:
			// Another client attached and took the terminal over.
			closeWithError(ctx, conn, f.Err)
			return
		}
	}
}

func (h *handler) ptyCreate(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		ID   string            `json:"id"`
		Cwd  string            `json:"cwd"`
		Envs map[string]string `json:"envs"`
		Cols int               `json:"cols"`
		Rows int               `json:"rows"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	envs, err := envPairs(req.Envs)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	p, err := a.CreatePTY(r.Context(), agent.PTYRequest{ID: req.ID, Cwd: req.Cwd, Env: envs, Cols: req.Cols, Rows: req.Rows})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"sessionId": p.ID})
}

func (h *handler) ptyList(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	l, err := a.ListPTYs(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := make([]PtyInfo, 0, len(l))
	for _, p := range l {
		out = append(out, toPtyInfo(p))
	}
	writeJSON(w, http.StatusOK, map[string][]PtyInfo{"sessions": out})
}

func (h *handler) ptyGet(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	p, err := a.GetPTY(r.Context(), r.PathValue("pid"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPtyInfo(p))
}

func (h *handler) ptyDelete(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if err := a.DeletePTY(r.Context(), r.PathValue("pid")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *handler) ptyResize(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req agent.PTYSize
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.Cols < 1 || req.Rows < 1 || req.Cols > 0xffff || req.Rows > 0xffff {
		h.fail(w, r, invalidf("cols and rows must be from 1 to 65535"))
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	p, err := a.ResizePTY(r.Context(), r.PathValue("pid"), req)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toPtyInfo(p))
}

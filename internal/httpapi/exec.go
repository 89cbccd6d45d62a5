package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"mime"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// wantsNDJSON reports whether the client asked for a streamed answer.
func wantsNDJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == sbx.NDJSON {
			return true
		}
	}
	return false
}

func toExitStatus(e *agent.ExitStatus) *sbx.ExitStatus {
	return &sbx.ExitStatus{
		Code: e.Code, Signal: e.Signal, TimedOut: e.TimedOut, OOMKilled: e.OOMKilled,
		DurationMS: e.Duration.Milliseconds(),
	}
}

// toAgentExec checks an exec request and turns it into the agent's.
func toAgentExec(req sbx.ExecRequest) (agent.ExecRequest, error) {
	if (len(req.Argv) == 0) == (req.Shell == "") {
		return agent.ExecRequest{}, invalidf("exactly one of argv and shell must be given")
	}
	if req.TimeoutSeconds < 0 || math.IsNaN(req.TimeoutSeconds) || req.TimeoutSeconds > 365*24*3600 {
		return agent.ExecRequest{}, invalidf("timeout_seconds must not be negative")
	}
	out := agent.ExecRequest{
		Argv: req.Argv, Shell: req.Shell, Cwd: req.Cwd, User: req.User,
		Timeout: time.Duration(req.TimeoutSeconds * float64(time.Second)),
		Stdin:   req.Stdin != nil,
	}
	env, err := envList(req.Env)
	if err != nil {
		return agent.ExecRequest{}, err
	}
	out.Env = env
	return out, nil
}

// startError is the API error for a command the agent could not start.
// Most are the caller's input (no such program, user or directory: the
// agent's not_found and the like are reported as invalid arguments, as
// they are not about the sandbox), but an agent-side failure without a
// user-facing kind is internal, and a conflict stays a conflict.
func startError(err error, msg []byte) error {
	switch errdefs.Kind(err) {
	case nil:
		if err != nil {
			return err // internal: logged, never shown
		}
		return errdefs.Public(errdefs.ErrInvalidArgument, string(msg))
	case errdefs.ErrConflict, errdefs.ErrResourceExhausted, errdefs.ErrPermissionDenied, errdefs.ErrTooLarge:
		return err
	}
	return errdefs.Public(errdefs.ErrInvalidArgument, string(msg))
}

// envList turns an API environment into sorted "K=V" pairs.
func envList(env map[string]string) ([]string, error) { return agent.EnvList(env) }

func (h *handler) execSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.ExecRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	areq, err := toAgentExec(req)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	// The request's context: a client that goes away cancels the exec.
	p, err := h.exec(r.Context(), t.ID, r.PathValue("id"), areq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer p.Close()
	// A client that goes away ends the stream even while Recv waits.
	stop := context.AfterFunc(r.Context(), func() { p.Close() })
	defer stop()
	if areq.Stdin {
		go func() {
			if len(req.Stdin) > 0 {
				if _, err := p.Write(req.Stdin); err != nil {
					return
				}
			}
			p.CloseStdin()
		}()
	}
	if wantsNDJSON(r) {
		h.streamExec(w, r, p)
		return
	}
	h.bufferExec(w, r, p)
}

// streamExec sends each frame as one NDJSON line, flushed.
func (h *handler) streamExec(w http.ResponseWriter, r *http.Request, p Process) {
	w.Header().Set("Content-Type", sbx.NDJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(f sbx.ExecFrame) bool {
		if err := enc.Encode(f); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	rc.Flush()
	for {
		f, err := p.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the command's stream ended without an exit status")
			}
			if r.Context().Err() != nil {
				return // the client left; Close kills the command
			}
			status, code := statusOf(err)
			if status == http.StatusInternalServerError {
				h.log.ErrorContext(r.Context(), "exec stream", "path", r.URL.Path, "err", err)
			}
			send(sbx.ExecFrame{Type: sbx.FrameError, Code: code, Message: publicMessage(err)})
			return
		}
		switch f.Kind {
		case agent.FrameStdout:
			if !send(sbx.ExecFrame{Type: sbx.FrameStdout, Data: f.Data}) {
				return
			}
		case agent.FrameStderr:
			if !send(sbx.ExecFrame{Type: sbx.FrameStderr, Data: f.Data}) {
				return
			}
		case agent.FrameExit:
			if f.Exit == nil {
				send(sbx.ExecFrame{Type: sbx.FrameError, Code: sbx.CodeInternal, Message: "exit frame without status"})
				return
			}
			send(sbx.ExecFrame{Type: sbx.FrameExit, Exit: toExitStatus(f.Exit)})
			return
		case agent.FrameError:
			// The agent could not start the command (no such program,
			// unknown user, bad cwd): the caller's input.
			_, code := statusOf(startError(f.Err, f.Data))
			send(sbx.ExecFrame{Type: sbx.FrameError, Code: code, Message: string(f.Data)})
			return
		}
	}
}

// capped keeps the first max bytes written to it and counts the rest.
type capped struct {
	buf       []byte
	max       int
	truncated bool
}

func (c *capped) add(p []byte) {
	if room := c.max - len(c.buf); room < len(p) {
		p = p[:max(room, 0)]
		c.truncated = true
	}
	c.buf = append(c.buf, p...)
}

// bufferExec collects the output and answers once the command has ended.
// Past the cap, output is still read (and dropped) so that the command is
// never blocked on a full pipe.
func (h *handler) bufferExec(w http.ResponseWriter, r *http.Request, p Process) {
	stdout := &capped{max: h.cfg.MaxExecOutput}
	stderr := &capped{max: h.cfg.MaxExecOutput}
	for {
		f, err := p.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the command's stream ended without an exit status")
			}
			h.writeError(w, r, err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout:
			stdout.add(f.Data)
		case agent.FrameStderr:
			stderr.add(f.Data)
		case agent.FrameError:
			h.writeError(w, r, startError(f.Err, f.Data))
			return
		case agent.FrameExit:
			if f.Exit == nil {
				h.writeError(w, r, errors.New("exit frame without status"))
				return
			}
			e := toExitStatus(f.Exit)
			writeJSON(w, http.StatusOK, sbx.ExecResult{
				ExitCode: e.Code, Signal: e.Signal, TimedOut: e.TimedOut, OOMKilled: e.OOMKilled, DurationMS: e.DurationMS,
				Stdout: strings.ToValidUTF8(string(stdout.buf), "\uFFFD"), Stderr: strings.ToValidUTF8(string(stderr.buf), "\uFFFD"),
				StdoutTruncated: stdout.truncated, StderrTruncated: stderr.truncated,
			})
			return
		}
	}
}

// Keepalive timing of the toolbox WebSockets.
const (
	pingEvery   = 30 * time.Second
	pingTimeout = 60 * time.Second // generous: a client reads pongs only when it reads
)

// keepalive pings conn until ctx ends and closes it when a pong does not
// come back: a client that vanished without a FIN (a laptop closed, a NAT
// timeout) must not hold a stream and its agent connection for ever. The
// connection must have a reader (pongs are read there).
func keepalive(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(pingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				conn.CloseNow()
				return
			}
		}
	}
}

// ExecControl is a client message of a WebSocket exec.
type execControl struct {
	Type   string `json:"type"` // stdin, stdin_close, signal
	Data   []byte `json:"data,omitempty"`
	Signal string `json:"signal,omitempty"`
}

// execWebSocket runs a command over a WebSocket: the client's first text
// message is the ExecRequest; then it may send {"type":"stdin","data"},
// {"type":"stdin_close"} and {"type":"signal","signal":"SIGINT"} while
// the server sends the frames of the NDJSON stream, one text message
// each, and closes after the exit (or error) frame. The command's stdin is
// the client's stdin messages.
func (h *handler) execWebSocket(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	// Refuse an unknown or stopped sandbox before the upgrade, with a
	// problem a plain HTTP client can read.
	if _, err := h.cfg.Sandboxes.Get(r.Context(), t.ID, r.PathValue("id")); err != nil {
		h.writeError(w, r, err)
		return
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxJSONBody + 64<<10)
	ctx := r.Context()
	go keepalive(ctx, conn)
	sendFrame := func(f sbx.ExecFrame) bool {
		b, _ := json.Marshal(f)
		return conn.Write(ctx, websocket.MessageText, b) == nil
	}
	fail := func(err error) {
		status, code := statusOf(err)
		if status == http.StatusInternalServerError {
			h.log.ErrorContext(ctx, "exec websocket", "err", err)
		}
		sendFrame(sbx.ExecFrame{Type: sbx.FrameError, Code: code, Message: publicMessage(err)})
		conn.Close(websocket.StatusNormalClosure, "")
	}
	typ, msg, err := conn.Read(ctx)
	if err != nil {
		return
	}
	var req sbx.ExecRequest
	if typ != websocket.MessageText {
		fail(invalidf("the first message must be the exec request as JSON text"))
		return
	}
	dec := json.NewDecoder(strings.NewReader(string(msg)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(invalidf("decoding the exec request: %v", err))
		return
	}
	req.Stdin = []byte{} // stdin comes from messages
	areq, err := toAgentExec(req)
	if err != nil {
		fail(err)
		return
	}
	areq.Stdin = true
	p, err := h.exec(ctx, t.ID, r.PathValue("id"), areq)
	if err != nil {
		fail(err)
		return
	}
	defer p.Close()
	stop := context.AfterFunc(ctx, func() { p.Close() })
	defer stop()
	go func() {
		for {
			typ, msg, err := conn.Read(ctx)
			if err != nil {
				p.Close() // the client left: the command is killed
				return
			}
			if typ != websocket.MessageText {
				p.Write(msg) // binary messages are raw stdin
				continue
			}
			var c execControl
			if json.Unmarshal(msg, &c) != nil {
				continue
			}
			switch c.Type {
			case "stdin":
				if _, err := p.Write(c.Data); err != nil {
					return
				}
			case "stdin_close":
				p.CloseStdin()
			case "signal":
				if sig, err := parseSignal(c.Signal); err == nil {
					p.Signal(syscall.Signal(sig))
				}
			}
		}
	}()
	for {
		f, err := p.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("the command's stream ended without an exit status")
			}
			fail(err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout, agent.FrameStderr:
			typ := sbx.FrameStdout
			if f.Kind == agent.FrameStderr {
				typ = sbx.FrameStderr
			}
			if !sendFrame(sbx.ExecFrame{Type: typ, Data: f.Data}) {
				return
			}
		case agent.FrameExit:
			sendFrame(sbx.ExecFrame{Type: sbx.FrameExit, Exit: toExitStatus(f.Exit)})
			conn.Close(websocket.StatusNormalClosure, "")
			return
		case agent.FrameError:
			_, code := statusOf(startError(f.Err, f.Data))
			sendFrame(sbx.ExecFrame{Type: sbx.FrameError, Code: code, Message: string(f.Data)})
			conn.Close(websocket.StatusNormalClosure, "")
			return
		}
	}
}

package sbx

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/coder/websocket"
)

// ExecConn is a command running over a WebSocket: standard input and
// signals can be sent while its output streams. Recv must be called from
// one goroutine at a time; the other methods may be called concurrently.
type ExecConn struct {
	ws   *websocket.Conn
	ctx  context.Context
	done bool
}

// ExecInteractive starts a command whose stdin stays open for Write until
// CloseStdin, and which can be signalled. req.Stdin is ignored.
func (c *Client) ExecInteractive(ctx context.Context, id string, req ExecRequest) (*ExecConn, error) {
	hdr := c.header.Clone()
	if c.key != "" {
		hdr.Set("Authorization", "Bearer "+c.key)
	}
	ws, resp, err := websocket.Dial(ctx, c.base+sandboxPath(id, "exec", "ws"), &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: hdr})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, decodeProblem(resp)
		}
		return nil, fmt.Errorf("exec: %w", err)
	}
	ws.SetReadLimit(4 << 20)
	req.Stdin = nil
	b, _ := json.Marshal(req)
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("exec: sending the request: %w", err)
	}
	return &ExecConn{ws: ws, ctx: ctx}, nil
}

func (e *ExecConn) control(v any) error {
	b, _ := json.Marshal(v)
	return e.ws.Write(e.ctx, websocket.MessageText, b)
}

// Write sends p to the command's stdin.
func (e *ExecConn) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), wsChunk) // the server bounds one message
		if err := e.ws.Write(e.ctx, websocket.MessageBinary, p[:c]); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

// wsChunk is the largest WebSocket message the SDK sends.
const wsChunk = 32 << 10

// CloseStdin ends the command's stdin.
func (e *ExecConn) CloseStdin() error {
	return e.control(map[string]string{"type": "stdin_close"})
}

// Signal sends a signal ("SIGINT", "TERM", "9") to the command's process
// group.
func (e *ExecConn) Signal(sig string) error {
	return e.control(map[string]string{"type": "signal", "signal": sig})
}

// Recv returns the next frame: stdout and stderr, then exit or error;
// io.EOF after that.
func (e *ExecConn) Recv() (ExecFrame, error) {
	if e.done {
		return ExecFrame{}, io.EOF
	}
	_, msg, err := e.ws.Read(e.ctx)
	if err != nil {
		return ExecFrame{}, fmt.Errorf("exec stream: %w", err)
	}
	var f ExecFrame
	if err := json.Unmarshal(msg, &f); err != nil {
		return ExecFrame{}, fmt.Errorf("exec stream: %w", err)
	}
	if f.Type == FrameExit || f.Type == FrameError {
		e.done = true
	}
	return f, nil
}

// Wait copies the output to stdout and stderr (either may be nil) until
// the command ends, and returns how it ended.
func (e *ExecConn) Wait(stdout, stderr io.Writer) (ExitStatus, error) {
	return consumeFrames(e.Recv, stdout, stderr)
}

// Close abandons the command (it is killed if it still runs).
func (e *ExecConn) Close() error {
	return e.ws.Close(websocket.StatusNormalClosure, "")
}

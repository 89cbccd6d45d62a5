package sbx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// PTY is a terminal in a sandbox: a process on a pseudo-terminal that
// outlives the connections watching it.
type PTY struct {
	ID   string   `json:"id"`
	PID  int      `json:"pid"` // inside the sandbox
	Argv []string `json:"argv"`
	Cwd  string   `json:"cwd"`
	// Env is the environment the terminal was created with, on top of
	// the sandbox's.
	Env      map[string]string `json:"env,omitempty"`
	Cols     int               `json:"cols"`
	Rows     int               `json:"rows"`
	Running  bool              `json:"running"`
	Attached bool              `json:"attached"` // a client is connected now
	// Exit is set once the process has ended; the terminal is kept for a
	// while so that a late reconnect still learns how it ended.
	Exit      *ExitStatus `json:"exit,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
}

// CreatePTYRequest opens a terminal. Every field is optional.
type CreatePTYRequest struct {
	// ID names the terminal (1-64 of letters, digits, '.', '_', '-');
	// empty lets the server choose.
	ID string `json:"id,omitempty"`
	// Argv is the command; default: the sandbox's shell (/bin/bash if
	// present, else /bin/sh).
	Argv []string `json:"argv,omitempty"`
	Cols int      `json:"cols,omitempty"` // default 80
	Rows int      `json:"rows,omitempty"` // default 24
	Cwd  string   `json:"cwd,omitempty"`
	// Env is added to the sandbox's environment; TERM is xterm-256color
	// unless set here.
	Env  map[string]string `json:"env,omitempty"`
	User string            `json:"user,omitempty"`
}

// PTYList is the answer of GET /v1/sandboxes/{id}/ptys.
type PTYList struct {
	Items []PTY `json:"items"`
}

// ResizePTYRequest is a terminal's new size in character cells.
type ResizePTYRequest struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// Types of the PTYMessage control messages of a terminal's WebSocket.
const (
	PTYConnected = "connected" // server to client, first: PTY and Offset
	PTYResize    = "resize"    // client to server: Cols and Rows
	PTYExit      = "exit"      // server to client, last: Exit
	PTYError     = "error"     // server to client, last: Code and Message
)

// PTYMessage is a text (JSON) message of a terminal's WebSocket; binary
// messages carry the terminal's bytes both ways.
type PTYMessage struct {
	Type string `json:"type"`
	PTY  *PTY   `json:"pty,omitempty"`
	// Offset (connected) is the absolute output offset of the first byte
	// that follows.
	Offset  int64       `json:"offset,omitempty"`
	Cols    int         `json:"cols,omitempty"`
	Rows    int         `json:"rows,omitempty"`
	Exit    *ExitStatus `json:"exit,omitempty"`
	Code    string      `json:"code,omitempty"`
	Message string      `json:"message,omitempty"`
}

func ptyPath(id, ptyID string, rest ...string) string {
	return sandboxPath(id, append([]string{"ptys", url.PathEscape(ptyID)}, rest...)...)
}

// CreatePTY opens a terminal in a started sandbox and starts its process.
func (c *Client) CreatePTY(ctx context.Context, id string, req CreatePTYRequest) (PTY, error) {
	var p PTY
	return p, c.do(ctx, http.MethodPost, sandboxPath(id, "ptys"), nil, req, &p)
}

// ListPTYs lists a sandbox's terminals, oldest first.
func (c *Client) ListPTYs(ctx context.Context, id string) ([]PTY, error) {
	var l PTYList
	return l.Items, c.do(ctx, http.MethodGet, sandboxPath(id, "ptys"), nil, nil, &l)
}

// GetPTY describes a terminal.
func (c *Client) GetPTY(ctx context.Context, id, ptyID string) (PTY, error) {
	var p PTY
	return p, c.do(ctx, http.MethodGet, ptyPath(id, ptyID), nil, nil, &p)
}

// ResizePTY sets a terminal's size; its foreground process gets SIGWINCH.
func (c *Client) ResizePTY(ctx context.Context, id, ptyID string, cols, rows int) (PTY, error) {
	var p PTY
	return p, c.do(ctx, http.MethodPost, ptyPath(id, ptyID, "resize"), nil, ResizePTYRequest{Cols: cols, Rows: rows}, &p)
}

// KillPTY kills a terminal's process group with SIGKILL and deletes the
// terminal; a connected client gets the exit message.
func (c *Client) KillPTY(ctx context.Context, id, ptyID string) error {
	return c.do(ctx, http.MethodDelete, ptyPath(id, ptyID), nil, nil, nil)
}

// ConnectPTY attaches to a terminal over a WebSocket. The server first
// replays the terminal's recent output from offset (-1: all it retains;
// a previous connection's Offset resumes without duplicates), then streams
// it live. Only one client is connected at a time: a newer connection
// ends this one with a conflict error. Closing the connection, or
// cancelling ctx, detaches; the process keeps running.
func (c *Client) ConnectPTY(ctx context.Context, id, ptyID string, offset int64) (*PTYConn, error) {
	u := c.base + ptyPath(id, ptyID, "connect")
	if offset >= 0 {
		u += "?offset=" + strconv.FormatInt(offset, 10)
	}
	hdr := c.header.Clone()
	if c.key != "" {
		hdr.Set("Authorization", "Bearer "+c.key)
	}
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: c.http, HTTPHeader: hdr})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, decodeProblem(resp)
		}
		return nil, fmt.Errorf("connecting to terminal %s: %w", ptyID, err)
	}
	ws.SetReadLimit(4 << 20)
	pc := &PTYConn{ws: ws, ctx: ctx}
	typ, data, err := ws.Read(ctx)
	var m PTYMessage
	if err == nil && typ == websocket.MessageText {
		err = json.Unmarshal(data, &m)
	}
	switch {
	case err != nil:
		ws.CloseNow()
		return nil, fmt.Errorf("connecting to terminal %s: %w", ptyID, err)
	case m.Type == PTYError:
		ws.CloseNow()
		return nil, streamError(m.Code, m.Message)
	case m.Type != PTYConnected || m.PTY == nil:
		ws.CloseNow()
		return nil, fmt.Errorf("connecting to terminal %s: the first message is %q, not %q", ptyID, m.Type, PTYConnected)
	}
	pc.info, pc.off = *m.PTY, m.Offset
	return pc, nil
}

// PTYConn is a connection to a terminal. Read must be called from one
// goroutine at a time; Write and Resize may be called concurrently with
// Read and with each other.
type PTYConn struct {
	ws  *websocket.Conn
	ctx context.Context

	info PTY
	buf  []byte
	err  error // what Read returns once buf is empty

	mu   sync.Mutex
	off  int64
	exit *ExitStatus
}

// Info is the terminal as it was when the connection was made.
func (p *PTYConn) Info() PTY { return p.info }

// Offset is the absolute output offset after the bytes Read has returned:
// pass it to ConnectPTY to resume.
func (p *PTYConn) Offset() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.off
}

// Read reads the terminal's output. It returns io.EOF once the process has
// exited (see Exit), and an *Error when the server ended the stream (the
// sandbox stopped, another client took over).
func (p *PTYConn) Read(b []byte) (int, error) {
	for len(p.buf) == 0 {
		if p.err != nil {
			return 0, p.err
		}
		typ, data, err := p.ws.Read(p.ctx)
		if err != nil {
			if ctxErr := p.ctx.Err(); ctxErr != nil {
				err = ctxErr
			}
			p.err = fmt.Errorf("reading terminal: %w", err)
			continue
		}
		if typ == websocket.MessageBinary {
			p.buf = data
			continue
		}
		var m PTYMessage
		if err := json.Unmarshal(data, &m); err != nil {
			p.err = fmt.Errorf("reading terminal: decoding a control message: %w", err)
			continue
		}
		switch m.Type {
		case PTYExit:
			if m.Exit == nil {
				p.err = errors.New("reading terminal: exit message without status")
				continue
			}
			p.mu.Lock()
			p.exit = m.Exit
			p.mu.Unlock()
			p.err = io.EOF
		case PTYError:
			p.err = streamError(m.Code, m.Message)
		}
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	p.mu.Lock()
	p.off += int64(n)
	p.mu.Unlock()
	return n, nil
}

// Exit returns how the process ended, once Read has returned io.EOF.
func (p *PTYConn) Exit() (ExitStatus, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exit == nil {
		return ExitStatus{}, false
	}
	return *p.exit, true
}

// Write sends input to the terminal.
func (p *PTYConn) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := min(len(b), wsChunk)
		if err := p.ws.Write(p.ctx, websocket.MessageBinary, b[:c]); err != nil {
			return n, fmt.Errorf("writing to terminal: %w", err)
		}
		n += c
		b = b[c:]
	}
	return n, nil
}

// Resize sets the terminal's size.
func (p *PTYConn) Resize(cols, rows int) error {
	b, _ := json.Marshal(PTYMessage{Type: PTYResize, Cols: cols, Rows: rows})
	if err := p.ws.Write(p.ctx, websocket.MessageText, b); err != nil {
		return fmt.Errorf("resizing terminal: %w", err)
	}
	return nil
}

// Close detaches from the terminal; the process keeps running.
func (p *PTYConn) Close() error {
	p.ws.Close(websocket.StatusNormalClosure, "")
	return nil
}

package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"syscall"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// FramePTY is the first frame of a terminal's attach stream; its payload
// is a JSON PTYAttach. The other frames are FrameStdout (the terminal's
// output), then FrameExit or FrameError, last.
const FramePTY FrameKind = 5

// framePTYResize is sent by the host: 2-byte cols, 2-byte rows.
const framePTYResize FrameKind = 19

// PTYRequest asks the agent to open a terminal and start a process on it.
type PTYRequest struct {
	// ID names the terminal (1-64 of [A-Za-z0-9._-]); "" lets the agent
	// choose one. Clients that reconnect by their own name (Daytona)
	// set it.
	ID string `json:"id,omitempty"`
	// Argv is the command; default: /bin/bash if the image has it, else
	// /bin/sh.
	Argv []string `json:"argv,omitempty"`
	Cols int      `json:"cols,omitempty"` // default 80
	Rows int      `json:"rows,omitempty"` // default 24
	Cwd  string   `json:"cwd,omitempty"`
	// Env is added to the sandbox's environment, "K=V"; TERM is
	// xterm-256color unless set here.
	Env  []string `json:"env,omitempty"`
	User string   `json:"user,omitempty"`
}

// PTYInfo describes a terminal.
type PTYInfo struct {
	ID        string      `json:"id"`
	PID       int         `json:"pid"`
	Argv      []string    `json:"argv"`
	Cwd       string      `json:"cwd"`
	Env       []string    `json:"env,omitempty"` // as requested
	Cols      int         `json:"cols"`
	Rows      int         `json:"rows"`
	Running   bool        `json:"running"`
	Attached  bool        `json:"attached"` // a client is attached now
	Exit      *ExitStatus `json:"exit,omitempty"`
	CreatedAt time.Time   `json:"created_at"`
}

// PTYSize is a terminal's size in character cells.
type PTYSize struct {
	Cols int `json:"cols"`
	Rows int `json:"rows"`
}

// PTYAttach is the first frame of an attach stream.
type PTYAttach struct {
	PTY PTYInfo `json:"pty"`
	// Offset is the absolute output offset of the first byte that
	// follows (the oldest retained or the one asked for); add the bytes
	// received to resume after a reconnect without duplicates.
	Offset int64 `json:"offset"`
}

func ptyPath(id string, rest ...string) string {
	p := "/v1/ptys/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreatePTY opens a terminal and starts its process. Its errors carry
// kinds: ErrNotFound for an unknown command, cwd or user, ErrAlreadyExists
// for a taken ID, ErrResourceExhausted at the limit of terminals.
func (c *Client) CreatePTY(ctx context.Context, req PTYRequest) (PTYInfo, error) {
	var p PTYInfo
	return p, c.call(ctx, http.MethodPost, "/v1/ptys", nil, req, &p)
}

// ListPTYs returns the sandbox's terminals, oldest first.
func (c *Client) ListPTYs(ctx context.Context) ([]PTYInfo, error) {
	var l []PTYInfo
	return l, c.call(ctx, http.MethodGet, "/v1/ptys", nil, nil, &l)
}

// GetPTY describes one terminal.
func (c *Client) GetPTY(ctx context.Context, id string) (PTYInfo, error) {
	var p PTYInfo
	return p, c.call(ctx, http.MethodGet, ptyPath(id), nil, nil, &p)
}

// ResizePTY sets a terminal's size; its foreground process gets SIGWINCH.
func (c *Client) ResizePTY(ctx context.Context, id string, size PTYSize) (PTYInfo, error) {
	var p PTYInfo
	return p, c.call(ctx, http.MethodPost, ptyPath(id, "resize"), nil, size, &p)
}

// SignalPTY sends sig to the terminal's process group.
func (c *Client) SignalPTY(ctx context.Context, id string, sig syscall.Signal) error {
	return c.call(ctx, http.MethodPost, ptyPath(id, "signal"), nil, map[string]int{"signal": int(sig)}, nil)
}

// WritePTY sends input to a terminal without attaching to it.
func (c *Client) WritePTY(ctx context.Context, id string, data []byte) error {
	req, err := c.newRequest(ctx, http.MethodPost, ptyPath(id, "input"), bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return responseError(resp)
	}
	resp.Body.Close()
	return nil
}

// DeletePTY kills a terminal's process group with SIGKILL (if it runs) and
// forgets the terminal. An attached stream still gets the exit frame.
func (c *Client) DeletePTY(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, ptyPath(id), nil, nil, nil)
}

// AttachPTY attaches to a terminal: the stream replays the retained output
// from offset (-1: the oldest byte retained), then follows it. Closing the
// stream, or cancelling ctx, detaches; the process keeps running. A newer
// attach ends this stream with an error frame of kind ErrConflict.
func (c *Client) AttachPTY(ctx context.Context, id string, offset int64) (*PTYStream, error) {
	path := ptyPath(id, "attach")
	if offset >= 0 {
		path += "?offset=" + strconv.FormatInt(offset, 10)
	}
	p, err := c.upgrade(ctx, http.MethodGet, path, nil, ptyUpgradeProto)
	if err != nil {
		return nil, err
	}
	kind, data, err := readFrame(p.br)
	if err != nil || kind != FramePTY {
		p.Close()
		if err == nil {
			err = fmt.Errorf("unexpected frame kind %d", kind)
		}
		return nil, fmt.Errorf("agent attach: reading the terminal's description: %w: %w", errdefs.ErrUnavailable, err)
	}
	st := &PTYStream{p: p}
	if err := json.Unmarshal(data, &st.head); err != nil {
		p.Close()
		return nil, fmt.Errorf("agent attach: decoding the terminal's description: %w", err)
	}
	return st, nil
}

// PTYStream is an attached terminal. Recv must be called from one
// goroutine at a time; Write, Resize and Signal may be called concurrently
// with Recv and with each other.
type PTYStream struct {
	p    *Process
	head PTYAttach
}

// Info is the terminal as it was when the stream attached.
func (s *PTYStream) Info() PTYInfo { return s.head.PTY }

// Offset is the absolute output offset the stream's output starts at.
func (s *PTYStream) Offset() int64 { return s.head.Offset }

// Recv returns the next frame: FrameStdout with output, then one FrameExit
// (with Exit) or FrameError (taken over by another client), then io.EOF.
// A stream that ends otherwise (the agent went away) is an error of kind
// ErrUnavailable.
func (s *PTYStream) Recv() (Frame, error) { return s.p.Recv() }

// Write sends input to the terminal.
func (s *PTYStream) Write(b []byte) (int, error) { return s.p.Write(b) }

// Resize sets the terminal's size.
func (s *PTYStream) Resize(size PTYSize) error {
	if size.Cols < 1 || size.Rows < 1 || size.Cols > 0xffff || size.Rows > 0xffff {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid terminal size %dx%d", size.Cols, size.Rows)
	}
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:2], uint16(size.Cols))
	binary.BigEndian.PutUint16(b[2:4], uint16(size.Rows))
	return s.p.writeFrame(framePTYResize, b[:])
}

// Signal sends sig to the terminal's process group.
func (s *PTYStream) Signal(sig syscall.Signal) error { return s.p.Signal(sig) }

// Close detaches; the process keeps running.
func (s *PTYStream) Close() error { return s.p.Close() }

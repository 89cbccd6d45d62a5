package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// SessionRequest creates a named, long-lived shell.
type SessionRequest struct {
	ID   string   `json:"id"`
	Cwd  string   `json:"cwd,omitempty"`
	Env  []string `json:"env,omitempty"` // "K=V", over the sandbox's
	User string   `json:"user,omitempty"`
}

// Session is a shell and the commands it ran.
type Session struct {
	ID        string           `json:"id"`
	CreatedAt time.Time        `json:"created_at"`
	Alive     bool             `json:"alive"`          // the shell still runs
	Exit      *ExitStatus      `json:"exit,omitempty"` // how the shell ended
	Commands  []SessionCommand `json:"commands"`
}

// SessionCommand is one command run in a session.
type SessionCommand struct {
	ID        string     `json:"id"`
	Command   string     `json:"command"`
	StartedAt time.Time  `json:"started_at"`
	EndedAt   *time.Time `json:"ended_at,omitempty"`
	ExitCode  *int       `json:"exit_code,omitempty"` // set once it ended
	Running   bool       `json:"running"`
	TimedOut  bool       `json:"timed_out,omitempty"`
	// OutputTruncated says the oldest output was dropped to stay within
	// the log bound.
	OutputTruncated bool `json:"output_truncated,omitempty"`
}

// SessionExecRequest runs a command in a session's shell, so that cd and
// exported variables carry over to the next command.
type SessionExecRequest struct {
	Command string `json:"command"`
	// Async returns at once with the command's ID; otherwise the call
	// waits for the command to end (or Timeout).
	Async bool `json:"async,omitempty"`
	// Timeout kills the command's processes (not the shell) when it
	// expires; 0 = none.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// SessionExecResult is the answer to a session exec: for a synchronous
// one, with the exit code and output.
type SessionExecResult struct {
	Command SessionCommand `json:"command"`
	Stdout  string         `json:"stdout,omitempty"`
	Stderr  string         `json:"stderr,omitempty"`
}

// SessionInput is sent to a running command's standard input.
type SessionInput struct {
	Data []byte `json:"data,omitempty"`
	EOF  bool   `json:"eof,omitempty"` // close its stdin after Data
}

func sessionPath(id string, rest ...string) string {
	p := "/v1/sessions/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// CreateSession starts a session shell.
func (c *Client) CreateSession(ctx context.Context, req SessionRequest) (Session, error) {
	var s Session
	err := c.call(ctx, http.MethodPost, "/v1/sessions", nil, req, &s)
	return s, err
}

// ListSessions lists the sessions.
func (c *Client) ListSessions(ctx context.Context) ([]Session, error) {
	var out []Session
	err := c.call(ctx, http.MethodGet, "/v1/sessions", nil, nil, &out)
	return out, err
}

// GetSession describes one session.
func (c *Client) GetSession(ctx context.Context, id string) (Session, error) {
	var s Session
	err := c.call(ctx, http.MethodGet, sessionPath(id), nil, nil, &s)
	return s, err
}

// DeleteSession kills the session's shell and everything it started.
func (c *Client) DeleteSession(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, sessionPath(id), nil, nil, nil)
}

// SessionExec runs a command in a session.
func (c *Client) SessionExec(ctx context.Context, id string, req SessionExecRequest) (SessionExecResult, error) {
	var r SessionExecResult
	err := c.call(ctx, http.MethodPost, sessionPath(id, "exec"), nil, req, &r)
	return r, err
}

// SessionCommand describes one command of a session.
func (c *Client) SessionCommand(ctx context.Context, id, cmdID string) (SessionCommand, error) {
	var sc SessionCommand
	err := c.call(ctx, http.MethodGet, sessionPath(id, "commands", cmdID), nil, nil, &sc)
	return sc, err
}

// SessionInput writes to a running command's stdin.
func (c *Client) SessionInput(ctx context.Context, id, cmdID string, in SessionInput) error {
	return c.call(ctx, http.MethodPost, sessionPath(id, "commands", cmdID, "input"), nil, in, nil)
}

// SessionKill sends a signal (SIGKILL when 0) to a command's processes.
func (c *Client) SessionKill(ctx context.Context, id, cmdID string, sig int) error {
	q := url.Values{}
	if sig != 0 {
		q.Set("signal", fmt.Sprint(sig))
	}
	return c.call(ctx, http.MethodPost, sessionPath(id, "commands", cmdID, "kill"), q, nil, nil)
}

// SessionLogs streams a command's output as frames: stdout and stderr
// chunks in the order they were written, then, with follow, an exit frame
// when the command ends. Without follow the stream ends with the output
// so far (and the exit frame if it has ended).
func (c *Client) SessionLogs(ctx context.Context, id, cmdID string, follow bool) (*LogStream, error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "1")
	}
	path := sessionPath(id, "commands", cmdID, "logs")
	req, err := c.newRequest(ctx, http.MethodGet, path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	return &LogStream{rc: resp.Body}, nil
}

// LogStream reads the frames of a session command's log.
type LogStream struct{ rc io.ReadCloser }

// Recv returns the next frame (FrameStdout, FrameStderr, or FrameExit with
// Exit set); io.EOF at the end.
func (l *LogStream) Recv() (Frame, error) {
	kind, data, err := readFrame(l.rc)
	if err != nil {
		if err == io.EOF {
			return Frame{}, io.EOF // the agent ended the stream at a frame boundary
		}
		// Cut mid-stream: the agent (or its sandbox) went away.
		return Frame{}, fmt.Errorf("session log stream: %w: %w", errdefs.ErrUnavailable, err)
	}
	if kind == FrameExit {
		var st ExitStatus
		if err := json.Unmarshal(data, &st); err != nil {
			return Frame{}, err
		}
		return Frame{Kind: kind, Exit: &st}, nil
	}
	return Frame{Kind: kind, Data: data}, nil
}

// Close ends the stream.
func (l *LogStream) Close() error { return l.rc.Close() }

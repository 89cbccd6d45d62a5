package sbx

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"
)

// CreateSessionRequest creates a named, long-lived shell in a sandbox.
type CreateSessionRequest struct {
	ID   string            `json:"id"`
	Cwd  string            `json:"cwd,omitempty"`
	Env  map[string]string `json:"env,omitempty"`
	User string            `json:"user,omitempty"`
}

// Session is a shell and the commands it ran. cd, variables and functions
// carry over from one command to the next.
type Session struct {
	ID        string           `json:"id"`
	CreatedAt time.Time        `json:"created_at"`
	Alive     bool             `json:"alive"`
	Exit      *ExitStatus      `json:"exit,omitempty"`
	Commands  []SessionCommand `json:"commands"`
}

// SessionCommand is one command of a session.
type SessionCommand struct {
	ID              string     `json:"id"`
	Command         string     `json:"command"`
	StartedAt       time.Time  `json:"started_at"`
	EndedAt         *time.Time `json:"ended_at,omitempty"`
	ExitCode        *int       `json:"exit_code,omitempty"`
	Running         bool       `json:"running"`
	TimedOut        bool       `json:"timed_out,omitempty"`
	OutputTruncated bool       `json:"output_truncated,omitempty"`
}

// SessionExecRequest runs a command in a session.
type SessionExecRequest struct {
	Command string `json:"command"`
	// Async answers 202 at once with the command's ID.
	Async bool `json:"async,omitempty"`
	// TimeoutSeconds kills the command's processes (not the session).
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
}

// SessionExecResult answers a session exec; Stdout and Stderr are set for
// a synchronous one.
type SessionExecResult struct {
	Command SessionCommand `json:"command"`
	Stdout  string         `json:"stdout"`
	Stderr  string         `json:"stderr"`
}

// SessionLogs is a command's whole output so far.
type SessionLogs struct {
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	ExitCode *int   `json:"exit_code,omitempty"`
}

// SessionInputRequest is sent to a running command's stdin.
type SessionInputRequest struct {
	Data string `json:"data"`
	EOF  bool   `json:"eof,omitempty"`
}

func sessionPath(id, sid string, rest ...string) string {
	p := sandboxPath(id, "sessions", url.PathEscape(sid))
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

// CreateSession starts a session shell.
func (c *Client) CreateSession(ctx context.Context, id string, req CreateSessionRequest) (Session, error) {
	var s Session
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "sessions"), nil, req, &s)
}

// ListSessions lists a sandbox's sessions.
func (c *Client) ListSessions(ctx context.Context, id string) ([]Session, error) {
	var out []Session
	return out, c.do(ctx, http.MethodGet, sandboxPath(id, "sessions"), nil, nil, &out)
}

// GetSession describes a session and its commands.
func (c *Client) GetSession(ctx context.Context, id, sid string) (Session, error) {
	var s Session
	return s, c.do(ctx, http.MethodGet, sessionPath(id, sid), nil, nil, &s)
}

// DeleteSession kills a session's shell and everything it started.
func (c *Client) DeleteSession(ctx context.Context, id, sid string) error {
	return c.do(ctx, http.MethodDelete, sessionPath(id, sid), nil, nil, nil)
}

// SessionExec runs a command in a session; see SessionExecRequest.Async.
func (c *Client) SessionExec(ctx context.Context, id, sid string, req SessionExecRequest) (SessionExecResult, error) {
	var r SessionExecResult
	return r, c.do(ctx, http.MethodPost, sessionPath(id, sid, "exec"), nil, req, &r)
}

// SessionCommand describes one command.
func (c *Client) SessionCommand(ctx context.Context, id, sid, cmdID string) (SessionCommand, error) {
	var sc SessionCommand
	return sc, c.do(ctx, http.MethodGet, sessionPath(id, sid, "commands", cmdID), nil, nil, &sc)
}

// SessionLogs returns a command's output so far.
func (c *Client) SessionLogs(ctx context.Context, id, sid, cmdID string) (SessionLogs, error) {
	var l SessionLogs
	return l, c.do(ctx, http.MethodGet, sessionPath(id, sid, "commands", cmdID, "logs"), nil, nil, &l)
}

// FollowSessionLogs streams a command's output, stdout and stderr apart
// and in order, until it ends; it returns how it ended.
func (c *Client) FollowSessionLogs(ctx context.Context, id, sid, cmdID string, stdout, stderr io.Writer) (ExitStatus, error) {
	resp, err := c.open(ctx, http.MethodGet, sessionPath(id, sid, "commands", cmdID, "logs"), url.Values{"follow": {"true"}}, nil, NDJSON)
	if err != nil {
		return ExitStatus{}, err
	}
	defer resp.Body.Close()
	return consumeFrames(ndjsonFrames(resp.Body, "session logs"), stdout, stderr)
}

// SessionInput writes to a running command's stdin; eof closes it after.
func (c *Client) SessionInput(ctx context.Context, id, sid, cmdID, data string, eof bool) error {
	return c.do(ctx, http.MethodPost, sessionPath(id, sid, "commands", cmdID, "input"), nil, SessionInputRequest{Data: data, EOF: eof}, nil)
}

// KillSessionCommand sends a signal ("SIGTERM", "SIGKILL"…; "" = SIGKILL)
// to the processes of one command, not to the session.
func (c *Client) KillSessionCommand(ctx context.Context, id, sid, cmdID, signal string) error {
	q := url.Values{}
	if signal != "" {
		q.Set("signal", signal)
	}
	return c.do(ctx, http.MethodPost, sessionPath(id, sid, "commands", cmdID, "kill"), q, nil, nil)
}

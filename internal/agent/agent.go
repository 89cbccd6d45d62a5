// Package agent is the protocol between the sbx daemon (host) and sbx-agent,
// the PID 1 of every sandbox: the client half used by the daemon and the
// server half run by cmd/sbx-agent.
//
// Transport: the daemon creates a listening unix socket on the host
// (<state-dir>/sandboxes/<id>/agent.sock) and hands the listener to the
// sandbox's init as an inherited file descriptor (the runtime's
// --preserve-fds), so the agent never needs a writable host directory and
// the daemon's first dial simply waits in the backlog until the agent
// accepts: readiness without polling. After a daemon restart the daemon
// dials the same path again.
//
// CONTRACT (other packages rely on these names):
//
//	NewClient(socketPath string) *Client
//	(*Client).Health(ctx) (Health, error)
//	(*Client).Exec(ctx, ExecRequest) (*Process, error)      streaming
//	(*Client).Run(ctx, ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (ExitStatus, error)
//	(*Client).Logs(ctx, follow bool) (io.ReadCloser, error)  entrypoint output
//	(*Client).Close() error
//	(*Process).Recv() (Frame, error)   io.EOF after the exit frame
//	(*Process).Write(p []byte) (int, error)   stdin
//	(*Process).CloseStdin() error
//	(*Process).Signal(sig syscall.Signal) error
//	(*Process).Close() error           abandons the stream; kills the process group
//
//	Serve(ctx, ln net.Listener, ServerConfig) error  (server half)
//	RunInit(ctx, InitConfig) error                   (PID 1 duties + Serve)
//
// Wire protocol (version 1). Every request carries the header
// Sbx-Agent-Version; the server answers 400 to a major version it does not
// speak. Errors before a stream starts are JSON {"error", "kind"}.
//
//	GET  /v1/health            -> Health (JSON)
//	GET  /v1/logs[?follow=1]   -> the entrypoint's output, streamed
//	POST /v1/exec              body: ExecRequest (JSON), with
//	                           Connection: Upgrade, Upgrade: sbx-exec
//	                           -> 101 Switching Protocols, then frames
//
// After the 101 the connection carries frames in both directions, each a
// 1-byte kind, a 4-byte big-endian payload length and the payload (at most
// 1 MiB). Agent to host: stdout (1), stderr (2), exit (3, JSON ExitStatus,
// last), error (4, JSON {"message","kind"}, last: the command could not be
// started). Host to agent: stdin (16), stdin-close (17), signal (18, 4-byte
// big-endian signal number, sent to the process group). The host never
// half-closes: EOF on the connection before the exit frame means the client
// went away, and the agent kills the process group with SIGKILL.
//
// A command that cannot be started (unknown executable, missing /bin/sh,
// cwd, user) ends in an error frame, never an exit code 127: Run returns an
// error of kind errdefs.ErrNotFound whose message says, for example,
// `exec: "foo": executable file not found in $PATH`.
package agent

import (
	"sort"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// EnvList turns a map of environment variables into "K=V" entries sorted
// by name, the form every request to the agent takes. A name that is
// empty or holds '=' or NUL is the caller's error.
func EnvList(env map[string]string) ([]string, error) {
	keys := make([]string, 0, len(env))
	for k := range env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid environment variable name %q", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+env[k])
	}
	return out, nil
}

// Version is the protocol version spoken by this build; the client sends it
// and the server refuses a major version it does not know.
const Version = "1"

// Health is the agent's answer to a health check.
type Health struct {
	Version string        `json:"version"`
	PID     int           `json:"pid"` // the agent's pid inside the sandbox (1 as init)
	Uptime  time.Duration `json:"uptime"`
	// Entrypoint describes the supervised entrypoint, if the image has one.
	Entrypoint *EntrypointStatus `json:"entrypoint,omitempty"`
}

// EntrypointStatus is the state of the image's entrypoint process.
type EntrypointStatus struct {
	Argv    []string    `json:"argv"`
	PID     int         `json:"pid,omitempty"`
	Running bool        `json:"running"`
	Exit    *ExitStatus `json:"exit,omitempty"`
}

// ExecRequest asks the agent to run a command.
type ExecRequest struct {
	// Argv is the command and its arguments, looked up in PATH when it has
	// no slash. Exactly one of Argv and Shell is set.
	Argv []string `json:"argv,omitempty"`
	// Shell is a command line run as /bin/sh -c Shell.
	Shell string `json:"shell,omitempty"`
	Cwd   string `json:"cwd,omitempty"` // default: the sandbox's workdir
	// Env is added to (and overrides) the sandbox's environment, "K=V".
	Env []string `json:"env,omitempty"`
	// User is "name", "uid" or "uid:gid", resolved against the sandbox's
	// /etc/passwd and /etc/group; default: the sandbox's user.
	User string `json:"user,omitempty"`
	// Timeout kills the whole process group when it expires; 0 = none.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Stdin tells the agent the client will send stdin frames; without it
	// the process's stdin is /dev/null.
	Stdin bool `json:"stdin,omitempty"`
}

// ExitStatus is how a process ended.
type ExitStatus struct {
	Code     int    `json:"code"`             // exit code, or 128+signal
	Signal   string `json:"signal,omitempty"` // e.g. "SIGKILL" when killed by a signal
	TimedOut bool   `json:"timed_out,omitempty"`
	// OOMKilled is filled in by the daemon, which can see the cgroup.
	OOMKilled bool          `json:"oom_killed,omitempty"`
	Duration  time.Duration `json:"duration"`
}

// FrameKind tells what a Frame carries.
type FrameKind uint8

// Frame kinds sent by the agent.
const (
	FrameStdout FrameKind = 1
	FrameStderr FrameKind = 2
	FrameExit   FrameKind = 3 // last frame; Exit is set
	FrameError  FrameKind = 4 // the command could not be started; Data is the message; last frame
)

// Frame is one message of an exec stream.
type Frame struct {
	Kind FrameKind
	Data []byte      // stdout/stderr bytes or an error message
	Exit *ExitStatus // for FrameExit
	// Err is set for FrameError: the message of Data carrying an
	// errdefs kind (errdefs.ErrNotFound for an unknown command).
	Err error
}

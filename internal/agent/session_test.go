package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

func TestSessions(t *testing.T) {
	dir := t.TempDir()
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir})
	ctx := t.Context()
	if _, err := c.CreateSession(ctx, SessionRequest{ID: "dev"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSession(ctx, SessionRequest{ID: "dev"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("duplicate session: %v", err)
	}
	if _, err := c.CreateSession(ctx, SessionRequest{ID: "../bad"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad id: %v", err)
	}
	run := func(cmd string) SessionExecResult {
		t.Helper()
		r, err := c.SessionExec(ctx, "dev", SessionExecRequest{Command: cmd})
		if err != nil {
			t.Fatalf("SessionExec(%q): %v", cmd, err)
		}
		return r
	}
	// State carries over: cwd, variables, functions.
	run("cd /tmp && export GREETING=hello && greet() { echo \"$GREETING $1\"; }")
	if r := run("pwd; greet world; echo oops >&2; exit_code() { return 7; }; exit_code"); r.Stdout != "/tmp\nhello world\n" || r.Stderr != "oops\n" || *r.Command.ExitCode != 7 {
		t.Errorf("second command: %+v exit %v", r, *r.Command.ExitCode)
	}
	// A syntax error fails the command, not the session.
	if r := run("if then fi ("); *r.Command.ExitCode != 2 || r.Stderr == "" {
		t.Errorf("syntax error: %+v", r)
	}
	if r := run("echo still $GREETING"); r.Stdout != "still hello\n" {
		t.Errorf("after the syntax error: %+v", r)
	}
	// Async with followed logs; stdout and stderr stay apart and in order.
	a, err := c.SessionExec(ctx, "dev", SessionExecRequest{Command: "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; (exit 3)", Async: true})
	if err != nil || !a.Command.Running {
		t.Fatalf("async: %+v %v", a, err)
	}
	ls, err := c.SessionLogs(ctx, "dev", a.Command.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var exit *ExitStatus
	for {
		f, err := ls.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch f.Kind {
		case FrameStdout:
			got = append(got, "out:"+string(f.Data))
		case FrameStderr:
			got = append(got, "err:"+string(f.Data))
		case FrameExit:
			exit = f.Exit
		}
	}
	ls.Close()
	if strings.Join(got, "") != "out:one\nerr:two\nout:three\n" || exit == nil || exit.Code != 3 {
		t.Errorf("followed logs %q, exit %+v", got, exit)
	}
	// Input to a running command.
	a, err = c.SessionExec(ctx, "dev", SessionExecRequest{Command: "read line; echo got:$line", Async: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SessionInput(ctx, "dev", a.Command.ID, SessionInput{Data: []byte("typed\n")}); err != nil {
		t.Fatal(err)
	}
	waitCommand(t, c, "dev", a.Command.ID)
	ls, _ = c.SessionLogs(ctx, "dev", a.Command.ID, false)
	f, _ := ls.Recv()
	ls.Close()
	if string(f.Data) != "got:typed\n" {
		t.Errorf("input echoed %q", f.Data)
	}
	// A background job outlives its command; a timeout kills only the
	// command's own processes.
	run("sleep 30 & echo $! > /tmp/bg.pid")
	r, err := c.SessionExec(ctx, "dev", SessionExecRequest{Command: "sleep 30", Timeout: 300 * time.Millisecond})
	if err != nil || !r.Command.TimedOut || *r.Command.ExitCode == 0 {
		t.Errorf("timeout: %+v %v", r.Command, err)
	}
	if r := run("kill -0 $(cat /tmp/bg.pid) && echo alive"); r.Stdout != "alive\n" {
		t.Errorf("background job: %+v", r)
	}
	// exit ends the session; later commands say so.
	run("kill $(cat /tmp/bg.pid); exit 4")
	if _, err := c.SessionExec(ctx, "dev", SessionExecRequest{Command: "true"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("exec in an ended session: %v", err)
	}
	s, err := c.GetSession(ctx, "dev")
	if err != nil || s.Alive || s.Exit == nil || s.Exit.Code != 4 {
		t.Errorf("ended session: %+v %v", s, err)
	}
	if err := c.DeleteSession(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSession(ctx, "dev"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("deleted session: %v", err)
	}
}

func waitCommand(t *testing.T, c *Client, sid, cid string) SessionCommand {
	t.Helper()
	for i := 0; i < 200; i++ {
		sc, err := c.SessionCommand(t.Context(), sid, cid)
		if err != nil {
			t.Fatal(err)
		}
		if !sc.Running {
			return sc
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("command did not end")
	return SessionCommand{}
}

// TestSessionDeleteSparesNamesakes: deleting a session kills what it
// started, not the processes of another agent's session of the same name.
// Two servers embedded here share the host's /proc, as this package's
// tests share it with every sandbox of an e2e run: matching escaped
// processes by the session's name alone killed the other shell (the e2e
// TestSessions flake: "session dev has ended (its shell exited)", the
// shell SIGKILLed while no kill was sent by its own agent).
func TestSessionDeleteSparesNamesakes(t *testing.T) {
	dir := t.TempDir()
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	a, _ := startServer(t, ServerConfig{Env: env, Dir: dir})
	b, _ := startServer(t, ServerConfig{Env: env, Dir: dir})
	ctx := t.Context()
	for _, c := range []*Client{a, b} {
		if _, err := c.CreateSession(ctx, SessionRequest{ID: "dev"}); err != nil {
			t.Fatal(err)
		}
	}
	// Each session has a background job that left the shell's process
	// group, reachable only through the session's mark.
	for i, c := range []*Client{a, b} {
		pidFile := fmt.Sprintf("%s/bg%d.pid", dir, i)
		if _, err := c.SessionExec(ctx, "dev", SessionExecRequest{Command: "setsid sleep 60 > /dev/null 2>&1 & echo $! > " + pidFile}); err != nil {
			t.Fatal(err)
		}
	}
	apid, bpid := readPid(t, dir+"/bg0.pid"), readPid(t, dir+"/bg1.pid")
	t.Cleanup(func() { syscall.Kill(bpid, syscall.SIGKILL) })
	if err := a.DeleteSession(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	waitProcGone(t, "the deleted session's job", apid)
	if !alive(bpid) {
		t.Errorf("deleting one agent's session %q killed another's background job", "dev")
	}
	s, err := b.GetSession(ctx, "dev")
	if err != nil || !s.Alive {
		t.Fatalf("deleting one agent's session %q killed another's shell: %+v %v", "dev", s, err)
	}
	if r, err := b.SessionExec(ctx, "dev", SessionExecRequest{Command: "echo still here"}); err != nil || r.Stdout != "still here\n" {
		t.Errorf("the other session: %+v %v", r, err)
	}
	if err := b.DeleteSession(ctx, "dev"); err != nil {
		t.Fatal(err)
	}
	waitProcGone(t, "the second session's job", bpid)
}

// TestSessionTimeoutForkedShell: a timeout reaches a subshell the shell
// forked without exec (in /proc it has the shell's first environment,
// without the command's marker), not the shell itself.
func TestSessionTimeoutForkedShell(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir()})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := c.CreateSession(ctx, SessionRequest{ID: "fork"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := c.SessionExec(ctx, "fork", SessionExecRequest{Command: "(while :; do read x; done)", Timeout: 300 * time.Millisecond})
	if err != nil || !r.Command.TimedOut || r.Command.ExitCode == nil || *r.Command.ExitCode == 0 {
		t.Fatalf("timeout of a forked subshell after %v: %+v %v", time.Since(start), r.Command, err)
	}
	if r, err := c.SessionExec(ctx, "fork", SessionExecRequest{Command: "echo alive"}); err != nil || r.Stdout != "alive\n" {
		t.Errorf("session after the timeout: %+v %v", r, err)
	}
}

package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestSessions drives a session shell in a real sandbox (busybox sh):
// state carries over, async commands stream their logs, a background
// server outlives the request, input reaches a command, kill and timeout
// hit one command only.
func TestSessions(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	if _, err := c.CreateSession(ctx, sb.ID, sbx.CreateSessionRequest{ID: "dev", Cwd: "/tmp"}); err != nil {
		t.Fatal(err)
	}
	run := func(cmd string) sbx.SessionExecResult {
		t.Helper()
		r, err := c.SessionExec(ctx, sb.ID, "dev", sbx.SessionExecRequest{Command: cmd})
		if err != nil {
			t.Fatalf("%q: %v", cmd, err)
		}
		return r
	}
	run("mkdir -p /srv/app && cd /srv/app && export MODE=dev")
	if r := run("pwd; echo $MODE; echo err >&2; false"); r.Stdout != "/srv/app\ndev\n" || r.Stderr != "err\n" || *r.Command.ExitCode != 1 {
		t.Errorf("state: %+v exit %d", r, *r.Command.ExitCode)
	}
	// A background server started by one command keeps running.
	run("(while true; do echo tick >> /srv/app/ticks; sleep 0.05; done) > /dev/null 2>&1 &")
	// Async with followed logs.
	a, err := c.SessionExec(ctx, sb.ID, "dev", sbx.SessionExecRequest{Command: "for i in 1 2 3; do echo line$i; sleep 0.1; done; echo bad >&2; (exit 9)", Async: true})
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	st, err := c.FollowSessionLogs(ctx, sb.ID, "dev", a.Command.ID, &out, &errb)
	if err != nil || st.Code != 9 || out.String() != "line1\nline2\nline3\n" || errb.String() != "bad\n" {
		t.Errorf("followed: %+v %v %q %q", st, err, out.String(), errb.String())
	}
	// Not a wall-clock bound from here: under load the command may be
	// half done before SessionExec returns.
	if sc, err := c.SessionCommand(ctx, sb.ID, "dev", a.Command.ID); err != nil || sc.Running || sc.EndedAt == nil {
		t.Errorf("follow returned before the command ended: %+v %v", sc, err)
	}
	// Input.
	in, _ := c.SessionExec(ctx, sb.ID, "dev", sbx.SessionExecRequest{Command: "read name; echo hello $name", Async: true})
	if err := c.SessionInput(ctx, sb.ID, "dev", in.Command.ID, "world\n", false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FollowSessionLogs(ctx, sb.ID, "dev", in.Command.ID, &out, nil); err != nil {
		t.Fatal(err)
	}
	if logs, _ := c.SessionLogs(ctx, sb.ID, "dev", in.Command.ID); logs.Stdout != "hello world\n" {
		t.Errorf("input: %+v", logs)
	}
	// Timeout kills the command only; the background loop goes on.
	r, err := c.SessionExec(ctx, sb.ID, "dev", sbx.SessionExecRequest{Command: "sleep 60", TimeoutSeconds: 0.3})
	if err != nil || !r.Command.TimedOut {
		t.Errorf("timeout: %+v %v", r.Command, err)
	}
	n1 := strings.Count(execOK(t, c, sb.ID, "cat", "/srv/app/ticks"), "tick")
	time.Sleep(300 * time.Millisecond)
	if n2 := strings.Count(execOK(t, c, sb.ID, "cat", "/srv/app/ticks"), "tick"); n2 <= n1 {
		t.Errorf("the background job stopped: %d then %d ticks", n1, n2)
	}
	if r := run("echo $MODE"); r.Stdout != "dev\n" {
		t.Errorf("session after the timeout: %+v", r)
	}
	// Deleting the session kills everything it started.
	if err := c.DeleteSession(ctx, sb.ID, "dev"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	n1 = strings.Count(execOK(t, c, sb.ID, "cat", "/srv/app/ticks"), "tick")
	time.Sleep(300 * time.Millisecond)
	if n2 := strings.Count(execOK(t, c, sb.ID, "cat", "/srv/app/ticks"), "tick"); n2 != n1 {
		t.Errorf("the session's background job survived its deletion")
	}
	if _, err := c.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListSessions(ctx, sb.ID); !sbx.IsConflict(err) {
		t.Errorf("sessions of a stopped sandbox: %v", err)
	}
}

// TestSessionLogsEndWhenSandboxStops: following a command's logs while the
// sandbox is stopped ends with an error, not a hang or a clean end.
func TestSessionLogsEndWhenSandboxStops(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	if _, err := c.CreateSession(ctx, sb.ID, sbx.CreateSessionRequest{ID: "s"}); err != nil {
		t.Fatal(err)
	}
	a, err := c.SessionExec(ctx, sb.ID, "s", sbx.SessionExecRequest{Command: "echo go; sleep 60", Async: true})
	if err != nil {
		t.Fatal(err)
	}
	type end struct {
		st  sbx.ExitStatus
		err error
	}
	done := make(chan end, 1)
	go func() {
		st, err := c.FollowSessionLogs(ctx, sb.ID, "s", a.Command.ID, nil, nil)
		done <- end{st, err}
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := c.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		if e.err == nil && e.st.Code == 0 {
			t.Errorf("following ended as if the command had finished although the sandbox stopped: %+v", e.st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("following did not end when the sandbox stopped")
	}
}

// TestToolboxSurvivesDaemonCrash: sessions and terminals live in the
// sandbox's agent, so a kill -9 of the daemon loses none of them.
func TestToolboxSurvivesDaemonCrash(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	if _, err := c.CreateSession(ctx, sb.ID, sbx.CreateSessionRequest{ID: "keep"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SessionExec(ctx, sb.ID, "keep", sbx.SessionExecRequest{Command: "export KEPT=yes; cd /tmp"}); err != nil {
		t.Fatal(err)
	}
	a, err := c.SessionExec(ctx, sb.ID, "keep", sbx.SessionExecRequest{Command: "echo before; sleep 1; echo after", Async: true})
	if err != nil {
		t.Fatal(err)
	}
	pty, err := c.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{Argv: []string{"sh"}})
	if err != nil {
		t.Fatal(err)
	}
	daemon.Kill9()
	if err := daemon.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	r, err := c.SessionExec(ctx, sb.ID, "keep", sbx.SessionExecRequest{Command: "echo $KEPT $(pwd)"})
	if err != nil || r.Stdout != "yes /tmp\n" {
		t.Fatalf("session after the crash: %+v %v", r, err)
	}
	var out bytes.Buffer
	if st, err := c.FollowSessionLogs(ctx, sb.ID, "keep", a.Command.ID, &out, nil); err != nil || st.Code != 0 || out.String() != "before\nafter\n" {
		t.Errorf("the async command across the crash: %+v %v %q", st, err, out.String())
	}
	if got, err := c.GetPTY(ctx, sb.ID, pty.ID); err != nil || !got.Running {
		t.Errorf("terminal after the crash: %+v %v", got, err)
	}
}

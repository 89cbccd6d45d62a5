package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func execOK(t *testing.T, c *sbx.Client, id string, argv ...string) string {
	t.Helper()
	res, err := c.Exec(t.Context(), id, sbx.ExecRequest{Argv: argv})
	if err != nil {
		t.Fatalf("exec %v: %v", argv, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("exec %v: exit %d, stderr %q", argv, res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

func create(t *testing.T, c *sbx.Client, req sbx.CreateSandboxRequest) sbx.Sandbox {
	t.Helper()
	if req.Image == "" {
		req.Image = testImage
	}
	sb, err := c.CreateSandbox(t.Context(), req)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() { c.DeleteSandbox(context.WithoutCancel(t.Context()), sb.ID) })
	return sb
}

func TestLifecycle(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{
		Name:   "life",
		Env:    map[string]string{"GREETING": "hello"},
		Labels: map[string]string{"app": "e2e", "tier": "one"},
	})
	if sb.State != "started" {
		t.Fatalf("state after create = %q, want started", sb.State)
	}
	if got := execOK(t, c, sb.ID, "sh", "-c", "echo $GREETING"); got != "hello\n" {
		t.Errorf("env: got %q", got)
	}
	// Streams stay apart, exit codes come back.
	res, err := c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Shell: "echo out; echo err >&2; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" {
		t.Errorf("exec = %+v", res)
	}
	// By name too.
	if got := execOK(t, c, "life", "cat", "/etc/hostname"); strings.TrimSpace(got) != "life" {
		t.Logf("hostname file: %q (not written by sbx)", got)
	}
	execOK(t, c, sb.ID, "sh", "-c", "echo kept > /root/file && mkdir -p /data && echo d > /data/x")

	// Stop keeps the files; exec on a stopped sandbox is a conflict.
	st, err := c.StopSandbox(t.Context(), sb.ID, 5*time.Second)
	if err != nil || st.State != "stopped" {
		t.Fatalf("stop: %+v, %v", st, err)
	}
	if _, err := c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Argv: []string{"true"}}); !sbx.IsConflict(err) {
		t.Errorf("exec on a stopped sandbox: %v, want a conflict", err)
	}
	if st, err = c.StartSandbox(t.Context(), sb.ID); err != nil || st.State != "started" {
		t.Fatalf("start: %+v, %v", st, err)
	}
	if got := execOK(t, c, sb.ID, "cat", "/root/file", "/data/x"); got != "kept\nd\n" {
		t.Errorf("after stop/start: %q", got)
	}
	if st, err = c.RestartSandbox(t.Context(), sb.ID); err != nil || st.State != "started" {
		t.Fatalf("restart: %+v, %v", st, err)
	}
	if got := execOK(t, c, sb.ID, "cat", "/root/file"); got != "kept\n" {
		t.Errorf("after restart: %q", got)
	}

	// Labels and list filters.
	if _, err := c.SetLabels(t.Context(), sb.ID, map[string]string{"app": "e2e", "tier": "two"}); err != nil {
		t.Fatal(err)
	}
	page, err := c.ListSandboxes(t.Context(), sbx.ListOptions{Labels: map[string]string{"tier": "two"}})
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != sb.ID {
		t.Errorf("list by label: %+v, %v", page, err)
	}
	page, err = c.ListSandboxes(t.Context(), sbx.ListOptions{Labels: map[string]string{"tier": "one"}})
	if err != nil || len(page.Items) != 0 {
		t.Errorf("list by an old label: %+v, %v", page, err)
	}

	// Every transition was recorded.
	evs, err := c.Events(t.Context(), sb.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, e := range evs {
		if e.Type == "state" {
			states = append(states, e.To)
		}
	}
	want := "creating started stopping stopped starting started stopping stopped starting started"
	if got := strings.Join(states, " "); got != want {
		t.Errorf("state events:\n got %s\nwant %s", got, want)
	}

	if err := c.DeleteSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSandbox(t.Context(), sb.ID); !sbx.IsNotFound(err) {
		t.Errorf("get after delete: %v, want not found", err)
	}
	// The name is free again.
	sb2 := create(t, c, sbx.CreateSandboxRequest{Name: "life"})
	c.DeleteSandbox(t.Context(), sb2.ID)
	leakCheck(t)
}

func TestExecOptions(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Workdir: "/srv/app"})
	if got := execOK(t, c, sb.ID, "pwd"); got != "/srv/app\n" {
		t.Errorf("default cwd = %q", got)
	}
	res, err := c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Argv: []string{"pwd"}, Cwd: "/tmp"})
	if err != nil || res.Stdout != "/tmp\n" {
		t.Errorf("cwd: %+v %v", res, err)
	}
	res, err = c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Argv: []string{"id", "-u"}, User: "1000"})
	if err != nil || res.Stdout != "1000\n" {
		t.Errorf("user: %+v %v", res, err)
	}
	res, err = c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Argv: []string{"cat"}, Stdin: []byte("piped")})
	if err != nil || res.Stdout != "piped" {
		t.Errorf("stdin: %+v %v", res, err)
	}
	start := time.Now()
	res, err = c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Shell: "sleep 30 & sleep 30", TimeoutSeconds: 1})
	if err != nil || !res.TimedOut {
		t.Errorf("timeout: %+v %v", res, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("timeout took %v", d)
	}
	// The timed-out command's whole process group is gone.
	if out := execOK(t, c, sb.ID, "sh", "-c", "ps -o comm | grep -c sleep || true"); strings.TrimSpace(out) != "0" {
		t.Errorf("sleep processes survived the timeout: %q", out)
	}
	// Streaming keeps stdout and stderr apart.
	var stdout, stderr strings.Builder
	exit, err := c.ExecStream(t.Context(), sb.ID, sbx.ExecRequest{Shell: "for i in 1 2 3; do echo o$i; echo e$i >&2; done; exit 7"}, &stdout, &stderr)
	if err != nil || exit.Code != 7 || stdout.String() != "o1\no2\no3\n" || stderr.String() != "e1\ne2\ne3\n" {
		t.Errorf("stream: exit %+v err %v out %q err %q", exit, err, stdout.String(), stderr.String())
	}
	res, err = c.Exec(t.Context(), sb.ID, sbx.ExecRequest{Argv: []string{"no-such-command"}})
	if err == nil && res.ExitCode == 0 {
		t.Errorf("unknown command succeeded: %+v", res)
	}
}

package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func TestSessions(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.CreateSession(ctx, sb.ID, sbx.CreateSessionRequest{ID: "s1", Env: map[string]string{"X": "1"}}); err != nil {
		t.Fatal(err)
	}
	r, err := e.sdk.SessionExec(ctx, sb.ID, "s1", sbx.SessionExecRequest{Command: "Y=2; echo $X; echo warn >&2"})
	if err != nil || r.Stdout != "1\n" || r.Stderr != "warn\n" || r.Command.ExitCode == nil || *r.Command.ExitCode != 0 {
		t.Fatalf("sync exec: %+v %v", r, err)
	}
	if r, _ := e.sdk.SessionExec(ctx, sb.ID, "s1", sbx.SessionExecRequest{Command: "echo $Y"}); r.Stdout != "2\n" {
		t.Errorf("state did not carry over: %+v", r)
	}
	a, err := e.sdk.SessionExec(ctx, sb.ID, "s1", sbx.SessionExecRequest{Command: "read v; echo in:$v; echo e >&2; (exit 5)", Async: true})
	if err != nil || !a.Command.Running {
		t.Fatalf("async: %+v %v", a, err)
	}
	if err := e.sdk.SessionInput(ctx, sb.ID, "s1", a.Command.ID, "hi\n", true); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	st, err := e.sdk.FollowSessionLogs(ctx, sb.ID, "s1", a.Command.ID, &out, &errb)
	if err != nil || st.Code != 5 || out.String() != "in:hi\n" || errb.String() != "e\n" {
		t.Errorf("followed: %+v %v %q %q", st, err, out.String(), errb.String())
	}
	logs, err := e.sdk.SessionLogs(ctx, sb.ID, "s1", a.Command.ID)
	if err != nil || logs.Stdout != "in:hi\n" || logs.ExitCode == nil || *logs.ExitCode != 5 {
		t.Errorf("logs: %+v %v", logs, err)
	}
	// Followed over a WebSocket.
	b, err := e.sdk.SessionExec(ctx, sb.ID, "s1", sbx.SessionExecRequest{Command: "echo ws; sleep 0.1; echo done", Async: true})
	if err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(e.srv.URL, "http", "ws", 1) + "/v1/sandboxes/" + sb.ID + "/sessions/s1/commands/" + b.Command.ID + "/logs"
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + apitest.AdminKey}}})
	if err != nil {
		t.Fatal(err)
	}
	var frames []string
	for {
		_, msg, err := conn.Read(context.Background())
		if err != nil {
			break
		}
		var f sbx.ExecFrame
		json.Unmarshal(msg, &f)
		frames = append(frames, f.Type+":"+string(f.Data))
	}
	if got := strings.Join(frames, ","); got != "stdout:ws\n,stdout:done\n,exit:" {
		t.Errorf("websocket frames %q", got)
	}
	// Kill one command; the session lives on.
	k, _ := e.sdk.SessionExec(ctx, sb.ID, "s1", sbx.SessionExecRequest{Command: "sleep 30", Async: true})
	if err := e.sdk.KillSessionCommand(ctx, sb.ID, "s1", k.Command.ID, "TERM"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.FollowSessionLogs(ctx, sb.ID, "s1", k.Command.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.sdk.SessionExec(ctx, sb.ID, "s1", sbx.SessionExecRequest{Command: "echo alive"}); r.Stdout != "alive\n" {
		t.Errorf("after kill: %+v", r)
	}
	list, err := e.sdk.ListSessions(ctx, sb.ID)
	if err != nil || len(list) != 1 || len(list[0].Commands) != 6 {
		t.Errorf("ListSessions: %+v %v", list, err)
	}
	// Errors.
	if _, err := e.sdk.SessionExec(ctx, sb.ID, "nope", sbx.SessionExecRequest{Command: "true"}); !sbx.IsNotFound(err) {
		t.Errorf("unknown session: %v", err)
	}
	if _, err := e.sdk.CreateSession(ctx, sb.ID, sbx.CreateSessionRequest{ID: "s1"}); !sbx.IsAlreadyExists(err) {
		t.Errorf("duplicate: %v", err)
	}
	if err := e.sdk.KillSessionCommand(ctx, sb.ID, "s1", k.Command.ID, "SIGNOPE"); !sbx.IsInvalidArgument(err) {
		t.Errorf("bad signal: %v", err)
	}
	if err := e.sdk.DeleteSession(ctx, sb.ID, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.GetSession(ctx, sb.ID, "s1"); !sbx.IsNotFound(err) {
		t.Errorf("deleted session: %v", err)
	}
}

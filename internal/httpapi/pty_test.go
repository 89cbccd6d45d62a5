package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// readUntil reads the terminal until its output contains want.
func readUntil(t *testing.T, c *sbx.PTYConn, out *bytes.Buffer, want string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for !strings.Contains(out.String(), want) {
			n, err := c.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("reading for %q: %v; output %q", want, err, out.String())
		}
	case <-time.After(10 * time.Second):
		c.Close()
		<-done
		t.Fatalf("no %q after 10s: %q", want, out.String())
	}
}

func TestPTYRoutesDocumented(t *testing.T) {
	doc, err := apitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/v1/sandboxes/{id}/ptys", "/v1/sandboxes/{id}/ptys/{ptyID}",
		"/v1/sandboxes/{id}/ptys/{ptyID}/resize", "/v1/sandboxes/{id}/ptys/{ptyID}/connect",
	} {
		if doc.Paths.Find(path) == nil {
			t.Errorf("route %s is not in the document", path)
		}
	}
}

func TestPTY(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.sdk.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{ID: "t1", Argv: []string{"/bin/sh"}, Env: map[string]string{"PS1": "$ "}, Cols: 90, Rows: 20})
	if err != nil {
		t.Fatal(err)
	}
	want := sbx.PTY{ID: "t1", Argv: []string{"/bin/sh"}, Cwd: e.fake.AgentRoot(sb.ID), Env: map[string]string{"PS1": "$ "},
		Cols: 90, Rows: 20, Running: true}
	ignore := cmpopts.IgnoreFields(sbx.PTY{}, "PID", "CreatedAt")
	if diff := cmp.Diff(want, p, ignore); diff != "" || p.PID <= 0 {
		t.Fatalf("created (-want +got):\n%s", diff)
	}
	list, err := e.sdk.ListPTYs(ctx, sb.ID)
	if err != nil || len(list) != 1 || list[0].ID != "t1" {
		t.Fatalf("list: %+v %v", list, err)
	}

	c, err := e.sdk.ConnectPTY(ctx, sb.ID, "t1", -1)
	if err != nil {
		t.Fatal(err)
	}
	if c.Info().ID != "t1" || !c.Info().Attached || c.Offset() != 0 {
		t.Fatalf("connected: %+v at %d", c.Info(), c.Offset())
	}
	var out bytes.Buffer
	io.WriteString(c, "echo hi-$((1+1))\n")
	readUntil(t, c, &out, "hi-2")
	if err := c.Resize(100, 30); err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "stty size\n")
	readUntil(t, c, &out, "30 100")
	if p, err := e.sdk.ResizePTY(ctx, sb.ID, "t1", 120, 40); err != nil || p.Cols != 120 || p.Rows != 40 {
		t.Fatalf("resize: %+v %v", p, err)
	}
	io.WriteString(c, "X=kept; stty size\n")
	readUntil(t, c, &out, "40 120")

	// A second client takes over; the first hears why.
	c2, err := e.sdk.ConnectPTY(ctx, sb.ID, "t1", c.Offset())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c); !sbx.IsConflict(err) {
		t.Fatalf("the replaced connection ended with %v, want conflict", err)
	}
	c.Close()
	out.Reset()
	io.WriteString(c2, "echo again-$X\n")
	readUntil(t, c2, &out, "again-kept")
	if strings.Contains(out.String(), "hi-2") {
		t.Errorf("resuming at the offset repeated old output: %q", out.String())
	}
	io.WriteString(c2, "exit 3\n")
	if _, err := io.Copy(io.Discard, c2); err != nil {
		t.Fatalf("reading to the exit: %v", err)
	}
	st, ok := c2.Exit()
	if !ok || st.Code != 3 {
		t.Fatalf("exit %+v %v, want code 3", st, ok)
	}
	c2.Close()
	if p, err := e.sdk.GetPTY(ctx, sb.ID, "t1"); err != nil || p.Running || p.Exit == nil || p.Exit.Code != 3 {
		t.Fatalf("after exit: %+v %v", p, err)
	}

	// Kill: the connected client gets the exit, the terminal is gone.
	if _, err := e.sdk.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{ID: "t2", Argv: []string{"sleep", "100"}}); err != nil {
		t.Fatal(err)
	}
	c3, err := e.sdk.ConnectPTY(ctx, sb.ID, "t2", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if err := e.sdk.KillPTY(ctx, sb.ID, "t2"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, c3); err != nil {
		t.Fatal(err)
	}
	if st, ok := c3.Exit(); !ok || st.Signal != "SIGKILL" {
		t.Fatalf("killed: %+v %v", st, ok)
	}
	if _, err := e.sdk.GetPTY(ctx, sb.ID, "t2"); !sbx.IsNotFound(err) {
		t.Fatalf("after kill: %v", err)
	}
}

func TestPTYErrors(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{ID: "taken", Argv: []string{"sleep", "100"}}); err != nil {
		t.Fatal(err)
	}
	connect := func(id, pty string) error {
		c, err := e.sdk.ConnectPTY(ctx, id, pty, -1)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, tc := range []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"create in unknown sandbox", errOf(e.sdk.CreatePTY(ctx, "nope", sbx.CreatePTYRequest{})), sbx.IsNotFound},
		{"unknown command", errOf(e.sdk.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{Argv: []string{"nosuch"}})), sbx.IsNotFound},
		{"taken id", errOf(e.sdk.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{ID: "taken"})), sbx.IsAlreadyExists},
		{"bad env", errOf(e.sdk.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{Env: map[string]string{"A=B": "x"}})), sbx.IsInvalidArgument},
		{"get unknown", errOf(e.sdk.GetPTY(ctx, sb.ID, "nope")), sbx.IsNotFound},
		{"resize unknown", errOf(e.sdk.ResizePTY(ctx, sb.ID, "nope", 10, 10)), sbx.IsNotFound},
		{"resize to nothing", errOf(e.sdk.ResizePTY(ctx, sb.ID, "taken", 0, 10)), sbx.IsInvalidArgument},
		{"kill unknown", e.sdk.KillPTY(ctx, sb.ID, "nope"), sbx.IsNotFound},
		{"connect unknown terminal", connect(sb.ID, "nope"), sbx.IsNotFound},
		{"connect unknown sandbox", connect("nope", "taken"), sbx.IsNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.is(tc.err) {
				t.Fatalf("err = %v", tc.err)
			}
		})
	}
	// Not a WebSocket handshake: a plain problem answer.
	if r := e.raw(t, "GET", "/v1/sandboxes/"+sb.ID+"/ptys/taken/connect", "", nil); r.status != 400 || r.problem(t).Code != sbx.CodeInvalidArgument {
		t.Errorf("plain GET of the socket: %d %s", r.status, r.body)
	}
	// A stopped sandbox has no terminals.
	if _, err := e.sdk.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.ListPTYs(ctx, sb.ID); !sbx.IsConflict(err) {
		t.Errorf("list in a stopped sandbox: %v", err)
	}
	if err := connect(sb.ID, "taken"); !sbx.IsConflict(err) {
		t.Errorf("connect in a stopped sandbox: %v", err)
	}
	// The SDK's errors are errors.
	var apiErr *sbx.Error
	if !errors.As(connect(sb.ID, "taken"), &apiErr) || apiErr.Status != 409 {
		t.Errorf("connect error: %+v", apiErr)
	}
}

func errOf[T any](_ T, err error) error { return err }

// The socket's messages as a non-Go client sees them: text JSON control
// around binary terminal bytes.
func TestPTYWebSocketMessages(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{ID: "raw", Argv: []string{"/bin/sh", "-c", "read line; stty size; echo got-$line; exit 7"}}); err != nil {
		t.Fatal(err)
	}
	ws, _, err := websocket.Dial(ctx, e.srv.URL+"/v1/sandboxes/"+sb.ID+"/ptys/raw/connect", &websocket.DialOptions{
		HTTPClient: e.hc, HTTPHeader: http.Header{"Authorization": {"Bearer " + apitest.AdminKey}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	typ, data, err := ws.Read(ctx)
	var hello map[string]any
	if err != nil || typ != websocket.MessageText || json.Unmarshal(data, &hello) != nil || hello["type"] != "connected" {
		t.Fatalf("first message %v %s %v, want connected", typ, data, err)
	}
	if pty, _ := hello["pty"].(map[string]any); pty["id"] != "raw" || pty["running"] != true {
		t.Fatalf("connected: %s", data)
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"resize","cols":77,"rows":11}`)); err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, []byte("x\n")); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v; output %q", err, out.String())
		}
		if typ == websocket.MessageBinary {
			out.Write(data)
			continue
		}
		if got := strings.ReplaceAll(out.String(), "\r", ""); !strings.Contains(got, "11 77\ngot-x\n") {
			t.Errorf("output %q", out.String())
		}
		want := `{"type":"exit","exit":{"code":7,"signal":"","timed_out":false,"oom_killed":false,"duration_ms":0}}`
		var m sbx.PTYMessage
		if err := json.Unmarshal(data, &m); err != nil || m.Exit == nil {
			t.Fatalf("last message %s: %v", data, err)
		}
		m.Exit.DurationMS = 0
		if got, _ := json.Marshal(m); string(got) != want {
			t.Fatalf("last message %s, want %s", got, want)
		}
		break
	}
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("after exit: %v, want a normal close", err)
	}
}

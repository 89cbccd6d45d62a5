package e2e

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// readUntil reads the terminal until its output contains want.
func readUntil(t *testing.T, c *sbx.PTYConn, want string) string {
	t.Helper()
	var out bytes.Buffer
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
	case <-time.After(20 * time.Second):
		c.Close()
		<-done
		t.Fatalf("no %q after 20s: %q", want, out.String())
	}
	return out.String()
}

func typeIn(t *testing.T, c *sbx.PTYConn, text string) {
	t.Helper()
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
}

// TestPTY drives a terminal in a real sandbox over the SDK's WebSocket:
// typing, resizing, dropping the connection and reconnecting by id, the
// exit notification and kill; then the errors of unknown and stopped
// sandboxes, and a stop while a client is connected.
func TestPTY(t *testing.T) {
	setup(t)
	ctx := t.Context()
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{})

	// Busybox has no bash: the default shell is /bin/sh.
	p, err := c.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{Env: map[string]string{"PS1": "$ "}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"/bin/sh"}, p.Argv); diff != "" || !p.Running || p.Cols != 80 || p.Rows != 24 {
		t.Fatalf("created %+v (argv -want +got:\n%s)", p, diff)
	}
	conn, err := c.ConnectPTY(ctx, sb.ID, p.ID, -1)
	if err != nil {
		t.Fatal(err)
	}
	typeIn(t, conn, "echo hi-$((1+1)) $TERM\n")
	readUntil(t, conn, "hi-2 xterm-256color")
	if err := conn.Resize(100, 30); err != nil {
		t.Fatal(err)
	}
	typeIn(t, conn, "stty size\n")
	readUntil(t, conn, "30 100")

	// Drop the connection: the shell lives on, with its variables.
	typeIn(t, conn, "X=still-$((40+2))\n")
	time.Sleep(100 * time.Millisecond)
	conn.Close()
	for i := 0; ; i++ {
		got, err := c.GetPTY(ctx, sb.ID, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Attached {
			if !got.Running {
				t.Fatalf("the shell ended with the connection: %+v", got)
			}
			break
		}
		if i == 100 {
			t.Fatal("the dropped connection still shows as attached")
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err = c.ConnectPTY(ctx, sb.ID, p.ID, -1)
	if err != nil {
		t.Fatal(err)
	}
	if out := readUntil(t, conn, "30 100"); !strings.Contains(out, "hi-2") {
		t.Errorf("the replay lacks the first output: %q", out)
	}
	typeIn(t, conn, "echo $X\n")
	readUntil(t, conn, "still-42")
	typeIn(t, conn, "exit 3\n")
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatalf("reading to the exit: %v", err)
	}
	if st, ok := conn.Exit(); !ok || st.Code != 3 {
		t.Fatalf("exit %+v %v, want code 3", st, ok)
	}
	conn.Close()
	if got, err := c.GetPTY(ctx, sb.ID, p.ID); err != nil || got.Running || got.Exit == nil || got.Exit.Code != 3 {
		t.Fatalf("after the exit: %+v %v", got, err)
	}

	// Kill: the connected client hears of it, the terminal is gone.
	k, err := c.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{ID: "sleeper", Argv: []string{"sh", "-c", "sleep 1000 & sleep 1000"}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err = c.ConnectPTY(ctx, sb.ID, k.ID, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.KillPTY(ctx, sb.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		t.Fatal(err)
	}
	if st, ok := conn.Exit(); !ok || st.Signal != "SIGKILL" {
		t.Fatalf("killed: %+v %v", st, ok)
	}
	conn.Close()
	if _, err := c.GetPTY(ctx, sb.ID, k.ID); !sbx.IsNotFound(err) {
		t.Fatalf("after kill: %v", err)
	}
	if out := execOK(t, c, sb.ID, "sh", "-c", "ps -o comm | grep -c sleep || true"); strings.TrimSpace(out) != "0" {
		t.Errorf("the killed group left sleeps behind: %q", out)
	}

	// A stop while connected ends the stream with an error, not a hang.
	if _, err := c.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{ID: "last"}); err != nil {
		t.Fatal(err)
	}
	conn, err = c.ConnectPTY(ctx, sb.ID, "last", -1)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, conn)
		ended <- err
	}()
	if _, err := c.StopSandbox(ctx, sb.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if !sbx.IsUnavailable(err) {
			t.Errorf("the stream ended with %v, want an unavailable error", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the terminal stream hangs after the sandbox stopped")
	}

	for name, err := range map[string]error{
		"create in a stopped sandbox":  errOf(c.CreatePTY(ctx, sb.ID, sbx.CreatePTYRequest{})),
		"connect in a stopped sandbox": errOf(c.ConnectPTY(ctx, sb.ID, "last", -1)),
		"list in a stopped sandbox":    errOf(c.ListPTYs(ctx, sb.ID)),
	} {
		if !sbx.IsConflict(err) {
			t.Errorf("%s: %v, want conflict", name, err)
		}
	}
	for name, err := range map[string]error{
		"create in an unknown sandbox":  errOf(c.CreatePTY(ctx, "nope", sbx.CreatePTYRequest{})),
		"connect in an unknown sandbox": errOf(c.ConnectPTY(ctx, "nope", "last", -1)),
	} {
		if !sbx.IsNotFound(err) {
			t.Errorf("%s: %v, want not found", name, err)
		}
	}
	if err := c.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	leakCheck(t)
}

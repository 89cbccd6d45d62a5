package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestExecInteractive feeds stdin to a running command and signals it,
// over the WebSocket exec.
func TestExecInteractive(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	x, err := c.ExecInteractive(ctx, sb.ID, sbx.ExecRequest{Shell: "while read l; do echo \"got:$l\"; done; echo end"})
	if err != nil {
		t.Fatal(err)
	}
	// Each line comes back before the next is sent: stdin is live.
	for _, l := range []string{"a", "b"} {
		x.Write([]byte(l + "\n"))
		f, err := x.Recv()
		if err != nil || f.Type != sbx.FrameStdout || string(f.Data) != "got:"+l+"\n" {
			t.Fatalf("line %s: %+v %v", l, f, err)
		}
	}
	x.CloseStdin()
	var out bytes.Buffer
	if st, err := x.Wait(&out, nil); err != nil || st.Code != 0 || out.String() != "end\n" {
		t.Errorf("end: %+v %v %q", st, err, out.String())
	}
	x, err = c.ExecInteractive(ctx, sb.ID, sbx.ExecRequest{Shell: "trap 'echo caught; exit 3' INT; echo ready; while true; do sleep 0.05; done"})
	if err != nil {
		t.Fatal(err)
	}
	if f, err := x.Recv(); err != nil || string(f.Data) != "ready\n" {
		t.Fatalf("ready: %+v %v", f, err)
	}
	x.Signal("SIGINT")
	out.Reset()
	if st, err := x.Wait(&out, nil); err != nil || st.Code != 3 || !strings.Contains(out.String(), "caught") {
		t.Errorf("after SIGINT: %+v %v %q", st, err, out.String())
	}
}

// TestStreamEndsWhenSandboxStops: a streaming exec whose sandbox is
// stopped under it ends with an error frame, not a hang.
func TestStreamEndsWhenSandboxStops(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	type end struct {
		st  sbx.ExitStatus
		err error
	}
	done := make(chan end, 1)
	go func() {
		st, err := c.ExecStream(ctx, sb.ID, sbx.ExecRequest{Shell: "echo started; sleep 60"}, nil, nil)
		done <- end{st, err}
	}()
	time.Sleep(300 * time.Millisecond)
	if _, err := c.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-done:
		// Either the agent had time to pass the stop's SIGTERM on and
		// report the command's death, or the stream broke: both are an
		// end; a clean success is not.
		if e.err == nil && e.st.Signal == "" {
			t.Errorf("the stream of a stopped sandbox ended as if the command had finished: %+v", e.st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not end when the sandbox stopped")
	}
}

package httpapi_test

import (
	"bytes"
	"testing"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func TestExecWebSocket(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Live stdin.
	x, err := e.sdk.ExecInteractive(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"cat"}})
	if err != nil {
		t.Fatal(err)
	}
	x.Write([]byte("first "))
	x.Write([]byte("second"))
	x.CloseStdin()
	var out bytes.Buffer
	st, err := x.Wait(&out, nil)
	if err != nil || st.Code != 0 || out.String() != "first second" {
		t.Errorf("cat: %+v %v %q", st, err, out.String())
	}
	// A signal ends a running command.
	x, err = e.sdk.ExecInteractive(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"sleep"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Signal("INT"); err != nil {
		t.Fatal(err)
	}
	if st, err := x.Wait(nil, nil); err != nil || st.Code != 130 || st.Signal != "SIGINT" {
		t.Errorf("signalled: %+v %v", st, err)
	}
	// Errors come before the upgrade, or as an error frame after it.
	if _, err := e.sdk.ExecInteractive(ctx, "nosuch", sbx.ExecRequest{Argv: []string{"cat"}}); !sbx.IsNotFound(err) {
		t.Errorf("unknown sandbox: %v", err)
	}
	x, _ = e.sdk.ExecInteractive(ctx, sb.ID, sbx.ExecRequest{})
	if _, err := x.Wait(nil, nil); !sbx.IsInvalidArgument(err) {
		t.Errorf("empty request: %v", err)
	}
	x, _ = e.sdk.ExecInteractive(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"nosuch"}})
	if _, err := x.Wait(nil, nil); !sbx.IsInvalidArgument(err) {
		t.Errorf("unknown program: %v", err)
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// codeBench measures code runs from the host API in a sandbox of the
// code-run image (Debian with Python, matplotlib, Node.js; built once and
// cached under /var/lib/sbx/cache): a one-shot `print(1)` (a new python3
// process each time), the same in a persistent context, and a one-shot
// matplotlib chart returned as a PNG artifact. Next to them, `python3 -c
// 'print(1)'` through exec: the interpreter's own start-up.
func codeBench(ctx context.Context, d *benchDaemon, work string, n int) {
	const ref = "bench/code:latest"
	if err := d.d.ImportCodeImage(ctx, ref, work, nil); err != nil {
		fmt.Printf("code runs: skipped: %v\n\n", err)
		return
	}
	sb, err := d.c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: ref})
	if err != nil {
		fmt.Printf("code runs: %v\n\n", err)
		return
	}
	defer d.delete(ctx, sb.ID)
	check := func(r sbx.CodeResult, err error, want string) error {
		if err != nil {
			return err
		}
		if r.ExitCode != 0 || !strings.Contains(r.Stdout, want) {
			return fmt.Errorf("exit %d, stdout %q, stderr %q", r.ExitCode, r.Stdout, r.Stderr)
		}
		return nil
	}
	oneShot := &sample{name: "code run `print(1)` (python3 process)"}
	measure(oneShot, n, 1, func(int) error {
		r, err := d.c.RunCode(ctx, sb.ID, sbx.CodeRequest{Language: "python", Code: "print(1)"})
		return check(r, err, "1")
	})
	execPy := &sample{name: "exec `python3 -c 'print(1)'`"}
	measure(execPy, n, 1, func(int) error {
		r, err := d.c.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"python3", "-c", "print(1)"}})
		if err == nil && r.Stdout != "1\n" {
			err = fmt.Errorf("printed %q", r.Stdout)
		}
		return err
	})
	inContext := &sample{name: "code run `print(1)` in a context"}
	if cx, err := d.c.CreateContext(ctx, sb.ID, sbx.CreateContextRequest{Language: "python"}); err == nil {
		measure(inContext, n, 1, func(int) error {
			r, err := d.c.RunCode(ctx, sb.ID, sbx.CodeRequest{ContextID: cx.ID, Code: "print(1)"})
			return check(r, err, "1")
		})
	} else {
		inContext.note = err.Error()
	}
	chart := &sample{name: "code run: matplotlib line chart → PNG"}
	measure(chart, min(n, 20), 1, func(int) error {
		r, err := d.c.RunCode(ctx, sb.ID, sbx.CodeRequest{Language: "python",
			Code: "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title('t')\nplt.show()\nprint('ok')"})
		if err == nil && len(r.Artifacts) != 1 {
			err = fmt.Errorf("%d artifacts", len(r.Artifacts))
		}
		return check(r, err, "ok")
	})
	table(os.Stdout, "code runs (from the host API)", execPy, []*sample{oneShot, inContext, chart, execPy})
}

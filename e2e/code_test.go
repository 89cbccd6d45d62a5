package e2e

import (
	"bytes"
	"context"
	"image/png"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// codeImage is a Debian image with python3, matplotlib, node and tsx, built
// once (debootstrap, cached in /var/lib/sbx/cache) when a test needs it.
const codeImage = "sbx/code:e2e"

var (
	codeImageOnce sync.Once
	codeImageErr  error
)

func needCodeImage(t *testing.T) {
	t.Helper()
	setup(t)
	codeImageOnce.Do(func() {
		start := time.Now()
		var log bytes.Buffer
		codeImageErr = daemon.ImportCodeImage(context.Background(), codeImage, workDir, &log)
		if codeImageErr != nil {
			codeImageErr = errorWithLog(codeImageErr, log.String())
		}
		t.Logf("code image built and imported in %v", time.Since(start).Round(time.Second))
	})
	if codeImageErr != nil {
		t.Fatalf("code image: %v", codeImageErr)
	}
}

type logError struct {
	err error
	log string
}

func (e logError) Error() string { return e.err.Error() + "\n" + tail(e.log, 30) }

func errorWithLog(err error, log string) error { return logError{err, log} }

func runCode(t *testing.T, id string, req sbx.CodeRequest) sbx.CodeResult {
	t.Helper()
	res, err := admin.RunCode(t.Context(), id, req)
	if err != nil {
		t.Fatalf("RunCode(%s %.40q): %v", req.Language, req.Code, err)
	}
	return res
}

func checkFigure(t *testing.T, a sbx.Artifact, kind, title string) {
	t.Helper()
	if a.Type != "image/png" || !bytes.HasPrefix(a.Data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("artifact %s of %d bytes is not a PNG", a.Type, len(a.Data))
	}
	img, err := png.Decode(bytes.NewReader(a.Data))
	if err != nil {
		t.Fatalf("decoding the PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
		t.Errorf("figure of %v", b)
	}
	if a.Kind != kind || a.Title != title {
		t.Errorf("figure kind %q title %q, want %q and %q", a.Kind, a.Title, kind, title)
	}
}

func TestCodeRun(t *testing.T) {
	needCodeImage(t)
	ctx := t.Context()
	sb := create(t, admin, sbx.CreateSandboxRequest{Image: codeImage})

	for _, tc := range []struct {
		name string
		req  sbx.CodeRequest
		want sbx.CodeResult
	}{
		{"python", sbx.CodeRequest{Language: "python", Code: "import sys\nprint('py', sys.argv[1:])\nprint('err', file=sys.stderr)\nsys.exit(3)", Argv: []string{"a"}},
			sbx.CodeResult{ExitCode: 3, Stdout: "py ['a']\n", Stderr: "err\n"}},
		{"javascript", sbx.CodeRequest{Language: "javascript", Code: "console.log('js', process.argv.slice(2)[0]); console.error('e'); process.exitCode = 4", Argv: []string{"b"}},
			sbx.CodeResult{ExitCode: 4, Stdout: "js b\n", Stderr: "e\n"}},
		{"typescript", sbx.CodeRequest{Language: "typescript", Code: "interface P { n: number }\nconst p: P = { n: 42 }\nconsole.log(p.n)"},
			sbx.CodeResult{Stdout: "42\n"}},
		{"bash", sbx.CodeRequest{Language: "bash", Code: "echo \"${BASH_VERSION:+bash} $1 $V\"; echo e >&2; exit 5", Argv: []string{"c"}, Env: map[string]string{"V": "v"}},
			sbx.CodeResult{ExitCode: 5, Stdout: "bash c v\n", Stderr: "e\n"}},
		{"as nobody", sbx.CodeRequest{Language: "python", Code: "import os\nprint(os.getuid())", User: "nobody", Cwd: "/tmp"},
			sbx.CodeResult{Stdout: "65534\n"}},
		{"one-shot timeout kills", sbx.CodeRequest{Language: "python", Code: "print('go', flush=True)\nwhile True: pass", TimeoutSeconds: 0.5},
			sbx.CodeResult{ExitCode: 137, Signal: "SIGKILL", TimedOut: true, Stdout: "go\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runCode(t, sb.ID, tc.req)
			got.DurationMS = 0
			tc.want.Artifacts = []sbx.Artifact{}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("figures", func(t *testing.T) {
		res := runCode(t, sb.ID, sbx.CodeRequest{Language: "python", Code: "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [2, 4, 8])\nplt.title('T')\nplt.xlabel('day')\nplt.ylabel('n')\nplt.show()"})
		if res.ExitCode != 0 || len(res.Artifacts) != 1 {
			t.Fatalf("line: %d artifacts, exit %d, stderr %s", len(res.Artifacts), res.ExitCode, res.Stderr)
		}
		a := res.Artifacts[0]
		checkFigure(t, a, "line", "T")
		if a.XLabel != "day" || a.YLabel != "n" || len(a.Elements) != 1 || len(a.Elements[0].Points) != 3 {
			t.Errorf("line chart %+v", a.Chart)
		}

		res = runCode(t, sb.ID, sbx.CodeRequest{Language: "python", Code: "import matplotlib.pyplot as plt\nplt.bar(['a', 'b', 'c'], [3, 1, 2])\nplt.title('Bars')\nplt.show()"})
		if len(res.Artifacts) != 1 {
			t.Fatalf("bar: %+v", res)
		}
		checkFigure(t, res.Artifacts[0], "bar", "Bars")
		if els := res.Artifacts[0].Elements; len(els) != 3 || els[0].Label != "a" || els[0].Value == nil || *els[0].Value != 3 {
			t.Errorf("bar elements %+v", els)
		}

		// Saved, never shown: captured once, and the user's file is there.
		res = runCode(t, sb.ID, sbx.CodeRequest{Language: "python", Cwd: "/tmp", Code: "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.scatter([1, 2], [2, 1])\nax.set_title('Saved')\nfig.savefig('/tmp/saved.png')\nplt.close(fig)"})
		if len(res.Artifacts) != 1 {
			t.Fatalf("savefig: %+v", res)
		}
		checkFigure(t, res.Artifacts[0], "scatter", "Saved")
		if out := execOK(t, admin, sb.ID, "sh", "-c", "test -s /tmp/saved.png && echo ok"); out != "ok\n" {
			t.Errorf("the saved file: %q", out)
		}

		// Without matplotlib nothing is imported: plain code stays fast.
		res = runCode(t, sb.ID, sbx.CodeRequest{Language: "python", Code: "import sys\nprint('matplotlib' in sys.modules)"})
		if res.Stdout != "False\n" || len(res.Artifacts) != 0 {
			t.Errorf("plain run: %+v", res)
		}
	})

	t.Run("context", func(t *testing.T) {
		c, err := admin.CreateContext(ctx, sb.ID, sbx.CreateContextRequest{})
		if err != nil {
			t.Fatal(err)
		}
		in := func(code string, timeout float64) sbx.CodeResult {
			t.Helper()
			return runCode(t, sb.ID, sbx.CodeRequest{ContextID: c.ID, Code: code, TimeoutSeconds: timeout})
		}
		in("x = 41", 0)
		if res := in("x + 1", 0); len(res.Artifacts) != 1 || res.Artifacts[0].Text != "42" || !res.Artifacts[0].Main {
			t.Errorf("x + 1: %+v", res)
		}
		if res := in("print(x + 1)", 0); res.Stdout != "42\n" {
			t.Errorf("print(x + 1): %+v", res)
		}
		start := time.Now()
		res := in("while True: pass", 0.5)
		if !res.TimedOut || res.ExitCode != 130 || res.Error == nil || res.Error.Name != "KeyboardInterrupt" {
			t.Errorf("interrupted: %+v", res)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the interrupt took %v", d)
		}
		if res := in("print(x)", 0); res.Stdout != "41\n" {
			t.Errorf("after the interrupt: %+v", res)
		}
		res = in("import matplotlib.pyplot as plt\nplt.pie([1, 2, 3])\nplt.title('P')", 0)
		if len(res.Artifacts) != 2 {
			t.Fatalf("figure in a context: %+v", res)
		}
		checkFigure(t, res.Artifacts[0], "pie", "P")
		if err := admin.DeleteContext(ctx, sb.ID, c.ID); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("javascript context", func(t *testing.T) {
		c, err := admin.CreateContext(ctx, sb.ID, sbx.CreateContextRequest{Language: "javascript"})
		if err != nil {
			t.Fatal(err)
		}
		runCode(t, sb.ID, sbx.CodeRequest{ContextID: c.ID, Code: "let x = 41"})
		if res := runCode(t, sb.ID, sbx.CodeRequest{ContextID: c.ID, Code: "x + 1"}); len(res.Artifacts) != 1 || res.Artifacts[0].Text != "42" {
			t.Errorf("x + 1: %+v", res)
		}
		res := runCode(t, sb.ID, sbx.CodeRequest{ContextID: c.ID, Code: "while (true) {}", TimeoutSeconds: 0.5})
		if !res.TimedOut || res.ExitCode != 130 {
			t.Errorf("interrupted: %+v", res)
		}
		if res := runCode(t, sb.ID, sbx.CodeRequest{ContextID: c.ID, Code: "console.log(x)"}); res.Stdout != "41\n" {
			t.Errorf("after the interrupt: %+v", res)
		}
		list, err := admin.ListContexts(ctx, sb.ID)
		if err != nil || len(list) != 1 || list[0].Language != "javascript" || list[0].Runs != 4 {
			t.Errorf("ListContexts = %+v, %v", list, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := admin.RunCode(ctx, sb.ID, sbx.CodeRequest{Language: "cobol", Code: "x"}); !sbx.IsInvalidArgument(err) {
			t.Errorf("unknown language: %v", err)
		}
		if _, err := admin.RunCode(ctx, sb.ID, sbx.CodeRequest{ContextID: "ctx-none", Code: "x"}); !sbx.IsNotFound(err) {
			t.Errorf("unknown context: %v", err)
		}
		if _, err := admin.StopSandbox(ctx, sb.ID, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RunCode(ctx, sb.ID, sbx.CodeRequest{Language: "python", Code: "1"}); !sbx.IsConflict(err) {
			t.Errorf("code in a stopped sandbox: %v", err)
		}
	})
	if err := admin.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	leakCheck(t)
}

// The busybox image has no python: a clear error, not an exit code.
func TestCodeRunMissingInterpreter(t *testing.T) {
	setup(t)
	sb := create(t, admin, sbx.CreateSandboxRequest{})
	_, err := admin.RunCode(t.Context(), sb.ID, sbx.CodeRequest{Language: "python", Code: "print(1)"})
	if !sbx.IsInvalidArgument(err) || !strings.Contains(err.Error(), "python3") {
		t.Fatalf("python in busybox: %v", err)
	}
	// bash falls back to sh.
	res, err := admin.RunCode(t.Context(), sb.ID, sbx.CodeRequest{Language: "bash", Code: "echo sh"})
	if err != nil || res.Stdout != "sh\n" {
		t.Fatalf("bash in busybox: %+v %v", res, err)
	}
}

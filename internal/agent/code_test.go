package agent

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// hostPath prefers the system's interpreters (Debian's python3 may have
// matplotlib where a pyenv one does not).
const hostPath = "PATH=/usr/bin:/bin:/usr/local/bin"

type codeResult struct {
	stdout, stderr string
	artifacts      []Artifact
	exit           CodeExit
}

func runCode(t *testing.T, c *Client, req CodeRequest) (codeResult, error) {
	t.Helper()
	s, err := c.RunCode(t.Context(), req)
	if err != nil {
		return codeResult{}, err
	}
	defer s.Close()
	var res codeResult
	for {
		f, err := s.Recv()
		if err != nil {
			return res, err
		}
		switch f.Kind {
		case FrameStdout:
			res.stdout += string(f.Data)
		case FrameStderr:
			res.stderr += string(f.Data)
		case FrameArtifact:
			res.artifacts = append(res.artifacts, *f.Artifact)
		case FrameExit:
			res.exit = *f.Exit
			return res, nil
		case FrameError:
			return res, f.Err
		}
	}
}

func mustRunCode(t *testing.T, c *Client, req CodeRequest) codeResult {
	t.Helper()
	res, err := runCode(t, c, req)
	if err != nil {
		t.Fatalf("RunCode(%.40q): %v", req.Code, err)
	}
	return res
}

func TestCodeRun(t *testing.T) {
	dir := t.TempDir()
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath, "BASE=b"}, Dir: dir})
	if err := os.WriteFile(filepath.Join(dir, "helper.py"), []byte("VALUE = 'from cwd'\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		req        CodeRequest
		wantOut    string
		wantErr    string
		wantCode   int
		needs      string
		errContain string
	}{
		{name: "python", req: CodeRequest{Language: "python", Code: "import sys\nprint('hi')\nprint('oops', file=sys.stderr)\nsys.exit(3)"}, wantOut: "hi\n", wantErr: "oops\n", wantCode: 3},
		{name: "python argv env", req: CodeRequest{Language: "py", Code: "import os, sys\nprint(sys.argv[1:], os.environ['BASE'], os.environ['X'])", Argv: []string{"a", "b"}, Env: []string{"X=y"}}, wantOut: "['a', 'b'] b y\n"},
		{name: "python imports from cwd", req: CodeRequest{Language: "python", Code: "import helper\nprint(helper.VALUE)"}, wantOut: "from cwd\n"},
		{name: "python exception", req: CodeRequest{Language: "python", Code: "1/0"}, wantCode: 1, errContain: "ZeroDivisionError"},
		{name: "javascript", req: CodeRequest{Language: "javascript", Code: "console.log('js', process.argv.slice(2).join(',')); console.error('e'); process.exit(4)", Argv: []string{"x", "y"}}, wantOut: "js x,y\n", wantErr: "e\n", wantCode: 4, needs: "node"},
		{name: "typescript", req: CodeRequest{Language: "typescript", Code: "const n: number = 6 * 7; console.log(n)"}, wantOut: "42\n", needs: "tsx"},
		{name: "bash", req: CodeRequest{Language: "bash", Code: "echo \"$1 $BASE\"; echo err >&2; exit 5", Argv: []string{"arg"}}, wantOut: "arg b\n", wantErr: "err\n", wantCode: 5},
		{name: "cwd", req: CodeRequest{Language: "bash", Code: "pwd", Cwd: "/"}, wantOut: "/\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.needs != "" {
				if _, err := exec.LookPath(tt.needs); err != nil {
					t.Skipf("no %s on this host", tt.needs)
				}
			}
			got := mustRunCode(t, c, tt.req)
			if tt.errContain != "" {
				if !strings.Contains(got.stderr, tt.errContain) {
					t.Errorf("stderr %q does not mention %s", got.stderr, tt.errContain)
				}
			} else if got.stderr != tt.wantErr {
				t.Errorf("stderr %q, want %q", got.stderr, tt.wantErr)
			}
			if got.stdout != tt.wantOut || got.exit.Code != tt.wantCode {
				t.Errorf("stdout %q code %d, want %q and %d", got.stdout, got.exit.Code, tt.wantOut, tt.wantCode)
			}
		})
	}
	// The private directory is gone after the run.
	res := mustRunCode(t, c, CodeRequest{Language: "bash", Code: `echo "$0"`})
	if _, err := os.Stat(filepath.Dir(strings.TrimSpace(res.stdout))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("code directory %s left behind: %v", res.stdout, err)
	}
}

func TestCodeRunErrors(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=" + t.TempDir()}})
	for _, tc := range []struct {
		req      CodeRequest
		wantKind error
		want     string
	}{
		{CodeRequest{Language: "cobol", Code: "x"}, errdefs.ErrInvalidArgument, `unknown language "cobol"`},
		{CodeRequest{Code: "x"}, errdefs.ErrInvalidArgument, "language is required"},
		{CodeRequest{Language: "python", Code: "x"}, errdefs.ErrNotFound, "python code needs python3"},
		{CodeRequest{Language: "typescript", Code: "x"}, errdefs.ErrNotFound, "npm install -g tsx"},
		{CodeRequest{ContextID: "ctx-nope", Code: "x"}, errdefs.ErrNotFound, `context "ctx-nope" not found`},
	} {
		_, err := runCode(t, c, tc.req)
		if errdefs.Kind(err) != tc.wantKind || !strings.Contains(errdefs.Message(err), tc.want) {
			t.Errorf("%+v: %v (kind %v), want %v mentioning %q", tc.req, err, errdefs.Kind(err), tc.wantKind, tc.want)
		}
	}
}

func TestCodeRunTimeout(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath}})
	start := time.Now()
	res := mustRunCode(t, c, CodeRequest{Language: "python", Code: "print('started', flush=True)\nwhile True: pass", Timeout: 300 * time.Millisecond})
	if !res.exit.TimedOut || res.exit.Signal != "SIGKILL" || res.stdout != "started\n" {
		t.Fatalf("got %+v", res)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
}

// hasMatplotlib skips unless the python3 on hostPath has matplotlib.
func hasMatplotlib(t *testing.T) {
	t.Helper()
	py, err := lookPath("python3", strings.TrimPrefix(hostPath, "PATH="), "/")
	if err != nil || exec.Command(py, "-c", "import matplotlib").Run() != nil {
		t.Skip("no matplotlib on this host (the e2e tests cover figures)")
	}
}

func checkPNG(t *testing.T, a Artifact) {
	t.Helper()
	if a.Type != "image/png" || !bytes.HasPrefix(a.Data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("artifact %s of %d bytes is not a PNG", a.Type, len(a.Data))
	}
	if _, err := png.Decode(bytes.NewReader(a.Data)); err != nil {
		t.Fatalf("decoding the PNG: %v", err)
	}
}

func TestCodeFigures(t *testing.T) {
	hasMatplotlib(t)
	dir := t.TempDir()
	// The sandbox's default backend (Agg in the default image) is replaced.
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath, "MPLBACKEND=Agg"}, Dir: dir})
	type fig struct{ Kind, Title, XLabel, YLabel string }
	summary := func(as []Artifact) []fig {
		var out []fig
		for _, a := range as {
			checkPNG(t, a)
			out = append(out, fig{a.Kind, a.Title, a.XLabel, a.YLabel})
		}
		return out
	}
	tests := []struct {
		name string
		code string
		env  []string
		want []fig
	}{
		{"shown line", "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title('T')\nplt.xlabel('x')\nplt.ylabel('y')\nplt.show()", nil,
			[]fig{{"line", "T", "x", "y"}}},
		{"bar left open", "import matplotlib.pyplot as plt\nplt.bar(['a', 'b'], [3, 5])\nplt.suptitle('B')", nil,
			[]fig{{"bar", "B", "", ""}}},
		{"saved not shown", "import matplotlib\nmatplotlib.use('Agg') if False else None\nimport matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.scatter([1, 2], [3, 4])\nax.set_title('S')\nfig.savefig('out.png')\nplt.close(fig)", nil,
			[]fig{{"scatter", "S", "", ""}}},
		{"several", "import matplotlib.pyplot as plt\nplt.hist([1, 2, 2, 3])\nplt.show()\nplt.pie([1, 2])\nplt.show()\nplt.boxplot([1, 2, 3])\nplt.show()\nf, (a, b) = plt.subplots(1, 2)\na.plot([1]); b.bar([1], [1])\nplt.show()", nil,
			[]fig{{"histogram", "", "", ""}, {"pie", "", "", ""}, {"box", "", "", ""}, {"composite", "", "", ""}}},
		{"user's backend wins", "import matplotlib.pyplot as plt\nplt.plot([1])\nplt.show()", []string{"MPLBACKEND=Agg"}, nil},
		{"no matplotlib, no figures", "print(1)", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustRunCode(t, c, CodeRequest{Language: "python", Code: tt.code, Env: tt.env})
			if res.exit.Code != 0 {
				t.Fatalf("exit %d, stderr %s", res.exit.Code, res.stderr)
			}
			if diff := cmp.Diff(tt.want, summary(res.artifacts)); diff != "" {
				t.Errorf("figures (-want +got):\n%s\nstderr: %s", diff, res.stderr)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "out.png")); err != nil {
		t.Errorf("the user's savefig file: %v", err)
	}
	res := mustRunCode(t, c, CodeRequest{Language: "python", Code: "import matplotlib.pyplot as plt\nplt.plot([1, 2], [3, 4], label='up')\nplt.bar(['a'], [1])\nplt.show()\nplt.plot([0, 1], [5, 6], label='s')\nplt.show()"})
	if len(res.artifacts) != 2 {
		t.Fatalf("artifacts: %+v", res.artifacts)
	}
	want := []ChartElement{{Label: "s", Points: [][2]float64{{0, 5}, {1, 6}}}}
	if diff := cmp.Diff(want, res.artifacts[1].Elements); diff != "" {
		t.Errorf("line elements (-want +got):\n%s", diff)
	}
	res = mustRunCode(t, c, CodeRequest{Language: "python", Code: "import matplotlib.pyplot as plt\nplt.boxplot([[1, 2, 3, 4, 5, 40]], labels=['b'])\nplt.show()"})
	f := func(v float64) *float64 { return &v }
	wantBox := []ChartElement{{Label: "b", Min: f(1), FirstQuartile: f(2.25), Median: f(3.5), ThirdQuartile: f(4.75), Max: f(5), Outliers: []float64{40}}}
	if len(res.artifacts) != 1 {
		t.Fatalf("box: %+v %s", res.artifacts, res.stderr)
	}
	if diff := cmp.Diff(wantBox, res.artifacts[0].Elements); diff != "" {
		t.Errorf("box elements (-want +got):\n%s", diff)
	}
}

func createContext(t *testing.T, c *Client, req ContextRequest) ContextInfo {
	t.Helper()
	ci, err := c.CreateContext(t.Context(), req)
	if err != nil {
		t.Fatalf("CreateContext: %v", err)
	}
	return ci
}

func TestContexts(t *testing.T) {
	dir := t.TempDir()
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath}, Dir: dir})
	ci := createContext(t, c, ContextRequest{Env: []string{"CTX=1"}})
	if ci.Language != LangPython || ci.State != ContextIdle || ci.Cwd != dir || !strings.HasPrefix(ci.ID, "ctx-") {
		t.Fatalf("context %+v", ci)
	}
	in := func(code string, timeout time.Duration, env ...string) codeResult {
		t.Helper()
		return mustRunCode(t, c, CodeRequest{ContextID: ci.ID, Code: code, Timeout: timeout, Env: env})
	}
	text := func(r codeResult) string {
		for _, a := range r.artifacts {
			if a.Main {
				return a.Text
			}
		}
		return ""
	}

	if r := in("x = 41", 0); r.exit.Code != 0 || r.stdout != "" || text(r) != "" {
		t.Fatalf("x = 41: %+v", r)
	}
	if r := in("x + 1", 0); text(r) != "42" {
		t.Fatalf("x + 1: %+v", r)
	}
	if r := in("print(x + 1)\nimport sys; print('e', file=sys.stderr)", 0); r.stdout != "42\n" || r.stderr != "e\n" {
		t.Fatalf("print: %+v", r)
	}
	if r := in("import os; os.environ['CTX'], os.environ['RUN']", 0, "RUN=2"); text(r) != "('1', '2')" {
		t.Fatalf("env: %+v", r)
	}
	if r := in("import os; os.environ.get('RUN')", 0); text(r) != "" {
		t.Fatalf("the run's env outlived it: %+v", r)
	}
	r := in("def f():\n    return 1/0\nf()", 0)
	if r.exit.Code != 1 || r.exit.Error == nil || r.exit.Error.Name != "ZeroDivisionError" ||
		!strings.Contains(r.exit.Error.Traceback, "return 1/0") || strings.Contains(r.exit.Error.Traceback, "kernel.py") {
		t.Fatalf("exception: %+v %+v", r, r.exit.Error)
	}
	if r := in("import sys; sys.exit(4)", 0); r.exit.Code != 4 || r.exit.Error != nil {
		t.Fatalf("sys.exit: %+v", r)
	}
	if r := in("import asyncio\nawait asyncio.sleep(0)\n7", 0); text(r) != "7" {
		t.Fatalf("top-level await: %+v", r)
	}
	// Output without a newline and with marker-like bytes stays whole.
	if r := in("import sys; sys.stdout.write('a\\x1e\\x1fb'); sys.stdout.write('\\x1e')", 0); r.stdout != "a\x1e\x1fb\x1e" {
		t.Fatalf("partial marker: %q", r.stdout)
	}
	// A timeout interrupts the run; the context lives on.
	start := time.Now()
	r = in("print('looping', flush=True)\nwhile True: pass", 300*time.Millisecond)
	if !r.exit.TimedOut || r.exit.Code != 130 || r.exit.Error == nil || r.exit.Error.Name != "KeyboardInterrupt" || r.stdout != "looping\n" {
		t.Fatalf("timeout: %+v %+v", r, r.exit.Error)
	}
	if d := time.Since(start); d > interruptGrace {
		t.Fatalf("the interrupt took %v", d)
	}
	if r := in("x", 0); text(r) != "41" {
		t.Fatalf("after the interrupt: %+v", r)
	}
	list, err := c.ListContexts(t.Context())
	if err != nil || len(list) != 1 || list[0].ID != ci.ID || list[0].Runs != 11 || list[0].State != ContextIdle {
		t.Fatalf("ListContexts = %+v, %v", list, err)
	}
	// An interpreter that exits kills the context, with a clear error.
	r = in("import os; print('bye', flush=True); os._exit(3)", 0)
	if r.exit.Code != 3 || r.exit.Error == nil || r.exit.Error.Name != "ContextDied" || r.stdout != "bye\n" {
		t.Fatalf("os._exit: %+v %+v", r, r.exit.Error)
	}
	_, err = runCode(t, c, CodeRequest{ContextID: ci.ID, Code: "x"})
	if errdefs.Kind(err) != errdefs.ErrConflict || !strings.Contains(err.Error(), "exited with code 3") {
		t.Fatalf("run in a dead context: %v", err)
	}
	list, _ = c.ListContexts(t.Context())
	if len(list) != 1 || list[0].State != ContextDead || !strings.Contains(list[0].Error, "exited with code 3") {
		t.Fatalf("dead context listed as %+v", list)
	}
	// A restart brings it back, empty.
	re, err := c.RestartContext(t.Context(), ci.ID)
	if err != nil || re.ID != ci.ID || re.State != ContextIdle || re.Runs != 0 {
		t.Fatalf("RestartContext = %+v, %v", re, err)
	}
	if r := in("import os; 'x' in globals(), os.environ.get('CTX')", 0); text(r) != "(False, '1')" {
		t.Fatalf("after the restart: %+v %+v", r, r.exit.Error)
	}
	if err := c.DeleteContext(t.Context(), ci.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RestartContext(t.Context(), ci.ID); errdefs.Kind(err) != errdefs.ErrNotFound {
		t.Fatalf("restarting a deleted context: %v", err)
	}
	if err := c.DeleteContext(t.Context(), ci.ID); errdefs.Kind(err) != errdefs.ErrNotFound {
		t.Fatalf("deleting twice: %v", err)
	}
	if list, _ := c.ListContexts(t.Context()); len(list) != 0 {
		t.Fatalf("after delete: %+v", list)
	}
}

// An interpreter that ignores SIGINT is killed after the grace; the context
// is then dead.
func TestContextUnresponsive(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath}})
	ci := createContext(t, c, ContextRequest{})
	r := mustRunCode(t, c, CodeRequest{ContextID: ci.ID, Timeout: 200 * time.Millisecond,
		Code: "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"})
	if !r.exit.TimedOut || r.exit.Signal != "SIGKILL" || r.exit.Error == nil || !strings.Contains(r.exit.Error.Value, "did not stop") {
		t.Fatalf("got %+v %+v", r.exit, r.exit.Error)
	}
	_, err := runCode(t, c, CodeRequest{ContextID: ci.ID, Code: "1"})
	if errdefs.Kind(err) != errdefs.ErrConflict {
		t.Fatalf("after the kill: %v", err)
	}
}

func TestContextFigures(t *testing.T) {
	hasMatplotlib(t)
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath}})
	ci := createContext(t, c, ContextRequest{})
	r := mustRunCode(t, c, CodeRequest{ContextID: ci.ID, Code: "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.title('C')\nNone"})
	if len(r.artifacts) != 1 || r.artifacts[0].Title != "C" || r.artifacts[0].Kind != "line" {
		t.Fatalf("figure open at the end of the run: %+v %s", r.artifacts, r.stderr)
	}
	checkPNG(t, r.artifacts[0])
	// Closed at the end of the run, as Jupyter's inline backend does.
	if r := mustRunCode(t, c, CodeRequest{ContextID: ci.ID, Code: "len(plt.get_fignums())"}); len(r.artifacts) != 1 || r.artifacts[0].Text != "0" {
		t.Fatalf("open figures: %+v", r.artifacts)
	}
}

func TestContextLimitsAndQueue(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath}})
	if _, err := c.CreateContext(t.Context(), ContextRequest{Language: "typescript"}); errdefs.Kind(err) != errdefs.ErrInvalidArgument {
		t.Fatalf("typescript context: %v", err)
	}
	var ids []string
	for range maxContexts {
		ids = append(ids, createContext(t, c, ContextRequest{}).ID)
	}
	if _, err := c.CreateContext(t.Context(), ContextRequest{}); errdefs.Kind(err) != errdefs.ErrConflict {
		t.Fatalf("context %d: %v", maxContexts+1, err)
	}
	// Runs in one context are serialized: the second waits for the first.
	errc := make(chan error, 2)
	outs := make(chan string, 2)
	for i := range 2 {
		go func() {
			res, err := runCode(t, c, CodeRequest{ContextID: ids[0], Code: fmt.Sprintf("import time\nprint('start %d', flush=True)\ntime.sleep(0.3)\nprint('end %d')", i, i)})
			outs <- res.stdout
			errc <- err
		}()
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		out := <-outs
		if !strings.HasPrefix(out, "start ") || strings.Count(out, "\n") != 2 || out[6] != out[len(out)-2] {
			t.Errorf("interleaved output %q", out)
		}
	}
	for _, id := range ids {
		if err := c.DeleteContext(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestContextJavaScript(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("no node on this host")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "helper.js"), []byte("module.exports = { v: 'from cwd' }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath}, Dir: dir})
	ci := createContext(t, c, ContextRequest{Language: "js"})
	if ci.Language != LangJavaScript {
		t.Fatalf("context %+v", ci)
	}
	in := func(code string, timeout time.Duration) codeResult {
		t.Helper()
		return mustRunCode(t, c, CodeRequest{ContextID: ci.ID, Code: code, Timeout: timeout})
	}
	value := func(r codeResult) string {
		for _, a := range r.artifacts {
			if a.Main {
				return a.Text
			}
		}
		return ""
	}
	if r := in("let x = 41; function inc(n) { return n + 1 }", 0); r.exit.Code != 0 || value(r) != "" {
		t.Fatalf("declarations: %+v %+v", r, r.exit.Error)
	}
	if r := in("inc(x)", 0); value(r) != "42" {
		t.Fatalf("inc(x): %+v", r)
	}
	if r := in("console.log(x + 1); console.error('e')", 0); r.stdout != "42\n" || r.stderr != "e\n" {
		t.Fatalf("console: %+v", r)
	}
	if r := in("require('./helper').v", 0); value(r) != "'from cwd'" {
		t.Fatalf("require from cwd: %+v %+v", r, r.exit.Error)
	}
	if r := in("await new Promise(r => setTimeout(() => r(7), 10))", 0); value(r) != "7" {
		t.Fatalf("top-level await: %+v %+v", r, r.exit.Error)
	}
	if r := in("const y = await Promise.resolve(1); console.log(y + x)", 0); r.stdout != "42\n" {
		t.Fatalf("top-level await statements: %+v %+v", r, r.exit.Error)
	}
	if r := in("Promise.resolve(8)", 0); value(r) != "8" {
		t.Fatalf("promise value: %+v", r)
	}
	r := in("null.x", 0)
	if r.exit.Code != 1 || r.exit.Error == nil || r.exit.Error.Name != "TypeError" || !strings.Contains(r.exit.Error.Traceback, "<cell-") {
		t.Fatalf("exception: %+v %+v", r, r.exit.Error)
	}
	r = in("while (true) {}", 300*time.Millisecond)
	if !r.exit.TimedOut || r.exit.Code != 130 || r.exit.Error == nil || r.exit.Error.Name != "KeyboardInterrupt" {
		t.Fatalf("timeout: %+v %+v", r.exit, r.exit.Error)
	}
	if r := in("x", 0); value(r) != "41" {
		t.Fatalf("after the interrupt: %+v", r)
	}
	r = in("process.exit(6)", 0)
	if r.exit.Code != 6 || r.exit.Error == nil || r.exit.Error.Name != "ContextDied" {
		t.Fatalf("process.exit: %+v %+v", r.exit, r.exit.Error)
	}
}

// Artifacts larger than a frame travel in data frames and arrive whole;
// a symlink in the artifacts directory is not followed.
func TestCodeArtifactFrames(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Env: []string{hostPath}})
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("not for the code"), 0o600); err != nil {
		t.Fatal(err)
	}
	code := `import os, random
d = os.environ["SBX_CODE_ARTIFACTS"]
random.seed(1)
data = b"\x89PNG\r\n\x1a\n" + random.randbytes(3 << 20)
open(os.path.join(d, "a.png"), "wb").write(data)
open(os.path.join(d, "a.json"), "w").write('{"kind": "image", "title": "big"}')
os.symlink(` + fmt.Sprintf("%q", secret) + `, os.path.join(d, "b.png"))
open(os.path.join(d, "b.json"), "w").write('{"kind": "line"}')
import hashlib
print(hashlib.sha256(data).hexdigest())
`
	res := mustRunCode(t, c, CodeRequest{Language: "python", Code: code})
	if res.exit.Code != 0 || len(res.artifacts) != 1 {
		t.Fatalf("exit %d, %d artifacts, stderr %s", res.exit.Code, len(res.artifacts), res.stderr)
	}
	a := res.artifacts[0]
	if a.Title != "big" || a.Kind != "image" || len(a.Data) != 8+3<<20 || a.Size != 0 {
		t.Fatalf("artifact %s %s of %d bytes", a.Kind, a.Title, len(a.Data))
	}
	sum := sha256.Sum256(a.Data)
	if got := hex.EncodeToString(sum[:]); got+"\n" != res.stdout {
		t.Fatalf("data differs: %s, python says %s", got, res.stdout)
	}
}

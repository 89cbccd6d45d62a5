package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// fakeFigure is Python code that leaves a figure where the matplotlib
// backend would (the fake's python may lack matplotlib): the whole
// artifact path, chart description included, without matplotlib.
func fakeFigure(t *testing.T) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 2, 2))); err != nil {
		t.Fatal(err)
	}
	desc := `{"kind": "bar", "title": "T", "x_label": "x", "y_label": "y", "elements": [{"label": "a", "value": 3.0, "group": ""}], "text": "<Figure>"}`
	code := fmt.Sprintf(`import base64, os
d = os.environ["SBX_CODE_ARTIFACTS"]
open(os.path.join(d, "0001.json"), "w").write(%q)
open(os.path.join(d, "0001.png"), "wb").write(base64.b64decode(%q))
print("drawn")
`, desc, base64.StdEncoding.EncodeToString(buf.Bytes()))
	return code, buf.Bytes()
}

func TestRunCode(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	three := 3.0
	figCode, figPNG := fakeFigure(t)
	for _, tc := range []struct {
		name string
		req  sbx.CodeRequest
		want sbx.CodeResult
	}{
		{"python", sbx.CodeRequest{Language: "python", Code: "import sys\nprint('hi')\nprint('e', file=sys.stderr)\nsys.exit(2)"},
			sbx.CodeResult{ExitCode: 2, Stdout: "hi\n", Stderr: "e\n"}},
		{"bash argv env", sbx.CodeRequest{Language: "sh", Code: `echo "$1 $V"`, Argv: []string{"a"}, Env: map[string]string{"V": "v"}},
			sbx.CodeResult{Stdout: "a v\n"}},
		{"javascript", sbx.CodeRequest{Language: "js", Code: "console.log(6 * 7)"}, sbx.CodeResult{Stdout: "42\n"}},
		{"timeout", sbx.CodeRequest{Language: "bash", Code: "echo x; sleep 10", TimeoutSeconds: 0.3},
			sbx.CodeResult{ExitCode: 137, Signal: "SIGKILL", TimedOut: true, Stdout: "x\n"}},
		{"artifact", sbx.CodeRequest{Language: "python", Code: figCode}, sbx.CodeResult{Stdout: "drawn\n", Artifacts: []sbx.Artifact{{
			Type: "image/png", Data: figPNG, Text: "<Figure>",
			Chart: sbx.Chart{Kind: "bar", Title: "T", XLabel: "x", YLabel: "y", Elements: []sbx.ChartElement{{Label: "a", Value: &three}}},
		}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.sdk.RunCode(ctx, sb.ID, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			got.DurationMS = 0
			if tc.want.Artifacts == nil {
				tc.want.Artifacts = []sbx.Artifact{}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}

	for _, tc := range []struct {
		name string
		req  sbx.CodeRequest
		ok   func(error) bool
		msg  string
	}{
		{"unknown language", sbx.CodeRequest{Language: "cobol", Code: "x"}, sbx.IsInvalidArgument, `unknown language "cobol"`},
		{"no language", sbx.CodeRequest{Code: "x"}, sbx.IsInvalidArgument, "language is required"},
		{"argv in a context", sbx.CodeRequest{ContextID: "ctx-1", Argv: []string{"a"}}, sbx.IsInvalidArgument, "cannot be given"},
		{"unknown context", sbx.CodeRequest{ContextID: "ctx-nope", Code: "x"}, sbx.IsNotFound, "ctx-nope"},
		{"bad cwd", sbx.CodeRequest{Language: "bash", Code: "x", Cwd: "/nonexistent"}, sbx.IsInvalidArgument, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.sdk.RunCode(ctx, sb.ID, tc.req)
			if !tc.ok(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want one mentioning %q", err, tc.msg)
			}
			_, err = e.sdk.RunCodeStream(ctx, sb.ID, tc.req, sbx.CodeHandlers{})
			if !tc.ok(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("streamed: err = %v, want one mentioning %q", err, tc.msg)
			}
		})
	}

	if _, err := e.sdk.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.RunCode(ctx, sb.ID, sbx.CodeRequest{Language: "python", Code: "1"}); !sbx.IsConflict(err) {
		t.Fatalf("code in a stopped sandbox: %v", err)
	}
	if _, err := e.sdk.CreateContext(ctx, sb.ID, sbx.CreateContextRequest{}); !sbx.IsConflict(err) {
		t.Fatalf("context in a stopped sandbox: %v", err)
	}
}

func TestRunCodeStream(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(sbx.CodeRequest{Language: "bash", Code: "printf abc; exit 3"})
	r := e.raw(t, "POST", "/v1/sandboxes/"+sb.ID+"/code", "", bytes.NewReader(body), "Accept", sbx.NDJSON)
	if r.status != 200 || r.header.Get("Content-Type") != sbx.NDJSON {
		t.Fatalf("%d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 2 || lines[0] != `{"type":"stdout","data":"YWJj"}` || !strings.HasPrefix(lines[1], `{"type":"exit","exit":{"code":3,`) {
		t.Fatalf("NDJSON lines %q", lines)
	}

	figCode, figPNG := fakeFigure(t)
	var out, errOut bytes.Buffer
	var arts []sbx.Artifact
	res, err := e.sdk.RunCodeStream(ctx, sb.ID, sbx.CodeRequest{Language: "python", Code: figCode + "import sys; print('w', file=sys.stderr)"}, sbx.CodeHandlers{
		Stdout:   func(b []byte) error { out.Write(b); return nil },
		Stderr:   func(b []byte) error { errOut.Write(b); return nil },
		Artifact: func(a sbx.Artifact) error { arts = append(arts, a); return nil },
	})
	if err != nil || res.ExitCode != 0 || out.String() != "drawn\n" || errOut.String() != "w\n" {
		t.Fatalf("stream: %+v %v %q %q", res, err, out.String(), errOut.String())
	}
	if len(arts) != 1 || !bytes.Equal(arts[0].Data, figPNG) || arts[0].Kind != "bar" || len(res.Artifacts) != 1 {
		t.Fatalf("artifacts %+v", arts)
	}
}

func TestCodeContexts(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.CreateContext(ctx, sb.ID, sbx.CreateContextRequest{Language: "cobol"}); !sbx.IsInvalidArgument(err) {
		t.Fatalf("cobol context: %v", err)
	}
	// An empty body is a python context in the sandbox's workdir.
	r := e.raw(t, "POST", "/v1/sandboxes/"+sb.ID+"/contexts", "", nil)
	if r.status != 201 {
		t.Fatalf("create with no body: %d %s", r.status, r.body)
	}
	var first sbx.CodeContext
	json.Unmarshal(r.body, &first)
	cc, err := e.sdk.CreateContext(ctx, sb.ID, sbx.CreateContextRequest{Env: map[string]string{"A": "1"}})
	if err != nil || cc.Language != "python" || cc.State != sbx.ContextIdle {
		t.Fatalf("CreateContext = %+v, %v", cc, err)
	}
	run := func(code string, timeout float64) sbx.CodeResult {
		t.Helper()
		res, err := e.sdk.RunCode(ctx, sb.ID, sbx.CodeRequest{ContextID: cc.ID, Code: code, TimeoutSeconds: timeout})
		if err != nil {
			t.Fatal(err)
		}
		res.DurationMS = 0
		return res
	}
	run("x = 41", 0)
	if diff := cmp.Diff(sbx.CodeResult{Artifacts: []sbx.Artifact{{Type: "text/plain", Text: "42", Main: true}}, ExecutionCount: 2}, run("x + 1", 0)); diff != "" {
		t.Fatalf("x + 1 (-want +got):\n%s", diff)
	}
	res := run("import os; print(os.environ['A']); {}['k']", 0)
	if res.ExitCode != 1 || res.Stdout != "1\n" || res.Error == nil || res.Error.Name != "KeyError" || !strings.Contains(res.Error.Traceback, "KeyError") {
		t.Fatalf("exception: %+v", res)
	}
	res = run("while True: pass", 0.3)
	if res.ExitCode != 130 || !res.TimedOut || res.Error == nil || res.Error.Name != "KeyboardInterrupt" {
		t.Fatalf("timeout: %+v", res)
	}
	var out bytes.Buffer
	sres, err := e.sdk.RunCodeStream(ctx, sb.ID, sbx.CodeRequest{ContextID: cc.ID, Language: "python", Code: "print(x + 1)"},
		sbx.CodeHandlers{Stdout: func(b []byte) error { out.Write(b); return nil }})
	if err != nil || out.String() != "42\n" || sres.ExitCode != 0 || sres.ExecutionCount != 5 {
		t.Fatalf("streamed in the context: %+v %v %q", sres, err, out.String())
	}
	if _, err := e.sdk.RunCode(ctx, sb.ID, sbx.CodeRequest{ContextID: cc.ID, Language: "bash", Code: "x"}); !sbx.IsInvalidArgument(err) {
		t.Fatalf("bash in a python context: %v", err)
	}
	if r := run("import os; os._exit(9)", 0); r.ExitCode != 9 || r.Error == nil || r.Error.Name != "ContextDied" {
		t.Fatalf("os._exit: %+v", r)
	}
	if _, err := e.sdk.RunCode(ctx, sb.ID, sbx.CodeRequest{ContextID: cc.ID, Code: "1"}); !sbx.IsConflict(err) || !strings.Contains(err.Error(), "exited with code 9") {
		t.Fatalf("run in a dead context: %v", err)
	}
	list, err := e.sdk.ListContexts(ctx, sb.ID)
	if err != nil || len(list) != 2 || list[0].ID != first.ID || list[1].ID != cc.ID || list[1].State != sbx.ContextDead || list[1].Runs != 6 {
		t.Fatalf("ListContexts = %+v, %v", list, err)
	}
	re, err := e.sdk.RestartContext(ctx, sb.ID, cc.ID)
	if err != nil || re.ID != cc.ID || re.State != sbx.ContextIdle {
		t.Fatalf("RestartContext = %+v, %v", re, err)
	}
	if r := run("'x' in globals()", 0); len(r.Artifacts) != 1 || r.Artifacts[0].Text != "False" {
		t.Fatalf("after the restart: %+v", r)
	}
	if _, err := e.sdk.RestartContext(ctx, sb.ID, "ctx-nope"); !sbx.IsNotFound(err) {
		t.Fatalf("restarting an unknown context: %v", err)
	}
	for _, c := range list {
		if err := e.sdk.DeleteContext(ctx, sb.ID, c.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.sdk.DeleteContext(ctx, sb.ID, cc.ID); !sbx.IsNotFound(err) {
		t.Fatalf("deleting twice: %v", err)
	}
	if list, err := e.sdk.ListContexts(ctx, sb.ID); err != nil || len(list) != 0 {
		t.Fatalf("after delete: %+v %v", list, err)
	}
}

func TestCodeRoutesDocumented(t *testing.T) {
	doc, err := apitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/sandboxes/{id}/code", "/v1/sandboxes/{id}/contexts", "/v1/sandboxes/{id}/contexts/{contextID}", "/v1/sandboxes/{id}/contexts/{contextID}/restart"} {
		if doc.Paths.Find(path) == nil {
			t.Errorf("route %s is not in the document", path)
		}
	}
}

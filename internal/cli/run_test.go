package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func TestArtifactName(t *testing.T) {
	for _, tc := range []struct {
		title, want string
	}{
		{"", "3.png"},
		{"Sales 2024", "3-Sales_2024.png"},
		{"../../etc/passwd", "3-etcpasswd.png"},
		{"..", "3.png"},
		{strings.Repeat("x", 100), "3-" + strings.Repeat("x", 60) + ".png"},
	} {
		if got := artifactName(3, sbx.Artifact{Chart: sbx.Chart{Title: tc.title}}); got != tc.want {
			t.Errorf("artifactName(%q) = %q, want %q", tc.title, got, tc.want)
		}
	}
}

// The exit code of `sbx run` is the code's: in a context 1 for an
// exception, 130 for an interrupt; API errors give 1.
func TestRunExitCodes(t *testing.T) {
	_, u := fakeServer(t)
	run := func(args ...string) int {
		return Main(append([]string{"--url", u, "--api-key", apitest.AdminKey}, args...))
	}
	if code := run("create", "--name", "coderun"); code != 0 {
		t.Fatalf("create: %d", code)
	}
	c, err := sbx.New(u, apitest.AdminKey).CreateContext(t.Context(), "coderun", sbx.CreateContextRequest{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := func(name, code string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"run", "coderun", file("ok.py", "print(1)")}, 0},
		{[]string{"run", "coderun", file("exit.js", "process.exit(7)")}, 7},
		{[]string{"run", "--context", c.ID, "coderun", file("set.py", "x = 41")}, 0},
		{[]string{"run", "--context", c.ID, "coderun", file("get.py", "assert x == 41")}, 0},
		{[]string{"run", "--context", c.ID, "coderun", file("raise.py", "1/0")}, 1},
		{[]string{"run", "--context", c.ID, "--timeout", "0.2", "coderun", file("loop.py", "while True: pass")}, 130},
		{[]string{"run", "--context", "ctx-nope", "coderun", file("x.py", "1")}, 1},
		{[]string{"run", "nosandbox", file("y.py", "1")}, 1},
		{[]string{"context", "restart", "coderun", c.ID}, 0},
		{[]string{"run", "--context", c.ID, "coderun", file("gone.py", "assert 'x' not in globals()")}, 0},
		{[]string{"context", "rm", "coderun", c.ID}, 0},
		{[]string{"context", "rm", "coderun", c.ID}, 1},
	} {
		if got := run(tc.args...); got != tc.want {
			t.Errorf("sbx %s: exit %d, want %d", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

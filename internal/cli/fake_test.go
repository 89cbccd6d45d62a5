package cli

import (
	"flag"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// fakeServer serves the API over the in-memory fake behind a reverse proxy
// that validates every exchange against api/openapi.yaml, so the CLI's
// traffic is held to the contract too. It returns the URL to point SBX_URL
// at.
func fakeServer(t *testing.T) (*apitest.Fake, string) {
	t.Helper()
	f := apitest.NewFake()
	t.Cleanup(f.Close)
	api := httptest.NewServer(f.Handler("fake-1"))
	t.Cleanup(api.Close)
	u, _ := url.Parse(api.URL)
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.Transport = apitest.NewTransport(t, nil)
	proxy.FlushInterval = -1 // streams pass through as they come
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	return f, front.URL
}

// TestFakeScripts runs testdata/fake/*.txtar against the fake: no root,
// no daemon, fixed command set (see apitest.Fake). The real-daemon suite is
// TestScripts.
func TestFakeScripts(t *testing.T) {
	_, u := fakeServer(t)
	t.Run("group", func(t *testing.T) {
		testscript.Run(t, testscript.Params{
			Dir: "testdata/fake",
			Setup: func(env *testscript.Env) error {
				env.Setenv("SBX_URL", u)
				env.Setenv("SBX_API_KEY", apitest.AdminKey)
				return nil
			},
		})
	})
}

// The exit code of `sbx exec` is the command's; API errors give 1.
func TestExecExitCodes(t *testing.T) {
	_, u := fakeServer(t)
	run := func(args ...string) int {
		return Main(append([]string{"--url", u, "--api-key", apitest.AdminKey}, args...))
	}
	if code := run("create", "--name", "codes"); code != 0 {
		t.Fatalf("create: %d", code)
	}
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"exec", "codes", "--", "echo", "hi"}, 0},
		{[]string{"exec", "codes", "--", "exit", "3"}, 3},
		{[]string{"exec", "codes", "--", "oom"}, 137},
		{[]string{"exec", "codes", "--", "nosuch"}, 1},
		{[]string{"exec", "nosandbox", "--", "echo"}, 1},
		{[]string{"--api-key", "bad", "exec", "codes", "--", "echo"}, 1},
	} {
		if got := run(tc.args...); got != tc.want {
			t.Errorf("sbx %s: exit %d, want %d", strings.Join(tc.args, " "), got, tc.want)
		}
	}
}

// Table rendering from fixed objects, against testdata/*.golden (-update
// rewrites them). Times are relative to now, as the tables print "ago".
func TestTablesGolden(t *testing.T) {
	now := time.Now()
	exit := 0
	sandboxes := []sbx.Sandbox{
		{ID: "sb-0001", Name: "web", Image: "sbx/default:latest", State: "started", Resources: sbx.Resources{CPU: 1, MemoryMB: 512}, CreatedAt: now.Add(-90 * time.Second), ExitCode: &exit},
		{ID: "sb-0002", Name: "a-much-longer-name", Image: "docker.io/library/python:3.12", State: "stopped", Resources: sbx.Resources{CPU: 0.5, MemoryMB: 2048}, CreatedAt: now.Add(-3 * time.Hour)},
	}
	images := []sbx.Image{
		{Ref: "sbx/default:latest", Digest: "sha256:0123456789abcdef0123456789abcdef", Size: 123456789, Shared: true, CreatedAt: now.Add(-72 * time.Hour)},
		{Ref: "local/app:dev", Digest: "sha256:fedcba9876543210", Size: 3 << 20, CreatedAt: now.Add(-5 * time.Second)},
	}
	for _, tc := range []struct {
		name  string
		table func(*testing.T) string
	}{
		{"sandboxes", func(t *testing.T) string { return render(t, sandboxTable(sandboxes)) }},
		{"images", func(t *testing.T) string { return render(t, imageTable(images)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.table(t)
			path := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", path, diff)
			}
		})
	}
}

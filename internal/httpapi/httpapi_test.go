package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/httpapi"
	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

type env struct {
	fake *apitest.Fake
	srv  *httptest.Server
	hc   *http.Client // validates every exchange against openapi.yaml
	sdk  *sbx.Client  // as the admin tenant
}

func newEnv(t *testing.T, mod ...func(*httpapi.Config)) *env {
	t.Helper()
	f := apitest.NewFake()
	t.Cleanup(f.Close)
	cfg := httpapi.Config{Sandboxes: f, Images: f.ImageStore(), Auth: f, Version: "test-1"}
	for _, m := range mod {
		m(&cfg)
	}
	srv := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(srv.Close)
	hc := apitest.Client(t)
	return &env{fake: f, srv: srv, hc: hc, sdk: sbx.New(srv.URL, apitest.AdminKey, sbx.WithHTTPClient(hc))}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) problem(t *testing.T) sbx.Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json (body %s)", ct, r.body)
	}
	var p sbx.Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// raw sends a request as written, with the admin key unless key says
// otherwise ("-" for none), through the validating client.
func (e *env) raw(t *testing.T, method, path, key string, body io.Reader, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch key {
	case "":
		req.Header.Set("Authorization", "Bearer "+apitest.AdminKey)
	case "-":
	default:
		req.Header.Set("Authorization", "Bearer "+key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func TestSpecIsValid(t *testing.T) {
	doc, err := apitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	// Every route the handler serves is in the document.
	for _, path := range []string{
		"/healthz", "/v1/whoami", "/v1/tenants", "/v1/tenants/{id}/keys", "/v1/tenants/{id}/keys/{keyID}",
		"/v1/sandboxes", "/v1/sandboxes/{id}", "/v1/sandboxes/{id}/start", "/v1/sandboxes/{id}/stop",
		"/v1/sandboxes/{id}/restart", "/v1/sandboxes/{id}/resize", "/v1/sandboxes/{id}/labels",
		"/v1/sandboxes/{id}/events", "/v1/sandboxes/{id}/logs", "/v1/sandboxes/{id}/exec",
		"/v1/images", "/v1/images/pull", "/v1/images/import", "/v1/images/{ref}",
		"/v1/templates", "/v1/templates/{name}", "/v1/templates/{name}/build-log",
		"/v1/sandboxes/{id}/public", "/v1/sandboxes/{id}/ports/{port}/preview",
		"/v1/sandboxes/{id}/ports/{port}/signed-preview", "/v1/sandboxes/{id}/ports/{port}/signed-preview/{token}",
	} {
		if doc.Paths.Find(path) == nil {
			t.Errorf("route %s is not in the document", path)
		}
	}
}

// The validator must be able to fail, or the 0 violations elsewhere mean
// nothing: an answer with a field the document does not have is caught.
func TestValidatorCatchesViolations(t *testing.T) {
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"ok","version":"x","uid_slot":3}`)
	}))
	defer bad.Close()
	v, err := apitest.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: v.Transport(nil)}
	resp, err := hc.Get(bad.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if len(v.Violations()) == 0 {
		t.Fatal("an extra field in /healthz went unnoticed")
	}
	// A request the document forbids, accepted with 2xx, is a violation too.
	v2, _ := apitest.NewValidator()
	hc = &http.Client{Transport: v2.Transport(nil)}
	resp, err = hc.Post(bad.URL+"/v1/sandboxes", "application/json", strings.NewReader(`{"privileged":true}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.Contains(strings.Join(v2.Violations(), "\n"), "accepted") {
		t.Fatalf("violations = %q, want the accepted forbidden request", v2.Violations())
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t, "GET", "/healthz", "-", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"version":"test-1"`) {
		t.Fatalf("healthz: %d %s", r.status, r.body)
	}
	h, err := sbx.New(e.srv.URL, "", sbx.WithHTTPClient(e.hc)).Health(t.Context())
	if err != nil || h.Status != "ok" {
		t.Fatalf("Health = %+v, %v", h, err)
	}
}

func TestAuthentication(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, path, key string
		hdr             []string
		status          int
		code            string
	}{
		{"missing key", "/v1/whoami", "-", nil, 401, "unauthenticated"},
		{"bad key", "/v1/whoami", "sbx_wrong", nil, 401, "unauthenticated"},
		{"not bearer", "/v1/whoami", "-", []string{"Authorization", "Basic YWRtaW46eA=="}, 401, "unauthenticated"},
		{"key in query", "/v1/whoami?api_key=" + apitest.AdminKey, "-", nil, 400, "invalid_argument"},
		{"key in query with header", "/v1/sandboxes?token=x", "", nil, 400, "invalid_argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t, "GET", tc.path, tc.key, nil, tc.hdr...)
			p := r.problem(t)
			if r.status != tc.status || p.Code != tc.code || p.Status != tc.status || p.Type != sbx.ProblemTypeBase+tc.code {
				t.Fatalf("got %d %+v, want %d %s", r.status, p, tc.status, tc.code)
			}
			if strings.Contains(p.Detail, apitest.AdminKey) {
				t.Fatal("the key is echoed back")
			}
		})
	}
	r := e.raw(t, "GET", "/v1/whoami", "-", nil)
	if r.header.Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	me, err := e.sdk.WhoAmI(t.Context())
	if err != nil || !me.Admin || me.ID != e.fake.AdminID {
		t.Fatalf("WhoAmI = %+v, %v", me, err)
	}
}

func TestTenantsAndKeys(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, userKey := e.fake.AddTenant("user", false)
	user := sbx.New(e.srv.URL, userKey, sbx.WithHTTPClient(e.hc))
	if _, err := user.ListTenants(ctx); !sbx.IsPermissionDenied(err) {
		t.Fatalf("non-admin ListTenants: %v, want permission_denied", err)
	}
	if _, err := user.CreateTenant(ctx, sbx.CreateTenantRequest{Name: "x"}); !sbx.IsPermissionDenied(err) {
		t.Fatalf("non-admin CreateTenant: %v", err)
	}
	if _, err := user.CreateKey(ctx, e.fake.AdminID, "steal"); !sbx.IsPermissionDenied(err) {
		t.Fatalf("non-admin CreateKey: %v", err)
	}

	tn, err := e.sdk.CreateTenant(ctx, sbx.CreateTenantRequest{Name: "acme", Limits: sbx.Limits{MaxSandboxes: 1, MaxCPU: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if tn.Name != "acme" || tn.Admin || tn.Limits.MaxSandboxes != 1 {
		t.Fatalf("created %+v", tn)
	}
	if _, err := e.sdk.CreateTenant(ctx, sbx.CreateTenantRequest{Name: "acme"}); !sbx.IsAlreadyExists(err) {
		t.Fatalf("duplicate tenant: %v", err)
	}
	ts, err := e.sdk.ListTenants(ctx)
	if err != nil || len(ts) != 3 {
		t.Fatalf("ListTenants = %d tenants, %v", len(ts), err)
	}
	k, err := e.sdk.CreateKey(ctx, tn.ID, "ci")
	if err != nil || k.Key == "" || k.TenantID != tn.ID || k.Name != "ci" {
		t.Fatalf("CreateKey = %+v, %v", k, err)
	}
	acme := sbx.New(e.srv.URL, k.Key, sbx.WithHTTPClient(e.hc))
	if me, err := acme.WhoAmI(ctx); err != nil || me.ID != tn.ID {
		t.Fatalf("new key's WhoAmI = %+v, %v", me, err)
	}
	ks, err := e.sdk.ListKeys(ctx, tn.ID)
	if err != nil || len(ks) != 1 || ks[0].Key != "" {
		t.Fatalf("ListKeys = %+v, %v (secrets must not be listed)", ks, err)
	}
	if _, err := e.sdk.ListKeys(ctx, "tn-nope"); !sbx.IsNotFound(err) {
		t.Fatalf("keys of an unknown tenant: %v", err)
	}
	if err := e.sdk.DeleteKey(ctx, tn.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := acme.WhoAmI(ctx); !sbx.IsUnauthenticated(err) {
		t.Fatalf("deleted key still works: %v", err)
	}
	if err := e.sdk.DeleteKey(ctx, tn.ID, k.ID); !sbx.IsNotFound(err) {
		t.Fatalf("deleting twice: %v", err)
	}
	// The tenant's limit is the service's business; its error comes back
	// as resource_exhausted 507.
	k2, _ := e.sdk.CreateKey(ctx, tn.ID, "")
	acme = sbx.New(e.srv.URL, k2.Key, sbx.WithHTTPClient(e.hc))
	if _, err := acme.CreateSandbox(ctx, sbx.CreateSandboxRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = acme.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	var ae *sbx.Error
	if !errors.As(err, &ae) || ae.Status != 507 || ae.Code != sbx.CodeResourceExhausted {
		t.Fatalf("over the limit: %v", err)
	}
}

func TestSandboxLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{
		Name: "web", Env: map[string]string{"A": "1"}, Labels: map[string]string{"app": "web"},
		Resources: &sbx.Resources{CPU: 0.5, MemoryMB: 256}, Cmd: []string{"sleep", "infinity"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sb.State != "started" || sb.DesiredState != "started" || sb.Name != "web" || sb.Resources.CPU != 0.5 ||
		sb.Resources.DiskMB != 1024 || sb.ImageDigest == "" || sb.StartedAt == nil || sb.CreatedAt.Location() != time.UTC {
		t.Fatalf("created %+v", sb)
	}
	if _, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{Name: "web"}); !sbx.IsAlreadyExists(err) {
		t.Fatalf("same name: %v", err)
	}
	if _, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: "nope:1"}); !sbx.IsNotFound(err) {
		t.Fatalf("unknown image: %v", err)
	}
	got, err := e.sdk.GetSandbox(ctx, "web")
	if err != nil || got.ID != sb.ID {
		t.Fatalf("get by name: %+v %v", got, err)
	}
	// The raw record never shows the host uid slot.
	r := e.raw(t, "GET", "/v1/sandboxes/"+sb.ID, "", nil)
	if bytes.Contains(r.body, []byte("uid_slot")) {
		t.Fatalf("uid_slot exposed: %s", r.body)
	}
	// Another tenant cannot see it.
	_, key := e.fake.AddTenant("other", false)
	other := sbx.New(e.srv.URL, key, sbx.WithHTTPClient(e.hc))
	if _, err := other.GetSandbox(ctx, sb.ID); !sbx.IsNotFound(err) {
		t.Fatalf("other tenant's get: %v", err)
	}
	if l, err := other.ListSandboxes(ctx, sbx.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("other tenant's list: %+v %v", l, err)
	}

	stopped, err := e.sdk.StopSandbox(ctx, sb.ID, 3*time.Second)
	if err != nil || stopped.State != "stopped" {
		t.Fatalf("stop: %+v %v", stopped, err)
	}
	if _, err := e.sdk.ResizeSandbox(ctx, sb.ID, sbx.ResizeRequest{DiskMB: 2048, MemoryMB: 1024}); err != nil {
		t.Fatal(err)
	}
	started, err := e.sdk.StartSandbox(ctx, sb.ID)
	if err != nil || started.State != "started" || started.Resources.DiskMB != 2048 || started.Resources.MemoryMB != 1024 {
		t.Fatalf("start: %+v %v", started, err)
	}
	if _, err := e.sdk.ResizeSandbox(ctx, sb.ID, sbx.ResizeRequest{DiskMB: 4096}); !sbx.IsConflict(err) {
		t.Fatalf("growing disk while started: %v", err)
	}
	if _, err := e.sdk.RestartSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	lb, err := e.sdk.SetLabels(ctx, sb.ID, map[string]string{"tier": "gold"})
	if err != nil || !cmp.Equal(lb.Labels, map[string]string{"tier": "gold"}) {
		t.Fatalf("labels: %+v %v", lb.Labels, err)
	}
	evs, err := e.sdk.Events(ctx, sb.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, ev := range evs {
		kinds = append(kinds, ev.Type+":"+ev.To+ev.Message)
	}
	want := []string{"state:started", "stop:grace 3s", "state:stopped", "state:started"}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Fatalf("events (-want +got):\n%s", diff)
	}
	later, err := e.sdk.Events(ctx, sb.ID, evs[1].Seq)
	if err != nil || len(later) != 2 {
		t.Fatalf("events after %d: %d, %v", evs[1].Seq, len(later), err)
	}
	if err := e.sdk.DeleteSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.GetSandbox(ctx, sb.ID); !sbx.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestListFiltersAndPages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	var ids []string
	for i := range 5 {
		app := "a"
		if i%2 == 1 {
			app = "b"
		}
		sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{Labels: map[string]string{"app": app, "env": "prod"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sb.ID)
	}
	if _, err := e.sdk.StopSandbox(ctx, ids[0], 0); err != nil {
		t.Fatal(err)
	}
	page, err := e.sdk.ListSandboxes(ctx, sbx.ListOptions{Limit: 2})
	if err != nil || len(page.Items) != 2 || page.NextCursor == "" {
		t.Fatalf("first page: %+v %v", page, err)
	}
	all, err := e.sdk.ListAllSandboxes(ctx, sbx.ListOptions{Limit: 2})
	if err != nil || len(all) != 5 {
		t.Fatalf("all pages: %d, %v", len(all), err)
	}
	a, err := e.sdk.ListAllSandboxes(ctx, sbx.ListOptions{Labels: map[string]string{"app": "a", "env": "prod"}})
	if err != nil || len(a) != 3 {
		t.Fatalf("label filter: %d, %v", len(a), err)
	}
	st, err := e.sdk.ListAllSandboxes(ctx, sbx.ListOptions{States: []string{"stopped"}})
	if err != nil || len(st) != 1 || st[0].ID != ids[0] {
		t.Fatalf("state filter: %+v, %v", st, err)
	}
	for _, q := range []string{"limit=0", "limit=abc", "limit=1001", "state=bogus", "label=novalue"} {
		r := e.raw(t, "GET", "/v1/sandboxes?"+q, "", nil)
		if r.status != 400 || r.problem(t).Code != "invalid_argument" {
			t.Errorf("%s: %d %s", q, r.status, r.body)
		}
	}
}

func TestErrorKinds(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		kind   error
		status int
		code   string
	}{
		{errdefs.ErrNotFound, 404, "not_found"},
		{errdefs.ErrAlreadyExists, 409, "already_exists"},
		{errdefs.ErrConflict, 409, "conflict"},
		{errdefs.ErrInvalidArgument, 400, "invalid_argument"},
		{errdefs.ErrResourceExhausted, 507, "resource_exhausted"},
		{errdefs.ErrTooLarge, 413, "too_large"},
		{errdefs.ErrUnavailable, 503, "unavailable"},
		{errdefs.ErrPermissionDenied, 403, "permission_denied"},
		{errdefs.ErrUnauthenticated, 401, "unauthenticated"},
		{errdefs.ErrDeadlineExceeded, 504, "deadline_exceeded"},
		{nil, 500, "internal"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			// The internal text must never reach the caller; the public
			// message must.
			var err error
			if tc.kind == nil {
				err = errors.New("open /var/lib/sbx/secret: permission denied")
			} else {
				err = fmt.Errorf("doing x with /var/lib/sbx/secret: %w", errdefs.Public(tc.kind, "public words"))
			}
			e.fake.SetError("Get", err)
			defer e.fake.SetError("Get", nil)
			r := e.raw(t, "GET", "/v1/sandboxes/x", "", nil)
			p := r.problem(t)
			wantDetail := "public words"
			if tc.kind == nil {
				wantDetail = "internal error"
			}
			want := sbx.Problem{Type: sbx.ProblemTypeBase + tc.code, Title: http.StatusText(tc.status), Status: tc.status, Detail: wantDetail, Code: tc.code}
			if r.status != tc.status || p != want {
				t.Fatalf("got %d %+v, want %+v", r.status, p, want)
			}
			if bytes.Contains(r.body, []byte("/var/lib")) {
				t.Fatalf("internal text leaked: %s", r.body)
			}
		})
	}
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		detail                   string
	}{
		{"syntax", "POST", "/v1/sandboxes", `{"name": "x",}`, nil, 400, "invalid JSON at offset 14"},
		{"unknown field", "POST", "/v1/sandboxes", `{"name":"x","privileged":true}`, nil, 400, `unknown field "privileged"`},
		{"nested unknown field", "POST", "/v1/sandboxes", `{"resources":{"cpu":1,"uid_slot":0}}`, nil, 400, `unknown field "uid_slot"`},
		{"wrong type", "POST", "/v1/sandboxes", `{"name":3}`, nil, 400, `field "name": expected string, got number`},
		{"truncated", "POST", "/v1/sandboxes", `{"name":`, nil, 400, "unexpected end of input"},
		{"trailing data", "POST", "/v1/sandboxes", `{} {}`, nil, 400, "data after the end"},
		{"not an object", "POST", "/v1/sandboxes", `[1]`, nil, 400, "invalid JSON"},
		{"empty body where required", "POST", "/v1/sandboxes/x/resize", ``, nil, 400, "request body is empty"},
		{"negative resources", "POST", "/v1/sandboxes", `{"resources":{"cpu":-1}}`, nil, 400, "must not be negative"},
		{"bad base64 stdin", "POST", "/v1/sandboxes/x/exec", `{"argv":["cat"],"stdin":"%%%"}`, nil, 400, "invalid JSON"},
		{"oversize", "POST", "/v1/sandboxes", `{"name":"` + strings.Repeat("a", 1<<20) + `"}`, nil, 413, "larger than 1 MiB"},
		{"wrong content type", "POST", "/v1/sandboxes", `name=x`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415, "send application/json"},
		{"labels missing", "PUT", "/v1/sandboxes/x/labels", `{}`, nil, 400, "labels is required"},
		{"negative grace", "POST", "/v1/sandboxes/x/stop", `{"grace_seconds":-1}`, nil, 400, "grace_seconds"},
		{"exec neither argv nor shell", "POST", "/v1/sandboxes/x/exec", `{}`, nil, 400, "exactly one of argv and shell"},
		{"exec both", "POST", "/v1/sandboxes/x/exec", `{"argv":["a"],"shell":"a"}`, nil, 400, "exactly one of argv and shell"},
		{"pull without ref", "POST", "/v1/images/pull", `{}`, nil, 400, "ref is required"},
		{"tenant negative limit", "POST", "/v1/tenants", `{"name":"t","limits":{"max_cpu":-2}}`, nil, 400, "must not be negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t, tc.method, tc.path, "", strings.NewReader(tc.body), tc.hdr...)
			p := r.problem(t)
			if r.status != tc.status || !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("got %d %q, want %d with %q", r.status, p.Detail, tc.status, tc.detail)
			}
		})
	}
}

func TestExecBuffered(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.MaxExecOutput = 1000 })
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  sbx.ExecRequest
		want sbx.ExecResult
	}{
		{"echo", sbx.ExecRequest{Argv: []string{"echo", "hi", "there"}}, sbx.ExecResult{Stdout: "hi there\n"}},
		{"shell exit", sbx.ExecRequest{Shell: "exit 3"}, sbx.ExecResult{ExitCode: 3}},
		{"stderr", sbx.ExecRequest{Argv: []string{"warn", "careful"}}, sbx.ExecResult{Stderr: "careful\n"}},
		{"stdin", sbx.ExecRequest{Argv: []string{"cat"}, Stdin: []byte("in\x00put")}, sbx.ExecResult{Stdout: "in\x00put"}},
		{"env sorted", sbx.ExecRequest{Argv: []string{"env"}, Env: map[string]string{"B": "2", "A": "1"}}, sbx.ExecResult{Stdout: "A=1\nB=2\n"}},
		{"oom", sbx.ExecRequest{Argv: []string{"oom"}}, sbx.ExecResult{ExitCode: 137, Signal: "SIGKILL", OOMKilled: true}},
		{"timeout", sbx.ExecRequest{Argv: []string{"timeout"}, TimeoutSeconds: 0.5}, sbx.ExecResult{ExitCode: 137, Signal: "SIGKILL", TimedOut: true}},
		{"truncated", sbx.ExecRequest{Argv: []string{"yes", "300000"}}, sbx.ExecResult{Stdout: strings.Repeat("y\n", 500), StdoutTruncated: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.sdk.Exec(ctx, sb.ID, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.DurationMS = 12
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("(-want +got):\n%s", diff)
			}
		})
	}
	// The agent's refusal to start the command is the caller's input.
	if _, err := e.sdk.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"nosuch"}}); !sbx.IsInvalidArgument(err) || !strings.Contains(err.Error(), "executable file not found") {
		t.Fatalf("unknown program: %v", err)
	}
	if _, err := e.sdk.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"echo"}}); !sbx.IsConflict(err) {
		t.Fatalf("exec in a stopped sandbox: %v", err)
	}
	if _, _, err := execStream(e, sb.ID, sbx.ExecRequest{Argv: []string{"echo"}}); !sbx.IsConflict(err) {
		t.Fatalf("streamed exec in a stopped sandbox: %v (must be problem+json before the stream)", err)
	}
}

func execStream(e *env, id string, req sbx.ExecRequest) (string, sbx.ExitStatus, error) {
	var out bytes.Buffer
	st, err := e.sdk.ExecStream(context.Background(), id, req, &out, &out)
	return out.String(), st, err
}

func TestExecStream(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The framing on the wire: one JSON object per line, exit last.
	body, _ := json.Marshal(sbx.ExecRequest{Argv: []string{"cat"}, Stdin: []byte("abc")})
	r := e.raw(t, "POST", "/v1/sandboxes/"+sb.ID+"/exec", "", bytes.NewReader(body), "Accept", "application/json, application/x-ndjson")
	if r.status != 200 || r.header.Get("Content-Type") != sbx.NDJSON {
		t.Fatalf("%d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	want := []string{
		`{"type":"stdout","data":"YWJj"}`,
		`{"type":"exit","exit":{"code":0,"signal":"","timed_out":false,"oom_killed":false,"duration_ms":12}}`,
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Fatalf("NDJSON lines (-want +got):\n%s", diff)
	}

	var stdout, stderr bytes.Buffer
	st, err := e.sdk.ExecStream(ctx, sb.ID, sbx.ExecRequest{Shell: "yes 200000"}, &stdout, &stderr)
	if err != nil || st.Code != 0 || stdout.Len() != 200000 {
		t.Fatalf("yes: %+v %v, %d bytes", st, err, stdout.Len())
	}
	st, err = e.sdk.ExecStream(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"warn", "x"}}, &stdout, &stderr)
	if err != nil || stderr.String() != "x\n" {
		t.Fatalf("stderr: %q %v", stderr.String(), err)
	}
	_, _, err = execStream(e, sb.ID, sbx.ExecRequest{Argv: []string{"nosuch"}})
	if !sbx.IsInvalidArgument(err) {
		t.Fatalf("error frame: %v", err)
	}
	out, st, err := execStream(e, sb.ID, sbx.ExecRequest{Shell: "exit 7"})
	if err != nil || st.Code != 7 || out != "" {
		t.Fatalf("exit 7: %q %+v %v", out, st, err)
	}
}

// A client that goes away kills its command (the process is closed before
// it ended).
func TestExecClientGoesAway(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprint("stream=", stream), func(t *testing.T) {
			e := newEnv(t)
			sb, err := e.sdk.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
			defer cancel()
			if stream {
				_, err = e.sdk.ExecStream(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"sleep"}}, io.Discard, io.Discard)
			} else {
				_, err = e.sdk.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"sleep"}})
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(e.fake.Abandoned()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := e.fake.Abandoned(); !cmp.Equal(got, []string{sb.ID}) {
				t.Fatalf("abandoned = %v", got)
			}
		})
	}
}

func TestLogs(t *testing.T) {
	e := newEnv(t)
	sb, err := e.sdk.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	e.fake.SetLogs(sb.ID, "line 1\nline 2\n")
	rc, err := e.sdk.Logs(t.Context(), sb.ID, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "line 1\nline 2\n" {
		t.Fatalf("logs = %q", b)
	}
	// Following: the text arrives (flushed) while the stream stays open,
	// and ends when the client leaves.
	ctx, cancel := context.WithCancel(t.Context())
	rc, err = e.sdk.Logs(ctx, sb.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 14)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "line 1\nline 2\n" {
		t.Fatalf("followed logs = %q, %v", buf, err)
	}
	cancel()
	if _, err := io.ReadAll(rc); err == nil {
		t.Log("stream ended cleanly after cancel")
	}
	rc.Close()
	if _, err := e.sdk.Logs(t.Context(), "nope", false); !sbx.IsNotFound(err) {
		t.Fatalf("logs of unknown sandbox: %v", err)
	}
	if r := e.raw(t, "GET", "/v1/sandboxes/"+sb.ID+"/logs?follow=maybe", "", nil); r.status != 400 {
		t.Fatalf("follow=maybe: %d", r.status)
	}
}

func TestImages(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, key := e.fake.AddTenant("user", false)
	user := sbx.New(e.srv.URL, key, sbx.WithHTTPClient(e.hc))

	l, err := user.ListImages(ctx)
	if err != nil || len(l) != 1 || l[0].Ref != apitest.DefaultImage || !l[0].Shared {
		t.Fatalf("user's images: %+v %v", l, err)
	}
	ref := "registry.example:5000/team/tool:v1.2"
	img, err := user.PullImage(ctx, sbx.PullRequest{Ref: ref}, nil)
	if err != nil || img.Ref != ref || img.Shared || img.Config.WorkingDir != "/" || img.Config.Entrypoint == nil {
		t.Fatalf("pull: %+v %v", img, err)
	}
	got, err := user.GetImage(ctx, ref)
	if err != nil || got.Digest != img.Digest {
		t.Fatalf("inspect %s: %+v %v", ref, got, err)
	}
	// Streamed pull with progress.
	var prog []sbx.PullProgress
	img2, err := user.PullImage(ctx, sbx.PullRequest{Ref: "docker.io/library/busybox:latest"}, func(p sbx.PullProgress) { prog = append(prog, p) })
	if err != nil || img2.Ref != "docker.io/library/busybox:latest" || len(prog) == 0 || prog[len(prog)-1] != (sbx.PullProgress{Complete: 3000, Total: 3000}) {
		t.Fatalf("streamed pull: %+v %v progress %v", img2, err, prog)
	}
	// Refused before any byte: a proper problem, streamed or not.
	for _, p := range []func(sbx.PullProgress){nil, func(sbx.PullProgress) {}} {
		if _, err := user.PullImage(ctx, sbx.PullRequest{Ref: "x/missing:1"}, p); !sbx.IsNotFound(err) {
			t.Fatalf("missing image: %v", err)
		}
	}
	// Failing after progress: an error frame.
	e.fake.SetError("Pull", errdefs.Public(errdefs.ErrUnavailable, "registry went away"))
	_, err = user.PullImage(ctx, sbx.PullRequest{Ref: "x/y:1"}, func(sbx.PullProgress) {})
	if !sbx.IsUnavailable(err) || !strings.Contains(err.Error(), "registry went away") {
		t.Fatalf("error frame: %v", err)
	}
	e.fake.SetError("Pull", nil)

	imgs, err := user.ImportImage(ctx, strings.NewReader(strings.Repeat("tar", 1000)), "local/app:dev")
	if err != nil || len(imgs) != 1 || imgs[0].Ref != "local/app:dev" || imgs[0].Size != 3000 {
		t.Fatalf("import: %+v %v", imgs, err)
	}
	if _, err := user.ImportImage(ctx, strings.NewReader(""), ""); !sbx.IsInvalidArgument(err) {
		t.Fatalf("empty import: %v", err)
	}
	if _, err := user.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: ref}); err != nil {
		t.Fatal(err)
	}
	if err := user.RemoveImage(ctx, ref); !sbx.IsConflict(err) {
		t.Fatalf("removing an image in use: %v", err)
	}
	if err := user.RemoveImage(ctx, "local/app:dev"); err != nil {
		t.Fatal(err)
	}
	if _, err := user.GetImage(ctx, "local/app:dev"); !sbx.IsNotFound(err) {
		t.Fatalf("after remove: %v", err)
	}
	if err := user.RemoveImage(ctx, apitest.DefaultImage); !sbx.IsNotFound(err) {
		t.Fatalf("removing a shared image: %v", err)
	}
	// A ref with characters that need escaping survives the round trip.
	if _, err := user.GetImage(ctx, "odd/na%me?x#y:1"); !sbx.IsNotFound(err) || !strings.Contains(err.Error(), `"odd/na%me?x#y:1"`) {
		t.Fatalf("escaped ref: %v", err)
	}
}

func TestImportLimits(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.MaxImportSize = 100 })
	_, err := e.sdk.ImportImage(t.Context(), strings.NewReader(strings.Repeat("x", 101)), "")
	if !sbx.IsTooLarge(err) {
		t.Fatalf("oversize import: %v", err)
	}
	r := e.raw(t, "POST", "/v1/images/import", "", strings.NewReader("x"), "Content-Type", "application/json")
	if r.status != 415 {
		t.Fatalf("JSON import: %d %s", r.status, r.body)
	}
}

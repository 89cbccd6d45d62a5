package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/httpapi"
	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	"github.com/sbx-sh/sbx/internal/preview"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// memRevocations is an in-memory preview.Revocations.
type memRevocations struct {
	mu sync.Mutex
	m  map[string]bool
}

func (r *memRevocations) RevokePreviewToken(ctx context.Context, rv store.PreviewRevocation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[rv.TokenID] = true
	return nil
}

func (r *memRevocations) PreviewTokenRevoked(ctx context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id], nil
}

// previewEnv is the API with previews, and the daemon's front handler
// (the preview proxy in front of the API) on a second server.
type previewEnv struct {
	*env
	front *httptest.Server
}

func newPreviewEnv(t *testing.T) previewEnv {
	t.Helper()
	var svc *preview.Service
	var cfg httpapi.Config
	e := newEnv(t, func(c *httpapi.Config) {
		svc = preview.New(preview.Config{
			Sandboxes: c.Sandboxes.(*apitest.Fake), Revocations: &memRevocations{m: map[string]bool{}},
			Key: make([]byte, 32), Domain: "preview.test:7070", WriteError: httpapi.PreviewErrorWriter(nil),
		})
		c.Previews = svc
		cfg = *c
	})
	t.Cleanup(func() { svc.Close() })
	front := httptest.NewServer(svc.Handler(httpapi.New(cfg)))
	t.Cleanup(front.Close)
	return previewEnv{env: e, front: front}
}

func TestPreviewLinks(t *testing.T) {
	e := newPreviewEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{Public: true})
	if err != nil || !sb.Public {
		t.Fatalf("create public: %+v, %v", sb, err)
	}
	l, err := e.sdk.Preview(ctx, sb.ID, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if l.URL != "http://3000-"+sb.ID+".preview.test:7070/" || l.PathURL != e.srv.URL+"/preview/"+sb.ID+"/3000/" ||
		len(l.Token) != 32 || !l.Public || l.Port != 3000 || l.SandboxID != sb.ID {
		t.Errorf("Preview = %+v", l)
	}
	if got, err := e.sdk.SetPublic(ctx, sb.ID, false); err != nil || got.Public {
		t.Fatalf("SetPublic(false) = %+v, %v", got, err)
	}
	if l2, _ := e.sdk.Preview(ctx, sb.ID, 3000); l2.Public || l2.Token != l.Token {
		t.Errorf("after SetPublic(false): %+v (the token must not change)", l2)
	}
	sp, err := e.sdk.SignPreview(ctx, sb.ID, 3000, 90*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(sp.URL, "/?token="+sp.Token) || !strings.HasPrefix(sp.PathURL, e.srv.URL+"/preview/") ||
		time.Until(sp.ExpiresAt) > 91*time.Second || time.Until(sp.ExpiresAt) < 80*time.Second {
		t.Errorf("SignPreview = %+v", sp)
	}
	if err := e.sdk.RevokePreview(ctx, sb.ID, 3000, sp.Token); err != nil {
		t.Fatal(err)
	}
	if err := e.sdk.RevokePreview(ctx, sb.ID, 3001, sp.Token); !sbx.IsNotFound(err) {
		t.Errorf("revoke on another port: %v", err)
	}
	if err := e.sdk.RevokePreview(ctx, sb.ID, 3000, "nonsense"); !sbx.IsNotFound(err) {
		t.Errorf("revoke nonsense: %v", err)
	}
	if _, err := e.sdk.Preview(ctx, "missing", 3000); !sbx.IsNotFound(err) {
		t.Errorf("missing sandbox: %v", err)
	}
	for _, p := range []string{"0", "65536", "http", "080"} {
		if r := e.raw(t, "GET", "/v1/sandboxes/"+sb.ID+"/ports/"+p+"/preview", "", nil); r.status != 400 {
			t.Errorf("port %s: %d %s", p, r.status, r.body)
		}
	}
	for _, body := range []string{`{"expires_in_seconds":-1}`, `{"expires_in_seconds":604801}`, `{"ttl":3}`} {
		if r := e.raw(t, "POST", "/v1/sandboxes/"+sb.ID+"/ports/80/signed-preview", "", strings.NewReader(body)); r.status != 400 {
			t.Errorf("sign %s: %d %s", body, r.status, r.body)
		}
	}
	if r := e.raw(t, "PUT", "/v1/sandboxes/"+sb.ID+"/public", "", strings.NewReader(`{}`)); r.status != 400 {
		t.Errorf("PUT public without the field: %d %s", r.status, r.body)
	}
	// Another tenant sees nothing.
	_, key := e.fake.AddTenant("other", false)
	other := sbx.New(e.srv.URL, key, sbx.WithHTTPClient(e.hc))
	if _, err := other.Preview(ctx, sb.ID, 3000); !sbx.IsNotFound(err) {
		t.Errorf("other tenant's Preview: %v", err)
	}
	if _, err := other.SignPreview(ctx, sb.ID, 3000, 0); !sbx.IsNotFound(err) {
		t.Errorf("other tenant's SignPreview: %v", err)
	}
}

func TestPreviewUnconfigured(t *testing.T) {
	e := newEnv(t)
	sb, err := e.sdk.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.Preview(t.Context(), sb.ID, 80); !sbx.IsUnavailable(err) {
		t.Errorf("Preview without previews: %v", err)
	}
}

// The whole way: the front handler, the proxy, the fake's real agent,
// an app on the loopback; errors as problem documents.
func TestPreviewProxy(t *testing.T) {
	e := newPreviewEnv(t)
	ctx := t.Context()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "app saw "+r.URL.Path+" auth="+r.Header.Get("Authorization"))
	})}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.sdk.Preview(ctx, sb.ID, port)
	if err != nil {
		t.Fatal(err)
	}
	get := func(host, path string, hdr ...string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", e.front.URL+path, nil)
		if host != "" {
			req.Host = host
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	host := strconv.Itoa(port) + "-" + sb.ID + ".preview.test:7070"
	status, body, _ := get(host, "/x", sbx.PreviewTokenHeader, l.Token, "Authorization", "Bearer "+apitest.AdminKey)
	if status != 200 || body != "app saw /x auth=" {
		t.Fatalf("host form: %d %q", status, body)
	}
	status, body, _ = get("", "/preview/"+sb.ID+"/"+strconv.Itoa(port)+"/y", sbx.PreviewTokenHeader, l.Token)
	if status != 200 || body != "app saw /y auth=" {
		t.Fatalf("path form: %d %q", status, body)
	}
	if n := e.fake.Touches(sb.ID); n != 2 {
		t.Errorf("%d touches after 2 preview requests", n)
	}
	// The API is still behind the same front.
	if status, body, _ := get("", "/healthz"); status != 200 || !strings.Contains(body, "ok") {
		t.Errorf("healthz through the front: %d %q", status, body)
	}
	problem := func(status int, body string, h http.Header, wantStatus int, wantCode, wantText string) {
		t.Helper()
		var p sbx.Problem
		if status != wantStatus || h.Get("Content-Type") != "application/problem+json" || json.Unmarshal([]byte(body), &p) != nil ||
			p.Code != wantCode || !strings.Contains(p.Detail, wantText) {
			t.Errorf("got %d %s %q, want %d %s %q", status, h.Get("Content-Type"), body, wantStatus, wantCode, wantText)
		}
	}
	s, b, h := get(host, "/")
	problem(s, b, h, 401, sbx.CodeUnauthenticated, "private")
	s, b, h = get(host, "/", sbx.PreviewTokenHeader, "wrong")
	problem(s, b, h, 403, sbx.CodePermissionDenied, "not valid")
	s, b, h = get("1-"+sb.ID+".preview.test", "/", sbx.PreviewTokenHeader, l.Token)
	problem(s, b, h, 502, sbx.CodeUnavailable, "nothing is listening on port 1")
	s, b, h = get("80-nope.preview.test", "/")
	problem(s, b, h, 404, sbx.CodeNotFound, "not found")
	if _, err := e.sdk.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	s, b, h = get(host, "/", sbx.PreviewTokenHeader, l.Token)
	problem(s, b, h, 409, sbx.CodeConflict, "not started")
}

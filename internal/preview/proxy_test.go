package preview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// fakeSandboxes serves sandboxes whose agent is a real agent server on a
// unix socket (dialling the test's own loopback, where the "app" runs).
type fakeSandboxes struct {
	mu      sync.Mutex
	sbs     map[string]store.Sandbox
	agent   *agent.Client
	touches atomic.Int64
	revoked map[string]bool
}

func (f *fakeSandboxes) Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, ok := f.sbs[idOrName]
	if !ok || (tenantID != "" && sb.TenantID != tenantID) {
		return store.Sandbox{}, errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", idOrName)
	}
	return sb, nil
}

func (f *fakeSandboxes) Agent(ctx context.Context, tenantID, idOrName string) (*agent.Client, error) {
	sb, err := f.Get(ctx, tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	if sb.State != store.StateStarted {
		return nil, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s", sb.ID, sb.State)
	}
	return f.agent, nil
}

func (f *fakeSandboxes) Touch(id string) { f.touches.Add(1) }

func (f *fakeSandboxes) RevokePreviewToken(ctx context.Context, r store.PreviewRevocation) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked[r.TokenID] = true
	return nil
}

func (f *fakeSandboxes) PreviewTokenRevoked(ctx context.Context, id string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.revoked[id], nil
}

// testStatus stands in for the native API's error mapping.
func testWriteError(w http.ResponseWriter, r *http.Request, err error) {
	var ue *UpstreamError
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &ue):
		status = http.StatusBadGateway
	case errors.Is(err, errdefs.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errdefs.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, errdefs.ErrInvalidArgument):
		status = http.StatusBadRequest
	case errors.Is(err, errdefs.ErrUnauthenticated):
		status = http.StatusUnauthorized
	case errors.Is(err, errdefs.ErrPermissionDenied):
		status = http.StatusForbidden
	}
	http.Error(w, errdefs.Message(err), status)
}

// seen is what the app reports about a request.
type seen struct {
	Host, Path, Query, Cookie, Auth, Token, Prefix string
}

type world struct {
	f       *fakeSandboxes
	svc     *Service
	front   *httptest.Server
	port    int // of the app
	release chan struct{}
	now     atomic.Pointer[time.Time]
}

func newWorld(t testing.TB) *world {
	t.Helper()
	w := &world{release: make(chan struct{})}
	// The app, on the loopback, as a server inside a sandbox would be.
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(rw http.ResponseWriter, r *http.Request) {
		json.NewEncoder(rw).Encode(seen{Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Cookie: r.Header.Get("Cookie"),
			Auth: r.Header.Get("Authorization"), Token: r.Header.Get(TokenHeader), Prefix: r.Header.Get("X-Forwarded-Prefix")})
	})
	mux.HandleFunc("/stream", func(rw http.ResponseWriter, r *http.Request) {
		io.WriteString(rw, "first\n")
		rw.(http.Flusher).Flush()
		<-w.release
		io.WriteString(rw, "second\n")
	})
	mux.HandleFunc("/count", func(rw http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		fmt.Fprint(rw, n, err)
	})
	mux.HandleFunc("/redirect", func(rw http.ResponseWriter, r *http.Request) {
		http.SetCookie(rw, &http.Cookie{Name: "app", Value: "1", Domain: "preview.test", Path: "/"})
		http.Redirect(rw, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/ws", func(rw http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(rw, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo: "), b...)); err != nil {
				return
			}
		}
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: mux}
	go app.Serve(ln)
	t.Cleanup(func() { close(w.release); app.Close() })
	w.port = ln.Addr().(*net.TCPAddr).Port

	// The agent.
	sock := filepath.Join(t.TempDir(), "agent.sock")
	aln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); agent.Serve(actx, aln, agent.ServerConfig{}) }()
	ac := agent.NewClient(sock)
	t.Cleanup(func() { ac.Close(); cancel(); <-done })

	w.f = &fakeSandboxes{agent: ac, revoked: map[string]bool{}, sbs: map[string]store.Sandbox{
		"pub":     {ID: "pub", TenantID: "t1", Name: "web", State: store.StateStarted, Public: true},
		"priv":    {ID: "priv", TenantID: "t1", State: store.StateStarted},
		"stopped": {ID: "stopped", TenantID: "t1", State: store.StateStopped, Public: true},
		"web":     {ID: "pub", TenantID: "t1", Name: "web", State: store.StateStarted, Public: true}, // by name
	}}
	now := time.Now()
	w.now.Store(&now)
	w.svc = New(Config{Sandboxes: w.f, Revocations: w.f, Key: testKey(7), Domain: "preview.test", WriteError: testWriteError,
		Now: func() time.Time { return *w.now.Load() }})
	t.Cleanup(func() { w.svc.Close() })
	api := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { io.WriteString(rw, "the API") })
	w.front = httptest.NewServer(w.svc.Handler(api))
	t.Cleanup(w.front.Close)
	return w
}

func (w *world) host(id string) string { return strconv.Itoa(w.port) + "-" + id + ".preview.test" }

type answer struct {
	status int
	header http.Header
	body   string
	seen   seen
}

// get sends a request to the front with Host host (host form) or to path
// (path form, host "").
func (w *world) do(t *testing.T, method, host, path string, body io.Reader, hdr ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, w.front.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
	json.Unmarshal(b, &a.seen)
	return a
}

func TestProxyPublicAndRouting(t *testing.T) {
	w := newWorld(t)
	a := w.do(t, "GET", w.host("pub"), "/echo?x=1&token=zzz", nil, "Authorization", "BEARER  sbx_secret", "Cookie", "a=b")
	want := seen{Host: w.host("pub"), Path: "/echo", Query: "x=1", Cookie: "a=b"}
	if a.status != 200 || a.seen != want {
		t.Fatalf("public GET = %d %q, seen %+v, want %+v", a.status, a.body, a.seen, want)
	}
	if w.f.touches.Load() == 0 {
		t.Error("proxy traffic did not touch the sandbox")
	}
	// Authorization that is not an sbx key belongs to the app.
	if a := w.do(t, "GET", w.host("pub"), "/echo", nil, "Authorization", "Basic dTpw"); a.seen.Auth != "Basic dTpw" {
		t.Errorf("the app's own Authorization was removed: %+v", a.seen)
	}
	// ServeTarget: routed by the caller (a compat adapter), same rules.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://api.example/echo", nil)
	w.svc.ServeTarget(rec, req, Target{SandboxID: "priv", Port: w.port})
	if rec.Code != 401 {
		t.Errorf("ServeTarget without a token: %d", rec.Code)
	}
	// Hosts that are not under the domain are the API's.
	for _, h := range []string{"", "preview.test", "example.com", w.host("pub") + ".example.com"} {
		if a := w.do(t, "GET", h, "/echo", nil); a.body != "the API" {
			t.Errorf("Host %q: %d %q, want the API", h, a.status, a.body)
		}
	}
	for _, tc := range []struct {
		host   string
		status int
		body   string
	}{
		{"99999-pub.preview.test", 400, "not a number"},
		{"80-pub-.preview.test", 404, "not a preview address"},
		{w.host("nope"), 404, "sandbox nope not found"},
		{w.host("web"), 404, "sandbox web not found"}, // names are not IDs
		{w.host("stopped"), 409, "not started"},
		{w.host("priv"), 401, "private"},
		{"1-pub.preview.test", 502, "nothing is listening on port 1 in the sandbox"},
	} {
		if a := w.do(t, "GET", tc.host, "/", nil); a.status != tc.status || !strings.Contains(a.body, tc.body) {
			t.Errorf("Host %s: %d %q, want %d %q", tc.host, a.status, a.body, tc.status, tc.body)
		}
	}
	// An app's cookie stays on its own origin.
	if a := w.do(t, "GET", w.host("pub"), "/redirect", nil); strings.Contains(strings.ToLower(a.header.Get("Set-Cookie")), "domain") {
		t.Errorf("Set-Cookie kept its Domain: %q", a.header.Get("Set-Cookie"))
	}
}

func TestProxyPathForm(t *testing.T) {
	w := newWorld(t)
	base := "/preview/pub/" + strconv.Itoa(w.port)
	a := w.do(t, "GET", "", base+"/echo?x=%2F", nil)
	if a.status != 200 || a.seen.Path != "/echo" || a.seen.Query != "x=%2F" || a.seen.Prefix != base {
		t.Fatalf("path form = %d %q %+v", a.status, a.body, a.seen)
	}
	if a := w.do(t, "GET", "", base+"?a=1", nil); a.status != http.StatusPermanentRedirect || a.header.Get("Location") != base+"/?a=1" {
		t.Errorf("no trailing slash: %d %v", a.status, a.header.Get("Location"))
	}
	if a := w.do(t, "GET", "", base+"/redirect", nil); a.header.Get("Location") != base+"/elsewhere" {
		t.Errorf("redirect inside the app: Location %q", a.header.Get("Location"))
	}
	for _, p := range []string{"/preview/pub/0/", "/preview/pub/x/", "/preview/PUB!/80/", "/preview/"} {
		if a := w.do(t, "GET", "", p, nil); a.status != 400 && a.status != 404 {
			t.Errorf("%s: %d %q", p, a.status, a.body)
		}
	}
}

func TestProxyPrivate(t *testing.T) {
	w := newWorld(t)
	h := w.host("priv")
	tok := w.svc.Signer().SandboxToken("priv")
	if a := w.do(t, "GET", h, "/echo", nil, TokenHeader, "wrong"); a.status != 403 {
		t.Errorf("wrong token: %d %q", a.status, a.body)
	}
	if a := w.do(t, "GET", h, "/echo", nil, TokenHeader, w.svc.Signer().SandboxToken("pub")); a.status != 403 {
		t.Errorf("another sandbox's token: %d %q", a.status, a.body)
	}
	a := w.do(t, "GET", h, "/echo", nil, TokenHeader, tok, "Cookie", "a=b")
	if a.status != 200 || a.seen.Token != "" || a.seen.Cookie != "a=b" {
		t.Fatalf("header token: %d %q %+v", a.status, a.body, a.seen)
	}
	if a := w.do(t, "GET", h, "/echo", nil, "X-Daytona-Preview-Token", tok); a.status != 200 {
		t.Errorf("Daytona header: %d %q", a.status, a.body)
	}
	// ?token= sets a cookie for this origin and redirects to the URL without it.
	a = w.do(t, "GET", h, "/echo?x=1&token="+tok+"&y=2", nil)
	if a.status != http.StatusTemporaryRedirect || a.header.Get("Location") != "/echo?x=1&y=2" {
		t.Fatalf("query token: %d Location %q", a.status, a.header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: a.header}).Cookies() {
		if c.Name == CookieName {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != tok || cookie.Path != "/" || cookie.Domain != "" || !cookie.HttpOnly {
		t.Fatalf("cookie %+v", cookie)
	}
	a = w.do(t, "GET", h, "/echo", nil, "Cookie", "a=b; "+CookieName+"="+tok+"; c=d")
	if a.status != 200 || a.seen.Cookie != "a=b; c=d" {
		t.Fatalf("cookie token: %d %q %+v", a.status, a.body, a.seen)
	}
	// A POST with ?token= is served at once (no redirect for a body).
	if a := w.do(t, "POST", h, "/count?token="+tok, strings.NewReader("abc")); a.status != 200 || a.body != "3 <nil>" {
		t.Errorf("POST with query token: %d %q", a.status, a.body)
	}
	// The path form's cookie is scoped to its path.
	p := "/preview/priv/" + strconv.Itoa(w.port) + "/"
	a = w.do(t, "GET", "", p+"?token="+tok, nil)
	if a.status != http.StatusTemporaryRedirect || !strings.Contains(a.header.Get("Set-Cookie"), "Path="+p) {
		t.Errorf("path form query token: %d %q", a.status, a.header.Get("Set-Cookie"))
	}
}

func TestProxySigned(t *testing.T) {
	w := newWorld(t)
	ctx := t.Context()
	h := w.host("priv")
	l, err := w.svc.Sign(ctx, "t1", "priv", w.port, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if want := "http://" + h + "/?token=" + l.Token; l.URL != want {
		t.Errorf("signed URL %q, want %q", l.URL, want)
	}
	if a := w.do(t, "GET", h, "/echo", nil, TokenHeader, l.Token); a.status != 200 {
		t.Fatalf("signed token: %d %q", a.status, a.body)
	}
	// Not for another port, nor another sandbox.
	if a := w.do(t, "GET", "1-priv.preview.test", "/", nil, TokenHeader, l.Token); a.status != 403 {
		t.Errorf("another port: %d %q", a.status, a.body)
	}
	// Its cookie lasts until the expiry.
	a := w.do(t, "GET", h, "/?token="+l.Token, nil)
	if !strings.Contains(a.header.Get("Set-Cookie"), "Max-Age=") {
		t.Errorf("signed cookie without Max-Age: %q", a.header.Get("Set-Cookie"))
	}
	// Expired.
	later := time.Now().Add(2 * time.Minute)
	w.now.Store(&later)
	if a := w.do(t, "GET", h, "/echo", nil, TokenHeader, l.Token); a.status != 403 || !strings.Contains(a.body, "expired") {
		t.Errorf("expired: %d %q", a.status, a.body)
	}
	now := time.Now()
	w.now.Store(&now)
	// Revoked.
	if err := w.svc.Revoke(ctx, "t1", "priv", w.port+1, l.Token); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("revoke on another port: %v", err)
	}
	if err := w.svc.Revoke(ctx, "t2", "priv", w.port, l.Token); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("revoke by another tenant: %v", err)
	}
	if err := w.svc.Revoke(ctx, "t1", "priv", w.port, l.Token); err != nil {
		t.Fatal(err)
	}
	if a := w.do(t, "GET", h, "/echo", nil, TokenHeader, l.Token); a.status != 403 || !strings.Contains(a.body, "revoked") {
		t.Errorf("revoked: %d %q", a.status, a.body)
	}
	// The sandbox's own token still works.
	if a := w.do(t, "GET", h, "/echo", nil, TokenHeader, w.svc.Signer().SandboxToken("priv")); a.status != 200 {
		t.Errorf("sandbox token after a revocation: %d", a.status)
	}
	for _, ttl := range []time.Duration{-time.Second, time.Millisecond, MaxSignedTTL + time.Second} {
		if _, err := w.svc.Sign(ctx, "t1", "priv", w.port, ttl); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ttl %v: %v", ttl, err)
		}
	}
	if _, err := w.svc.Sign(ctx, "t1", "priv", 0, time.Minute); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("port 0: %v", err)
	}
}

func TestProxyStreamsAndWebSocket(t *testing.T) {
	w := newWorld(t)
	// The first chunk arrives while the app still holds the response open.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", w.front.URL+"/stream", nil)
	req.Host = w.host("pub")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first chunk %q, %v", buf, err)
	}
	w.release <- struct{}{}
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second\n" {
		t.Errorf("rest %q", rest)
	}

	// A WebSocket through both forms.
	for _, tc := range []struct{ url, host string }{
		{"ws" + strings.TrimPrefix(w.front.URL, "http") + "/ws", w.host("pub")},
		{"ws" + strings.TrimPrefix(w.front.URL, "http") + "/preview/pub/" + strconv.Itoa(w.port) + "/ws", ""},
	} {
		c, _, err := websocket.Dial(t.Context(), tc.url, &websocket.DialOptions{Host: tc.host})
		if err != nil {
			t.Fatalf("dial %s (Host %q): %v", tc.url, tc.host, err)
		}
		for i := range 3 {
			msg := fmt.Sprintf("hi %d", i)
			if err := c.Write(t.Context(), websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, b, err := c.Read(t.Context())
			if err != nil || string(b) != "echo: "+msg {
				t.Fatalf("read %q, %v", b, err)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
}

// BenchmarkProxyGet is the proxy's own cost per request (fake lookups, a
// real agent on a unix socket, the app on the loopback), next to a direct
// GET of the same app.
func BenchmarkProxyGet(b *testing.B) {
	w := newWorld(b)
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	run := func(b *testing.B, u, host string) {
		for b.Loop() {
			req, _ := http.NewRequest("GET", u, nil)
			req.Host = host
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	b.Run("direct", func(b *testing.B) { run(b, "http://127.0.0.1:"+strconv.Itoa(w.port)+"/echo", "") })
	b.Run("proxied", func(b *testing.B) { run(b, w.front.URL+"/echo", w.host("pub")) })
}

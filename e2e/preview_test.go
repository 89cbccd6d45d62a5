package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/sbx-sh/sbx/internal/testdaemon"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// previewReq sends a request to the daemon's listener with Host host
// ("" keeps the daemon's address: the path form) and does not follow
// redirects.
func previewReq(t *testing.T, method, host, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, daemon.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s (Host %q): %v", method, path, host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading: %v", method, path, err)
	}
	return resp, string(b)
}

func wantPreview(t *testing.T, what, host, path string, status int, contains string, hdr ...string) *http.Response {
	t.Helper()
	resp, body := previewReq(t, "GET", host, path, nil, hdr...)
	if resp.StatusCode != status || !strings.Contains(body, contains) {
		t.Errorf("%s: GET %s (Host %q) = %d %q, want %d containing %q", what, path, host, resp.StatusCode, body, status, contains)
	}
	return resp
}

// hostOf is the Host of a host-form preview URL.
func hostOf(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil || pu.Host == "" {
		t.Fatalf("preview URL %q: %v", u, err)
	}
	return pu.Host
}

// pathOf is the path (and query) of a path-form preview URL.
func pathOf(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	return pu.RequestURI()
}

// waitPreview polls until a preview answers 200 (the server inside may
// still be starting).
func waitPreview(t *testing.T, host, path string, hdr ...string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, body := previewReq(t, "GET", host, path, nil, hdr...)
		if resp.StatusCode == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("preview %s (Host %q) never answered 200: last %d %q", path, host, resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPreviewHTTPD serves files with busybox httpd from a sandbox without
// any network (mode none) and checks access: private by default, the
// token in a header, the query (then a cookie) or a signed URL that
// expires and can be revoked, public on demand, and all of it through a
// daemon restart.
func TestPreviewHTTPD(t *testing.T) {
	setup(t)
	t.Cleanup(func() { leakCheck(t) }) // last: after the sandbox's deletion
	ctx := t.Context()
	sb := create(t, admin, sbx.CreateSandboxRequest{})
	if sb.Network.Mode != sbx.NetworkNone || sb.Public {
		t.Fatalf("sandbox %+v: want mode none, private", sb.Network)
	}
	execOK(t, admin, sb.ID, "sh", "-c", "mkdir -p /www && echo hello-preview > /www/index.html && httpd -p 8080 -h /www")
	l, err := admin.Preview(ctx, sb.ID, 8080)
	if err != nil {
		t.Fatal(err)
	}
	host := hostOf(t, l.URL)
	if want := "8080-" + sb.ID + ".preview.localhost:"; !strings.HasPrefix(host, want) {
		t.Fatalf("host form %q, want %s<port>", host, want)
	}
	path := pathOf(t, l.PathURL)
	tok := []string{sbx.PreviewTokenHeader, l.Token}
	waitPreview(t, host, "/", tok...)

	wantPreview(t, "no token", host, "/", 401, "private")
	wantPreview(t, "no token, path form", "", path, 401, "private")
	wantPreview(t, "wrong token", host, "/", 403, "not valid", sbx.PreviewTokenHeader, strings.Repeat("a", 32))
	wantPreview(t, "token", host, "/", 200, "hello-preview", tok...)
	wantPreview(t, "token, path form", "", path, 200, "hello-preview", tok...)
	wantPreview(t, "uppercase host", strings.ToUpper(host), "/", 200, "hello-preview", tok...)

	// ?token= → a cookie for this origin and a redirect to the clean URL.
	resp := wantPreview(t, "query token", host, "/index.html?token="+l.Token, http.StatusTemporaryRedirect, "")
	if loc := resp.Header.Get("Location"); loc != "/index.html" {
		t.Errorf("redirect to %q", loc)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "sbx_preview_token" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Domain != "" || cookie.Path != "/" || !cookie.HttpOnly {
		t.Fatalf("cookie %+v", cookie)
	}
	wantPreview(t, "cookie", host, "/", 200, "hello-preview", "Cookie", cookie.Name+"="+cookie.Value)

	// Signed: this port only, until it expires or is revoked.
	short, err := admin.SignPreview(ctx, sb.ID, 8080, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	long, err := admin.SignPreview(ctx, sb.ID, 8080, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	wantPreview(t, "signed", host, "/", 200, "hello-preview", sbx.PreviewTokenHeader, short.Token)
	wantPreview(t, "signed URL, path form", "", pathOf(t, short.PathURL), http.StatusTemporaryRedirect, "")
	wantPreview(t, "signed, another port", strings.Replace(host, "8080-", "8081-", 1), "/", 403, "not valid", sbx.PreviewTokenHeader, short.Token)
	if err := admin.RevokePreview(ctx, sb.ID, 8080, long.Token); err != nil {
		t.Fatal(err)
	}
	wantPreview(t, "revoked", host, "/", 403, "revoked", sbx.PreviewTokenHeader, long.Token)
	time.Sleep(time.Until(short.ExpiresAt) + 100*time.Millisecond)
	wantPreview(t, "expired", host, "/", 403, "expired", sbx.PreviewTokenHeader, short.Token)

	// Public: no token needed; and back.
	if pub, err := admin.SetPublic(ctx, sb.ID, true); err != nil || !pub.Public {
		t.Fatalf("SetPublic: %+v, %v", pub.Public, err)
	}
	wantPreview(t, "public", host, "/", 200, "hello-preview")
	wantPreview(t, "public, path form", "", path, 200, "hello-preview")
	if _, err := admin.SetPublic(ctx, sb.ID, false); err != nil {
		t.Fatal(err)
	}
	wantPreview(t, "private again", host, "/", 401, "private")

	// Errors.
	wantPreview(t, "nothing listening", strings.Replace(host, "8080-", "8099-", 1), "/", 502, "nothing is listening on port 8099", tok...)
	wantPreview(t, "unknown sandbox", strings.Replace(host, sb.ID, "nosuchsandbox", 1), "/", 404, "not found")
	wantPreview(t, "the API is still there", "", "/healthz", 200, "ok")

	// A daemon restart changes nothing: same token, revocation kept.
	daemon.Kill9()
	if err := daemon.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitPreview(t, host, "/", tok...)
	wantPreview(t, "after restart", host, "/", 200, "hello-preview", tok...)
	wantPreview(t, "revoked, after restart", host, "/", 403, "revoked", sbx.PreviewTokenHeader, long.Token)

	if _, err := admin.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	wantPreview(t, "stopped", host, "/", 409, "not started", tok...)
}

var (
	appOnce sync.Once
	appBin  string
	appErr  error
)

// previewApp builds e2e/testdata/previewapp, static.
func previewApp(t *testing.T) string {
	t.Helper()
	appOnce.Do(func() {
		root, err := testdaemon.ModuleRoot()
		if err != nil {
			appErr = err
			return
		}
		appBin = filepath.Join(workDir, "previewapp")
		cmd := exec.Command("go", "build", "-o", appBin, "./e2e/testdata/previewapp")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			appErr = fmt.Errorf("building previewapp: %v\n%s", err, out)
		}
	})
	if appErr != nil {
		t.Fatal(appErr)
	}
	return appBin
}

// startApp uploads previewapp into the sandbox and starts it on port in a
// session.
func startApp(t *testing.T, id string, port int) {
	t.Helper()
	ctx := t.Context()
	f, err := os.Open(previewApp(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := admin.Upload(ctx, id, "/tmp/previewapp", f, sbx.UploadOptions{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	s, err := admin.CreateSession(ctx, id, sbx.CreateSessionRequest{ID: "previewapp"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SessionExec(ctx, id, s.ID, sbx.SessionExecRequest{
		Command: "/tmp/previewapp " + strconv.Itoa(port) + " >/tmp/app.log 2>&1", Async: true,
	}); err != nil {
		t.Fatal(err)
	}
}

func rssKB(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// patternReader yields n bytes of a pattern without holding them.
type patternReader struct{ n, off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := min(int64(len(b)), p.n-p.off)
	for i := range k {
		b[i] = byte((p.off + i) * 7)
	}
	p.off += k
	return int(k), nil
}

// TestPreviewApp runs a Go server bound to the sandbox's 127.0.0.1 in a
// sandbox whose egress is blocked, and goes through the proxy with a
// WebSocket (both forms), a streamed response, and 64 MiB each way while
// the daemon's memory stays flat.
func TestPreviewApp(t *testing.T) {
	setup(t)
	t.Cleanup(func() { leakCheck(t) })
	ctx := t.Context()
	sb := create(t, admin, sbx.CreateSandboxRequest{Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge, BlockAll: true}})
	if !sb.Network.BlockAll {
		t.Fatalf("network %+v: want block_all", sb.Network)
	}
	const port = 9000
	startApp(t, sb.ID, port)
	l, err := admin.Preview(ctx, sb.ID, port)
	if err != nil {
		t.Fatal(err)
	}
	host := hostOf(t, l.URL)
	tok := []string{sbx.PreviewTokenHeader, l.Token}
	waitPreview(t, host, "/", tok...)
	wantPreview(t, "block_all sandbox, inbound", host, "/x", 200, "previewapp /x host="+host, tok...)

	// No sbx credential reaches the app.
	_, body := previewReq(t, "GET", host, "/headers?token="+l.Token+"&keep=1", nil,
		sbx.PreviewTokenHeader, l.Token, "Authorization", "Bearer "+daemon.AdminKey, "Cookie", "sbx_preview_token="+l.Token+"; mine=1")
	if strings.Contains(body, l.Token) || strings.Contains(body, daemon.AdminKey) || !strings.Contains(body, "keep=1") || !strings.Contains(body, "mine=1") {
		t.Errorf("the app saw:\n%s", body)
	}

	// WebSocket echo, host form and path form.
	wsBase := "ws://" + daemon.Addr
	for _, tc := range []struct{ name, url, host string }{
		{"host form", wsBase + "/ws", host},
		{"path form", wsBase + pathOf(t, l.PathURL) + "ws", ""},
	} {
		c, _, err := websocket.Dial(ctx, tc.url, &websocket.DialOptions{Host: tc.host, HTTPHeader: http.Header{sbx.PreviewTokenHeader: {l.Token}}})
		if err != nil {
			t.Fatalf("%s: dial: %v", tc.name, err)
		}
		for i := range 3 {
			msg := fmt.Sprintf("%s %d", tc.name, i)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatal(err)
			}
			_, b, err := c.Read(ctx)
			if err != nil || string(b) != "echo: "+msg {
				t.Fatalf("%s: read %q, %v", tc.name, b, err)
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	}
	if _, _, err := websocket.Dial(ctx, wsBase+"/ws", &websocket.DialOptions{Host: host}); err == nil {
		t.Error("a WebSocket without a token was let through")
	}

	// Streaming: the first chunk arrives while the response is still open.
	req, _ := http.NewRequestWithContext(ctx, "GET", daemon.URL+"/stream", nil)
	req.Host = host
	req.Header.Set(sbx.PreviewTokenHeader, l.Token)
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 6)
	got := make(chan error, 1)
	go func() { _, err := io.ReadFull(resp.Body, first); got <- err }()
	select {
	case err := <-got:
		if err != nil || string(first) != "first\n" {
			t.Fatalf("first chunk %q, %v", first, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first chunk did not arrive while the response was open")
	}
	wantPreview(t, "release the stream", host, "/release", 200, "released", tok...)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second\n" {
		t.Errorf("rest of the stream %q", rest)
	}

	// 64 MiB up and 64 MiB down, not buffered by the daemon.
	const big = 64 << 20
	pid := daemon.Pid()
	before := rssKB(t, pid)
	h := sha256.New()
	io.Copy(h, &patternReader{n: big})
	start := time.Now()
	resp, body = previewReq(t, "POST", host, "/upload", &patternReader{n: big}, tok...)
	up := time.Since(start)
	if want := fmt.Sprintf("%d %s", big, hex.EncodeToString(h.Sum(nil))); resp.StatusCode != 200 || body != want {
		t.Fatalf("upload: %d %q, want %q", resp.StatusCode, body, want)
	}
	req, _ = http.NewRequestWithContext(ctx, "GET", daemon.URL+"/download?n="+strconv.Itoa(big), nil)
	req.Host = host
	req.Header.Set(sbx.PreviewTokenHeader, l.Token)
	start = time.Now()
	resp, err = http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	down := time.Since(start)
	if err != nil || n != big {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	after := rssKB(t, pid)
	t.Logf("64 MiB up %v (%.0f MiB/s), down %v (%.0f MiB/s); daemon RSS %d → %d kB",
		up.Round(time.Millisecond), 64/up.Seconds(), down.Round(time.Millisecond), 64/down.Seconds(), before, after)
	if after-before > 24<<10 {
		t.Errorf("the daemon's RSS grew by %d kB moving 2×64 MiB: bodies are buffered", after-before)
	}
}

package daytona

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/sbx-sh/sbx/internal/preview"
	"github.com/sbx-sh/sbx/internal/store"
)

// previewSandboxes adapts the fake to preview.Sandboxes.
type previewSandboxes struct{ fakeSandboxes }

func (previewSandboxes) Touch(string) {}

type memRevocations struct {
	mu sync.Mutex
	m  map[string]bool
}

func (r *memRevocations) RevokePreviewToken(_ context.Context, rv store.PreviewRevocation) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[rv.TokenID] = true
	return nil
}

func (r *memRevocations) PreviewTokenRevoked(_ context.Context, id string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[id], nil
}

func TestPreviewURLs(t *testing.T) {
	rev := &memRevocations{m: map[string]bool{}}
	for _, domain := range []string{"preview.test:7070", ""} {
		svc := preview.New(preview.Config{Sandboxes: previewSandboxes{}, Revocations: rev, Key: make([]byte, 32), Domain: domain})
		h := New(Config{Sandboxes: fakeSandboxes{}, Auth: fakeAuth{}, Previews: svc})
		do := func(method, path string, out any) int {
			t.Helper()
			r := httptest.NewRequest(method, "http://sbx.test:7070"+path, nil)
			r.Header.Set("Authorization", "Bearer good")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if out != nil {
				json.Unmarshal(rec.Body.Bytes(), out)
			}
			return rec.Code
		}
		var l previewURLDTO
		if code := do("GET", "/api/sandbox/x/ports/3000/preview-url", &l); code != 200 || l.SandboxID != "x" || len(l.Token) != 32 {
			t.Fatalf("preview-url: %d %+v", code, l)
		}
		want := "http://3000-x.preview.test:7070/"
		if domain == "" {
			want = "http://sbx.test:7070/preview/x/3000/"
		}
		if l.URL != want {
			t.Errorf("domain %q: url %q, want %q", domain, l.URL, want)
		}
		var s signedPreviewURLDTO
		if code := do("GET", "/api/sandbox/x/ports/3000/signed-preview-url?expiresInSeconds=120", &s); code != 200 ||
			s.Port != 3000 || !strings.HasPrefix(s.URL, want+"?token=") || !strings.HasSuffix(s.URL, s.Token) {
			t.Fatalf("signed-preview-url: %d %+v", code, s)
		}
		if code := do("POST", "/api/sandbox/x/ports/3000/signed-preview-url/"+s.Token+"/expire", nil); code != 200 {
			t.Errorf("expire: %d", code)
		}
		sg, err := svc.Signer().ParseSigned("x", 3000, s.Token)
		if err != nil || !rev.m[sg.TokenID] {
			t.Errorf("expire did not revoke: %v", err)
		}
		for _, p := range []string{
			"/api/sandbox/x/ports/0/preview-url", "/api/sandbox/x/ports/70000/preview-url",
			"/api/sandbox/x/ports/80/signed-preview-url?expiresInSeconds=86401",
			"/api/sandbox/x/ports/80/signed-preview-url?expiresInSeconds=0",
		} {
			if code := do("GET", p, nil); code != http.StatusBadRequest {
				t.Errorf("%s: %d, want 400", p, code)
			}
		}
		if code := do("GET", "/api/sandbox/other/ports/80/preview-url", nil); code != 404 {
			t.Errorf("unknown sandbox: %d", code)
		}
	}
}

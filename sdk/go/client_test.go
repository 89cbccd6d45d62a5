package sbx_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Answers that are not problem+json (a proxy's page, a wrong URL) still
// become *Error values with a code derived from the status.
func TestForeignErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			t.Errorf("Authorization = %q", r.Header.Get("Authorization"))
		}
		if r.URL.EscapedPath() != "/v1/images/a/b:1%3Fx%23y%25z" {
			t.Errorf("path = %q", r.URL.EscapedPath())
		}
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}))
	defer srv.Close()
	_, err := sbx.New(srv.URL+"/", "k").GetImage(t.Context(), "a/b:1?x#y%z")
	e, ok := err.(*sbx.Error)
	if !ok || e.Status != 502 || e.Code != sbx.CodeInternal || e.Detail != "HTTP 502: bad gateway" {
		t.Fatalf("err = %#v", err)
	}
}

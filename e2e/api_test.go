package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestTenantIsolation: another tenant's objects answer 404, exactly like
// missing ones.
func TestTenantIsolation(t *testing.T) {
	setup(t)
	ctx := t.Context()
	mk := func(name string) *sbx.Client {
		tn, err := admin.CreateTenant(ctx, sbx.CreateTenantRequest{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		k, err := admin.CreateKey(ctx, tn.ID, "e2e")
		if err != nil {
			t.Fatal(err)
		}
		return sbx.New(daemon.URL, k.Key)
	}
	a, b := mk("team-a"), mk("team-b")
	sa := create(t, a, sbx.CreateSandboxRequest{Name: "mine"})
	// b sees nothing of a's.
	for name, err := range map[string]error{
		"get":  errOf(b.GetSandbox(ctx, sa.ID)),
		"name": errOf(b.GetSandbox(ctx, "mine")),
		"stop": errOf(b.StopSandbox(ctx, sa.ID, 0)),
		"exec": errOf(b.Exec(ctx, sa.ID, sbx.ExecRequest{Argv: []string{"true"}})),
		"rm":   b.DeleteSandbox(ctx, sa.ID),
	} {
		if !sbx.IsNotFound(err) {
			t.Errorf("%s of another tenant's sandbox: %v, want not found", name, err)
		}
	}
	page, err := b.ListSandboxes(ctx, sbx.ListOptions{})
	if err != nil || len(page.Items) != 0 {
		t.Errorf("b lists %d sandboxes (%v)", len(page.Items), err)
	}
	// Names are per tenant.
	create(t, b, sbx.CreateSandboxRequest{Name: "mine"})
	// Non-admins cannot manage tenants.
	if _, err := a.CreateTenant(ctx, sbx.CreateTenantRequest{Name: "evil"}); err == nil {
		t.Error("a tenant created a tenant")
	}
	// a's sandbox still works.
	execOK(t, a, sa.ID, "true")
	// Unknown and missing keys are refused.
	if _, err := sbx.New(daemon.URL, "sbx_wrong").ListSandboxes(ctx, sbx.ListOptions{}); err == nil {
		t.Error("a wrong key was accepted")
	}
}

func errOf[T any](_ T, err error) error { return err }

// TestBadInput: clear 4xx answers with stable codes, and nothing is left
// behind by a failed create.
func TestBadInput(t *testing.T) {
	setup(t)
	post := func(path, body string) (int, map[string]any) {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", daemon.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+daemon.AdminKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var p map[string]any
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &p)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode >= 400 && !strings.HasPrefix(ct, "application/problem+json") {
			t.Errorf("%s %s: content type %q", path, body, ct)
		}
		return resp.StatusCode, p
	}
	create(t, admin, sbx.CreateSandboxRequest{Name: "taken"})
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"malformed JSON", `{"image":`, 400, "invalid_argument"},
		{"unknown field", `{"privileged":true}`, 400, "invalid_argument"},
		{"unknown image", `{"image":"nope/nothing:1"}`, 404, "not_found"},
		{"negative cpu", `{"resources":{"cpu":-1}}`, 400, "invalid_argument"},
		{"oversize memory", `{"resources":{"memory_mb":100000000}}`, 400, "invalid_argument"},
		{"duplicate name", `{"name":"taken","image":"` + testImage + `"}`, 409, "already_exists"},
		{"invalid name", `{"name":"../x"}`, 400, "invalid_argument"},
		{"invalid label key", `{"labels":{"bad key!":"v"}}`, 400, "invalid_argument"},
		{"unknown runtime", `{"runtime":"kata"}`, 400, "invalid_argument"},
		{"bad env name", `{"env":{"1X":"v"}}`, 400, "invalid_argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, p := post("/v1/sandboxes", tc.body)
			if status != tc.status || p["code"] != tc.code {
				t.Errorf("status %d code %v (%v), want %d %s", status, p["code"], p["detail"], tc.status, tc.code)
			}
		})
	}
	big := `{"name":"` + strings.Repeat("x", 2<<20) + `"}`
	if status, _ := post("/v1/sandboxes", big); status != 413 {
		t.Errorf("2 MiB body: %d, want 413", status)
	}
	if status, p := post("/v1/sandboxes/nope/exec", `{"argv":["true"]}`); status != 404 || p["code"] != "not_found" {
		t.Errorf("exec in an unknown sandbox: %d %v", status, p)
	}
	// Only the "taken" sandbox exists: failed creates left nothing.
	page, err := admin.ListSandboxes(t.Context(), sbx.ListOptions{})
	if err != nil || len(page.Items) != 1 {
		t.Errorf("sandboxes after the bad creates: %d (%v)", len(page.Items), err)
	}
}

package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sbx-sh/sbx/internal/errdefs"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestSnapshotRoutes drives every snapshot, clone, reset and restart route
// through the SDK and the spec-validating client.
func TestSnapshotRoutes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{Name: "src", Env: map[string]string{"A": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := e.sdk.CreateSnapshot(ctx, sb.ID, "first")
	if err != nil {
		t.Fatal(err)
	}
	if sn.Name != "first" || sn.SandboxID != sb.ID || !strings.HasPrefix(sn.Checksum, "sha256:") || sn.PauseMS <= 0 {
		t.Errorf("created %+v", sn)
	}
	if _, err := e.sdk.CreateSnapshot(ctx, sb.ID, "first"); !sbx.IsAlreadyExists(err) {
		t.Errorf("duplicate: %v", err)
	}
	anon, err := e.sdk.CreateSnapshot(ctx, sb.ID, "")
	if err != nil || anon.Name != anon.ID {
		t.Errorf("unnamed snapshot %+v %v", anon, err)
	}
	list, err := e.sdk.ListSnapshots(ctx, sb.ID)
	if err != nil || len(list) != 2 || list[0].ID != sn.ID {
		t.Fatalf("list %+v %v", list, err)
	}
	if got, err := e.sdk.GetSnapshot(ctx, sb.ID, "first"); err != nil || got.ID != sn.ID || got.PauseMS != 0 {
		t.Errorf("get by name %+v %v", got, err)
	}
	if _, err := e.sdk.GetSnapshot(ctx, sb.ID, "nope"); !sbx.IsNotFound(err) {
		t.Errorf("missing snapshot: %v", err)
	}
	if got, err := e.sdk.RestoreSnapshot(ctx, sb.ID, sn.ID); err != nil || got.ID != sb.ID {
		t.Errorf("restore %+v %v", got, err)
	}
	e.fake.SetError("RestoreSnapshot", errdefs.Public(errdefs.ErrConflict, "the image is corrupt"))
	if _, err := e.sdk.RestoreSnapshot(ctx, sb.ID, sn.ID); !sbx.IsConflict(err) {
		t.Errorf("corrupt restore: %v", err)
	}
	e.fake.SetError("RestoreSnapshot", nil)
	if err := e.sdk.DeleteSnapshot(ctx, sb.ID, anon.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.sdk.DeleteSnapshot(ctx, sb.ID, anon.ID); !sbx.IsNotFound(err) {
		t.Errorf("delete twice: %v", err)
	}
	evs, err := e.sdk.Events(ctx, sb.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == "snapshot" {
			n++
		}
	}
	if n != 6 {
		t.Errorf("%d snapshot events, want 6: %+v", n, evs)
	}
	// Another tenant sees nothing.
	_, key := e.fake.AddTenant("other", false)
	other := sbx.New(e.srv.URL, key, sbx.WithHTTPClient(e.hc))
	if _, err := other.ListSnapshots(ctx, sb.ID); !sbx.IsNotFound(err) {
		t.Errorf("another tenant lists: %v", err)
	}

	cl, err := e.sdk.CloneSandbox(ctx, sb.ID, sbx.CloneRequest{Name: "copy", Env: map[string]string{"B": "2"},
		Resources: &sbx.Resources{MemoryMB: 512}})
	if err != nil {
		t.Fatal(err)
	}
	if cl.ID == sb.ID || cl.Name != "copy" || cl.Env["A"] != "1" || cl.Env["B"] != "2" || cl.Resources.MemoryMB != 512 {
		t.Errorf("clone %+v", cl)
	}
	if _, err := e.sdk.CloneSandbox(ctx, sb.ID, sbx.CloneRequest{Resources: &sbx.Resources{CPU: -1}}); !sbx.IsInvalidArgument(err) {
		t.Errorf("negative resources: %v", err)
	}
	if r := e.raw(t, http.MethodPost, "/v1/sandboxes/"+sb.ID+"/clone", "", strings.NewReader(`{"nme":"x"}`)); r.status != http.StatusBadRequest {
		t.Errorf("unknown field: %d %s", r.status, r.body)
	}

	for _, mode := range []string{sbx.ResetSoft, sbx.ResetHard, ""} {
		if _, err := e.sdk.ResetSandbox(ctx, sb.ID, mode); err != nil {
			t.Errorf("reset %q: %v", mode, err)
		}
	}
	if r := e.raw(t, http.MethodPost, "/v1/sandboxes/"+sb.ID+"/reset", "", strings.NewReader(`{"mode":"medium"}`)); r.status != http.StatusBadRequest {
		t.Errorf("bad mode: %d", r.status)
	}

	got, err := e.sdk.RestartSandboxWith(ctx, sb.ID, sbx.RestartRequest{Env: map[string]string{"C": "3"}, Resources: &sbx.Resources{CPU: 2}})
	if err != nil || got.Env["C"] != "3" || got.Env["A"] != "1" || got.Resources.CPU != 2 {
		t.Errorf("restart with %+v %v", got, err)
	}
	if _, err := e.sdk.RestartSandbox(ctx, sb.ID); err != nil {
		t.Errorf("plain restart: %v", err)
	}
}

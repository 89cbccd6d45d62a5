package httpapi_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func TestLifecycleRoutes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{
		Lifecycle: &sbx.LifecyclePolicy{AutoStopSeconds: sbx.Seconds(15 * time.Minute)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if l := sb.Lifecycle; l.AutoStopSeconds != 900 || l.AutoArchiveSeconds != 0 || l.AutoDeleteSeconds != -1 {
		t.Fatalf("created with lifecycle %+v", l)
	}
	got, err := e.sdk.SetLifecycle(ctx, sb.ID, sbx.LifecyclePolicy{AutoArchiveSeconds: sbx.Seconds(time.Hour), AutoDeleteSeconds: sbx.Never(true)})
	if err != nil || got.Lifecycle.AutoStopSeconds != 900 || got.Lifecycle.AutoArchiveSeconds != 3600 {
		t.Fatalf("SetLifecycle = %+v, %v", got.Lifecycle, err)
	}
	for _, p := range []sbx.LifecyclePolicy{
		{AutoStopSeconds: sbx.Never(true)}, // -1 is only for delete
		{AutoDeleteSeconds: func() *int64 { v := int64(-5); return &v }()},
	} {
		if _, err := e.sdk.SetLifecycle(ctx, sb.ID, p); !sbx.IsInvalidArgument(err) {
			t.Errorf("SetLifecycle(%+v): %v, want invalid_argument", p, err)
		}
	}
	got, err = e.sdk.Keepalive(ctx, sb.ID, time.Hour)
	if err != nil || got.Lifecycle.KeepaliveUntil == nil {
		t.Fatalf("Keepalive = %+v, %v", got.Lifecycle, err)
	}
	// No body is a plain activity call.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/v1/sandboxes/"+sb.ID+"/keepalive", nil)
	req.Header.Set("Authorization", "Bearer "+apitest.AdminKey)
	if resp, err := e.hc.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("keepalive without a body: %v %v", resp, err)
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/v1/sandboxes/"+sb.ID+"/keepalive", bytes.NewBufferString(`{"seconds": -1}`))
	req.Header.Set("Authorization", "Bearer "+apitest.AdminKey)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := e.hc.Do(req); err != nil || resp.StatusCode != 400 {
		t.Fatalf("negative keepalive: %v %v", resp.StatusCode, err)
	}

	m, err := e.sdk.Metrics(ctx, sb.ID)
	if err != nil || m.MemoryBytes == 0 || m.Network != nil {
		t.Fatalf("Metrics = %+v, %v", m, err)
	}
	if _, err := e.sdk.ArchiveSandbox(ctx, sb.ID); !sbx.IsConflict(err) {
		t.Fatalf("archive of a started sandbox: %v", err)
	}
	if _, err := e.sdk.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.Metrics(ctx, sb.ID); !sbx.IsConflict(err) {
		t.Fatalf("metrics of a stopped sandbox: %v", err)
	}
	got, err = e.sdk.ArchiveSandbox(ctx, sb.ID)
	if err != nil || got.State != "archived" || got.Lifecycle.Archive == nil {
		t.Fatalf("ArchiveSandbox = %+v, %v", got, err)
	}
	list, err := e.sdk.ListSandboxes(ctx, sbx.ListOptions{States: []string{"archived"}})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("list archived: %+v %v", list, err)
	}
	if got, err = e.sdk.StartSandbox(ctx, sb.ID); err != nil || got.State != "started" || got.Lifecycle.Archive != nil {
		t.Fatalf("start of an archived sandbox: %+v %v", got, err)
	}
	if _, err := e.sdk.ArchiveSandbox(ctx, "missing"); !sbx.IsNotFound(err) {
		t.Fatalf("archive of a missing sandbox: %v", err)
	}
}

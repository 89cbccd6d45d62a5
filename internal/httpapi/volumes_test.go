package httpapi_test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbx-sh/sbx/internal/httpapi"
	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/store/sqlite"
	"github.com/sbx-sh/sbx/internal/volume"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestVolumes drives /v1/volumes against the real volume manager (volumes
// are made with mkfs.ext4; nothing is mounted) on a real store.
func TestVolumes(t *testing.T) {
	base := t.TempDir()
	st, err := sqlite.Open(t.Context(), filepath.Join(base, "sbx.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vm, err := volume.New(volume.Config{Dir: filepath.Join(base, "volumes"), MaxSizeMB: 1024}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *httpapi.Config) { c.Volumes = vm })
	ctx := t.Context()
	v, err := e.sdk.CreateVolume(ctx, sbx.CreateVolumeRequest{Name: "data", SizeMB: 32})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "data" || v.SizeMB != 32 || v.State != "ready" || v.ID == "" || len(v.UsedBy) != 0 {
		t.Fatalf("created %+v", v)
	}
	for _, key := range []string{v.ID, "data"} {
		if got, err := e.sdk.GetVolume(ctx, key); err != nil || got.ID != v.ID {
			t.Errorf("GetVolume(%s) = %+v, %v", key, got, err)
		}
	}
	if _, err := e.sdk.CreateVolume(ctx, sbx.CreateVolumeRequest{Name: "data", SizeMB: 32}); !sbx.IsAlreadyExists(err) {
		t.Errorf("name clash: %v", err)
	}
	for _, bad := range []sbx.CreateVolumeRequest{{Name: "", SizeMB: 32}, {Name: "a b", SizeMB: 32}, {Name: "small", SizeMB: 1}, {Name: "big", SizeMB: 4096}} {
		if _, err := e.sdk.CreateVolume(ctx, bad); !sbx.IsInvalidArgument(err) {
			t.Errorf("CreateVolume(%+v): %v, want 400", bad, err)
		}
	}
	if r := e.raw(t, "POST", "/v1/volumes", "", strings.NewReader(`{"name":"x","size_mb":32,"extra":1}`)); r.status != http.StatusBadRequest {
		t.Errorf("unknown field: %d %s", r.status, r.body)
	}
	if _, err := e.sdk.GetVolume(ctx, "missing"); !sbx.IsNotFound(err) {
		t.Errorf("missing volume: %v", err)
	}
	// Another tenant sees none of it.
	_, key := e.fake.AddTenant("other", false)
	other := sbx.New(e.srv.URL, key, sbx.WithHTTPClient(e.hc))
	if _, err := other.GetVolume(ctx, "data"); !sbx.IsNotFound(err) {
		t.Errorf("another tenant's volume: %v", err)
	}
	if l, err := other.ListVolumes(ctx); err != nil || len(l) != 0 {
		t.Errorf("another tenant lists %+v, %v", l, err)
	}
	if err := other.DeleteVolume(ctx, "data", true); !sbx.IsNotFound(err) {
		t.Errorf("another tenant deletes: %v", err)
	}

	// A live sandbox that mounts it blocks the delete (409) unless forced.
	tenant := adminTenantID(t, e)
	sb := store.Sandbox{ID: "sb1", TenantID: tenant, Name: "sb1", State: store.StateStopped, UIDSlot: -1,
		Volumes: []store.VolumeMount{{VolumeID: v.ID, Volume: "data", MountPath: "/data"}}}
	if err := st.CreateSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.sdk.GetVolume(ctx, "data"); len(got.UsedBy) != 1 || got.UsedBy[0] != "sb1" {
		t.Errorf("used_by = %v", got.UsedBy)
	}
	if err := e.sdk.DeleteVolume(ctx, "data", false); !sbx.IsConflict(err) {
		t.Errorf("delete while mounted: %v", err)
	}
	if r := e.raw(t, "DELETE", "/v1/volumes/data?force=maybe", "", nil); r.status != http.StatusBadRequest {
		t.Errorf("force=maybe: %d", r.status)
	}
	if l, err := e.sdk.ListVolumes(ctx); err != nil || len(l) != 1 {
		t.Errorf("ListVolumes = %+v, %v", l, err)
	}
	if err := e.sdk.DeleteVolume(ctx, "data", true); err != nil {
		t.Errorf("forced delete: %v", err)
	}
	if _, err := e.sdk.GetVolume(ctx, "data"); !sbx.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
	if l, err := e.sdk.ListVolumes(ctx); err != nil || l == nil || len(l) != 0 {
		t.Errorf("ListVolumes after delete = %#v, %v", l, err)
	}
}

func adminTenantID(t *testing.T, e *env) string {
	t.Helper()
	me, err := e.sdk.WhoAmI(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return me.ID
}

func TestVolumesDisabled(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sdk.ListVolumes(t.Context()); sbx.ErrorCode(err) != sbx.CodeUnavailable {
		t.Errorf("without a volume manager: %v", err)
	}
	// Sandboxes show their (here: no) volumes as a list.
	sb, err := e.sdk.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{})
	if err != nil || sb.Volumes == nil {
		t.Fatalf("sandbox %+v, %v", sb.Volumes, err)
	}
}

func TestVolumeRoutesInSpec(t *testing.T) {
	doc, err := apitest.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v1/volumes", "/v1/volumes/{id}"} {
		if doc.Paths.Find(path) == nil {
			t.Errorf("route %s is not in the document", path)
		}
	}
}

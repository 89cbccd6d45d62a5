package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

func testTemplates(t *testing.T, st store.Store) {
	ctx := t.Context()
	a := store.Template{
		ID: "tpl1", TenantID: "t1", Name: "py", Source: store.TemplateFromSpec,
		Spec:  json.RawMessage(`{"base":"sbx/busybox:latest","steps":[{"run":"true"}]}`),
		State: store.TemplatePending, ImageRef: "sbx.local/template/py:latest", BuildLog: "/x/tpl1.log",
		CreatedAt: base, UpdatedAt: base,
	}
	must(t, "CreateTemplate", st.CreateTemplate(ctx, a))
	b := a
	b.ID = "tpl2"
	wantKind(t, "CreateTemplate same name", st.CreateTemplate(ctx, b), errdefs.ErrAlreadyExists)
	b.TenantID = "t2" // another tenant may use the name
	must(t, "CreateTemplate other tenant", st.CreateTemplate(ctx, b))

	want := a
	want.CreatedAt, want.UpdatedAt = base.UTC(), base.UTC()
	for _, key := range []string{"py", "tpl1"} {
		got, err := st.GetTemplate(ctx, "t1", key)
		must(t, "GetTemplate", err)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("GetTemplate(%s) (-want +got):\n%s", key, diff)
		}
	}
	_, err := st.GetTemplate(ctx, "t3", "py")
	wantKind(t, "GetTemplate of another tenant", err, errdefs.ErrNotFound)

	a.State, a.ImageDigest, a.ErrorReason = store.TemplateActive, "sha256:abc", ""
	must(t, "UpdateTemplate", st.UpdateTemplate(ctx, a))
	got, err := st.GetTemplate(ctx, "t1", "py")
	must(t, "GetTemplate", err)
	if got.State != store.TemplateActive || got.ImageDigest != "sha256:abc" || !got.UpdatedAt.After(base) {
		t.Errorf("after update: %+v", got)
	}
	a.ID = "nope"
	wantKind(t, "UpdateTemplate missing", st.UpdateTemplate(ctx, a), errdefs.ErrNotFound)

	for tenant, n := range map[string]int{"t1": 1, "t2": 1, "": 2, "t3": 0} {
		l, err := st.ListTemplates(ctx, tenant)
		must(t, "ListTemplates", err)
		if len(l) != n {
			t.Errorf("ListTemplates(%q) = %d templates, want %d", tenant, len(l), n)
		}
	}

	// In use by a live sandbox of the tenant, through its image reference.
	sb := sandbox("s1", "t1", "one", -1)
	sb.Image = "sbx.local/template/py:latest"
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sb))
	for _, tc := range []struct {
		tenant string
		want   bool
	}{{"t1", true}, {"", true}, {"t2", false}} {
		used, err := st.ImageRefInUse(ctx, tc.tenant, sb.Image)
		must(t, "ImageRefInUse", err)
		if used != tc.want {
			t.Errorf("ImageRefInUse(%q) = %v, want %v", tc.tenant, used, tc.want)
		}
	}
	sb.State = store.StateDestroyed
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, sb))
	if used, err := st.ImageRefInUse(ctx, "t1", sb.Image); err != nil || used {
		t.Errorf("ImageRefInUse after destroy = %v, %v", used, err)
	}

	wantKind(t, "DeleteTemplate of another tenant", st.DeleteTemplate(ctx, "t3", "py"), errdefs.ErrNotFound)
	must(t, "DeleteTemplate", st.DeleteTemplate(ctx, "t1", "py"))
	wantKind(t, "DeleteTemplate twice", st.DeleteTemplate(ctx, "t1", "py"), errdefs.ErrNotFound)
	if _, err := st.GetTemplate(ctx, "t2", "py"); err != nil {
		t.Errorf("the other tenant's template went too: %v", err)
	}

	// Build cache: per tenant, replaced by Put.
	e := store.BuildCacheEntry{TenantID: "t1", Key: "k1", ImageDigest: "sha256:1", Layer: "sha256:l1", CreatedAt: base}
	must(t, "PutBuildCache", st.PutBuildCache(ctx, e))
	ge, err := st.GetBuildCache(ctx, "t1", "k1")
	must(t, "GetBuildCache", err)
	e.CreatedAt = base.UTC()
	if diff := cmp.Diff(e, ge); diff != "" {
		t.Errorf("GetBuildCache (-want +got):\n%s", diff)
	}
	_, err = st.GetBuildCache(ctx, "t2", "k1")
	wantKind(t, "GetBuildCache of another tenant", err, errdefs.ErrNotFound)
	e.ImageDigest, e.CreatedAt = "sha256:2", base.Add(time.Hour)
	must(t, "PutBuildCache replace", st.PutBuildCache(ctx, e))
	if ge, _ := st.GetBuildCache(ctx, "t1", "k1"); ge.ImageDigest != "sha256:2" {
		t.Errorf("after replace: %+v", ge)
	}
}

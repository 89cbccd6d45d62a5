package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

func testSnapshots(t *testing.T, st store.Store) {
	ctx := t.Context()
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s1", "t1", "one", 1)))
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s2", "t1", "two", 2)))
	a := store.Snapshot{ID: "n1", SandboxID: "s1", TenantID: "t1", Name: "first", Size: 4096, Checksum: "sha256:aa", CreatedAt: base}
	b := store.Snapshot{ID: "n2", SandboxID: "s1", TenantID: "t1", Name: "second", Size: 8192, Checksum: "sha256:bb", CreatedAt: base.Add(time.Second)}
	must(t, "CreateSnapshot a", st.CreateSnapshot(ctx, a))
	must(t, "CreateSnapshot b", st.CreateSnapshot(ctx, b))
	wantKind(t, "duplicate name", st.CreateSnapshot(ctx, store.Snapshot{ID: "n3", SandboxID: "s1", TenantID: "t1", Name: "first"}), errdefs.ErrAlreadyExists)
	// Names are per sandbox.
	must(t, "same name on another sandbox", st.CreateSnapshot(ctx, store.Snapshot{ID: "n4", SandboxID: "s2", TenantID: "t1", Name: "first", CreatedAt: base}))
	wantKind(t, "missing sandbox", st.CreateSnapshot(ctx, store.Snapshot{ID: "n5", SandboxID: "nope", TenantID: "t1", Name: "x"}), errdefs.ErrNotFound)

	a.CreatedAt = a.CreatedAt.UTC()
	b.CreatedAt = b.CreatedAt.UTC()
	for _, key := range []string{"n1", "first"} {
		got, err := st.GetSnapshot(ctx, "t1", "s1", key)
		must(t, "GetSnapshot "+key, err)
		if diff := cmp.Diff(a, got); diff != "" {
			t.Errorf("GetSnapshot(%s) (-want +got):\n%s", key, diff)
		}
	}
	_, err := st.GetSnapshot(ctx, "t2", "s1", "n1")
	wantKind(t, "another tenant's snapshot", err, errdefs.ErrNotFound)
	_, err = st.GetSnapshot(ctx, "t1", "s2", "n1")
	wantKind(t, "another sandbox's snapshot", err, errdefs.ErrNotFound)

	list, err := st.ListSnapshots(ctx, "t1", "s1")
	must(t, "ListSnapshots", err)
	if diff := cmp.Diff([]store.Snapshot{a, b}, list); diff != "" {
		t.Errorf("ListSnapshots (-want +got):\n%s", diff)
	}
	if list, _ := st.ListSnapshots(ctx, "t2", "s1"); len(list) != 0 {
		t.Errorf("another tenant lists %d snapshots", len(list))
	}

	wantKind(t, "DeleteSnapshot of another tenant", st.DeleteSnapshot(ctx, "t2", "s1", "n1"), errdefs.ErrNotFound)
	must(t, "DeleteSnapshot", st.DeleteSnapshot(ctx, "t1", "s1", "n1"))
	wantKind(t, "DeleteSnapshot twice", st.DeleteSnapshot(ctx, "t1", "s1", "n1"), errdefs.ErrNotFound)

	must(t, "DeleteSandboxSnapshots", st.DeleteSandboxSnapshots(ctx, "s2"))
	if list, _ := st.ListSnapshots(ctx, "", "s2"); len(list) != 0 {
		t.Errorf("s2 still has %d snapshots", len(list))
	}
	// Deleting the sandbox deletes its snapshots.
	must(t, "DeleteSandbox", st.DeleteSandbox(ctx, "s1"))
	must(t, "CreateSandbox again", st.CreateSandbox(ctx, sandbox("s1", "t1", "one", 1)))
	if list, _ := st.ListSnapshots(ctx, "", "s1"); len(list) != 0 {
		t.Errorf("a deleted sandbox's snapshots remain: %v", list)
	}
}

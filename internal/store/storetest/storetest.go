// Package storetest is the conformance suite for store.Store
// implementations. Every implementation's tests call Run with a function
// that opens a fresh, empty store; the suite checks the behaviour the
// store package documents: error kinds, tenant scoping, unique live names
// and uid slots, pagination, event ordering, exact time round-trips and
// concurrent writers.
package storetest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Run runs the whole suite. open must return a new, empty store for each
// call; Run closes it when the subtest ends.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, st store.Store)
	}{
		{"Tenants", testTenants},
		{"APIKeys", testAPIKeys},
		{"Images", testImages},
		{"SandboxRoundTrip", testSandboxRoundTrip},
		{"SandboxUniqueness", testSandboxUniqueness},
		{"SandboxUpdate", testSandboxUpdate},
		{"SandboxDelete", testSandboxDelete},
		{"UsedUIDSlots", testUsedUIDSlots},
		{"Network", testNetwork},
		{"Lifecycle", testLifecycle},
		{"Preview", testPreview},
		{"Pagination", testPagination},
		{"PaginationCap", testPaginationCap},
		{"Events", testEvents},
		{"ConcurrentWriters", testConcurrentWriters},
		{"ConcurrentDuplicates", testConcurrentDuplicates},
		{"Templates", testTemplates},
		{"Volumes", testVolumes},
		{"VolumeUsers", testVolumeUsers},
		{"Snapshots", testSnapshots},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := open(t)
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.fn(t, st)
		})
	}
}

// base is a time with nanoseconds in a non-UTC zone, to catch stores that
// truncate or keep the zone.
var base = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("X", 5*3600+1800))

func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("%s: got error %v, want kind %v", what, err, kind)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func mkTenant(t *testing.T, st store.Store, id string) store.Tenant {
	t.Helper()
	tn := store.Tenant{ID: id, Name: "name-" + id, CreatedAt: base}
	must(t, "CreateTenant "+id, st.CreateTenant(t.Context(), tn))
	return tn
}

func sandbox(id, tenant, name string, slot int) store.Sandbox {
	return store.Sandbox{
		ID: id, TenantID: tenant, Name: name,
		Image: "busybox", ImageDigest: "sha256:aaa", Runtime: "crun",
		State: store.StateStarted, Desired: store.StateStarted,
		UIDSlot: slot, CreatedAt: base, UpdatedAt: base,
	}
}

func testTenants(t *testing.T, st store.Store) {
	ctx := t.Context()
	t1 := store.Tenant{
		ID: "t1", Name: "one", Admin: true, CreatedAt: base,
		Limits: store.Limits{MaxSandboxes: 3, MaxCPU: 1.5, MaxMemoryMB: 512, MaxDiskMB: 1024, MaxPids: 99},
	}
	t2 := store.Tenant{ID: "t2", Name: "two", CreatedAt: base.Add(time.Nanosecond)}
	must(t, "CreateTenant", st.CreateTenant(ctx, t1))
	must(t, "CreateTenant", st.CreateTenant(ctx, t2))

	got, err := st.GetTenant(ctx, "t1")
	must(t, "GetTenant", err)
	if diff := cmp.Diff(t1, got); diff != "" {
		t.Errorf("GetTenant (-want +got):\n%s", diff)
	}
	if got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt location = %v, want UTC", got.CreatedAt.Location())
	}

	for _, tc := range []struct {
		name string
		t    store.Tenant
	}{
		{"duplicate id", store.Tenant{ID: "t1", Name: "other"}},
		{"duplicate name", store.Tenant{ID: "t3", Name: "two"}},
	} {
		wantKind(t, tc.name, st.CreateTenant(ctx, tc.t), errdefs.ErrAlreadyExists)
	}
	_, err = st.GetTenant(ctx, "nope")
	wantKind(t, "GetTenant missing", err, errdefs.ErrNotFound)

	list, err := st.ListTenants(ctx)
	must(t, "ListTenants", err)
	if diff := cmp.Diff([]store.Tenant{t1, t2}, list); diff != "" {
		t.Errorf("ListTenants (-want +got):\n%s", diff)
	}

	t2.Name, t2.Limits.MaxPids = "two-renamed", 7
	must(t, "UpdateTenant", st.UpdateTenant(ctx, t2))
	got, err = st.GetTenant(ctx, "t2")
	must(t, "GetTenant", err)
	if diff := cmp.Diff(t2, got); diff != "" {
		t.Errorf("after UpdateTenant (-want +got):\n%s", diff)
	}
	wantKind(t, "UpdateTenant missing", st.UpdateTenant(ctx, store.Tenant{ID: "nope", Name: "x"}), errdefs.ErrNotFound)
	wantKind(t, "UpdateTenant to a taken name", st.UpdateTenant(ctx, store.Tenant{ID: "t2", Name: "one"}), errdefs.ErrAlreadyExists)

	// A zero CreatedAt is filled in.
	must(t, "CreateTenant", st.CreateTenant(ctx, store.Tenant{ID: "t4", Name: "four"}))
	got, err = st.GetTenant(ctx, "t4")
	must(t, "GetTenant", err)
	if got.CreatedAt.IsZero() {
		t.Errorf("CreatedAt not set by the store")
	}
}

func testAPIKeys(t *testing.T, st store.Store) {
	ctx := t.Context()
	mkTenant(t, st, "t1")
	mkTenant(t, st, "t2")
	k1 := store.APIKey{ID: "k1", TenantID: "t1", Name: "ci", Hash: "h1", Prefix: "sbx_abc", CreatedAt: base}
	k2 := store.APIKey{ID: "k2", TenantID: "t1", Name: "laptop", Hash: "h2", Prefix: "sbx_def", CreatedAt: base.Add(time.Second)}
	k3 := store.APIKey{ID: "k3", TenantID: "t2", Name: "", Hash: "h3", Prefix: "sbx_ghi", CreatedAt: base.Add(2 * time.Second)}
	for _, k := range []store.APIKey{k1, k2, k3} {
		must(t, "CreateAPIKey", st.CreateAPIKey(ctx, k))
	}

	got, err := st.APIKeyByHash(ctx, "h2")
	must(t, "APIKeyByHash", err)
	if diff := cmp.Diff(k2, got); diff != "" {
		t.Errorf("APIKeyByHash (-want +got):\n%s", diff)
	}
	_, err = st.APIKeyByHash(ctx, "nope")
	wantKind(t, "APIKeyByHash missing", err, errdefs.ErrNotFound)

	for _, tc := range []struct {
		name string
		k    store.APIKey
		kind error
	}{
		{"duplicate hash", store.APIKey{ID: "k9", TenantID: "t2", Hash: "h1"}, errdefs.ErrAlreadyExists},
		{"duplicate id", store.APIKey{ID: "k1", TenantID: "t2", Hash: "h9"}, errdefs.ErrAlreadyExists},
		{"unknown tenant", store.APIKey{ID: "k8", TenantID: "nope", Hash: "h8"}, errdefs.ErrNotFound},
	} {
		wantKind(t, tc.name, st.CreateAPIKey(ctx, tc.k), tc.kind)
	}

	for _, tc := range []struct {
		tenant string
		want   []store.APIKey
	}{
		{"t1", []store.APIKey{k1, k2}},
		{"t2", []store.APIKey{k3}},
		{"", []store.APIKey{k1, k2, k3}},
		{"nope", nil},
	} {
		got, err := st.ListAPIKeys(ctx, tc.tenant)
		must(t, "ListAPIKeys", err)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ListAPIKeys(%q) (-want +got):\n%s", tc.tenant, diff)
		}
	}

	wantKind(t, "DeleteAPIKey of another tenant", st.DeleteAPIKey(ctx, "t2", "k1"), errdefs.ErrNotFound)
	if _, err := st.APIKeyByHash(ctx, "h1"); err != nil {
		t.Fatalf("key deleted by another tenant: %v", err)
	}
	must(t, "DeleteAPIKey", st.DeleteAPIKey(ctx, "t1", "k1"))
	_, err = st.APIKeyByHash(ctx, "h1")
	wantKind(t, "APIKeyByHash after delete", err, errdefs.ErrNotFound)
	wantKind(t, "DeleteAPIKey twice", st.DeleteAPIKey(ctx, "t1", "k1"), errdefs.ErrNotFound)
	must(t, "DeleteAPIKey any tenant", st.DeleteAPIKey(ctx, "", "k3"))
}

func testImages(t *testing.T, st store.Store) {
	ctx := t.Context()
	a := store.Image{TenantID: "t1", Ref: "docker.io/library/busybox:latest", Digest: "sha256:111", Size: 10, CreatedAt: base}
	b := store.Image{TenantID: "t2", Ref: "docker.io/library/busybox:latest", Digest: "sha256:111", Size: 10, CreatedAt: base}
	c := store.Image{TenantID: "t1", Ref: "sbx/default:latest", Digest: "sha256:222", Size: 20, CreatedAt: base}
	for _, img := range []store.Image{a, b, c} {
		must(t, "PutImage", st.PutImage(ctx, img))
	}
	got, err := st.GetImage(ctx, "t1", c.Ref)
	must(t, "GetImage", err)
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("GetImage (-want +got):\n%s", diff)
	}
	_, err = st.GetImage(ctx, "t2", c.Ref)
	wantKind(t, "GetImage of another tenant", err, errdefs.ErrNotFound)
	if _, err := st.GetImage(ctx, "", c.Ref); err != nil {
		t.Errorf("GetImage any tenant: %v", err)
	}

	// Put replaces.
	c.Digest, c.Size, c.CreatedAt = "sha256:333", 30, base.Add(time.Hour)
	must(t, "PutImage replace", st.PutImage(ctx, c))
	got, err = st.GetImage(ctx, "t1", c.Ref)
	must(t, "GetImage", err)
	if diff := cmp.Diff(c, got); diff != "" {
		t.Errorf("GetImage after replace (-want +got):\n%s", diff)
	}

	byRef := func(x, y store.Image) int { return strings.Compare(x.TenantID+x.Ref, y.TenantID+y.Ref) }
	for _, tc := range []struct {
		tenant string
		want   []store.Image
	}{
		{"t1", []store.Image{a, c}},
		{"t2", []store.Image{b}},
		{"", []store.Image{a, b, c}},
	} {
		got, err := st.ListImages(ctx, tc.tenant)
		must(t, "ListImages", err)
		slices.SortFunc(got, byRef)
		slices.SortFunc(tc.want, byRef)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ListImages(%q) (-want +got):\n%s", tc.tenant, diff)
		}
	}

	referenced := func(digest string, want bool) {
		t.Helper()
		got, err := st.ImageDigestReferenced(ctx, digest)
		must(t, "ImageDigestReferenced", err)
		if got != want {
			t.Errorf("ImageDigestReferenced(%s) = %v, want %v", digest, got, want)
		}
	}
	referenced("sha256:111", true)
	referenced("sha256:222", false) // replaced
	referenced("sha256:333", true)

	wantKind(t, "DeleteImage of another tenant", st.DeleteImage(ctx, "t2", c.Ref), errdefs.ErrNotFound)
	must(t, "DeleteImage", st.DeleteImage(ctx, "t1", c.Ref))
	referenced("sha256:333", false)
	wantKind(t, "DeleteImage twice", st.DeleteImage(ctx, "t1", c.Ref), errdefs.ErrNotFound)
	must(t, "DeleteImage", st.DeleteImage(ctx, "t1", a.Ref))
	referenced("sha256:111", true) // t2 still holds it
	must(t, "DeleteImage", st.DeleteImage(ctx, "t2", b.Ref))
	referenced("sha256:111", false)

	// In use: only live sandboxes count, scoped by tenant.
	sb := sandbox("s1", "t1", "one", -1)
	sb.ImageDigest = "sha256:444"
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sb))
	for _, tc := range []struct {
		tenant, digest string
		want           bool
	}{
		{"t1", "sha256:444", true},
		{"", "sha256:444", true},
		{"t2", "sha256:444", false},
		{"t1", "sha256:555", false},
	} {
		got, err := st.ImageDigestInUse(ctx, tc.tenant, tc.digest)
		must(t, "ImageDigestInUse", err)
		if got != tc.want {
			t.Errorf("ImageDigestInUse(%q, %s) = %v, want %v", tc.tenant, tc.digest, got, tc.want)
		}
	}
	sb.State = store.StateDestroyed
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, sb))
	if used, err := st.ImageDigestInUse(ctx, "", "sha256:444"); err != nil || used {
		t.Errorf("ImageDigestInUse after destroy = %v, %v; want false", used, err)
	}
}

func testSandboxRoundTrip(t *testing.T, st store.Store) {
	ctx := t.Context()
	code := 137
	started := base.Add(1500 * time.Millisecond)
	full := store.Sandbox{
		ID: "s1", TenantID: "t1", Name: "full",
		Image: "docker.io/library/python:3", ImageDigest: "sha256:abc", Runtime: "runc",
		State: store.StateStopped, Desired: store.StateStopped,
		Env:        map[string]string{"A": "1", "EMPTY": "", "UNICODE": "é=ü"},
		Labels:     map[string]string{"team": "a", "with space": "x\"y"},
		Resources:  store.Resources{CPU: 0.5, MemoryMB: 256, DiskMB: 1024, Pids: 64},
		User:       "1000:1000",
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{"echo hi", ""},
		Workdir:    "/work", UIDSlot: 7, ErrorReason: "oops", ExitCode: &code, OOMKills: 2,
		CreatedAt: base, UpdatedAt: base.Add(time.Second), StartedAt: &started,
	}
	// Empty (not nil) maps and slices must come back empty, nil ones nil.
	empty := store.Sandbox{
		ID: "s2", TenantID: "t1", Name: "empty", State: store.StateCreating,
		Env: map[string]string{}, Labels: map[string]string{}, Entrypoint: []string{}, Cmd: []string{},
		UIDSlot: -1, CreatedAt: base.Add(time.Nanosecond), UpdatedAt: base,
	}
	zeroCode := 0
	bare := store.Sandbox{ID: "s3", TenantID: "t2", Name: "full", UIDSlot: -1, ExitCode: &zeroCode, CreatedAt: base, UpdatedAt: base}
	for _, sb := range []store.Sandbox{full, empty, bare} {
		must(t, "CreateSandbox "+sb.ID, st.CreateSandbox(ctx, sb))
	}
	for _, tc := range []struct {
		name   string
		tenant string
		id     string
		byName string
		want   store.Sandbox
		kind   error
	}{
		{"by id", "t1", "s1", "", full, nil},
		{"by id any tenant", "", "s1", "", full, nil},
		{"empty collections", "t1", "s2", "", empty, nil},
		{"nil collections", "t2", "s3", "", bare, nil},
		{"by name", "t1", "", "full", full, nil},
		{"by name other tenant's twin", "t2", "", "full", bare, nil},
		{"by id other tenant", "t2", "s1", "", store.Sandbox{}, errdefs.ErrNotFound},
		{"by name other tenant", "t2", "", "empty", store.Sandbox{}, errdefs.ErrNotFound},
		{"missing id", "", "nope", "", store.Sandbox{}, errdefs.ErrNotFound},
		{"missing name", "t1", "", "nope", store.Sandbox{}, errdefs.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				got store.Sandbox
				err error
			)
			if tc.byName != "" {
				got, err = st.GetSandboxByName(ctx, tc.tenant, tc.byName)
			} else {
				got, err = st.GetSandbox(ctx, tc.tenant, tc.id)
			}
			if tc.kind != nil {
				wantKind(t, "get", err, tc.kind)
				return
			}
			must(t, "get", err)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if got.CreatedAt.Location() != time.UTC || got.StartedAt != nil && got.StartedAt.Location() != time.UTC {
				t.Errorf("times not in UTC: %v %v", got.CreatedAt, got.StartedAt)
			}
		})
	}
}

func testSandboxUniqueness(t *testing.T, st store.Store) {
	ctx := t.Context()
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s1", "t1", "web", 1)))
	for _, tc := range []struct {
		name string
		sb   store.Sandbox
		kind error  // nil = must succeed
		msg  string // substring of the public message
	}{
		{"same name same tenant", sandbox("s2", "t1", "web", -1), errdefs.ErrAlreadyExists, `sandbox name "web" already exists`},
		{"same id", sandbox("s1", "t1", "other", -1), errdefs.ErrAlreadyExists, ""},
		{"same uid slot", sandbox("s3", "t2", "db", 1), errdefs.ErrAlreadyExists, ""},
		{"same name other tenant", sandbox("s4", "t2", "web", 2), nil, ""},
		{"no uid slot twice (a)", sandbox("s5", "t1", "a", -1), nil, ""},
		{"no uid slot twice (b)", sandbox("s6", "t1", "b", -1), nil, ""},
	} {
		err := st.CreateSandbox(ctx, tc.sb)
		if tc.kind == nil {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if !errors.Is(err, tc.kind) {
			t.Errorf("%s: got %v, want kind %v", tc.name, err, tc.kind)
		}
		if tc.msg != "" && !strings.Contains(errdefs.Message(err), tc.msg) {
			t.Errorf("%s: public message %q does not contain %q", tc.name, errdefs.Message(err), tc.msg)
		}
	}

	// Destroying s1 frees its name and its uid slot.
	s1, err := st.GetSandbox(ctx, "t1", "s1")
	must(t, "GetSandbox", err)
	s1.State = store.StateDestroyed
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, s1))
	must(t, "CreateSandbox reusing name and slot", st.CreateSandbox(ctx, sandbox("s7", "t1", "web", 1)))
	// GetSandboxByName finds the live one, not the destroyed one.
	got, err := st.GetSandboxByName(ctx, "t1", "web")
	must(t, "GetSandboxByName", err)
	if got.ID != "s7" {
		t.Errorf("GetSandboxByName = %s, want s7", got.ID)
	}
	// A destroyed record does not clash with a live one...
	dead := sandbox("s8", "t1", "web", 1)
	dead.State = store.StateDestroyed
	must(t, "CreateSandbox destroyed twin", st.CreateSandbox(ctx, dead))
	// ...but reviving it does.
	dead.State = store.StateStarted
	wantKind(t, "reviving a destroyed twin", st.UpdateSandbox(ctx, dead), errdefs.ErrAlreadyExists)
}

func testSandboxUpdate(t *testing.T, st store.Store) {
	ctx := t.Context()
	sb := sandbox("s1", "t1", "one", 3)
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sb))
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s2", "t1", "two", 4)))

	code := 1
	now := time.Now()
	sb.State, sb.Desired = store.StateError, store.StateStopped
	sb.ErrorReason, sb.ExitCode, sb.OOMKills = "died", &code, 1
	sb.Labels = map[string]string{"k": "v"}
	sb.Resources.MemoryMB = 1024
	sb.StartedAt = &now
	sb.UIDSlot = 5
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, sb))
	got, err := st.GetSandbox(ctx, "t1", "s1")
	must(t, "GetSandbox", err)
	if !got.UpdatedAt.After(base) {
		t.Errorf("UpdatedAt = %v, want it set to now", got.UpdatedAt)
	}
	sb.UpdatedAt = got.UpdatedAt
	if diff := cmp.Diff(sb, got); diff != "" {
		t.Errorf("after UpdateSandbox (-want +got):\n%s", diff)
	}
	if slots, err := st.UsedUIDSlots(ctx); err != nil || !slices.Equal(slots, []int{4, 5}) {
		t.Errorf("UsedUIDSlots = %v, %v; want [4 5]", slots, err)
	}

	for _, tc := range []struct {
		name string
		sb   store.Sandbox
		kind error
	}{
		{"missing", sandbox("nope", "t1", "x", -1), errdefs.ErrNotFound},
		{"other tenant", sandbox("s1", "t2", "one", -1), errdefs.ErrNotFound},
		{"name taken", sandbox("s1", "t1", "two", -1), errdefs.ErrAlreadyExists},
		{"slot taken", sandbox("s1", "t1", "one", 4), errdefs.ErrAlreadyExists},
	} {
		wantKind(t, tc.name, st.UpdateSandbox(ctx, tc.sb), tc.kind)
	}
	// Failed updates change nothing.
	got2, err := st.GetSandbox(ctx, "", "s1")
	must(t, "GetSandbox", err)
	if diff := cmp.Diff(got, got2); diff != "" {
		t.Errorf("failed updates changed the record (-before +after):\n%s", diff)
	}
}

func testSandboxDelete(t *testing.T, st store.Store) {
	ctx := t.Context()
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s1", "t1", "one", 1)))
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s2", "t1", "two", 2)))
	for i := range 3 {
		for _, id := range []string{"s1", "s2"} {
			_, err := st.AddEvent(ctx, store.Event{SandboxID: id, Type: "state", Message: fmt.Sprint(i)})
			must(t, "AddEvent", err)
		}
	}
	must(t, "DeleteSandbox", st.DeleteSandbox(ctx, "s1"))
	_, err := st.GetSandbox(ctx, "", "s1")
	wantKind(t, "GetSandbox after delete", err, errdefs.ErrNotFound)
	_, err = st.ListEvents(ctx, "", "s1", 0, 0)
	wantKind(t, "ListEvents after delete", err, errdefs.ErrNotFound)
	wantKind(t, "DeleteSandbox twice", st.DeleteSandbox(ctx, "s1"), errdefs.ErrNotFound)

	// The same id can be used again and starts with no events.
	must(t, "CreateSandbox again", st.CreateSandbox(ctx, sandbox("s1", "t1", "one", 1)))
	evs, err := st.ListEvents(ctx, "", "s1", 0, 0)
	must(t, "ListEvents", err)
	if len(evs) != 0 {
		t.Errorf("recreated sandbox has %d events of the deleted one", len(evs))
	}
	// The other sandbox's events are untouched.
	evs, err = st.ListEvents(ctx, "t1", "s2", 0, 0)
	must(t, "ListEvents", err)
	if len(evs) != 3 {
		t.Errorf("s2 has %d events, want 3", len(evs))
	}
}

func testUsedUIDSlots(t *testing.T, st store.Store) {
	ctx := t.Context()
	slots, err := st.UsedUIDSlots(ctx)
	must(t, "UsedUIDSlots", err)
	if len(slots) != 0 {
		t.Fatalf("empty store: UsedUIDSlots = %v", slots)
	}
	for i, slot := range []int{9, 0, -1, 4, 2} {
		sb := sandbox(fmt.Sprint("s", i), "t1", fmt.Sprint("n", i), slot)
		must(t, "CreateSandbox", st.CreateSandbox(ctx, sb))
	}
	dead := sandbox("dead", "t1", "dead", 5)
	dead.State = store.StateDestroyed
	must(t, "CreateSandbox", st.CreateSandbox(ctx, dead))
	slots, err = st.UsedUIDSlots(ctx)
	must(t, "UsedUIDSlots", err)
	if diff := cmp.Diff([]int{0, 2, 4, 9}, slots); diff != "" {
		t.Errorf("UsedUIDSlots (-want +got):\n%s", diff)
	}
}

func testLifecycle(t *testing.T, st store.Store) {
	ctx := t.Context()
	a := sandbox("s1", "t1", "one", -1)
	must(t, "CreateSandbox", st.CreateSandbox(ctx, a))
	got, err := st.GetSandbox(ctx, "", "s1")
	must(t, "GetSandbox", err)
	if diff := cmp.Diff(a.Lifecycle, got.Lifecycle); diff != "" {
		t.Errorf("zero lifecycle (-want +got):\n%s", diff)
	}
	now := time.Unix(1700000000, 123).UTC()
	later := now.Add(time.Hour)
	a.State = store.StateArchived
	a.Lifecycle = store.Lifecycle{AutoStop: 900, AutoArchive: 3600, AutoDelete: -1, LastActivity: now,
		KeepaliveUntil: &later, StoppedAt: &now,
		Archive: &store.ArchiveInfo{Key: "sandboxes/s1.sbxa", Size: 10, SHA256: "ab", DiskSize: 1 << 30, Data: 99, CreatedAt: now}}
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, a))
	got, err = st.GetSandbox(ctx, "", "s1")
	must(t, "GetSandbox", err)
	if diff := cmp.Diff(a.Lifecycle, got.Lifecycle); diff != "" {
		t.Errorf("lifecycle (-want +got):\n%s", diff)
	}
	items, _, err := st.ListSandboxes(ctx, store.SandboxFilter{States: []store.State{store.StateArchived}})
	must(t, "ListSandboxes", err)
	if len(items) != 1 || items[0].ID != "s1" {
		t.Errorf("archived sandboxes: %v", items)
	}
}

func testNetwork(t *testing.T, st store.Store) {
	ctx := t.Context()
	a := sandbox("s1", "t1", "one", -1)
	a.Network = store.Network{Mode: "bridge", IP: "10.88.0.2", Allow: []string{"192.0.2.0/24"}, Deny: []string{"192.0.2.9/32"}}
	must(t, "CreateSandbox", st.CreateSandbox(ctx, a))
	got, err := st.GetSandbox(ctx, "", "s1")
	must(t, "GetSandbox", err)
	if diff := cmp.Diff(a.Network, got.Network); diff != "" {
		t.Errorf("network (-want +got):\n%s", diff)
	}
	b := sandbox("s2", "t1", "two", -1)
	b.Network = store.Network{Mode: "bridge", IP: "10.88.0.2"}
	wantKind(t, "address taken", st.CreateSandbox(ctx, b), errdefs.ErrAlreadyExists)
	b.Network.IP = "10.88.0.3"
	b.Network.BlockAll = true
	must(t, "CreateSandbox", st.CreateSandbox(ctx, b))
	none := sandbox("s3", "t1", "three", -1)
	none.Network = store.Network{Mode: "none"}
	must(t, "CreateSandbox", st.CreateSandbox(ctx, none))
	ips, err := st.UsedIPs(ctx)
	must(t, "UsedIPs", err)
	if diff := cmp.Diff([]string{"10.88.0.2", "10.88.0.3"}, ips); diff != "" {
		t.Errorf("UsedIPs (-want +got):\n%s", diff)
	}
	// A destroyed sandbox frees its address; a live one cannot take a held one.
	a.State = store.StateDestroyed
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, a))
	b.Network.IP = "10.88.0.2"
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, b))
	none.Network.IP = "10.88.0.2"
	wantKind(t, "address taken on update", st.UpdateSandbox(ctx, none), errdefs.ErrAlreadyExists)
	ips, err = st.UsedIPs(ctx)
	must(t, "UsedIPs", err)
	if diff := cmp.Diff([]string{"10.88.0.2"}, ips); diff != "" {
		t.Errorf("UsedIPs after changes (-want +got):\n%s", diff)
	}
}

func testPreview(t *testing.T, st store.Store) {
	ctx := t.Context()
	mkTenant(t, st, "t1")
	a := sandbox("s1", "t1", "one", -1)
	a.Public = true
	must(t, "CreateSandbox", st.CreateSandbox(ctx, a))
	got, err := st.GetSandbox(ctx, "", "s1")
	must(t, "GetSandbox", err)
	if !got.Public {
		t.Error("Public lost on create")
	}
	got.Public = false
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, got))
	if got, _ = st.GetSandbox(ctx, "", "s1"); got.Public {
		t.Error("Public not cleared on update")
	}

	revoked := func(id string) bool {
		t.Helper()
		ok, err := st.PreviewTokenRevoked(ctx, id)
		must(t, "PreviewTokenRevoked", err)
		return ok
	}
	if revoked("tok1") {
		t.Error("a token never revoked is revoked")
	}
	later := time.Now().Add(time.Hour)
	must(t, "RevokePreviewToken", st.RevokePreviewToken(ctx, store.PreviewRevocation{TokenID: "tok1", SandboxID: "s1", ExpiresAt: later}))
	must(t, "RevokePreviewToken twice", st.RevokePreviewToken(ctx, store.PreviewRevocation{TokenID: "tok1", SandboxID: "s1", ExpiresAt: later}))
	if !revoked("tok1") {
		t.Error("revoked token not revoked")
	}
	// A revocation of an already expired token is pruned by the next one.
	must(t, "RevokePreviewToken", st.RevokePreviewToken(ctx, store.PreviewRevocation{TokenID: "old", SandboxID: "s1", ExpiresAt: time.Now().Add(-time.Hour)}))
	must(t, "RevokePreviewToken", st.RevokePreviewToken(ctx, store.PreviewRevocation{TokenID: "tok2", SandboxID: "s1", ExpiresAt: later}))
	if revoked("old") || !revoked("tok1") || !revoked("tok2") {
		t.Error("pruning removed the wrong revocations")
	}
	wantKind(t, "empty token id", st.RevokePreviewToken(ctx, store.PreviewRevocation{SandboxID: "s1", ExpiresAt: later}), errdefs.ErrInvalidArgument)
}

// pageAll lists every page of f and checks that each page but the last is full.
func pageAll(t *testing.T, st store.Store, f store.SandboxFilter) []string {
	t.Helper()
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	var ids []string
	for pages := 0; ; pages++ {
		if pages > 1000 {
			t.Fatalf("pagination does not end")
		}
		items, next, err := st.ListSandboxes(t.Context(), f)
		must(t, "ListSandboxes", err)
		for _, s := range items {
			ids = append(ids, s.ID)
		}
		if next == "" {
			if len(items) > limit {
				t.Fatalf("last page has %d items, limit %d", len(items), limit)
			}
			return ids
		}
		if len(items) != limit {
			t.Fatalf("page %d has %d items, want %d (a page with a next cursor must be full)", pages, len(items), limit)
		}
		f.Cursor = next
	}
}

func testPagination(t *testing.T, st store.Store) {
	ctx := t.Context()
	const n = 250
	all := make([]store.Sandbox, n)
	for i := range all {
		sb := sandbox(fmt.Sprintf("s%03d", i), fmt.Sprint("t", i%2), fmt.Sprint("n", i), -1)
		// Groups of three share a creation time, so the id must break ties.
		sb.CreatedAt = base.Add(time.Duration(i/3) * time.Millisecond)
		sb.Labels = map[string]string{"team": "b"}
		if i%3 == 0 {
			sb.Labels["team"] = "a"
		}
		if i%5 == 0 {
			sb.Labels["tier"] = "gold"
		}
		if i%4 == 0 {
			sb.State = store.StateStopped
		}
		all[i] = sb
	}
	// Insert in random order: creation order must not matter.
	for _, i := range rand.Perm(n) {
		must(t, "CreateSandbox", st.CreateSandbox(ctx, all[i]))
	}

	expect := func(keep func(store.Sandbox) bool) []string {
		var ids []string
		for _, s := range all { // all is already in (created_at, id) order
			if keep(s) {
				ids = append(ids, s.ID)
			}
		}
		return ids
	}
	for _, tc := range []struct {
		name string
		f    store.SandboxFilter
		keep func(store.Sandbox) bool
	}{
		{"all", store.SandboxFilter{}, func(store.Sandbox) bool { return true }},
		{"tenant", store.SandboxFilter{TenantID: "t1"}, func(s store.Sandbox) bool { return s.TenantID == "t1" }},
		{"label", store.SandboxFilter{Labels: map[string]string{"team": "a"}},
			func(s store.Sandbox) bool { return s.Labels["team"] == "a" }},
		{"two labels", store.SandboxFilter{Labels: map[string]string{"team": "a", "tier": "gold"}},
			func(s store.Sandbox) bool { return s.Labels["team"] == "a" && s.Labels["tier"] == "gold" }},
		{"state", store.SandboxFilter{States: []store.State{store.StateStopped}},
			func(s store.Sandbox) bool { return s.State == store.StateStopped }},
		{"states", store.SandboxFilter{States: []store.State{store.StateStopped, store.StateStarted}},
			func(s store.Sandbox) bool { return true }},
		{"tenant label state", store.SandboxFilter{TenantID: "t0", Labels: map[string]string{"team": "b"}, States: []store.State{store.StateStarted}},
			func(s store.Sandbox) bool {
				return s.TenantID == "t0" && s.Labels["team"] == "b" && s.State == store.StateStarted
			}},
		{"no match", store.SandboxFilter{Labels: map[string]string{"team": "c"}}, func(store.Sandbox) bool { return false }},
		{"missing key", store.SandboxFilter{Labels: map[string]string{"nope": ""}}, func(store.Sandbox) bool { return false }},
		{"other tenant", store.SandboxFilter{TenantID: "t9"}, func(store.Sandbox) bool { return false }},
	} {
		for _, limit := range []int{0, 1, 7, 40, 249, 250, 251} {
			t.Run(fmt.Sprintf("%s/limit=%d", tc.name, limit), func(t *testing.T) {
				f := tc.f
				f.Limit = limit
				got := pageAll(t, st, f)
				if diff := cmp.Diff(expect(tc.keep), got); diff != "" {
					t.Errorf("ids (-want +got):\n%s", diff)
				}
			})
		}
	}

	// The first page's items are complete records.
	items, next, err := st.ListSandboxes(ctx, store.SandboxFilter{Limit: 2})
	must(t, "ListSandboxes", err)
	if next == "" || len(items) != 2 {
		t.Fatalf("ListSandboxes limit 2: %d items, next %q", len(items), next)
	}
	if diff := cmp.Diff(all[:2], items); diff != "" {
		t.Errorf("first page (-want +got):\n%s", diff)
	}

	_, _, err = st.ListSandboxes(ctx, store.SandboxFilter{Cursor: "not a cursor!"})
	wantKind(t, "ListSandboxes with a bad cursor", err, errdefs.ErrInvalidArgument)
}

func testPaginationCap(t *testing.T, st store.Store) {
	ctx := t.Context()
	for i := range 1001 {
		sb := sandbox(fmt.Sprintf("s%04d", i), "t1", fmt.Sprint("n", i), -1)
		sb.CreatedAt = base.Add(time.Duration(i))
		must(t, "CreateSandbox", st.CreateSandbox(ctx, sb))
	}
	items, next, err := st.ListSandboxes(ctx, store.SandboxFilter{Limit: 5000})
	must(t, "ListSandboxes", err)
	if len(items) != 1000 || next == "" {
		t.Fatalf("Limit 5000: got %d items and next %q, want 1000 and a cursor", len(items), next)
	}
	items, next, err = st.ListSandboxes(ctx, store.SandboxFilter{Limit: 5000, Cursor: next})
	must(t, "ListSandboxes", err)
	if len(items) != 1 || items[0].ID != "s1000" || next != "" {
		t.Fatalf("second page: %d items, next %q", len(items), next)
	}
}

func testEvents(t *testing.T, st store.Store) {
	ctx := t.Context()
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s1", "t1", "one", -1)))
	must(t, "CreateSandbox", st.CreateSandbox(ctx, sandbox("s2", "t2", "two", -1)))

	var want []store.Event
	var last int64
	for i := range 6 {
		id, tenant := "s1", "t1"
		if i%2 == 1 {
			id, tenant = "s2", "t2"
		}
		in := store.Event{
			SandboxID: id, Type: "state", From: store.StateCreating, To: store.StateStarted,
			Message: fmt.Sprint("event ", i), Time: base.Add(time.Duration(i) * time.Nanosecond),
		}
		if i >= 2 {
			in.TenantID = tenant // both with and without a tenant
		}
		e, err := st.AddEvent(ctx, in)
		must(t, "AddEvent", err)
		if e.Seq <= last {
			t.Fatalf("Seq %d after %d: not increasing", e.Seq, last)
		}
		last = e.Seq
		in.Seq, in.TenantID = e.Seq, tenant
		if diff := cmp.Diff(in, e); diff != "" {
			t.Errorf("AddEvent result (-want +got):\n%s", diff)
		}
		if id == "s1" {
			want = append(want, in)
		}
	}

	for _, tc := range []struct {
		name   string
		tenant string
		after  int64
		limit  int
		want   []store.Event
	}{
		{"all", "t1", 0, 0, want},
		{"any tenant", "", 0, 100, want},
		{"after first", "t1", want[0].Seq, 0, want[1:]},
		{"after last", "t1", want[2].Seq, 0, nil},
		{"limit", "t1", 0, 2, want[:2]},
		{"after and limit", "t1", want[0].Seq, 1, want[1:2]},
	} {
		got, err := st.ListEvents(ctx, tc.tenant, "s1", tc.after, tc.limit)
		must(t, "ListEvents "+tc.name, err)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ListEvents %s (-want +got):\n%s", tc.name, diff)
		}
	}

	_, err := st.ListEvents(ctx, "t2", "s1", 0, 0)
	wantKind(t, "ListEvents of another tenant", err, errdefs.ErrNotFound)
	_, err = st.ListEvents(ctx, "", "nope", 0, 0)
	wantKind(t, "ListEvents of a missing sandbox", err, errdefs.ErrNotFound)
	_, err = st.AddEvent(ctx, store.Event{SandboxID: "s1", TenantID: "t2", Type: "state"})
	wantKind(t, "AddEvent to another tenant's sandbox", err, errdefs.ErrNotFound)
	_, err = st.AddEvent(ctx, store.Event{SandboxID: "nope", Type: "state"})
	wantKind(t, "AddEvent to a missing sandbox", err, errdefs.ErrNotFound)

	// A zero time is filled in.
	e, err := st.AddEvent(ctx, store.Event{SandboxID: "s1", Type: "oom"})
	must(t, "AddEvent", err)
	if e.Time.IsZero() {
		t.Errorf("AddEvent left Time zero")
	}
}

func testConcurrentWriters(t *testing.T, st store.Store) {
	ctx := t.Context()
	const workers, each = 20, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*3)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("w%02d-%02d", w, i)
				sb := sandbox(id, fmt.Sprint("t", w%3), id, w*each+i)
				if err := st.CreateSandbox(ctx, sb); err != nil {
					errs <- fmt.Errorf("create %s: %w", id, err)
					continue
				}
				if _, err := st.AddEvent(ctx, store.Event{SandboxID: id, Type: "state", To: store.StateStarted}); err != nil {
					errs <- fmt.Errorf("event %s: %w", id, err)
				}
				sb.State = store.StateStopped
				if err := st.UpdateSandbox(ctx, sb); err != nil {
					errs <- fmt.Errorf("update %s: %w", id, err)
				}
				// Reads interleave with the writes.
				if _, _, err := st.ListSandboxes(ctx, store.SandboxFilter{TenantID: sb.TenantID, Limit: 10}); err != nil {
					errs <- fmt.Errorf("list: %w", err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	ids := pageAll(t, st, store.SandboxFilter{States: []store.State{store.StateStopped}, Limit: 1000})
	if len(ids) != workers*each {
		t.Errorf("%d stopped sandboxes, want %d", len(ids), workers*each)
	}
	slots, err := st.UsedUIDSlots(ctx)
	must(t, "UsedUIDSlots", err)
	if len(slots) != workers*each || slots[0] != 0 || slots[len(slots)-1] != workers*each-1 {
		t.Errorf("UsedUIDSlots: %d slots from %v", len(slots), slots[:min(3, len(slots))])
	}
}

func testConcurrentDuplicates(t *testing.T, st store.Store) {
	ctx := t.Context()
	const n = 16
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		ok, exists int
		other      []error
	)
	for i := range n {
		wg.Go(func() {
			err := st.CreateSandbox(ctx, sandbox(fmt.Sprint("s", i), "t1", "same", 100+i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, errdefs.ErrAlreadyExists):
				exists++
			default:
				other = append(other, err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || exists != n-1 || len(other) > 0 {
		t.Errorf("racing creates of one name: %d succeeded, %d already existed, other errors %v; want 1, %d, none", ok, exists, other, n-1)
	}
}

func testVolumes(t *testing.T, st store.Store) {
	ctx := t.Context()
	mkTenant(t, st, "t1")
	mkTenant(t, st, "t2")
	v := store.Volume{ID: "v1", TenantID: "t1", Name: "data", SizeMB: 64, State: store.VolumeCreating, CreatedAt: base, UpdatedAt: base}
	must(t, "CreateVolume", st.CreateVolume(ctx, v))
	got, err := st.GetVolume(ctx, "t1", "v1")
	must(t, "GetVolume", err)
	if !got.CreatedAt.Equal(base) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, base)
	}
	want := v
	want.CreatedAt, want.UpdatedAt = base.UTC(), base.UTC()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("GetVolume (-want +got):\n%s", d)
	}
	if g, err := st.GetVolumeByName(ctx, "t1", "data"); err != nil || g.ID != "v1" {
		t.Errorf("GetVolumeByName = %+v, %v", g, err)
	}
	if g, err := st.GetVolume(ctx, "", "v1"); err != nil || g.ID != "v1" {
		t.Errorf("GetVolume of any tenant = %+v, %v", g, err)
	}
	_, err = st.GetVolume(ctx, "t2", "v1")
	wantKind(t, "GetVolume of another tenant", err, errdefs.ErrNotFound)
	_, err = st.GetVolumeByName(ctx, "t2", "data")
	wantKind(t, "GetVolumeByName of another tenant", err, errdefs.ErrNotFound)
	// Names are unique per tenant only.
	wantKind(t, "CreateVolume same name", st.CreateVolume(ctx, store.Volume{ID: "v2", TenantID: "t1", Name: "data", SizeMB: 1, State: store.VolumeReady}), errdefs.ErrAlreadyExists)
	must(t, "CreateVolume other tenant", st.CreateVolume(ctx, store.Volume{ID: "v3", TenantID: "t2", Name: "data", SizeMB: 1, State: store.VolumeReady, CreatedAt: base.Add(time.Second)}))
	must(t, "CreateVolume second", st.CreateVolume(ctx, store.Volume{ID: "v4", TenantID: "t1", Name: "more", SizeMB: 2, State: store.VolumeReady, CreatedAt: base.Add(2 * time.Second)}))
	wantKind(t, "CreateVolume same id", st.CreateVolume(ctx, store.Volume{ID: "v4", TenantID: "t1", Name: "other", SizeMB: 2, State: store.VolumeReady}), errdefs.ErrAlreadyExists)

	ids := func(l []store.Volume) []string {
		var out []string
		for _, v := range l {
			out = append(out, v.ID)
		}
		return out
	}
	l, err := st.ListVolumes(ctx, "t1")
	must(t, "ListVolumes", err)
	if d := cmp.Diff([]string{"v1", "v4"}, ids(l)); d != "" {
		t.Errorf("ListVolumes(t1) (-want +got):\n%s", d)
	}
	l, err = st.ListVolumes(ctx, "")
	must(t, "ListVolumes all", err)
	if d := cmp.Diff([]string{"v1", "v3", "v4"}, ids(l)); d != "" {
		t.Errorf("ListVolumes(all) (-want +got):\n%s", d)
	}
	if l, err := st.ListVolumes(ctx, "nobody"); err != nil || l == nil || len(l) != 0 {
		t.Errorf("ListVolumes of a tenant without volumes = %#v, %v; want an empty list", l, err)
	}

	v.State = store.VolumeReady
	must(t, "UpdateVolume", st.UpdateVolume(ctx, v))
	got, _ = st.GetVolume(ctx, "t1", "v1")
	if got.State != store.VolumeReady || !got.UpdatedAt.After(base) || !got.CreatedAt.Equal(base) {
		t.Errorf("after UpdateVolume: %+v", got)
	}
	wantKind(t, "UpdateVolume of another tenant", st.UpdateVolume(ctx, store.Volume{ID: "v1", TenantID: "t2", State: store.VolumeDeleting}), errdefs.ErrNotFound)
	wantKind(t, "UpdateVolume missing", st.UpdateVolume(ctx, store.Volume{ID: "nope", State: store.VolumeDeleting}), errdefs.ErrNotFound)

	must(t, "DeleteVolume", st.DeleteVolume(ctx, "v1"))
	_, err = st.GetVolume(ctx, "", "v1")
	wantKind(t, "GetVolume after delete", err, errdefs.ErrNotFound)
	wantKind(t, "DeleteVolume again", st.DeleteVolume(ctx, "v1"), errdefs.ErrNotFound)
	// The name is free again.
	must(t, "CreateVolume reusing the name", st.CreateVolume(ctx, store.Volume{ID: "v5", TenantID: "t1", Name: "data", SizeMB: 1, State: store.VolumeReady}))
}

func testVolumeUsers(t *testing.T, st store.Store) {
	ctx := t.Context()
	mkTenant(t, st, "t1")
	mounts := []store.VolumeMount{
		{VolumeID: "va", Volume: "a", MountPath: "/data"},
		{VolumeID: "vb", Volume: "b", MountPath: "/ro", Subpath: "x/y", ReadOnly: true},
	}
	s1 := sandbox("s1", "t1", "one", -1)
	s1.Volumes = mounts
	must(t, "CreateSandbox s1", st.CreateSandbox(ctx, s1))
	got, err := st.GetSandbox(ctx, "t1", "s1")
	must(t, "GetSandbox", err)
	if d := cmp.Diff(mounts, got.Volumes); d != "" {
		t.Errorf("Volumes round trip (-want +got):\n%s", d)
	}
	s2 := sandbox("s2", "t1", "two", -1)
	s2.CreatedAt = base.Add(time.Second)
	s2.Volumes = mounts[:1]
	must(t, "CreateSandbox s2", st.CreateSandbox(ctx, s2))
	s3 := sandbox("s3", "t1", "three", -1)
	must(t, "CreateSandbox s3", st.CreateSandbox(ctx, s3))
	if got, _ := st.GetSandbox(ctx, "t1", "s3"); got.Volumes != nil {
		t.Errorf("a sandbox without volumes reads back %#v", got.Volumes)
	}
	users := func(vol string) []string {
		t.Helper()
		u, err := st.VolumeUsers(ctx, vol)
		must(t, "VolumeUsers "+vol, err)
		return u
	}
	if d := cmp.Diff([]string{"s1", "s2"}, users("va")); d != "" {
		t.Errorf("users of va (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"s1"}, users("vb")); d != "" {
		t.Errorf("users of vb (-want +got):\n%s", d)
	}
	if u := users("vc"); len(u) != 0 {
		t.Errorf("users of an unused volume: %v", u)
	}
	// Mounts change with the record, and a destroyed sandbox uses nothing.
	s1.Volumes = mounts[1:]
	must(t, "UpdateSandbox", st.UpdateSandbox(ctx, s1))
	if d := cmp.Diff([]string{"s2"}, users("va")); d != "" {
		t.Errorf("users of va after update (-want +got):\n%s", d)
	}
	s2.State = store.StateDestroyed
	must(t, "UpdateSandbox destroyed", st.UpdateSandbox(ctx, s2))
	if u := users("va"); len(u) != 0 {
		t.Errorf("users of va after its user was destroyed: %v", u)
	}
}

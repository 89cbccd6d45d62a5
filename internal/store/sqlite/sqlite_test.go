package sqlite

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/store/storetest"
)

func openTemp(t *testing.T) *DB {
	t.Helper()
	db, err := Open(t.Context(), filepath.Join(t.TempDir(), "sbx.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestPragmas(t *testing.T) {
	db := openTemp(t)
	defer db.Close()
	ctx := t.Context()
	for _, tc := range []struct {
		pool   string
		pragma string
		want   string
	}{
		{"w", "journal_mode", "wal"},
		{"r", "journal_mode", "wal"},
		{"w", "foreign_keys", "1"},
		{"r", "foreign_keys", "1"},
		{"w", "synchronous", "1"}, // NORMAL
		{"w", "busy_timeout", "10000"},
		{"r", "query_only", "1"},
	} {
		pool := db.w
		if tc.pool == "r" {
			pool = db.r
		}
		var got string
		if err := pool.QueryRowContext(ctx, "PRAGMA "+tc.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tc.pragma, err)
		}
		if got != tc.want {
			t.Errorf("%s pool: PRAGMA %s = %q, want %q", tc.pool, tc.pragma, got, tc.want)
		}
	}
}

// TestReopen checks that everything survives closing and reopening the
// file, and that opening an up-to-date file applies no migration again.
func TestReopen(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sbx.db")
	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	at := time.Date(2030, 1, 2, 3, 4, 5, 987654321, time.UTC)
	code := 3
	tn := store.Tenant{ID: "t1", Name: "one", CreatedAt: at, Limits: store.Limits{MaxSandboxes: 2}}
	key := store.APIKey{ID: "k1", TenantID: "t1", Name: "k", Hash: "abc", Prefix: "sbx_x", CreatedAt: at}
	img := store.Image{TenantID: "t1", Ref: "r:1", Digest: "sha256:1", Size: 5, CreatedAt: at}
	sb := store.Sandbox{
		ID: "s1", TenantID: "t1", Name: "n", State: store.StateStopped, UIDSlot: 4, ExitCode: &code,
		Labels: map[string]string{"a": "b"}, CreatedAt: at, UpdatedAt: at, StartedAt: &at,
	}
	for _, step := range []struct {
		what string
		fn   func() error
	}{
		{"CreateTenant", func() error { return db.CreateTenant(ctx, tn) }},
		{"CreateAPIKey", func() error { return db.CreateAPIKey(ctx, key) }},
		{"PutImage", func() error { return db.PutImage(ctx, img) }},
		{"CreateSandbox", func() error { return db.CreateSandbox(ctx, sb) }},
	} {
		if err := step.fn(); err != nil {
			t.Fatalf("%s: %v", step.what, err)
		}
	}
	ev, err := db.AddEvent(ctx, store.Event{SandboxID: "s1", Type: "state", To: store.StateStopped, Time: at})
	if err != nil {
		t.Fatalf("AddEvent: %v", err)
	}
	events := []store.Event{ev}
	versions := func(db *DB) []int64 {
		t.Helper()
		rows, err := db.r.QueryContext(ctx, `SELECT version_id FROM goose_db_version ORDER BY id`)
		if err != nil {
			t.Fatalf("reading goose_db_version: %v", err)
		}
		defer rows.Close()
		var vs []int64
		for rows.Next() {
			var v int64
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			vs = append(vs, v)
		}
		return vs
	}
	before := versions(db)
	if len(before) < 2 { // goose's own version 0, then ours
		t.Fatalf("goose_db_version = %v: no migration recorded", before)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	for range 2 {
		db, err = Open(ctx, path, nil)
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		if diff := cmp.Diff(before, versions(db)); diff != "" {
			t.Errorf("migrations applied again on reopen (-before +after):\n%s", diff)
		}
		gotT, err := db.GetTenant(ctx, "t1")
		if err != nil || !cmp.Equal(tn, gotT) {
			t.Errorf("tenant after reopen: %+v, %v", gotT, err)
		}
		gotK, err := db.APIKeyByHash(ctx, "abc")
		if err != nil || !cmp.Equal(key, gotK) {
			t.Errorf("key after reopen: %+v, %v", gotK, err)
		}
		gotI, err := db.GetImage(ctx, "t1", "r:1")
		if err != nil || !cmp.Equal(img, gotI) {
			t.Errorf("image after reopen: %+v, %v", gotI, err)
		}
		gotS, err := db.GetSandbox(ctx, "t1", "s1")
		if err != nil {
			t.Fatalf("sandbox after reopen: %v", err)
		}
		if diff := cmp.Diff(sb, gotS); diff != "" {
			t.Errorf("sandbox after reopen (-want +got):\n%s", diff)
		}
		evs, err := db.ListEvents(ctx, "t1", "s1", 0, 0)
		if err != nil || !cmp.Equal(events, evs) {
			t.Errorf("events after reopen: %+v, %v", evs, err)
		}
		// Sequence numbers keep increasing across restarts.
		ev2, err := db.AddEvent(ctx, store.Event{SandboxID: "s1", Type: "state"})
		if err != nil || ev2.Seq <= ev.Seq {
			t.Errorf("AddEvent after reopen: seq %d after %d, %v", ev2.Seq, ev.Seq, err)
		}
		events = append(events, ev2)
		ev = ev2
		if err := db.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

// TestTwoHandles checks that two DBs on one file (as with two processes)
// both write without SQLITE_BUSY errors, thanks to busy_timeout.
func TestTwoHandles(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "sbx.db")
	a, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	done := make(chan error, 2)
	for i, db := range []*DB{a, b} {
		go func() {
			for j := range 100 {
				id := string(rune('a'+i)) + time.Duration(j).String()
				if err := db.CreateSandbox(ctx, store.Sandbox{ID: id, TenantID: "t", Name: id, UIDSlot: -1}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 2 {
		if err := <-done; err != nil {
			t.Errorf("writer: %v", err)
		}
	}
	items, _, err := a.ListSandboxes(ctx, store.SandboxFilter{Limit: 1000})
	if err != nil || len(items) != 200 {
		t.Errorf("ListSandboxes: %d items, %v; want 200", len(items), err)
	}
}

func TestOpenRejectsNonFilePaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if db, err := Open(t.Context(), p, nil); err == nil {
			db.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/store/sqlite"
)

func newService(t *testing.T) (*Service, *sqlite.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sbx.db")
	db, err := sqlite.Open(t.Context(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("opening store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return New(db, slog.New(slog.DiscardHandler)), db, path
}

func TestEnsureAdmin(t *testing.T) {
	ctx := t.Context()
	s, db, _ := newService(t)

	secret, created, err := s.EnsureAdmin(ctx)
	if err != nil || !created || secret == "" {
		t.Fatalf("first EnsureAdmin = %q, %v, %v; want a secret", secret, created, err)
	}
	for range 2 {
		again, created, err := s.EnsureAdmin(ctx)
		if err != nil || created || again != "" {
			t.Fatalf("later EnsureAdmin = %q, %v, %v; want nothing", again, created, err)
		}
	}
	tn, err := s.Authenticate(ctx, secret)
	if err != nil {
		t.Fatalf("Authenticate with the admin key: %v", err)
	}
	if tn.Name != AdminTenant || !tn.Admin || !strings.HasPrefix(tn.ID, "tnt_") {
		t.Errorf("admin tenant = %+v", tn)
	}
	ts, err := s.ListTenants(ctx)
	if err != nil || len(ts) != 1 {
		t.Errorf("ListTenants = %v, %v; want only the admin", ts, err)
	}

	// An admin without any key (a first start that died half-way) gets one.
	keys, err := s.ListKeys(ctx, tn.ID)
	if err != nil || len(keys) != 1 {
		t.Fatalf("ListKeys = %v, %v", keys, err)
	}
	if err := db.DeleteAPIKey(ctx, tn.ID, keys[0].ID); err != nil {
		t.Fatal(err)
	}
	secret2, created, err := s.EnsureAdmin(ctx)
	if err != nil || !created || secret2 == "" || secret2 == secret {
		t.Fatalf("EnsureAdmin without keys = %q, %v, %v; want a new secret", secret2, created, err)
	}
	if got, err := s.Authenticate(ctx, secret2); err != nil || got.ID != tn.ID {
		t.Errorf("Authenticate new admin key = %+v, %v", got, err)
	}
	if ts, _ := s.ListTenants(ctx); len(ts) != 1 {
		t.Errorf("EnsureAdmin made a second tenant: %v", ts)
	}
}

func TestKeyFormat(t *testing.T) {
	ctx := t.Context()
	s, _, _ := newService(t)
	tn, err := s.CreateTenant(ctx, "acme", store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 20 {
		secret, key, err := s.CreateKey(ctx, tn.ID, "ci")
		if err != nil {
			t.Fatalf("CreateKey: %v", err)
		}
		if !wellFormed(secret) || len(secret) != 44 {
			t.Errorf("secret %q is not sbx_ + 40 base62 characters", secret)
		}
		sum := sha256.Sum256([]byte(secret))
		want := store.APIKey{
			ID: key.ID, TenantID: tn.ID, Name: "ci", Hash: hex.EncodeToString(sum[:]),
			Prefix: secret[:12], CreatedAt: key.CreatedAt,
		}
		if diff := cmp.Diff(want, key); diff != "" {
			t.Errorf("key (-want +got):\n%s", diff)
		}
		if !strings.HasPrefix(key.ID, "key_") || len(key.ID) != 20 {
			t.Errorf("key id %q", key.ID)
		}
		if seen[secret] || seen[key.ID] {
			t.Fatalf("repeated secret or id")
		}
		seen[secret], seen[key.ID] = true, true
	}
}

func TestAuthenticateRejects(t *testing.T) {
	ctx := t.Context()
	s, _, _ := newService(t)
	tn, err := s.CreateTenant(ctx, "acme", store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := s.CreateKey(ctx, tn.ID, "k")
	if err != nil {
		t.Fatal(err)
	}
	flipped := []byte(secret)
	if flipped[20] == 'a' {
		flipped[20] = 'b'
	} else {
		flipped[20] = 'a'
	}
	for _, tc := range []struct{ name, secret string }{
		{"empty", ""},
		{"prefix only", "sbx_"},
		{"display prefix", secret[:12]},
		{"one character changed", string(flipped)},
		{"unknown but well formed", "sbx_" + strings.Repeat("A", 40)},
		{"trailing newline", secret + "\n"},
		{"leading space", " " + secret},
		{"bearer", "Bearer " + secret},
		{"wrong prefix", "sbY_" + secret[4:]},
		{"too long", secret + "A"},
		{"non-base62", secret[:43] + "-"},
		{"the hash", hashSecret(secret)},
	} {
		_, err := s.Authenticate(ctx, tc.secret)
		if !errors.Is(err, errdefs.ErrUnauthenticated) {
			t.Errorf("%s: got %v, want ErrUnauthenticated", tc.name, err)
		}
	}
	if got, err := s.Authenticate(ctx, secret); err != nil || got.ID != tn.ID {
		t.Errorf("the right key: %+v, %v", got, err)
	}
}

func TestDeleteKey(t *testing.T) {
	ctx := t.Context()
	s, _, _ := newService(t)
	a, err := s.CreateTenant(ctx, "a", store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateTenant(ctx, "b", store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	secret, key, err := s.CreateKey(ctx, a.ID, "k")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.CreateKey(ctx, a.ID, "other")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, secret); err != nil {
		t.Fatalf("before delete: %v", err)
	}
	// Another tenant cannot delete it, nor tell it exists.
	if err := s.DeleteKey(ctx, b.ID, key.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("DeleteKey by another tenant: %v, want ErrNotFound", err)
	}
	if err := s.DeleteKey(ctx, "", key.ID); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("DeleteKey without a tenant: %v, want ErrInvalidArgument", err)
	}
	if _, err := s.Authenticate(ctx, secret); err != nil {
		t.Fatalf("after failed deletes: %v", err)
	}
	if err := s.DeleteKey(ctx, a.ID, key.ID); err != nil {
		t.Fatalf("DeleteKey: %v", err)
	}
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, errdefs.ErrUnauthenticated) {
		t.Errorf("deleted key: %v, want ErrUnauthenticated", err)
	}
	if _, err := s.Authenticate(ctx, other); err != nil {
		t.Errorf("the tenant's other key stopped working: %v", err)
	}
	if err := s.DeleteKey(ctx, a.ID, key.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("DeleteKey twice: %v, want ErrNotFound", err)
	}
	keys, err := s.ListKeys(ctx, a.ID)
	if err != nil || len(keys) != 1 || keys[0].Name != "other" {
		t.Errorf("ListKeys(a) = %+v, %v", keys, err)
	}
	keys, err = s.ListKeys(ctx, b.ID)
	if err != nil || len(keys) != 0 {
		t.Errorf("ListKeys(b) = %+v, %v", keys, err)
	}
}

// TestSecretNotStored reads the database files' bytes: the hash must be
// there (so the search works) and no part of the secret past its display
// prefix may be.
func TestSecretNotStored(t *testing.T) {
	ctx := t.Context()
	s, db, path := newService(t)
	admin, _, err := s.EnsureAdmin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tn, err := s.CreateTenant(ctx, "acme", store.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{admin}
	for range 5 {
		secret, _, err := s.CreateKey(ctx, tn.ID, "k")
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, secret)
	}
	check := func(when string) {
		t.Helper()
		var all []byte
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			b, err := os.ReadFile(path + suffix)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		for _, secret := range secrets {
			if !bytes.Contains(all, []byte(hashSecret(secret))) {
				t.Fatalf("%s: the key's hash is not in the files; the check cannot work", when)
			}
			if bytes.Contains(all, []byte(secret[prefixLen:])) {
				t.Errorf("%s: the secret is in the database files", when)
			}
		}
	}
	check("open")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	check("closed")
}

func TestCreateTenant(t *testing.T) {
	ctx := t.Context()
	s, _, _ := newService(t)
	for _, tc := range []struct {
		name   string
		limits store.Limits
		kind   error
	}{
		{"acme", store.Limits{MaxSandboxes: 5, MaxCPU: 2}, nil},
		{"a", store.Limits{}, nil},
		{"team-1", store.Limits{}, nil},
		{strings.Repeat("x", 63), store.Limits{}, nil},
		{"acme", store.Limits{}, errdefs.ErrAlreadyExists},
		{"", store.Limits{}, errdefs.ErrInvalidArgument},
		{strings.Repeat("x", 64), store.Limits{}, errdefs.ErrInvalidArgument},
		{"Acme", store.Limits{}, errdefs.ErrInvalidArgument},
		{"a_b", store.Limits{}, errdefs.ErrInvalidArgument},
		{"a.b", store.Limits{}, errdefs.ErrInvalidArgument},
		{"é", store.Limits{}, errdefs.ErrInvalidArgument},
		{"neg", store.Limits{MaxMemoryMB: -1}, errdefs.ErrInvalidArgument},
	} {
		tn, err := s.CreateTenant(ctx, tc.name, tc.limits)
		if tc.kind != nil {
			if !errors.Is(err, tc.kind) {
				t.Errorf("CreateTenant(%q): %v, want %v", tc.name, err, tc.kind)
			}
			continue
		}
		if err != nil {
			t.Errorf("CreateTenant(%q): %v", tc.name, err)
			continue
		}
		got, err := s.GetTenant(ctx, tn.ID)
		if err != nil {
			t.Fatalf("GetTenant: %v", err)
		}
		if diff := cmp.Diff(tn, got); diff != "" {
			t.Errorf("GetTenant (-want +got):\n%s", diff)
		}
		if got.Admin || got.Name != tc.name || got.Limits != tc.limits || !strings.HasPrefix(got.ID, "tnt_") {
			t.Errorf("tenant %+v", got)
		}
	}
	if _, err := s.GetTenant(ctx, "tnt_nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("GetTenant missing: %v", err)
	}
	if _, _, err := s.CreateKey(ctx, "tnt_nope", "k"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("CreateKey for a missing tenant: %v", err)
	}
	if _, err := s.ListKeys(ctx, "tnt_nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("ListKeys for a missing tenant: %v", err)
	}
	ts, err := s.ListTenants(ctx)
	if err != nil || len(ts) != 4 {
		t.Errorf("ListTenants: %d tenants, %v; want 4", len(ts), err)
	}
}

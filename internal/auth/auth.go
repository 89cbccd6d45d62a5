// Package auth manages tenants and their API keys, and maps a request's
// key to its tenant.
//
// A key's secret is "sbx_" followed by 40 base62 characters from
// crypto/rand (about 238 bits). Only its hex SHA-256 is stored, with the
// first 12 characters of the secret for display; the secret itself is shown
// once, when the key is created, and cannot be recovered. Because the
// secret has full entropy a plain, unsalted hash is enough, and looking a
// key up by its hash means no comparison ever runs over the secret itself,
// so timing reveals nothing about valid keys.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

const (
	// SecretPrefix starts every key secret, so that leaked keys are easy to
	// recognize (secret scanners, logs).
	SecretPrefix = "sbx_"
	secretLen    = 40 // random characters after the prefix
	prefixLen    = 12 // characters of the secret kept for display
	// AdminTenant is the name of the tenant EnsureAdmin creates.
	AdminTenant = "admin"
	maxKeyName  = 128
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// Service manages tenants and API keys. It is safe for concurrent use.
type Service struct {
	st  store.Store
	log *slog.Logger
}

// New returns a Service over st.
func New(st store.Store, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{st: st, log: log}
}

// EnsureAdmin creates the admin tenant (Name "admin", Admin true) and its
// first key on the very first start, returning the key's secret with
// created true. Later calls return "", false. It also makes a key when the
// admin tenant exists but has none, as after a first start that died
// between creating the tenant and its key: without that, the admin would be
// locked out for good. It is meant to be called once, at start-up:
// concurrent first calls are safe but may each create a key.
func (s *Service) EnsureAdmin(ctx context.Context) (secret string, created bool, err error) {
	admin, err := s.findAdmin(ctx)
	if errors.Is(err, errdefs.ErrNotFound) {
		admin, err = s.createTenant(ctx, AdminTenant, store.Limits{}, true)
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			// Another caller won the race.
			admin, err = s.findAdmin(ctx)
		}
	}
	if err != nil {
		return "", false, fmt.Errorf("ensuring the admin tenant: %w", err)
	}
	keys, err := s.st.ListAPIKeys(ctx, admin.ID)
	if err != nil {
		return "", false, fmt.Errorf("ensuring the admin key: %w", err)
	}
	if len(keys) > 0 {
		return "", false, nil
	}
	secret, key, err := s.CreateKey(ctx, admin.ID, "admin")
	if err != nil {
		return "", false, fmt.Errorf("ensuring the admin key: %w", err)
	}
	s.log.Info("admin key created", "tenant", admin.ID, "key", key.ID, "prefix", key.Prefix)
	return secret, true, nil
}

// findAdmin returns the oldest tenant with the admin flag.
func (s *Service) findAdmin(ctx context.Context) (store.Tenant, error) {
	ts, err := s.st.ListTenants(ctx)
	if err != nil {
		return store.Tenant{}, err
	}
	for _, t := range ts {
		if t.Admin {
			return t, nil
		}
	}
	return store.Tenant{}, errdefs.ErrNotFound
}

// Authenticate maps a key secret to its tenant. An empty, malformed,
// unknown or deleted key is ErrUnauthenticated; nothing tells these apart.
func (s *Service) Authenticate(ctx context.Context, secret string) (store.Tenant, error) {
	unauth := errdefs.Public(errdefs.ErrUnauthenticated, "invalid or missing API key")
	if !wellFormed(secret) {
		return store.Tenant{}, unauth
	}
	hash := hashSecret(secret)
	key, err := s.st.APIKeyByHash(ctx, hash)
	if errors.Is(err, errdefs.ErrNotFound) {
		return store.Tenant{}, unauth
	}
	if err != nil {
		return store.Tenant{}, fmt.Errorf("authenticating: %w", err)
	}
	// The store matched on the hash already; comparing again in constant
	// time guards against a store that matches loosely (collation, case).
	if subtle.ConstantTimeCompare([]byte(key.Hash), []byte(hash)) != 1 {
		return store.Tenant{}, unauth
	}
	t, err := s.st.GetTenant(ctx, key.TenantID)
	if errors.Is(err, errdefs.ErrNotFound) {
		return store.Tenant{}, unauth
	}
	if err != nil {
		return store.Tenant{}, fmt.Errorf("authenticating: %w", err)
	}
	return t, nil
}

// CreateTenant creates a tenant. name must be 1-63 characters of [a-z0-9-];
// negative limits are invalid; a taken name is ErrAlreadyExists.
func (s *Service) CreateTenant(ctx context.Context, name string, limits store.Limits) (store.Tenant, error) {
	return s.createTenant(ctx, name, limits, false)
}

func (s *Service) createTenant(ctx context.Context, name string, limits store.Limits, admin bool) (store.Tenant, error) {
	if !validName(name) {
		return store.Tenant{}, errdefs.Publicf(errdefs.ErrInvalidArgument,
			"invalid tenant name %q: use 1-63 characters of a-z, 0-9 and '-'", name)
	}
	if limits.MaxSandboxes < 0 || limits.MaxCPU < 0 || limits.MaxMemoryMB < 0 || limits.MaxDiskMB < 0 || limits.MaxPids < 0 {
		return store.Tenant{}, errdefs.Public(errdefs.ErrInvalidArgument, "tenant limits must not be negative")
	}
	t := store.Tenant{
		ID:        "tnt_" + randomID(),
		Name:      name,
		Admin:     admin,
		Limits:    limits,
		CreatedAt: time.Now().UTC(),
	}
	if err := s.st.CreateTenant(ctx, t); err != nil {
		if errors.Is(err, errdefs.ErrAlreadyExists) {
			return store.Tenant{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "tenant %q already exists", name)
		}
		return store.Tenant{}, fmt.Errorf("creating tenant %q: %w", name, err)
	}
	s.log.Info("tenant created", "tenant", t.ID, "name", name, "admin", admin)
	return t, nil
}

// ListTenants returns every tenant, oldest first.
func (s *Service) ListTenants(ctx context.Context) ([]store.Tenant, error) {
	ts, err := s.st.ListTenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing tenants: %w", err)
	}
	return ts, nil
}

// GetTenant returns the tenant with the ID.
func (s *Service) GetTenant(ctx context.Context, id string) (store.Tenant, error) {
	t, err := s.st.GetTenant(ctx, id)
	if err != nil {
		return store.Tenant{}, fmt.Errorf("getting tenant %s: %w", id, err)
	}
	return t, nil
}

// CreateKey makes a new key for the tenant and returns its secret, which is
// not stored and cannot be shown again.
func (s *Service) CreateKey(ctx context.Context, tenantID, name string) (secret string, key store.APIKey, err error) {
	if len(name) > maxKeyName {
		return "", store.APIKey{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "key name longer than %d bytes", maxKeyName)
	}
	if _, err := s.st.GetTenant(ctx, tenantID); err != nil {
		return "", store.APIKey{}, fmt.Errorf("creating key: %w", err)
	}
	secret = SecretPrefix + randomString(secretLen)
	key = store.APIKey{
		ID:        "key_" + randomID(),
		TenantID:  tenantID,
		Name:      name,
		Hash:      hashSecret(secret),
		Prefix:    secret[:prefixLen],
		CreatedAt: time.Now().UTC(),
	}
	if err := s.st.CreateAPIKey(ctx, key); err != nil {
		return "", store.APIKey{}, fmt.Errorf("creating key: %w", err)
	}
	s.log.Info("api key created", "tenant", tenantID, "key", key.ID, "prefix", key.Prefix)
	return secret, key, nil
}

// ListKeys returns the tenant's keys, oldest first. A missing tenant is
// ErrNotFound.
func (s *Service) ListKeys(ctx context.Context, tenantID string) ([]store.APIKey, error) {
	if _, err := s.st.GetTenant(ctx, tenantID); err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	keys, err := s.st.ListAPIKeys(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("listing keys: %w", err)
	}
	return keys, nil
}

// DeleteKey deletes the tenant's key; it stops authenticating at once. A
// key of another tenant is ErrNotFound.
func (s *Service) DeleteKey(ctx context.Context, tenantID, keyID string) error {
	if tenantID == "" {
		// "" means any tenant to the store; a caller must name one.
		return errdefs.Public(errdefs.ErrInvalidArgument, "tenant id is empty")
	}
	if err := s.st.DeleteAPIKey(ctx, tenantID, keyID); err != nil {
		return fmt.Errorf("deleting key %s: %w", keyID, err)
	}
	s.log.Info("api key deleted", "tenant", tenantID, "key", keyID)
	return nil
}

// hashSecret is what the store keeps of a secret.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// wellFormed reports whether secret has the shape of a key, so that junk is
// rejected without a store lookup.
func wellFormed(secret string) bool {
	rest, ok := strings.CutPrefix(secret, SecretPrefix)
	if !ok || len(rest) != secretLen {
		return false
	}
	for i := range len(rest) {
		if strings.IndexByte(base62, rest[i]) < 0 {
			return false
		}
	}
	return true
}

// validName reports whether name is 1-63 characters of [a-z0-9-].
func validName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// randomID returns 16 random characters of [0-9a-z] (about 82 bits):
// short, URL-safe, and unguessable.
func randomID() string {
	return randomFrom("0123456789abcdefghijklmnopqrstuvwxyz", 16)
}

// randomString returns n uniformly random base62 characters from
// crypto/rand.
func randomString(n int) string {
	return randomFrom(base62, n)
}

func randomFrom(alphabet string, n int) string {
	b := make([]byte, n)
	max := big.NewInt(int64(len(alphabet)))
	for i := range b {
		v, err := rand.Int(rand.Reader, max)
		if err != nil {
			// crypto/rand does not fail on Linux (getrandom); if it ever
			// did, continuing with weak keys would be worse than crashing.
			panic(fmt.Sprintf("crypto/rand: %v", err))
		}
		b[i] = alphabet[v.Int64()]
	}
	return string(b)
}

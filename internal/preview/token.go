package preview

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// keySize is the length of the daemon's preview secret.
const keySize = 32

// LoadKey reads the daemon's preview secret from path, creating it (32
// random bytes, mode 0600) on first use. Every token is derived from it,
// so tokens survive a daemon restart and all die with the file.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != keySize {
			return nil, fmt.Errorf("preview key %s: %d bytes, want %d", path, len(b), keySize)
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading preview key: %w", err)
	}
	b = make([]byte, keySize)
	rand.Read(b)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating preview key: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("writing preview key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("writing preview key: %w", err)
	}
	return b, f.Close()
}

// tokenEncoding is lowercase base32 without padding: tokens are safe in a
// DNS label, a URL, a header and a cookie without escaping.
var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Signer derives and checks preview tokens with the daemon's secret.
//
// A sandbox's token is HMAC(key, "sandbox", id): fixed for the sandbox's
// life, never stored, valid for each of its ports. A signed token names
// one port and an expiry:
//
//	<token id>-<expiry, unix seconds in base 36>-<MAC>
//
// where MAC = HMAC(key, "signed", sandbox id, port, expiry, token id)
// truncated to 128 bits. The sandbox and port are not in the token: they
// come from the URL it is presented on, so a token moved to another
// sandbox or port fails the MAC. Revocation is by token id, in the store.
type Signer struct {
	key []byte
}

// NewSigner returns a signer with key (see LoadKey).
func NewSigner(key []byte) *Signer { return &Signer{key: key} }

func (s *Signer) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, s.key)
	for _, p := range parts {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(p)))
		m.Write(n[:]) // length-prefixed: no two part lists hash alike
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// SandboxToken is the preview token of a sandbox (32 characters).
func (s *Signer) SandboxToken(sandboxID string) string {
	return tokenEncoding.EncodeToString(s.mac("sandbox", sandboxID)[:20])
}

// Signed is a verified signed token.
type Signed struct {
	TokenID   string
	ExpiresAt time.Time
}

// Sign mints a signed token for port of a sandbox until expires.
func (s *Signer) Sign(sandboxID string, port int, expires time.Time) (string, Signed) {
	id := make([]byte, 10)
	rand.Read(id)
	tid := tokenEncoding.EncodeToString(id)
	exp := strconv.FormatInt(expires.Unix(), 36)
	return tid + "-" + exp + "-" + s.signedMAC(sandboxID, port, exp, tid), Signed{TokenID: tid, ExpiresAt: time.Unix(expires.Unix(), 0).UTC()}
}

func (s *Signer) signedMAC(sandboxID string, port int, exp, tid string) string {
	return tokenEncoding.EncodeToString(s.mac("signed", sandboxID, strconv.Itoa(port), exp, tid)[:16])
}

// Errors of token checks. Both are permission denied: the caller has a
// token, but not one for this.
var (
	errBadToken = errdefs.Public(errdefs.ErrPermissionDenied, "the preview token is not valid for this sandbox and port")
	errExpired  = errdefs.Public(errdefs.ErrPermissionDenied, "the signed preview URL has expired")
)

// IsSigned reports whether token has the shape of a signed token (a
// sandbox token has no '-').
func IsSigned(token string) bool { return strings.Contains(token, "-") }

// ParseSigned checks token's MAC for port of the sandbox; it does not look
// at the expiry (Check does), so that an expired token can still be
// revoked.
func (s *Signer) ParseSigned(sandboxID string, port int, token string) (Signed, error) {
	tid, rest, ok1 := strings.Cut(token, "-")
	exp, mac, ok2 := strings.Cut(rest, "-")
	if !ok1 || !ok2 || len(tid) != 16 || exp == "" || len(exp) > 13 || len(mac) != 26 {
		return Signed{}, errBadToken
	}
	want := s.signedMAC(sandboxID, port, exp, tid)
	if subtle.ConstantTimeCompare([]byte(mac), []byte(want)) != 1 {
		return Signed{}, errBadToken
	}
	unix, err := strconv.ParseInt(exp, 36, 64)
	if err != nil {
		return Signed{}, errBadToken // unreachable: the MAC covered a string we made
	}
	return Signed{TokenID: tid, ExpiresAt: time.Unix(unix, 0).UTC()}, nil
}

// Check verifies any preview token for port of a sandbox at now: the
// sandbox's own token (ok for every port, never expires: the zero
// Signed) or a signed one that has not expired. Revocation is the
// caller's to check, by the returned TokenID.
func (s *Signer) Check(sandboxID string, port int, token string, now time.Time) (Signed, error) {
	if !IsSigned(token) {
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.SandboxToken(sandboxID))) != 1 {
			return Signed{}, errBadToken
		}
		return Signed{}, nil
	}
	sg, err := s.ParseSigned(sandboxID, port, token)
	if err != nil {
		return Signed{}, err
	}
	if !now.Before(sg.ExpiresAt) {
		return Signed{}, errExpired
	}
	return sg, nil
}

package preview

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

func testKey(b byte) []byte {
	k := make([]byte, keySize)
	for i := range k {
		k[i] = b
	}
	return k
}

func TestSandboxToken(t *testing.T) {
	s := NewSigner(testKey(1))
	tok := s.SandboxToken("abc")
	if len(tok) != 32 || strings.Trim(tok, "abcdefghijklmnopqrstuvwxyz234567") != "" || IsSigned(tok) {
		t.Fatalf("token %q: want 32 lowercase base32 characters", tok)
	}
	if tok != s.SandboxToken("abc") {
		t.Fatal("the token is not stable")
	}
	if tok == s.SandboxToken("abd") || tok == NewSigner(testKey(2)).SandboxToken("abc") {
		t.Fatal("the token does not depend on the sandbox and the key")
	}
	now := time.Now()
	for _, port := range []int{1, 3000, 65535} {
		if _, err := s.Check("abc", port, tok, now); err != nil {
			t.Errorf("port %d: %v", port, err)
		}
	}
	for _, bad := range []string{"", tok[:31], tok + "a", strings.ToUpper(tok), s.SandboxToken("abd")} {
		if _, err := s.Check("abc", 80, bad, now); !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("Check(%q) = %v, want permission denied", bad, err)
		}
	}
}

func TestSignedToken(t *testing.T) {
	s := NewSigner(testKey(1))
	now := time.Unix(1_800_000_000, 0)
	tok, sg := s.Sign("abc", 3000, now.Add(time.Minute))
	if !IsSigned(tok) || len(sg.TokenID) != 16 || !sg.ExpiresAt.Equal(now.Add(time.Minute)) {
		t.Fatalf("Sign = %q, %+v", tok, sg)
	}
	if got, err := s.Check("abc", 3000, tok, now); err != nil || got != sg {
		t.Fatalf("Check = %+v, %v; want %+v", got, err, sg)
	}
	tok2, sg2 := s.Sign("abc", 3000, now.Add(time.Minute))
	if tok2 == tok || sg2.TokenID == sg.TokenID {
		t.Fatal("two signed tokens are the same")
	}

	denied := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errdefs.ErrPermissionDenied) {
			t.Errorf("%s: %v, want permission denied", what, err)
		}
	}
	_, err := s.Check("abc", 3000, tok, now.Add(time.Minute))
	denied("at the expiry", err)
	if errdefs.Message(err) != "the signed preview URL has expired" {
		t.Errorf("expiry message %q", errdefs.Message(err))
	}
	_, err = s.Check("abc", 3001, tok, now)
	denied("another port", err)
	_, err = s.Check("abd", 3000, tok, now)
	denied("another sandbox", err)
	_, err = NewSigner(testKey(2)).Check("abc", 3000, tok, now)
	denied("another key", err)

	// Tampering with any part: the token id, the expiry (a later one),
	// the MAC, or the shape.
	tid, rest, _ := strings.Cut(tok, "-")
	exp, mac, _ := strings.Cut(rest, "-")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for name, bad := range map[string]string{
		"token id":   flip(tid, 0) + "-" + exp + "-" + mac,
		"expiry":     tid + "-" + "zzzzzz" + "-" + mac,
		"mac":        tid + "-" + exp + "-" + flip(mac, 25),
		"short mac":  tid + "-" + exp + "-" + mac[:25],
		"no mac":     tid + "-" + exp,
		"extra part": tok + "-x",
		"empty":      "--",
	} {
		_, err := s.Check("abc", 3000, bad, now)
		denied(name, err)
	}
	// ParseSigned ignores the expiry, so an expired token can be revoked.
	if got, err := s.ParseSigned("abc", 3000, tok); err != nil || got.TokenID != sg.TokenID {
		t.Errorf("ParseSigned = %+v, %v", got, err)
	}
}

func TestLoadKey(t *testing.T) {
	path := t.TempDir() + "/preview.key"
	k1, err := LoadKey(path)
	if err != nil || len(k1) != keySize {
		t.Fatalf("LoadKey (new) = %d bytes, %v", len(k1), err)
	}
	k2, err := LoadKey(path)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("LoadKey (again) differs: %v", err)
	}
}

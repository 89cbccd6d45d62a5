// Package testutil holds helpers shared by sbx's tests.
package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips a test that needs root, or fails it under CI=true,
// where every test must run.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// Unavailable skips with a reason, or fails under CI=true.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("required in CI: %s", reason)
	}
	t.Skip(reason)
}

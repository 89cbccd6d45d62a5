package sbx_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The SDK is the public surface: it must build without any of sbx's
// internal packages, or users could not vendor it alone.
func TestNoInternalImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var deps int
	for _, p := range strings.Fields(string(out)) {
		deps++
		if strings.HasPrefix(p, "github.com/sbx-sh/sbx/internal") || p == "github.com/sbx-sh/sbx/api" {
			t.Errorf("the SDK depends on %s", p)
		}
	}
	if deps < 10 {
		t.Fatalf("go list -deps listed only %d packages: %s", deps, out)
	}
}

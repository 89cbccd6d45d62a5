package sbx

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoInternalImports keeps the public SDK public: it must import
// nothing from the module's internal packages.
func TestNoInternalImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.Contains(dep, "github.com/sbx-sh/sbx/internal") {
			t.Errorf("sdk/go depends on %s", dep)
		}
	}
}

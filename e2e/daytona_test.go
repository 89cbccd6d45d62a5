package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/testutil"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// daytonaSDK is the Daytona SDK release the compatibility layer is held to.
const daytonaSDK = "@daytonaio/sdk@0.218.0"

// daytonaSDKDir is where the SDK is installed, once per machine: reruns
// skip npm. SBX_NPM_CACHE overrides it.
func daytonaSDKDir() string {
	if d := os.Getenv("SBX_NPM_CACHE"); d != "" {
		return filepath.Join(d, "daytona-0.218.0")
	}
	return "/var/lib/sbx/cache/npm/daytona-0.218.0"
}

// installDaytonaSDK installs the SDK from npm unless already there and
// returns its node_modules.
func installDaytonaSDK(t *testing.T) string {
	t.Helper()
	dir := daytonaSDKDir()
	modules := filepath.Join(dir, "node_modules")
	if b, err := os.ReadFile(filepath.Join(modules, "@daytonaio", "sdk", "package.json")); err == nil {
		var p struct{ Version string }
		if json.Unmarshal(b, &p) == nil && "@daytonaio/sdk@"+p.Version == daytonaSDK {
			return modules
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A package.json of its own, so that npm does not walk up.
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"sbx-daytona-sdk-test","private":true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund", "--loglevel=error", daytonaSDK)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install %s: %v\n%s", daytonaSDK, err, out)
	}
	t.Logf("installed %s in %v", daytonaSDK, time.Since(start).Round(100*time.Millisecond))
	return modules
}

// TestDaytonaSDK runs the official Daytona TypeScript SDK against the
// daemon's Daytona API: flow 1 (create, execute, code run with a chart,
// files, delete), flow 2 (stop, start, labels, intervals, resize) and flow
// 4 (sessions with async commands and followed logs, PTYs), asserted in
// testdata/daytona/flows.cjs.
func TestDaytonaSDK(t *testing.T) {
	setup(t)
	needCodeImage(t)
	runDaytonaScript(t, "flows.cjs", codeImage, 5*time.Minute)
	leakCheck(t)
}

// runDaytonaScript runs testdata/daytona/<name> with node and the real
// Daytona SDK against the daemon's Daytona API (SBX_API_URL, SBX_API_KEY
// of the admin, SBX_OTHER_KEY of a second tenant, SBX_IMAGE), logs its
// output, and fails the test if it fails.
func runDaytonaScript(t *testing.T, name, image string, timeout time.Duration) {
	t.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			testutil.Unavailable(t, bin+" is not installed")
		}
	}
	modules := installDaytonaSDK(t)
	ctx := t.Context()
	tn, err := admin.CreateTenant(ctx, sbx.CreateTenantRequest{Name: "daytona-other-" + strings.TrimSuffix(name, ".cjs")})
	if err != nil {
		t.Fatal(err)
	}
	other, err := admin.CreateKey(ctx, tn.ID, "daytona-e2e")
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "daytona", name))
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, "node", script)
	// A directory of its own: the SDK reads .env files of the working
	// directory.
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(),
		"NODE_PATH="+modules,
		"SBX_API_URL="+daemon.URL+"/api",
		"SBX_API_KEY="+daemon.AdminKey,
		"SBX_OTHER_KEY="+other.Key,
		"SBX_IMAGE="+image,
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("node %s (%v):\n%s", name, time.Since(start).Round(100*time.Millisecond), out.String())
	if err != nil {
		t.Fatalf("the Daytona SDK script %s failed: %v\n%s", name, err, lastLines(out.String(), 5))
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

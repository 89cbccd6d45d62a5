// Package e2e tests sbx end to end: the real `sbx serve` binary on a
// loopback port, real runtimes, real kernel isolation, driven through the
// public Go SDK. Needs root; under CI=true every test must run.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/testdaemon"
	"github.com/sbx-sh/sbx/internal/testutil"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Shared by the tests of this package: one daemon, one busybox image.
var (
	daemon   *testdaemon.Daemon
	admin    *sbx.Client
	workDir  string
	sbxBin   string
	setupErr error
)

const testImage = "sbx/busybox:latest"

func TestMain(m *testing.M) {
	code := run(m)
	os.Exit(code)
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		setupErr = fmt.Errorf("needs root")
		return m.Run()
	}
	ctx := context.Background()
	var err error
	// Short: agent socket paths live under it.
	workDir, err = os.MkdirTemp("/tmp", "sbxe")
	if err != nil {
		setupErr = err
		return m.Run()
	}
	defer os.RemoveAll(workDir)
	// runc sets up a user-namespaced sandbox's mounts as its unprivileged
	// host uid, which must traverse to the state directory.
	os.Chmod(workDir, 0o711)
	// SBX_BIN names a prebuilt sbx (with sbx-agent embedded or beside it);
	// otherwise the test builds both.
	if sbxBin = os.Getenv("SBX_BIN"); sbxBin == "" {
		var root string
		if root, err = testdaemon.ModuleRoot(); err == nil {
			sbxBin, err = testdaemon.Build(ctx, root, filepath.Join(workDir, "bin"))
		}
	}
	if err == nil {
		// Lifecycle timers checked often, so auto-stop tests run in seconds.
		daemon, err = testdaemon.Start(ctx, sbxBin, filepath.Join(workDir, "d"), "--lifecycle-interval", "300ms")
	}
	if err == nil {
		admin = sbx.New(daemon.URL, daemon.AdminKey)
		err = daemon.ImportBusybox(ctx, testImage, workDir)
	}
	if err != nil {
		setupErr = err
		return m.Run()
	}
	code := m.Run()
	if err := daemon.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping daemon:", err)
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- daemon log (last 60 lines)\n%s\n", tail(daemon.Log(), 60))
	}
	return code
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// setup skips or fails a test when the shared daemon is unavailable.
func setup(t *testing.T) {
	t.Helper()
	if setupErr != nil {
		if setupErr.Error() == "needs root" {
			testutil.RequireRoot(t)
		}
		t.Fatalf("e2e setup: %v", setupErr)
	}
}

// leakCheck fails the test if anything of a sandbox that is gone remains.
func leakCheck(t *testing.T) {
	t.Helper()
	var last []string
	for i := 0; i < 50; i++ {
		leaks := daemon.Leaks()
		if len(leaks) == 0 {
			return
		}
		last = leaks
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("leaked: %v", last)
}

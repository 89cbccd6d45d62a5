package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sbx-sh/sbx/internal/testdaemon"
	"github.com/sbx-sh/sbx/internal/testutil"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"sbx": func() { os.Exit(Main(os.Args[1:])) },
	})
}

// TestScripts runs testdata/script/*.txtar against a real daemon (SBX_BIN,
// or one built for the test) with the busybox image imported.
func TestScripts(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := t.Context()
	dir, err := os.MkdirTemp("/tmp", "sbxc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	bin := os.Getenv("SBX_BIN")
	if bin == "" {
		root, err := testdaemon.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		if bin, err = testdaemon.Build(ctx, root, filepath.Join(dir, "bin")); err != nil {
			t.Fatal(err)
		}
	}
	d, err := testdaemon.Start(ctx, bin, filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.Log())
		}
		d.Stop()
	}()
	if err := d.ImportBusybox(ctx, "sbx/busybox:latest", dir); err != nil {
		t.Fatal(err)
	}
	// A group, so the parallel scripts finish before the daemon stops.
	t.Run("group", func(t *testing.T) {
		testscript.Run(t, testscript.Params{
			Dir: "testdata/script",
			Setup: func(env *testscript.Env) error {
				env.Setenv("SBX_URL", d.URL)
				env.Setenv("SBX_API_KEY", d.AdminKey)
				return nil
			},
		})
	})
	if leaks := d.Leaks(); len(leaks) > 0 {
		t.Errorf("left behind: %v", leaks)
	}
}

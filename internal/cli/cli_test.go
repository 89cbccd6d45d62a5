package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/testdaemon"
	"github.com/sbx-sh/sbx/internal/testutil"
	sbx "github.com/sbx-sh/sbx/sdk/go"
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
	if err := importBusybox(ctx, d, filepath.Join(dir, "img")); err != nil {
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

func importBusybox(ctx context.Context, d *testdaemon.Daemon, dir string) error {
	rootfs := filepath.Join(dir, "rootfs")
	if err := image.BuildBusyboxRootfs(ctx, rootfs); err != nil {
		return err
	}
	tarPath := filepath.Join(dir, "image.tar")
	if err := image.WriteRootfsArchive(rootfs, "sbx/busybox:latest", tarPath, image.BusyboxConfig); err != nil {
		return err
	}
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = sbx.New(d.URL, d.AdminKey).ImportImage(ctx, f, "sbx/busybox:latest")
	return err
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/testdaemon"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// benchDaemon is the daemon under test, driven through the public SDK.
type benchDaemon struct {
	d *testdaemon.Daemon
	c *sbx.Client
}

func startDaemon(ctx context.Context, bin, work string) (*benchDaemon, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make build` first)", bin, err)
	}
	d, err := testdaemon.Start(ctx, bin, filepath.Join(work, "d"), "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	return &benchDaemon{d: d, c: sbx.New(d.URL, d.AdminKey)}, nil
}

func (b *benchDaemon) stop() { b.d.Stop() }

func (b *benchDaemon) importRootfs(ctx context.Context, rootfs, ref string) error {
	return b.d.ImportRootfs(ctx, rootfs, ref, filepath.Dir(rootfs), image.BusyboxConfig)
}

func (b *benchDaemon) create(ctx context.Context, ref, runtime string) (string, error) {
	sb, err := b.c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: ref, Runtime: runtime})
	return sb.ID, err
}

func (b *benchDaemon) exec(ctx context.Context, id string) error {
	res, err := b.c.Exec(ctx, id, sbx.ExecRequest{Argv: []string{"true"}})
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("exit %d", res.ExitCode)
	}
	return err
}

func (b *benchDaemon) delete(ctx context.Context, id string) error { return b.c.DeleteSandbox(ctx, id) }

// cycle is one measured run: create → exec `echo ok` → delete.
func (b *benchDaemon) cycle(ctx context.Context, ref, runtime string) error {
	id, err := b.create(ctx, ref, runtime)
	if err != nil {
		return err
	}
	res, err := b.c.Exec(ctx, id, sbx.ExecRequest{Argv: []string{"echo", "ok"}})
	if err == nil && res.Stdout != "ok\n" {
		err = fmt.Errorf("echo printed %q", res.Stdout)
	}
	if derr := b.delete(ctx, id); err == nil {
		err = derr
	}
	return err
}

func numCPU() int { return runtime.NumCPU() }

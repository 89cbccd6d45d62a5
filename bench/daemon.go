package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

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

// execWS runs `true` through the WebSocket exec (a new connection each).
func (b *benchDaemon) execWS(ctx context.Context, id string) error {
	x, err := b.c.ExecInteractive(ctx, id, sbx.ExecRequest{Argv: []string{"true"}})
	if err != nil {
		return err
	}
	defer x.Close()
	st, err := x.Wait(nil, nil)
	if err == nil && st.Code != 0 {
		err = fmt.Errorf("exit %d", st.Code)
	}
	return err
}

// upload writes size bytes to /tmp/bench.bin.
func (b *benchDaemon) upload(ctx context.Context, id string, size int) error {
	_, err := b.c.Upload(ctx, id, "/tmp/bench.bin", bytes.NewReader(make([]byte, size)), sbx.UploadOptions{})
	return err
}

// download reads /tmp/bench.bin.
func (b *benchDaemon) download(ctx context.Context, id string) error {
	rc, _, err := b.c.Download(ctx, id, "/tmp/bench.bin")
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// throughput uploads and downloads size bytes once in a fresh sandbox and
// returns MiB/s both ways.
func (b *benchDaemon) throughput(ctx context.Context, runtime string, size int64) ([2]float64, error) {
	var out [2]float64
	sb, err := b.c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: "bench/busybox:latest", Runtime: runtime,
		Resources: &sbx.Resources{DiskMB: size>>20 + 256}})
	if err != nil {
		return out, err
	}
	defer b.delete(ctx, sb.ID)
	start := time.Now()
	if _, err := b.c.Upload(ctx, sb.ID, "/root/big", io.LimitReader(zeroReader{}, size), sbx.UploadOptions{}); err != nil {
		return out, err
	}
	out[0] = float64(size>>20) / time.Since(start).Seconds()
	start = time.Now()
	rc, _, err := b.c.Download(ctx, sb.ID, "/root/big")
	if err != nil {
		return out, err
	}
	n, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || n != size {
		return out, fmt.Errorf("download: %d bytes, %v", n, err)
	}
	out[1] = float64(size>>20) / time.Since(start).Seconds()
	return out, nil
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
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

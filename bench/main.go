// Command bench measures sbx against its floor in the same run: create →
// first exec (`echo ok`) → delete through the API, p50/p95/p99 over N
// sequential runs and N runs P at a time, next to a raw `crun run` and
// `runc run` of the same rootfs with the same isolation settings.
//
// It starts its own daemon (the sbx binary given by -sbx, default
// bin/sbx) on a loopback port with a temporary state directory, imports a
// busybox image into it, and prints tables. Run as root:
//
//	make bench        # = go run ./bench -n 100 -parallel 10
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/sbx-sh/sbx/internal/cgroup"
	"github.com/sbx-sh/sbx/internal/image"
)

func main() {
	n := flag.Int("n", 100, "runs per measurement")
	parallel := flag.Int("parallel", 10, "concurrency of the parallel measurement")
	sbxBin := flag.String("sbx", "bin/sbx", "sbx binary to benchmark")
	code := flag.Bool("code", true, "also measure code runs (builds the Debian code image once, cached in /var/lib/sbx/cache)")
	runtimeClass := flag.String("runtime", "", "runtime class for sbx sandboxes (default: the daemon's)")
	archiveMiB := flag.Int("archive-mib", 500, "size of the writable layer in the archive/restore measurement (0 skips it)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: run as root")
		os.Exit(2)
	}
	ctx := context.Background()
	work, err := os.MkdirTemp("", "sbxb")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o711)

	rootfs := filepath.Join(work, "rootfs")
	if err := image.BuildBusyboxRootfs(ctx, rootfs); err != nil {
		fatal(err)
	}
	d, err := startDaemon(ctx, *sbxBin, work)
	if err != nil {
		fatal(err)
	}
	defer d.stop()
	if err := d.importRootfs(ctx, rootfs, "bench/busybox:latest"); err != nil {
		fatal(err)
	}
	host, _ := os.Hostname()
	fmt.Printf("sbx benchmark: create → exec `echo ok` → delete · %d runs · host %s · %d CPUs · %s\n",
		*n, host, numCPU(), time.Now().UTC().Format(time.RFC3339))
	for _, c := range []string{"crun", "runc"} {
		if p, err := exec.LookPath(c); err == nil {
			v, _ := exec.Command(p, "--version").Output()
			fmt.Printf("  %s: %s\n", c, firstLine(string(v)))
		}
	}

	// Warm the caches once so the first sample is not an outlier of disk reads.
	d.cycle(ctx, "bench/busybox:latest", *runtimeClass)

	for _, par := range []int{1, *parallel} {
		crun := rawRun(ctx, "crun", rootfs, work, *n, par)
		runc := rawRun(ctx, "runc", rootfs, work, *n, par)
		sbx := &sample{name: "sbx create→exec→delete"}
		measure(sbx, *n, par, func(int) error { return d.cycle(ctx, "bench/busybox:latest", *runtimeClass) })
		title := fmt.Sprintf("sequential (%d runs, one at a time)", *n)
		if par > 1 {
			title = fmt.Sprintf("parallel (%d runs, %d at a time)", *n, par)
		}
		table(os.Stdout, title, crun, []*sample{sbx, crun, runc})
	}
	networkRows(ctx, os.Stdout, d, "bench/busybox:latest", *runtimeClass, *n)
	previewRows(ctx, os.Stdout, d, "bench/busybox:latest", *runtimeClass, *n)
	exec1 := &sample{name: "sbx exec `true` round trip"}
	execWS := &sample{name: "sbx exec `true` over WebSocket"}
	up := &sample{name: "sbx upload 1 MiB file"}
	down := &sample{name: "sbx download 1 MiB file"}
	if id, err := d.create(ctx, "bench/busybox:latest", *runtimeClass); err == nil {
		measure(exec1, *n, 1, func(int) error { return d.exec(ctx, id) })
		measure(execWS, *n, 1, func(int) error { return d.execWS(ctx, id) })
		measure(up, *n, 1, func(int) error { return d.upload(ctx, id, 1<<20) })
		measure(down, *n, 1, func(int) error { return d.download(ctx, id) })
		d.delete(ctx, id)
	} else {
		exec1.note = err.Error()
	}
	crunExec := rawExec(ctx, "crun", rootfs, work, *n)
	runcExec := rawExec(ctx, "runc", rootfs, work, *n)
	table(os.Stdout, "exec into a running sandbox", crunExec, []*sample{exec1, execWS, crunExec, runcExec})
	table(os.Stdout, "files (1 MiB, one at a time)", nil, []*sample{up, down})
	if mibps, err := d.throughput(ctx, *runtimeClass, 256<<20); err == nil {
		fmt.Printf("  256 MiB upload %.0f MiB/s, download %.0f MiB/s\n\n", mibps[0], mibps[1])
	} else {
		fmt.Printf("  throughput: %v\n\n", err)
	}
	if *archiveMiB > 0 {
		archiveBench(ctx, os.Stdout, d, work, *runtimeClass, *archiveMiB, 5)
	}
	if *code {
		codeBench(ctx, d, work, *n)
	}
	if cg, err := cgroup.Detect("/sys/fs/cgroup"); err == nil {
		cg.Remove("/sbx-bench")
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

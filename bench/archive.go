package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// archiveBench measures archive and restore of a sandbox whose writable
// layer holds mib MiB of random (incompressible) data, rounds times, next
// to the host's floor in the same run: `cp` of a file of the same size on
// the same filesystem (read + write + sync of the same bytes, no
// compression), its source evicted from the page cache first as the
// sandbox's layer is (the loop device reads and writes it with direct I/O).
func archiveBench(ctx context.Context, w io.Writer, d *benchDaemon, work, runtime string, mib, rounds int) {
	sb, err := d.c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: "bench/busybox:latest", Runtime: runtime,
		Resources: &sbx.Resources{DiskMB: int64(mib) + 512}})
	if err != nil {
		fmt.Fprintf(w, "\narchive: %v\n", err)
		return
	}
	defer d.delete(ctx, sb.ID)
	res, err := d.c.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"sh", "-c",
		fmt.Sprintf("head -c %d /dev/urandom > /root/data && sync", mib<<20)}})
	if err != nil || res.ExitCode != 0 {
		fmt.Fprintf(w, "\narchive: writing the layer: %v %+v\n", err, res)
		return
	}
	arch := &sample{name: fmt.Sprintf("archive (%d MiB layer)", mib)}
	restore := &sample{name: "restore + start"}
	stored := int64(0)
	for range rounds {
		if _, err := d.c.StopSandbox(ctx, sb.ID, 0); err != nil {
			arch.errors++
			continue
		}
		start := time.Now()
		got, err := d.c.ArchiveSandbox(ctx, sb.ID)
		if err != nil {
			arch.errors++
			arch.note = err.Error()
			d.c.StartSandbox(ctx, sb.ID)
			continue
		}
		arch.times = append(arch.times, time.Since(start))
		if a := got.Lifecycle.Archive; a != nil {
			stored = a.StoredBytes
		}
		start = time.Now()
		if _, err := d.c.StartSandbox(ctx, sb.ID); err != nil {
			restore.errors++
			restore.note = err.Error()
			continue
		}
		restore.times = append(restore.times, time.Since(start))
	}
	// The floor: copy a file of the same size on the same filesystem.
	cp := &sample{name: fmt.Sprintf("host cp of a %d MiB file", mib)}
	src := filepath.Join(work, "archive-src")
	if f, err := os.Create(src); err == nil {
		io.CopyN(f, randReader{}, int64(mib)<<20)
		f.Sync()
		f.Close()
		for range rounds {
			dst := filepath.Join(work, "archive-dst")
			if f, err := os.Open(src); err == nil {
				unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				f.Close()
			}
			start := time.Now()
			err := exec.CommandContext(ctx, "sh", "-c", "cp "+src+" "+dst+" && sync").Run()
			if err != nil {
				cp.errors++
				continue
			}
			cp.times = append(cp.times, time.Since(start))
			os.Remove(dst)
		}
		os.Remove(src)
	}
	table(w, fmt.Sprintf("archive and restore (%d rounds, random data: no compression gain)", rounds), cp, []*sample{arch, restore, cp})
	rate := func(s *sample) string {
		if len(s.times) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f MiB/s", float64(mib)/s.pct(50).Seconds())
	}
	fmt.Fprintf(w, "  p50 throughput: archive %s, restore+start %s, host cp %s; stored %d MiB\n\n",
		rate(arch), rate(restore), rate(cp), stored>>20)
}

// randReader is a cheap non-repeating byte source (xorshift), so the data
// does not compress.
type randReader struct{}

var rs uint64 = 88172645463325252

func (randReader) Read(p []byte) (int, error) {
	for i := range p {
		rs ^= rs << 13
		rs ^= rs >> 7
		rs ^= rs << 17
		p[i] = byte(rs)
	}
	return len(p), nil
}

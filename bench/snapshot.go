package main

import (
	"context"
	"fmt"
	"io"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// snapshotBench measures state snapshots of a started sandbox whose
// writable layer holds mib MiB of fresh (incompressible) data: the time to
// take one (fstrim, freeze, syncfs, sparse copy with checksum, thaw), the
// freeze pause within it, and a restore (verified copy, stop, rename,
// start), over n runs each, with the copy's throughput. Snapshots are
// deleted after each run so the per-sandbox limit is never reached.
func snapshotBench(ctx context.Context, w io.Writer, d *benchDaemon, ref, runtime string, n, mib int) {
	if n <= 0 {
		return
	}
	fail := func(err error) { fmt.Fprintf(w, "\nstate snapshots: %v\n", err) }
	sb, err := d.c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: ref, Runtime: runtime,
		Resources: &sbx.Resources{DiskMB: int64(mib)*2 + 256}})
	if err != nil {
		fail(err)
		return
	}
	defer d.delete(ctx, sb.ID)
	res, err := d.c.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"sh", "-c",
		fmt.Sprintf("dd if=/dev/urandom of=/root/data bs=1M count=%d 2>/dev/null && sync", mib)}})
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("writing the data: exit %d: %s", res.ExitCode, res.Stderr)
	}
	if err != nil {
		fail(err)
		return
	}
	take := &sample{name: fmt.Sprintf("snapshot take (%d MiB written, started)", mib)}
	pause := &sample{name: "  of which the sandbox was frozen"}
	restore := &sample{name: "snapshot restore (verify, stop, replace, start)"}
	var bytes int64
	var copyTime time.Duration
	for i := 0; i < n; i++ {
		t0 := time.Now()
		sn, err := d.c.CreateSnapshot(ctx, sb.ID, "")
		if err != nil {
			take.errors++
			take.note = err.Error()
			continue
		}
		take.times = append(take.times, time.Since(t0))
		pause.times = append(pause.times, time.Duration(sn.PauseMS*float64(time.Millisecond)))
		bytes += sn.Size
		copyTime += time.Duration(sn.TookMS * float64(time.Millisecond))
		t0 = time.Now()
		if _, err := d.c.RestoreSnapshot(ctx, sb.ID, sn.ID); err != nil {
			restore.errors++
			restore.note = err.Error()
		} else {
			restore.times = append(restore.times, time.Since(t0))
		}
		if err := d.c.DeleteSnapshot(ctx, sb.ID, sn.ID); err != nil {
			fail(err)
			return
		}
	}
	table(w, fmt.Sprintf("state snapshots (%d runs; host filesystem without reflinks: sparse block copy)", n), nil,
		[]*sample{take, pause, restore})
	if copyTime > 0 && len(restore.times) > 0 {
		perRun := float64(bytes) / float64(len(take.times)) / (1 << 20)
		fmt.Fprintf(w, "  copy %.0f MiB per snapshot: take %.0f MiB/s (copy alone %.0f MiB/s), restore %.0f MiB/s\n\n",
			perRun, perRun/take.pct(50).Seconds(), float64(bytes)/(1<<20)/copyTime.Seconds(), perRun/restore.pct(50).Seconds())
	}
}

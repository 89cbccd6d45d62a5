package e2e

import (
	"testing"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestMetrics reads a sandbox's figures before and after it uses CPU,
// memory, disk and network: each moves the way the work says.
func TestMetrics(t *testing.T) {
	setup(t)
	ctx := t.Context()
	sb := create(t, admin, sbx.CreateSandboxRequest{Resources: &sbx.Resources{MemoryMB: 256, Pids: 100},
		Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge, BlockAll: true}})
	before, err := admin.Metrics(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if before.MemoryLimitBytes != 256<<20 || before.PidsLimit != 100 || before.Pids < 1 || before.Network == nil ||
		before.DiskLimitBytes < 512<<20 {
		t.Fatalf("metrics of a fresh sandbox: %+v", before)
	}
	// CPU, a 32 MiB file, 100 TCP connects to an address the policy
	// blocks (each SYN leaves the sandbox, so it counts as sent, and the
	// rejection comes back), and a
	// background process holding 40 MiB of memory.
	execOK(t, admin, sb.ID, "sh", "-c", `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done
head -c 33554432 /dev/urandom > /root/blob && sync
i=0; while [ $i -lt 100 ]; do nc -w 1 192.0.2.1 80 </dev/null >/dev/null 2>&1; i=$((i+1)); done; true`)
	execOK(t, admin, sb.ID, "sh", "-c", "(head -c 41943040 /dev/zero | sleep 30) >/dev/null 2>&1 & exit 0")
	after, err := admin.Metrics(ctx, sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before %+v %+v", before, *before.Network)
	t.Logf("after  %+v %+v", after, *after.Network)
	if after.CPUSeconds <= before.CPUSeconds+0.05 {
		t.Errorf("cpu: %.3f s, then %.3f s", before.CPUSeconds, after.CPUSeconds)
	}
	if after.DiskUsedBytes < before.DiskUsedBytes+30<<20 {
		t.Errorf("disk: %d, then %d bytes after writing 32 MiB", before.DiskUsedBytes, after.DiskUsedBytes)
	}
	tx, rx := after.Network.TxPackets-before.Network.TxPackets, after.Network.RxPackets-before.Network.RxPackets
	if tx < 100 || rx < 100 || after.Network.TxBytes-before.Network.TxBytes < 100*40 {
		t.Errorf("100 refused connects: %d packets out, %d in, %d bytes out", tx, rx, after.Network.TxBytes-before.Network.TxBytes)
	}
	if after.Pids <= before.Pids {
		t.Errorf("tasks: %d, then %d with a background job", before.Pids, after.Pids)
	}
	if none := create(t, admin, sbx.CreateSandboxRequest{}); true {
		m, err := admin.Metrics(ctx, none.ID)
		if err != nil || m.Network != nil {
			t.Errorf("metrics of a sandbox without network: %+v %v", m, err)
		}
	}
}

package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestKill9Recovery kills the daemon with SIGKILL while 20 sandboxes run
// (one of them writing output continuously), restarts it, and checks that
// every sandbox is re-adopted and answers exec, that the writer was not
// blocked by the daemon's death, and that deleting everything leaves
// nothing behind.
func TestKill9Recovery(t *testing.T) {
	setup(t)
	c := admin
	const n = 20
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := sbx.CreateSandboxRequest{Image: testImage, Name: fmt.Sprintf("crash-%d", i)}
			if i%2 == 0 {
				// Half bridged: their networks must be re-adopted too.
				req.Network = &sbx.NetworkRequest{Mode: sbx.NetworkBridge}
			}
			sb, err := c.CreateSandbox(t.Context(), req)
			if err != nil {
				errs <- err
				return
			}
			ids[i] = sb.ID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A writer that must keep going while the daemon is dead.
	execOK(t, c, ids[0], "sh", "-c", "(while true; do date +%s%N >> /tmp/ticks; sleep 0.05; done) >/dev/null 2>&1 &")
	daemon.Kill9()
	// A sandbox that ends while the daemon is down (killed from the host:
	// its init cannot be SIGKILLed from inside its own pid namespace).
	kill := exec.Command("crun", "--root", filepath.Join(daemon.RunDir, "runtime", "crun"), "kill", ids[1], "KILL")
	if out, err := kill.CombinedOutput(); err != nil {
		t.Fatalf("killing a sandbox behind the daemon's back: %v %s", err, out)
	}
	ticks := func() int {
		out := execOK(t, c, ids[0], "sh", "-c", "wc -l < /tmp/ticks")
		var k int
		fmt.Sscan(out, &k)
		return k
	}
	time.Sleep(2 * time.Second)
	start := time.Now()
	if err := daemon.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart with %d sandboxes took %v", n, time.Since(start))
	before := ticks()
	time.Sleep(500 * time.Millisecond)
	if after := ticks(); after <= before || before < 30 {
		t.Errorf("the writer was blocked: %d ticks, then %d", before, after)
	}
	for i, id := range ids {
		if i == 1 {
			continue
		}
		got, err := c.GetSandbox(t.Context(), id)
		if err != nil || got.State != "started" {
			t.Errorf("sandbox %d after restart: %+v, %v", i, got.State, err)
			continue
		}
		execOK(t, c, id, "true")
		if i%2 == 0 {
			if out := execOK(t, c, id, "ip", "-4", "addr", "show", "eth0"); got.Network.IP == "" || !strings.Contains(out, got.Network.IP+"/") {
				t.Errorf("bridged sandbox %d after restart: address %q, eth0:\n%s", i, got.Network.IP, out)
			}
		}
	}
	dead, err := c.GetSandbox(t.Context(), ids[1])
	if err != nil || dead.State != "error" {
		t.Errorf("the sandbox that died during the outage: state %q (%v), want error", dead.State, err)
	}
	// It can be started again, with its files.
	if _, err := c.StartSandbox(t.Context(), ids[1]); err != nil {
		t.Errorf("restarting the dead sandbox: %v", err)
	}
	for _, id := range ids {
		if err := c.DeleteSandbox(t.Context(), id); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
	}
	leakCheck(t)
}

// TestGracefulRestart stops the daemon with SIGTERM; sandboxes keep running
// and are re-adopted.
func TestGracefulRestart(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{})
	execOK(t, c, sb.ID, "sh", "-c", "echo 1 > /tmp/mark")
	if err := daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := execOK(t, c, sb.ID, "cat", "/tmp/mark"); got != "1\n" {
		t.Errorf("after a graceful restart: %q", got)
	}
}

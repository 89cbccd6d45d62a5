package e2e

import (
	"strings"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// waitState polls a sandbox until it is in state (or gone, for
// "deleted"), up to timeout, and returns how long that took.
func waitState(t *testing.T, id, state string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, err := admin.GetSandbox(t.Context(), id)
		if state == "deleted" && sbx.IsNotFound(err) {
			return time.Since(start)
		}
		if err == nil && got.State == state {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("sandbox %s: state %q (%v) after %v, want %s", id, got.State, err, timeout, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func secs(v int64) *int64 { return &v }

// TestAutoStopArchiveDelete runs the lifecycle timers in real time (the test
// daemon checks them every 300 ms): an idle sandbox stops, one stopped
// archives, one stopped with auto-delete 0 goes at once; a keep-alive lease
// and a running session command each hold auto-stop off, and the sandbox
// stops once the lease ends.
func TestAutoStopArchiveDelete(t *testing.T) {
	setup(t)
	ctx := t.Context()
	lc := func(stop, archive, del int64) *sbx.LifecyclePolicy {
		return &sbx.LifecyclePolicy{AutoStopSeconds: secs(stop), AutoArchiveSeconds: secs(archive), AutoDeleteSeconds: secs(del)}
	}
	idle := create(t, admin, sbx.CreateSandboxRequest{Lifecycle: lc(2, 0, -1)})
	archived := create(t, admin, sbx.CreateSandboxRequest{Lifecycle: lc(1, 1, -1)})
	gone := create(t, admin, sbx.CreateSandboxRequest{Lifecycle: lc(1, 0, 0)})
	leased := create(t, admin, sbx.CreateSandboxRequest{Lifecycle: lc(1, 0, -1)})
	busy := create(t, admin, sbx.CreateSandboxRequest{Lifecycle: lc(1, 0, -1)})
	if _, err := admin.Keepalive(ctx, leased.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateSession(ctx, busy.ID, sbx.CreateSessionRequest{ID: "job"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SessionExec(ctx, busy.ID, "job", sbx.SessionExecRequest{Command: "sleep 8", Async: true}); err != nil {
		t.Fatal(err)
	}
	// Activity puts the idle one's stop off: exec for 3 s, each call
	// resets the clock.
	for i := 0; i < 6; i++ {
		execOK(t, admin, idle.ID, "true")
		time.Sleep(500 * time.Millisecond)
	}
	if got, _ := admin.GetSandbox(ctx, idle.ID); got.State != "started" {
		t.Fatalf("a sandbox in use was auto-stopped: %s", got.State)
	}
	took := waitState(t, idle.ID, "stopped", 15*time.Second)
	t.Logf("idle sandbox stopped %v after its last exec (auto-stop 2 s)", took+500*time.Millisecond)
	if took < time.Second {
		t.Errorf("stopped too soon: %v after the last activity", took)
	}
	waitState(t, archived.ID, "archived", 20*time.Second)
	waitState(t, gone.ID, "deleted", 20*time.Second)
	for _, id := range []string{leased.ID, busy.ID} {
		if got, _ := admin.GetSandbox(ctx, id); got.State != "started" {
			t.Errorf("sandbox %s with a lease or a running command: %s, want started", id, got.State)
		}
	}
	events, _ := admin.Events(ctx, idle.ID, 0)
	var found bool
	for _, e := range events {
		found = found || e.Type == "lifecycle" && strings.HasPrefix(e.Message, "auto-stop")
	}
	if !found {
		t.Errorf("no auto-stop event in %+v", events)
	}
	// The lease ends: it stops. The job ends: it stops.
	if _, err := admin.Keepalive(ctx, leased.ID, 0); err != nil {
		t.Fatal(err)
	}
	waitState(t, leased.ID, "stopped", 15*time.Second)
	waitState(t, busy.ID, "stopped", 20*time.Second)
	// Policy is checked: bad values are refused.
	if _, err := admin.SetLifecycle(ctx, idle.ID, sbx.LifecyclePolicy{AutoDeleteSeconds: secs(-2)}); !sbx.IsInvalidArgument(err) {
		t.Errorf("auto-delete -2: %v", err)
	}
	if _, err := admin.Keepalive(ctx, idle.ID, 48*time.Hour); !sbx.IsInvalidArgument(err) {
		t.Errorf("a 48 h lease: %v", err)
	}
	// An archived sandbox comes back by start, with auto-delete still
	// honoured afterwards: set it to 0 and stop it.
	if _, err := admin.StartSandbox(ctx, archived.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetLifecycle(ctx, archived.ID, sbx.LifecyclePolicy{AutoStopSeconds: secs(0), AutoDeleteSeconds: secs(0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.StopSandbox(ctx, archived.ID, 0); err != nil {
		t.Fatal(err)
	}
	waitState(t, archived.ID, "deleted", 10*time.Second)
}

// TestAutoStopSurvivesRestart: the timers live in the records, so a
// sandbox idle across a daemon restart still stops on time.
func TestAutoStopSurvivesRestart(t *testing.T) {
	setup(t)
	sb := create(t, admin, sbx.CreateSandboxRequest{Lifecycle: &sbx.LifecyclePolicy{AutoStopSeconds: secs(3)}})
	execOK(t, admin, sb.ID, "true")
	if err := daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, err := admin.GetSandbox(t.Context(), sb.ID)
	if err != nil || got.State != "started" {
		t.Fatalf("after restart: %s %v", got.State, err)
	}
	if time.Since(got.Lifecycle.LastActivityAt) > 30*time.Second {
		t.Errorf("last activity lost across the restart: %v", got.Lifecycle.LastActivityAt)
	}
	waitState(t, sb.ID, "stopped", 15*time.Second)
}

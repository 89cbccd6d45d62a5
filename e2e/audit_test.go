package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestNetworkAudit: what a bridged sandbox connects to, and tries to, is
// logged with the policy's verdict, readable whole and followed live.
func TestNetworkAudit(t *testing.T) {
	setup(t)
	ctx := t.Context()
	sb := create(t, admin, sbx.CreateSandboxRequest{Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge,
		Allow: []string{"198.51.100.0/24", "192.0.2.0/24"}, Deny: []string{"192.0.2.0/25"}}})
	var (
		mu   sync.Mutex
		live []string
	)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- admin.FollowNetworkAudit(fctx, sb.ID, 0, func(e sbx.AuditEntry) error {
			mu.Lock()
			live = append(live, fmt.Sprintf("%s %s %s:%d", e.Verdict, e.Protocol, e.Dst, e.Port))
			mu.Unlock()
			return nil
		})
	}()
	// Denied, allowed (TEST-NET: no answer, so nc times out), and the
	// host itself (the gateway's port 7070).
	execOK(t, admin, sb.ID, "sh", "-c", `nc -w 1 192.0.2.7 80 </dev/null; nc -w 1 198.51.100.1 80 </dev/null
nc -w 1 $(ip route | awk '/default/ {print $3}') 7070 </dev/null; true`)
	gw := sb.Network.IP[:strings.LastIndex(sb.Network.IP, ".")] + ".1"
	want := []string{"blocked tcp 192.0.2.7:80", "allowed tcp 198.51.100.1:80", "blocked tcp " + gw + ":7070"}
	deadline := time.Now().Add(10 * time.Second)
	var got []string
	for time.Now().Before(deadline) {
		entries, err := admin.NetworkAudit(ctx, sb.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, e := range entries {
			got = append(got, fmt.Sprintf("%s %s %s:%d", e.Verdict, e.Protocol, e.Dst, e.Port))
		}
		if slices.Equal(got, want) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(live)
		mu.Unlock()
		if n >= len(want) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(live, want) {
		t.Errorf("followed audit log:\n%s\nwant:\n%s", strings.Join(live, "\n"), strings.Join(want, "\n"))
	}
	none := create(t, admin, sbx.CreateSandboxRequest{})
	if _, err := admin.NetworkAudit(ctx, none.ID, 0); !sbx.IsConflict(err) {
		t.Errorf("audit of a sandbox without network: %v", err)
	}
}

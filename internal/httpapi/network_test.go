package httpapi_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func TestNetworkPolicy(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{
		Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge, Allow: []string{"192.0.2.7"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := sbx.Network{Mode: "bridge", IP: sb.Network.IP,
		NetworkPolicy: sbx.NetworkPolicy{Allow: []string{"192.0.2.7/32"}, Deny: []string{}}}
	if sb.Network.IP == "" || !cmp.Equal(sb.Network, want) {
		t.Fatalf("created with network %+v, want %+v", sb.Network, want)
	}
	got, err := e.sdk.Network(ctx, sb.ID)
	if err != nil || !cmp.Equal(got, want) {
		t.Fatalf("Network = %+v, %v", got, err)
	}
	got, err = e.sdk.SetNetworkPolicy(ctx, sb.ID, sbx.NetworkPolicy{BlockAll: true})
	if err != nil || !got.BlockAll || len(got.Allow) != 0 {
		t.Fatalf("SetNetworkPolicy(block all) = %+v, %v", got, err)
	}
	if _, err := e.sdk.SetNetworkPolicy(ctx, sb.ID, sbx.NetworkPolicy{Deny: []string{"10.0.0.0/33"}}); !sbx.IsInvalidArgument(err) {
		t.Fatalf("bad CIDR: %v", err)
	}
	if _, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{
		Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge, Allow: []string{"nope"}},
	}); !sbx.IsInvalidArgument(err) {
		t.Fatalf("create with a bad CIDR: %v", err)
	}
	none, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if none.Network.Mode != "none" || none.Network.IP != "" {
		t.Fatalf("default network %+v", none.Network)
	}
	if _, err := e.sdk.SetNetworkPolicy(ctx, none.ID, sbx.NetworkPolicy{BlockAll: true}); !sbx.IsConflict(err) {
		t.Fatalf("policy of a sandbox without network: %v", err)
	}
	if _, err := e.sdk.Network(ctx, "missing"); !sbx.IsNotFound(err) {
		t.Fatalf("missing sandbox: %v", err)
	}
}

func TestNetworkAudit(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.sdk.NetworkAudit(ctx, sb.ID, 0)
	if err != nil || len(got) != 2 || got[0].Verdict != "allowed" || got[0].Dst != "192.0.2.1" || got[0].Port != 443 ||
		got[1].Verdict != "blocked" || got[1].Protocol != "udp" {
		t.Fatalf("NetworkAudit = %+v, %v", got, err)
	}
	if got, err := e.sdk.NetworkAudit(ctx, sb.ID, 1); err != nil || len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("NetworkAudit after 1 = %+v, %v", got, err)
	}
	// Following streams what there is, then waits.
	fctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	var seen []int64
	err = e.sdk.FollowNetworkAudit(fctx, sb.ID, 0, func(a sbx.AuditEntry) error { seen = append(seen, a.Seq); return nil })
	if !errors.Is(err, context.DeadlineExceeded) || len(seen) != 2 {
		t.Fatalf("follow: %v, saw %v", err, seen)
	}
	none, _ := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if _, err := e.sdk.NetworkAudit(ctx, none.ID, 0); !sbx.IsConflict(err) {
		t.Fatalf("audit of a sandbox without network: %v", err)
	}
}

package main

import (
	"context"
	"fmt"
	"io"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// networkRows compares create → exec `echo ok` → delete with networking
// off (mode none: an empty netns) and on (mode bridge: netns, veth, address,
// route and an nftables chain, the open and the block-all policy), one at a
// time.
func networkRows(ctx context.Context, w io.Writer, d *benchDaemon, ref, runtime string, n int) {
	var rows []*sample
	for _, c := range []struct {
		name string
		req  *sbx.NetworkRequest
	}{
		{"network none", &sbx.NetworkRequest{Mode: sbx.NetworkNone}},
		{"network bridge, open", &sbx.NetworkRequest{Mode: sbx.NetworkBridge, Allow: []string{"0.0.0.0/0"}}},
		{"network bridge, block-all", &sbx.NetworkRequest{Mode: sbx.NetworkBridge, BlockAll: true}},
	} {
		s := &sample{name: "sbx create→exec→delete, " + c.name}
		measure(s, n, 1, func(int) error { return networkCycle(ctx, d, ref, runtime, c.req) })
		rows = append(rows, s)
	}
	table(w, fmt.Sprintf("networking off vs on (%d runs, one at a time)", n), rows[0], rows)
}

func networkCycle(ctx context.Context, d *benchDaemon, ref, runtime string, nw *sbx.NetworkRequest) error {
	sb, err := d.c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: ref, Runtime: runtime, Network: nw})
	if err != nil {
		return err
	}
	res, err := d.c.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"echo", "ok"}})
	if err == nil && res.Stdout != "ok\n" {
		err = fmt.Errorf("echo printed %q", res.Stdout)
	}
	if derr := d.delete(ctx, sb.ID); err == nil {
		err = derr
	}
	return err
}

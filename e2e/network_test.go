package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/sbx-sh/sbx/internal/testutil"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// testHost is a stand-in for the outside world: a network namespace of the
// test's own behind a veth from the host, holding two addresses (.2, the
// allowed host, and .3, another one) with an HTTP server on both that
// answers "hello". Sandboxes reach it through the daemon's NAT, as they
// would the internet; no real internet is used.
type testHost struct {
	allowed, other string // "ip:port"
}

func newTestHost(t *testing.T, n int) testHost {
	t.Helper()
	nsPath := filepath.Join(workDir, fmt.Sprintf("testhost%d", n))
	testutil.NewNetns(t, nsPath)
	h, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	in, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	name := fmt.Sprintf("sbxeth%d%d", os.Getpid()%1000, n)
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(h)}); err != nil {
		t.Fatalf("veth to the test host: %v", err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
	})
	base := fmt.Sprintf("172.31.%d.", 240+n)
	up := func(h *netlink.Handle, dev string, cidrs ...string) {
		t.Helper()
		l, err := h.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cidrs {
			a, _ := netlink.ParseAddr(c)
			if err := h.AddrAdd(l, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	host, _ := netlink.NewHandle()
	defer host.Close()
	up(host, name, base+"1/29")
	up(in, "eth0", base+"2/29", base+"3/29")
	up(in, "lo")
	var ln net.Listener
	if err := testutil.InNetns(nsPath, func() (err error) { ln, err = net.Listen("tcp4", "0.0.0.0:8080"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return testHost{allowed: base + "2:8080", other: base + "3:8080"}
}

// reach reports whether the sandbox gets "hello" from http://addr/.
func reach(t *testing.T, id, addr string) bool {
	t.Helper()
	res, err := admin.Exec(t.Context(), id, sbx.ExecRequest{
		Argv: []string{"timeout", "3", "wget", "-q", "-O-", "http://" + addr + "/"},
	})
	if err != nil {
		t.Fatalf("exec in %s: %v", id, err)
	}
	return res.ExitCode == 0 && strings.Contains(res.Stdout, "hello")
}

func wantReach(t *testing.T, what, id, addr string, want bool) {
	t.Helper()
	if got := reach(t, id, addr); got != want {
		t.Errorf("%s: reaching %s = %v, want %v", what, addr, got, want)
	}
}

// hostListener serves "hello" on 0.0.0.0 of the host, which sandboxes
// must not reach on any host address (the bridge IP in particular).
func hostListener(t *testing.T) int {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

func gatewayOf(subnet string) string {
	p := strings.TrimSuffix(subnet, "0/24")
	return p + "1"
}

func bridged(p sbx.NetworkPolicy) *sbx.NetworkRequest {
	return &sbx.NetworkRequest{Mode: sbx.NetworkBridge, BlockAll: p.BlockAll, Allow: p.Allow, Deny: p.Deny}
}

// TestNetworkEgressPolicy checks block-all, allow-list, deny-list and a
// live change, against a test host in a namespace of its own.
func TestNetworkEgressPolicy(t *testing.T) {
	setup(t)
	th := newTestHost(t, 1)
	allowedIP, _, _ := strings.Cut(th.allowed, ":")

	open := create(t, admin, sbx.CreateSandboxRequest{Network: bridged(sbx.NetworkPolicy{Allow: []string{"0.0.0.0/0"}})})
	if open.Network.Mode != "bridge" || open.Network.IP == "" {
		t.Fatalf("network of a bridged sandbox: %+v", open.Network)
	}
	wantReach(t, "open", open.ID, th.allowed, true)
	wantReach(t, "open", open.ID, th.other, true)

	blocked := create(t, admin, sbx.CreateSandboxRequest{Network: bridged(sbx.NetworkPolicy{BlockAll: true})})
	wantReach(t, "block-all", blocked.ID, th.allowed, false)
	wantReach(t, "block-all", blocked.ID, th.other, false)
	// Exec and files work without any network.
	if out := execOK(t, admin, blocked.ID, "echo", "still works"); out != "still works\n" {
		t.Errorf("exec in a block-all sandbox: %q", out)
	}

	allow := create(t, admin, sbx.CreateSandboxRequest{Network: bridged(sbx.NetworkPolicy{Allow: []string{allowedIP}})})
	wantReach(t, "allow", allow.ID, th.allowed, true)
	wantReach(t, "allow", allow.ID, th.other, false)

	deny := create(t, admin, sbx.CreateSandboxRequest{Network: bridged(sbx.NetworkPolicy{Deny: []string{allowedIP + "/32"}})})
	wantReach(t, "deny", deny.ID, th.allowed, false)
	wantReach(t, "deny", deny.ID, th.other, true)

	// Live: block-all → allow .3 only, without a restart.
	started := blocked.StartedAt
	n, err := admin.SetNetworkPolicy(t.Context(), blocked.ID, sbx.NetworkPolicy{Allow: []string{strings.Split(th.other, ":")[0]}})
	if err != nil {
		t.Fatal(err)
	}
	if n.BlockAll || len(n.Allow) != 1 {
		t.Fatalf("policy after PUT: %+v", n)
	}
	wantReach(t, "after PUT allow", blocked.ID, th.other, true)
	wantReach(t, "after PUT allow", blocked.ID, th.allowed, false)
	if _, err := admin.SetNetworkPolicy(t.Context(), blocked.ID, sbx.NetworkPolicy{BlockAll: true}); err != nil {
		t.Fatal(err)
	}
	wantReach(t, "after PUT block-all", blocked.ID, th.other, false)
	if sb, err := admin.GetSandbox(t.Context(), blocked.ID); err != nil || !sb.StartedAt.Equal(*started) || !sb.Network.BlockAll {
		t.Errorf("after live changes: %+v, %v (the sandbox must not restart)", sb, err)
	}

	// Errors: a bad CIDR is 400; a sandbox without network is 409.
	if _, err := admin.SetNetworkPolicy(t.Context(), allow.ID, sbx.NetworkPolicy{Allow: []string{"300.1.2.3/8"}}); !sbx.IsInvalidArgument(err) {
		t.Errorf("bad CIDR: %v", err)
	}
	none := create(t, admin, sbx.CreateSandboxRequest{Network: &sbx.NetworkRequest{Mode: sbx.NetworkNone}})
	if _, err := admin.SetNetworkPolicy(t.Context(), none.ID, sbx.NetworkPolicy{BlockAll: true}); !sbx.IsConflict(err) {
		t.Errorf("policy of a sandbox without network: %v", err)
	}
	wantReach(t, "none", none.ID, th.allowed, false)
	if out := execOK(t, admin, none.ID, "cat", "/proc/net/dev"); strings.Contains(out, "eth0") {
		t.Errorf("a network-none sandbox has an interface:\n%s", out)
	}
}

// TestNetworkIsolation checks that bridged sandboxes reach neither each
// other, nor the host (its API port, a 0.0.0.0 listener on the bridge IP
// and on its other addresses), nor link-local metadata, whatever their
// policy.
func TestNetworkIsolation(t *testing.T) {
	setup(t)
	open := bridged(sbx.NetworkPolicy{Allow: []string{"0.0.0.0/0"}})
	a := create(t, admin, sbx.CreateSandboxRequest{Network: open})
	b := create(t, admin, sbx.CreateSandboxRequest{Network: open})
	// B serves on 0.0.0.0:8000.
	res, err := admin.Exec(t.Context(), b.ID, sbx.ExecRequest{Shell: "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && (httpd -p 8000 -h /tmp/www &) ; sleep 0.3"})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("starting httpd in B: %+v %v", res, err)
	}
	wantReach(t, "B itself", b.ID, "127.0.0.1:8000", true)
	wantReach(t, "A to B", a.ID, b.Network.IP+":8000", false)

	port := hostListener(t)
	gw := gatewayOf(daemon.Subnet)
	_, apiPort, _ := net.SplitHostPort(daemon.Addr)
	for _, addr := range []string{
		fmt.Sprintf("%s:%d", gw, port),        // 0.0.0.0 listener via the bridge IP
		gw + ":" + apiPort,                    // the daemon's API port on the bridge IP
		"127.0.0.1:" + apiPort,                // the host's loopback (is the sandbox's own)
		"169.254.169.254:80",                  // cloud metadata
		fmt.Sprintf("%s:%d", hostIP(t), port), // the host's main address
	} {
		wantReach(t, "A to the host", a.ID, addr, false)
	}
	// Connection attempts fail fast (rejected), not by timing out.
	start := time.Now()
	reach(t, a.ID, fmt.Sprintf("%s:%d", gw, port))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a blocked connection took %v", d)
	}
}

// hostIP is an address of the host other than loopback and the bridge.
func hostIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() &&
			!strings.HasPrefix(ipn.IP.String(), strings.TrimSuffix(daemon.Subnet, "0/24")) {
			return ipn.IP.String()
		}
	}
	t.Fatal("no host address")
	return ""
}

// TestNetworkCleanup checks DNS configuration, that stop and start keep
// the address, that deleting sandboxes leaves no namespace, veth or
// nftables entry, and that orphans left by a crash are removed at start.
func TestNetworkCleanup(t *testing.T) {
	setup(t)
	sb, err := admin.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{Image: testImage, Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge}})
	if err != nil {
		t.Fatal(err)
	}
	resolv := execOK(t, admin, sb.ID, "cat", "/etc/resolv.conf")
	if !strings.Contains(resolv, "written by sbx") {
		t.Errorf("resolv.conf:\n%s", resolv)
	}
	if pg := execOK(t, admin, sb.ID, "cat", "/proc/sys/net/ipv4/ping_group_range"); strings.Fields(pg)[0] != "0" {
		t.Errorf("ping_group_range in a bridged sandbox = %q, want it to start at 0", pg)
	}
	route := execOK(t, admin, sb.ID, "ip", "route")
	if !strings.Contains(route, "default via "+gatewayOf(daemon.Subnet)) {
		t.Errorf("routes in the sandbox:\n%s", route)
	}
	if _, err := admin.StopSandbox(t.Context(), sb.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	again, err := admin.StartSandbox(t.Context(), sb.ID)
	if err != nil || again.Network.IP != sb.Network.IP {
		t.Fatalf("restarted: %+v %v (want the same address %s)", again.Network, err, sb.Network.IP)
	}
	if err := admin.DeleteSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	leakCheck(t)

	// Orphans of a crash: a namespace, a veth-less chain and its map
	// entry that no record owns.
	daemon.Kill9()
	orphan := "orphanaaaaaaaaaa"
	testutil.NewNetns(t, filepath.Join(daemon.RunDir, "netns", orphan))
	for _, cmd := range [][]string{
		{"nft", "add", "chain", "inet", daemon.Table, "sb-" + orphan},
		{"nft", "add", "element", "inet", daemon.Table, "egress", "{", strings.TrimSuffix(daemon.Subnet, "0/24") + "100", ":", "jump", "sb-" + orphan, "}"},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", cmd, err, out)
		}
	}
	if len(daemon.Leaks()) == 0 {
		t.Fatal("the planted orphans are not seen as leaks")
	}
	if err := daemon.Restart(context.WithoutCancel(t.Context())); err != nil {
		t.Fatal(err)
	}
	leakCheck(t)
}

// TestNetworkPhase measures the network phase of bridged creates from the
// daemon's per-phase log (reported; asserted only against a loose bound).
func TestNetworkPhase(t *testing.T) {
	setup(t)
	for range 10 {
		sb, err := admin.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{Image: testImage, Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge}})
		if err != nil {
			t.Fatal(err)
		}
		if err := admin.DeleteSandbox(t.Context(), sb.ID); err != nil {
			t.Fatal(err)
		}
	}
	var phases []time.Duration
	for _, line := range strings.Split(daemon.Log(), "\n") {
		if !strings.Contains(line, "sandbox created") || !strings.Contains(line, "network=bridge") {
			continue
		}
		_, v, ok := strings.Cut(line, "phases.network=")
		if !ok {
			t.Fatalf("a bridged create without a network phase: %s", line)
		}
		d, err := time.ParseDuration(strings.Fields(v)[0])
		if err != nil {
			t.Fatal(err)
		}
		phases = append(phases, d)
	}
	if len(phases) < 10 {
		t.Fatalf("found %d network phases in the log", len(phases))
	}
	slices.Sort(phases)
	t.Logf("network phase over %d bridged creates: min %v, p50 %v, max %v", len(phases), phases[0], phases[len(phases)/2], phases[len(phases)-1])
	if phases[len(phases)/2] > 200*time.Millisecond {
		t.Errorf("network phase p50 %v", phases[len(phases)/2])
	}
	leakCheck(t)
}

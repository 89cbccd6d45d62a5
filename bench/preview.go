package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// previewRows measures a GET of a small file from busybox httpd in a
// bridged sandbox: directly at the sandbox's address from the host (the
// floor: the same server process, no sbx in the path) and through the
// preview proxy (daemon → agent socket → the sandbox's loopback), in the
// host form and the path form, on kept-alive connections, and with a new
// connection per request (each one a new stream through the agent).
func previewRows(ctx context.Context, w io.Writer, d *benchDaemon, ref, runtime string, n int) {
	title := fmt.Sprintf("preview proxy: GET of a 6-byte file from busybox httpd (%d runs, one at a time)", n)
	sb, err := d.c.CreateSandbox(ctx, sbx.CreateSandboxRequest{Image: ref, Runtime: runtime, Public: true,
		Network: &sbx.NetworkRequest{Mode: sbx.NetworkBridge, Allow: []string{"0.0.0.0/0"}}})
	if err != nil {
		fmt.Fprintf(w, "\n%s\n  create: %v\n", title, err)
		return
	}
	defer d.delete(ctx, sb.ID)
	res, err := d.c.Exec(ctx, sb.ID, sbx.ExecRequest{Argv: []string{"sh", "-c", "mkdir -p /www && echo hello > /www/f && httpd -p 8080 -h /www"}})
	if err == nil && res.ExitCode != 0 {
		err = fmt.Errorf("httpd: exit %d: %s", res.ExitCode, res.Stderr)
	}
	if err != nil {
		fmt.Fprintf(w, "\n%s\n  %v\n", title, err)
		return
	}
	link, err := d.c.Preview(ctx, sb.ID, 8080)
	if err != nil {
		fmt.Fprintf(w, "\n%s\n  %v\n", title, err)
		return
	}
	pu, _ := url.Parse(link.URL)
	keep := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(c *http.Client, u, host string) error {
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return err
		}
		if host != "" {
			req.Host = host
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != 200 || string(b) != "hello\n") {
			err = fmt.Errorf("%d %q", resp.StatusCode, b)
		}
		return err
	}
	direct := "http://" + sb.Network.IP + ":8080/f"
	hostForm := d.d.URL + "/f"
	pathForm := strings.TrimSuffix(link.PathURL, "/") + "/f"
	// Until httpd answers, and to warm every pool.
	deadline := time.Now().Add(10 * time.Second)
	for get(keep, hostForm, pu.Host) != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	rows := []struct {
		name string
		c    *http.Client
		u    string
		host string
	}{
		{"direct to the sandbox's IP, kept alive", keep, direct, ""},
		{"preview, host form, kept alive", keep, hostForm, pu.Host},
		{"preview, path form, kept alive", keep, pathForm, ""},
		{"direct to the sandbox's IP, new connection each", fresh, direct, ""},
		{"preview, host form, new connection each", fresh, hostForm, pu.Host},
	}
	var samples []*sample
	for _, r := range rows {
		s := &sample{name: r.name}
		get(r.c, r.u, r.host) // warm
		measure(s, n, 1, func(int) error { return get(r.c, r.u, r.host) })
		samples = append(samples, s)
	}
	table(w, title, samples[0], samples)
}

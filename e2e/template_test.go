package e2e

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/sbx-sh/sbx/internal/image"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// createTemplate creates a template, follows its build log to the end and
// returns the template in its final state and the log.
func createTemplate(t *testing.T, c *sbx.Client, req sbx.CreateTemplateRequest) (sbx.Template, string) {
	t.Helper()
	return createTemplateWithin(t, c, req, 3*time.Minute)
}

func createTemplateWithin(t *testing.T, c *sbx.Client, req sbx.CreateTemplateRequest, limit time.Duration) (sbx.Template, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	tpl, err := c.CreateTemplate(ctx, req)
	if err != nil {
		t.Fatalf("create template %s: %v", req.Name, err)
	}
	t.Cleanup(func() { c.DeleteTemplate(context.WithoutCancel(t.Context()), req.Name) })
	rc, err := c.TemplateBuildLog(ctx, tpl.Name, true)
	if err != nil {
		t.Fatalf("build log: %v", err)
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatalf("reading the build log: %v; so far:\n%s", err, b)
	}
	// The followed log ends when the work is over.
	tpl, err = c.GetTemplate(ctx, tpl.Name)
	if err != nil {
		t.Fatal(err)
	}
	if tpl.State != sbx.TemplateActive && tpl.State != sbx.TemplateError {
		t.Fatalf("template %s is %s after its log ended", tpl.Name, tpl.State)
	}
	return tpl, string(b)
}

// fromTemplate creates a sandbox from a template (deleted when the test ends).
func fromTemplate(t *testing.T, c *sbx.Client, name string) sbx.Sandbox {
	t.Helper()
	sb, err := c.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{Template: name})
	if err != nil {
		t.Fatalf("create from template %s: %v", name, err)
	}
	t.Cleanup(func() { c.DeleteSandbox(context.WithoutCancel(t.Context()), sb.ID) })
	return sb
}

func wantActive(t *testing.T, tpl sbx.Template, log string) {
	t.Helper()
	if tpl.State != sbx.TemplateActive {
		t.Fatalf("template %s: state %s (%s); log:\n%s", tpl.Name, tpl.State, tpl.ErrorReason, log)
	}
}

func TestTemplateFromImage(t *testing.T) {
	setup(t)
	c := admin
	// An in-process registry holding the busybox image.
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	dir := t.TempDir()
	if err := image.BuildBusyboxRootfs(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	vimg, err := image.RootfsImage(dir, image.BusyboxConfig)
	if err != nil {
		t.Fatal(err)
	}
	ref := strings.TrimPrefix(reg.URL, "http://") + "/tpl/busybox:1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, vimg); err != nil {
		t.Fatal(err)
	}

	tpl, err := c.CreateTemplate(t.Context(), sbx.CreateTemplateRequest{Name: "from-image", Image: ref})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.DeleteTemplate(context.WithoutCancel(t.Context()), "from-image") })
	if tpl.State != sbx.TemplatePending || tpl.Source != "image" {
		t.Errorf("created template: state %s source %s, want pending image", tpl.State, tpl.Source)
	}
	// Watch the states go by.
	seen := []string{tpl.State}
	deadline := time.Now().Add(time.Minute)
	for tpl.State != sbx.TemplateActive && tpl.State != sbx.TemplateError && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		if tpl, err = c.GetTemplate(t.Context(), "from-image"); err != nil {
			t.Fatal(err)
		}
		if seen[len(seen)-1] != tpl.State {
			seen = append(seen, tpl.State)
		}
	}
	if tpl.State != sbx.TemplateActive {
		t.Fatalf("template: %s (%s), states %v", tpl.State, tpl.ErrorReason, seen)
	}
	for _, s := range seen {
		if s != sbx.TemplatePending && s != sbx.TemplatePulling && s != sbx.TemplateActive {
			t.Errorf("unexpected state %s in %v", s, seen)
		}
	}
	t.Logf("states: %v", seen)
	if d, _ := vimg.Digest(); tpl.Digest != d.String() {
		t.Errorf("digest %s, want the pushed image's %s", tpl.Digest, d)
	}
	sb := fromTemplate(t, c, "from-image")
	if got := execOK(t, c, sb.ID, "cat", "/etc/hostname"); got != "sandbox\n" {
		t.Errorf("a sandbox from the template reads %q", got)
	}
	// Delete is refused while the sandbox lives, then works.
	err = c.DeleteTemplate(t.Context(), "from-image")
	if !sbx.IsConflict(err) {
		t.Errorf("delete while in use: %v, want 409", err)
	}
	if err := c.DeleteSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteTemplate(t.Context(), "from-image"); err != nil {
		t.Errorf("delete after the sandbox went: %v", err)
	}
	if _, err := c.GetTemplate(t.Context(), "from-image"); !sbx.IsNotFound(err) {
		t.Errorf("get after delete: %v", err)
	}
	// A missing image ends in error with a reason.
	bad, _ := createTemplate(t, c, sbx.CreateTemplateRequest{Name: "missing", Image: strings.TrimPrefix(reg.URL, "http://") + "/nope:1"})
	if bad.State != sbx.TemplateError || !strings.Contains(bad.ErrorReason, "not found") {
		t.Errorf("missing image: %s %q", bad.State, bad.ErrorReason)
	}
	leakCheck(t)
}

func TestTemplateBuild(t *testing.T) {
	setup(t)
	c := admin
	spec := func(last string) *sbx.TemplateSpec {
		return &sbx.TemplateSpec{Base: testImage, Steps: []sbx.TemplateStep{
			{Run: "mkdir -p /opt/app && echo one > /opt/app/one && rm /etc/hostname"},
			{Env: map[string]string{"APP_MODE": "test", "PATH": "/bin:/opt/app"}},
			{Workdir: "/opt/app"},
			{Run: "echo two > two && echo mode=$APP_MODE"}, // sees the env and workdir
			{Run: last},
		}}
	}
	tpl, log := createTemplate(t, c, sbx.CreateTemplateRequest{Name: "built", Spec: spec("echo three > three; echo built-three")})
	wantActive(t, tpl, log)
	for _, want := range []string{"Step 1/5: RUN", "Step 5/5", "mode=test", "built-three"} {
		if !strings.Contains(log, want) {
			t.Errorf("build log lacks %q:\n%s", want, log)
		}
	}
	if n := len(tpl.Layers); n != 4 { // busybox + three run steps
		t.Errorf("%d layers, want 4: %v", n, tpl.Layers)
	}
	sb := fromTemplate(t, c, "built")
	out := execOK(t, c, sb.ID, "sh", "-c", "pwd; echo $APP_MODE; cat one two three; test -e /etc/hostname && echo hostname-present || echo hostname-gone")
	if want := "/opt/app\ntest\none\ntwo\nthree\nhostname-gone\n"; out != want {
		t.Errorf("a sandbox from the built template: %q, want %q", out, want)
	}
	if err := c.DeleteSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}

	// Only the changed last step is rebuilt: the earlier layers are the
	// same, taken from the cache.
	tpl2, log2 := createTemplate(t, c, sbx.CreateTemplateRequest{Name: "built2", Spec: spec("echo changed > three")})
	wantActive(t, tpl2, log2)
	if n := strings.Count(log2, "Using cache"); n != 2 {
		t.Errorf("%d cache hits, want 2 (steps 1 and 4):\n%s", n, log2)
	}
	if strings.Contains(log2, "mode=test") {
		t.Errorf("step 4 ran again:\n%s", log2)
	}
	if len(tpl2.Layers) != 4 || tpl2.Layers[1] != tpl.Layers[1] || tpl2.Layers[2] != tpl.Layers[2] || tpl2.Layers[3] == tpl.Layers[3] {
		t.Errorf("layers\n %v\nafter changing the last step, want the first three equal:\n %v", tpl2.Layers, tpl.Layers)
	}
	// The same spec again is all cache, and the very same image.
	tpl3, log3 := createTemplate(t, c, sbx.CreateTemplateRequest{Name: "built3", Spec: spec("echo changed > three")})
	wantActive(t, tpl3, log3)
	if tpl3.Digest != tpl2.Digest {
		t.Errorf("an all-cached build gave %s, want %s:\n%s", tpl3.Digest, tpl2.Digest, log3)
	}

	// A template builds on a template.
	tpl4, log4 := createTemplate(t, c, sbx.CreateTemplateRequest{Name: "on-top", Spec: &sbx.TemplateSpec{
		BaseTemplate: "built", Steps: []sbx.TemplateStep{{Run: "echo four > four"}, {Cmd: []string{"/bin/sh", "-c", "sleep 1000"}}},
	}})
	wantActive(t, tpl4, log4)
	sb = fromTemplate(t, c, "on-top")
	if out := execOK(t, c, sb.ID, "cat", "one", "four"); out != "one\nfour\n" {
		t.Errorf("template on a template: %q", out)
	}
	if err := c.DeleteSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}

	// A failing step: error, build_failed, its output in the log.
	bad, blog := createTemplate(t, c, sbx.CreateTemplateRequest{Name: "broken", Spec: &sbx.TemplateSpec{
		Base: testImage, Steps: []sbx.TemplateStep{{Run: "echo about-to-fail; echo oops >&2; exit 7"}},
	}})
	if bad.State != sbx.TemplateError || !strings.HasPrefix(bad.ErrorReason, "build_failed:") || !strings.Contains(bad.ErrorReason, "code 7") {
		t.Errorf("failing build: %s %q", bad.State, bad.ErrorReason)
	}
	for _, want := range []string{"about-to-fail", "oops", "ERROR: build_failed"} {
		if !strings.Contains(blog, want) {
			t.Errorf("failed build's log lacks %q:\n%s", want, blog)
		}
	}
	// The log stays readable afterwards.
	rc, err := c.TemplateBuildLog(t.Context(), "broken", false)
	if err != nil {
		t.Fatal(err)
	}
	kept, _ := io.ReadAll(rc)
	rc.Close()
	if string(kept) != blog {
		t.Errorf("kept log differs from the streamed one")
	}
	// A sandbox cannot be made from a failed template.
	if _, err := c.CreateSandbox(t.Context(), sbx.CreateSandboxRequest{Template: "broken"}); err == nil {
		t.Errorf("created a sandbox from a failed template")
	}
	// No build sandbox, and nothing of one, is left behind.
	leakCheckBuilds(t, c)
	leakCheck(t)
}

// leakCheckBuilds fails if a build sandbox is still alive.
func leakCheckBuilds(t *testing.T, c *sbx.Client) {
	t.Helper()
	all, err := c.ListSandboxes(t.Context(), sbx.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, sb := range all.Items {
		if _, ok := sb.Labels["sbx.template-build"]; ok {
			t.Errorf("build sandbox %s (%s) left behind", sb.ID, sb.State)
		}
	}
}

func TestTemplateFromSandbox(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Env: map[string]string{"FROM_SB": "yes"}})
	execOK(t, c, sb.ID, "sh", "-c", "echo kept > /root/kept && mkdir -p /srv/d && echo x > /srv/d/x && ln /root/kept /srv/hard && ln -s /root/kept /srv/soft && rm /etc/hostname && chmod 4755 /root/kept")
	// A started sandbox is refused.
	_, err := c.CreateTemplate(t.Context(), sbx.CreateTemplateRequest{Name: "from-sb", Sandbox: sb.ID})
	if !sbx.IsConflict(err) {
		t.Errorf("template of a started sandbox: %v, want 409", err)
	}
	if _, err := c.StopSandbox(t.Context(), sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	tpl, log := createTemplate(t, c, sbx.CreateTemplateRequest{Name: "from-sb", Sandbox: sb.ID})
	wantActive(t, tpl, log)
	if tpl.Source != "sandbox" || tpl.SourceSandbox != sb.ID {
		t.Errorf("source %s %s", tpl.Source, tpl.SourceSandbox)
	}
	sb2 := fromTemplate(t, c, "from-sb")
	out := execOK(t, c, sb2.ID, "sh", "-c", "cat /root/kept /srv/d/x /srv/soft; stat -c %a /root/kept; stat -c %h /srv/hard; readlink /srv/soft; test -e /etc/hostname || echo gone; echo $FROM_SB")
	if want := "kept\nx\nkept\n4755\n2\n/root/kept\ngone\nyes\n"; out != want {
		t.Errorf("a sandbox from the sandbox's template: %q, want %q", out, want)
	}
	// The source sandbox is untouched and starts again.
	if _, err := c.StartSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if got := execOK(t, c, sb.ID, "cat", "/root/kept"); got != "kept\n" {
		t.Errorf("source sandbox after the commit: %q", got)
	}
}

// TestTemplatePackages builds apt and npm steps on the Debian code image:
// the build sandbox (network bridge) reaches the Debian mirror and the npm
// registry. (No pip step: PyPI is not reachable from these machines.)
func TestTemplatePackages(t *testing.T) {
	needCodeImage(t)
	c := admin
	steps := []sbx.TemplateStep{{Apt: []string{"jq"}}}
	// These machines reach the npm registry through a TLS-intercepting
	// egress proxy whose CA the image lacks: the spec installs it first,
	// as a user behind such a proxy would.
	for _, p := range []string{"/usr/local/share/ca-certificates/sandboxing-egress-ca.crt", "/usr/local/share/ca-certificates/custom-ca.crt"} {
		if pem, err := os.ReadFile(p); err == nil {
			steps = append(steps, sbx.TemplateStep{Run: "cat > /usr/local/share/ca-certificates/" + filepath.Base(p) + " <<'EOF'\n" +
				strings.TrimSpace(string(pem)) + "\nEOF\nupdate-ca-certificates >/dev/null && npm config set -g cafile /etc/ssl/certs/ca-certificates.crt"})
		}
	}
	steps = append(steps, sbx.TemplateStep{Npm: []string{"is-number@7.0.0"}})
	start := time.Now()
	tpl, log := createTemplateWithin(t, c, sbx.CreateTemplateRequest{Name: "pkgs", Spec: &sbx.TemplateSpec{
		Base: codeImage, Steps: steps,
	}}, 10*time.Minute)
	t.Logf("apt + npm build: %v", time.Since(start).Round(time.Millisecond))
	wantActive(t, tpl, log)
	sb := fromTemplate(t, c, "pkgs")
	out := execOK(t, c, sb.ID, "sh", "-c", `echo '{"a":5}' | jq .a; node -e 'console.log(require("is-number")(3))' 2>&1 || NODE_PATH=$(npm root -g) node -e 'console.log(require("is-number")(3))'`)
	if !strings.HasPrefix(out, "5\n") || !strings.Contains(out, "true") {
		t.Errorf("jq and the npm package in a sandbox from the template: %q\nlog:\n%s", out, log)
	}
}

// TestDaytonaSnapshots runs the official Daytona SDK's snapshot calls
// against the daemon's Daytona API (testdata/daytona/snapshots.cjs): they
// are sbx templates underneath.
func TestDaytonaSnapshots(t *testing.T) {
	setup(t)
	runDaytonaScript(t, "snapshots.cjs", testImage, 5*time.Minute)
	leakCheck(t)
}

package sandbox_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/cgroup"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/runtime"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/store/sqlite"
	"github.com/sbx-sh/sbx/internal/testdaemon"
	"github.com/sbx-sh/sbx/internal/testutil"
)

// oneLayer resolves every reference to a single unpacked layer.
type oneLayer struct{ dir string }

func (o oneLayer) Resolve(_ context.Context, _, ref string) (image.Image, error) {
	if ref == "missing" {
		return image.Image{}, errdefs.ErrNotFound
	}
	return image.Image{Ref: ref, Digest: "sha256:0000", Layers: []string{o.dir}}, nil
}

func newService(t *testing.T, class string, userns bool) (*sandbox.Service, store.Store, string) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath(class); err != nil {
		testutil.Unavailable(t, class+" is not installed")
	}
	ctx := t.Context()
	dir, err := os.MkdirTemp("/tmp", "sbxs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o711)
	root, _ := testdaemon.ModuleRoot()
	agentBin := filepath.Join(dir, "sbx-agent")
	build := exec.Command("go", "build", "-o", agentBin, "./cmd/sbx-agent")
	build.Dir, build.Env = root, append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the agent: %v\n%s", err, out)
	}
	layer := filepath.Join(dir, "layer")
	if err := image.BuildBusyboxRootfs(ctx, layer); err != nil {
		testutil.Unavailable(t, err.Error())
	}
	st, err := sqlite.Open(ctx, filepath.Join(dir, "db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateTenant(ctx, store.Tenant{ID: "t1", Name: "t1"}); err != nil {
		t.Fatal(err)
	}
	if err := runtime.SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	cgroup.PrepareHybrid("/sys/fs/cgroup")
	cg, _ := cgroup.Detect("/sys/fs/cgroup")
	rt, err := runtime.NewOCI(class, class, filepath.Join(dir, "run", "rt"))
	if err != nil {
		t.Fatal(err)
	}
	parent := "/sbx-svc-" + filepath.Base(dir)
	svc, err := sandbox.New(sandbox.Config{
		StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"),
		Runtimes:       map[string]sandbox.RuntimeClass{class: {Runtime: rt, UserNS: userns}},
		DefaultRuntime: class, DefaultImage: "busybox",
		Defaults:    store.Resources{CPU: 1, MemoryMB: 256, DiskMB: 64, Pids: 128},
		Maximums:    store.Resources{CPU: 2, MemoryMB: 1024, DiskMB: 1024, Pids: 1024},
		AgentBinary: agentBin, Ranges: idmap.Ranges{Base: 5 << 20, Size: 65536},
		CgroupParent: parent, Cgroups: cg, StopGrace: 2 * time.Second,
		MaxExecs: 2,
	}, st, oneLayer{layer}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		svc.Close()
		cg.Remove(parent)
	})
	return svc, st, dir
}

func run(t *testing.T, svc *sandbox.Service, id string, argv ...string) (string, agent.ExitStatus) {
	t.Helper()
	p, err := svc.Exec(t.Context(), "t1", id, agent.ExecRequest{Argv: argv})
	if err != nil {
		t.Fatalf("exec %v: %v", argv, err)
	}
	defer p.Close()
	var out strings.Builder
	for {
		f, err := p.Recv()
		if err == io.EOF {
			t.Fatal("stream ended without an exit frame")
		}
		if err != nil {
			t.Fatal(err)
		}
		switch f.Kind {
		case agent.FrameStdout, agent.FrameStderr:
			out.Write(f.Data)
		case agent.FrameExit:
			return out.String(), *f.Exit
		case agent.FrameError:
			t.Fatalf("exec %v: %s", argv, f.Data)
		}
	}
}

func TestServiceLifecycle(t *testing.T) {
	for _, tc := range []struct {
		class  string
		userns bool
	}{{"crun", true}, {"crun", false}, {"runc", true}} {
		t.Run(tc.class+map[bool]string{true: "/userns", false: "/hostns"}[tc.userns], func(t *testing.T) {
			svc, _, dir := newService(t, tc.class, tc.userns)
			ctx := t.Context()
			start := time.Now()
			sb, err := svc.Create(ctx, sandbox.CreateOptions{TenantID: "t1", Name: "one", Env: map[string]string{"A": "b"}})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("create: %v", time.Since(start))
			start = time.Now()
			out, exit := run(t, svc, sb.ID, "sh", "-c", "echo $A; id -u")
			t.Logf("first exec: %v", time.Since(start))
			if out != "b\n0\n" || exit.Code != 0 {
				t.Errorf("exec: %q %+v", out, exit)
			}
			run(t, svc, sb.ID, "sh", "-c", "echo persisted > /root/f")
			if _, err := svc.Stop(ctx, "t1", sb.ID, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Exec(ctx, "t1", sb.ID, agent.ExecRequest{Argv: []string{"true"}}); !errorsIs(err, errdefs.ErrConflict) {
				t.Errorf("exec when stopped: %v", err)
			}
			if _, err := svc.Start(ctx, "t1", "one"); err != nil {
				t.Fatal(err)
			}
			if out, _ := run(t, svc, sb.ID, "cat", "/root/f"); out != "persisted\n" {
				t.Errorf("after restart: %q", out)
			}
			if _, err := svc.Get(ctx, "t2", sb.ID); !errorsIs(err, errdefs.ErrNotFound) {
				t.Errorf("another tenant's get: %v", err)
			}
			if err := svc.Delete(ctx, "t1", sb.ID); err != nil {
				t.Fatal(err)
			}
			ents, _ := os.ReadDir(filepath.Join(dir, "state", "sandboxes"))
			if len(ents) != 0 {
				t.Errorf("left behind: %v", ents)
			}
			mi, _ := os.ReadFile("/proc/self/mountinfo")
			if strings.Contains(string(mi), dir) {
				t.Error("mounts left behind")
			}
		})
	}
}

func TestServiceFailedCreateLeavesNothing(t *testing.T) {
	svc, st, dir := newService(t, "crun", true)
	ctx := t.Context()
	for _, opts := range []sandbox.CreateOptions{
		{TenantID: "t1", Image: "missing"},
		{TenantID: "t1", Entrypoint: []string{"/does/not/exist"}, Cmd: nil, Resources: store.Resources{DiskMB: 1}},
		{TenantID: "t1", Runtime: "nope"},
	} {
		if _, err := svc.Create(ctx, opts); err == nil {
			t.Errorf("create %+v succeeded", opts)
		}
	}
	items, _, _ := st.ListSandboxes(ctx, store.SandboxFilter{})
	if len(items) != 0 {
		t.Errorf("records left: %+v", items)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "state", "sandboxes"))
	if len(ents) != 0 {
		t.Errorf("files left: %v", ents)
	}
}

func errorsIs(err, target error) bool { return errdefs.Kind(err) == target }

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestServiceExecLimit: a sandbox runs at most MaxExecs commands at once;
// a finished or abandoned one gives its slot back.
func TestServiceExecLimit(t *testing.T) {
	svc, _, _ := newService(t, "crun", true)
	ctx := t.Context()
	sb, err := svc.Create(ctx, sandbox.CreateOptions{TenantID: "t1", Name: "lim"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Delete(context.WithoutCancel(ctx), "t1", sb.ID)
	var procs []*sandbox.Process
	for i := 0; i < 2; i++ {
		p, err := svc.Exec(ctx, "t1", sb.ID, agent.ExecRequest{Argv: []string{"sleep", "30"}})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	if _, err := svc.Exec(ctx, "t1", sb.ID, agent.ExecRequest{Argv: []string{"true"}}); !errorsIs(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("third exec: %v, want resource exhausted", err)
	}
	procs[0].Close()
	if out, st := run(t, svc, sb.ID, "echo", "ok"); out != "ok\n" || st.Code != 0 {
		t.Errorf("exec after a slot was freed: %q %+v", out, st)
	}
	// Finished commands give their slots back without Close.
	for i := 0; i < 3; i++ {
		run(t, svc, sb.ID, "true")
	}
	procs[1].Close()
}

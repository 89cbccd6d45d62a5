package runtime

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/cgroup"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/testutil"
)

// TestOCIConformance runs the same lifecycle against each installed runtime:
// run with an inherited fd, state, list, update, kill, wait, delete.
func TestOCIConformance(t *testing.T) {
	testutil.RequireRoot(t)
	if err := SetSubreaper(); err != nil {
		t.Fatal(err)
	}
	if _, err := cgroup.PrepareHybrid("/sys/fs/cgroup"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cg, err := cgroup.Detect("/sys/fs/cgroup"); err == nil {
			cg.Remove("/sbxtest")
		}
	})
	bb, _ := exec.LookPath("busybox")
	for _, class := range []string{"crun", "runc"} {
		for _, userns := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/userns=%v", class, userns), func(t *testing.T) {
				if _, err := exec.LookPath(class); err != nil {
					testutil.Unavailable(t, class+" is not installed")
				}
				rt, err := NewOCI(class, class, filepath.Join(t.TempDir(), "state"))
				if err != nil {
					t.Fatal(err)
				}
				v, err := rt.Version(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if class == "runc" {
					if err := CheckVersion(class, v); err != nil {
						testutil.Unavailable(t, err.Error())
					}
				}
				bundle := t.TempDir()
				// The runtime's init runs as the sandbox's unprivileged host
				// uid and must traverse to the rootfs.
				os.Chmod(bundle, 0o711)
				os.Chmod(filepath.Dir(bundle), 0o711)
				if err := image.BuildBusyboxRootfs(t.Context(), filepath.Join(bundle, "rootfs")); err != nil {
					testutil.Unavailable(t, err.Error())
				}
				// The agent's bind mount target.
				os.MkdirAll(filepath.Join(bundle, "rootfs", ".sbx"), 0o755)
				os.WriteFile(filepath.Join(bundle, "rootfs", ".sbx", "sbx-agent"), nil, 0o755)
				id := fmt.Sprintf("sbxtest-%s-%v-%d", class, userns, os.Getpid())
				opts := SpecOptions{
					ID: id, Hostname: "conformance", Rootfs: "rootfs",
					Init:        []string{"/bin/sh", "-c", "id -u >&3; cat /proc/self/uid_map >&3; exec 3>&-; exec sleep 1000"},
					Env:         []string{"PATH=/bin"},
					AgentBinary: bb,
					CgroupsPath: "/sbxtest/" + id,
					Limits:      Limits{CPU: 0.5, MemoryBytes: 64 << 20, Pids: 32},
				}
				if userns {
					opts.UserNS = &IDMap{HostID: 2 << 20, Size: 65536}
				}
				spec, err := Spec(opts)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := json.Marshal(spec)
				os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600)

				r, w, _ := os.Pipe()
				defer r.Close()
				start := time.Now()
				pid, err := rt.Run(t.Context(), id, bundle, []*os.File{w})
				w.Close()
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%s run: %v", class, time.Since(start))
				t.Cleanup(func() {
					rt.Kill(t.Context(), id, syscall.SIGKILL)
					time.Sleep(50 * time.Millisecond)
					rt.Delete(t.Context(), id)
				})
				sc := bufio.NewScanner(r)
				var lines []string
				for sc.Scan() {
					lines = append(lines, sc.Text())
				}
				if len(lines) < 2 || lines[0] != "0" {
					t.Fatalf("inherited fd: got %q", lines)
				}
				if f := strings.Fields(lines[1]); userns && (len(f) != 3 || f[1] != strconv.Itoa(2<<20)) {
					t.Errorf("uid_map inside = %q, want 0 %d 65536", lines[1], 2<<20)
				}
				st, err := rt.State(t.Context(), id)
				if err != nil || st.Status != StatusRunning || st.Pid != pid {
					t.Fatalf("state = %+v, %v; want running pid %d", st, err, pid)
				}
				list, err := rt.List(t.Context())
				if err != nil || len(list) != 1 || list[0].ID != id {
					t.Errorf("list = %+v, %v", list, err)
				}
				if err := rt.Update(t.Context(), id, LimitResources(Limits{MemoryBytes: 96 << 20, CPU: 0.5, Pids: 32})); err != nil {
					t.Fatal(err)
				}
				got, _ := os.ReadFile("/sys/fs/cgroup/memory" + opts.CgroupsPath + "/memory.limit_in_bytes")
				if strings.TrimSpace(string(got)) != strconv.Itoa(96<<20) {
					t.Errorf("memory limit after update = %q", got)
				}
				p, err := OpenProcess(pid)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Close()
				if err := rt.Kill(t.Context(), id, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				exit, err := p.Wait(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				if exit.Known && exit.Signal != int(syscall.SIGKILL) {
					t.Errorf("exit = %+v, want SIGKILL", exit)
				}
				if err := rt.Delete(t.Context(), id); err != nil {
					t.Fatal(err)
				}
				if _, err := rt.State(t.Context(), id); !errors.Is(err, ErrNotExist) {
					t.Errorf("state after delete = %v, want ErrNotExist", err)
				}
				if _, err := os.Stat("/sys/fs/cgroup/memory" + opts.CgroupsPath); err == nil {
					t.Errorf("cgroup %s left behind", opts.CgroupsPath)
				}
				if err := rt.Delete(t.Context(), id); err != nil {
					t.Errorf("deleting twice: %v", err)
				}
			})
		}
	}
}

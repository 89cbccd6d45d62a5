package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/runtime"
)

// rawRun measures the floor: the runtime itself running `echo ok` in a
// container of the same rootfs with the same namespaces, user namespace,
// seccomp profile, capabilities and cgroup limits that sbx uses — but no
// daemon, no API, no overlay and no agent. `<runtime> run` (foreground)
// creates, starts, waits and deletes.
func rawRun(ctx context.Context, class, rootfs, workDir string, n, parallel int) *sample {
	s := &sample{name: "raw " + class + " run"}
	bin, err := exec.LookPath(class)
	if err != nil {
		s.note = class + " not installed"
		return s
	}
	bundle := func(i int) (string, error) {
		return rawBundle(class, bin, rootfs, workDir, i, []string{"/bin/echo", "ok"})
	}
	state := filepath.Join(workDir, "state-"+class)
	one := func(i int) error {
		id := fmt.Sprintf("bench-%s-%d", class, i)
		dir, err := bundle(i)
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cmd := exec.CommandContext(ctx, bin, "--root", state, "run", "--bundle", dir, id)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			exec.Command(bin, "--root", state, "delete", "-f", id).Run()
			return fmt.Errorf("%s: %w: %s", class, err, strings.TrimSpace(out.String()))
		}
		if strings.TrimSpace(out.String()) != "ok" {
			return fmt.Errorf("%s printed %q", class, out.String())
		}
		return nil
	}
	measure(s, n, parallel, one)
	return s
}

// rawBundle writes a bundle like sbx's (same namespaces, user namespace,
// seccomp, capabilities, cgroup limits) without the agent, running init.
// One bundle per run: concurrent runs need their own cgroups.
func rawBundle(class, bin, rootfs, workDir string, i int, init []string) (string, error) {
	dir := filepath.Join(workDir, fmt.Sprintf("bundle-%s-%d", class, i))
	os.MkdirAll(dir, 0o711)
	spec, err := runtime.Spec(runtime.SpecOptions{
		ID: "bench", Hostname: "bench", Rootfs: rootfs,
		Init:        init,
		Env:         []string{"PATH=/bin:/usr/bin"},
		AgentBinary: bin, // any read-only file: the floor has no agent
		UserNS:      &runtime.IDMap{HostID: 900000, Size: 65536},
		CgroupsPath: fmt.Sprintf("/sbx-bench/%s-%d", class, i),
		Limits:      runtime.Limits{CPU: 1, MemoryBytes: 1 << 30, Pids: 1024},
	})
	if err != nil {
		return "", err
	}
	spec.Root.Readonly = true
	// No agent, and its bind target does not exist in a read-only rootfs.
	mounts := spec.Mounts[:0]
	for _, m := range spec.Mounts {
		if m.Destination != runtime.AgentPath {
			mounts = append(mounts, m)
		}
	}
	spec.Mounts = mounts
	b, _ := json.Marshal(spec)
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600)
}

// rawExec measures `<runtime> exec <id> /bin/true` into a running
// container: the floor of sbx's exec round trip.
func rawExec(ctx context.Context, class, rootfs, workDir string, n int) *sample {
	s := &sample{name: "raw " + class + " exec `true`"}
	bin, err := exec.LookPath(class)
	if err != nil {
		s.note = class + " not installed"
		return s
	}
	dir, err := rawBundle(class, bin, rootfs, workDir, 9999, []string{"/bin/sleep", "3600"})
	if err != nil {
		s.note = err.Error()
		return s
	}
	defer os.RemoveAll(dir)
	state := filepath.Join(workDir, "state-"+class)
	id := "bench-exec-" + class
	// The detached container keeps its stdio: never a pipe we wait on.
	if err := exec.CommandContext(ctx, bin, "--root", state, "run", "-d", "--bundle", dir, id).Run(); err != nil {
		s.note = fmt.Sprintf("%s run -d: %v", class, err)
		return s
	}
	defer func() {
		exec.Command(bin, "--root", state, "kill", id, "KILL").Run()
		time.Sleep(50 * time.Millisecond)
		exec.Command(bin, "--root", state, "delete", "-f", id).Run()
	}()
	measure(s, n, 1, func(int) error {
		if out, err := exec.CommandContext(ctx, bin, "--root", state, "exec", id, "/bin/true").CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return s
}

// measure runs one n times, parallel at a time, recording each latency.
func measure(s *sample, n, parallel int, one func(i int) error) {
	type result struct {
		d   time.Duration
		err error
	}
	work := make(chan int)
	results := make(chan result)
	for w := 0; w < parallel; w++ {
		go func() {
			for i := range work {
				start := time.Now()
				err := one(i)
				results <- result{time.Since(start), err}
			}
		}()
	}
	go func() {
		for i := 0; i < n; i++ {
			work <- i
		}
		close(work)
	}()
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			s.errors++
			if s.note == "" {
				s.note = r.err.Error()
			}
			continue
		}
		s.times = append(s.times, r.d)
	}
}

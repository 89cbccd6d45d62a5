package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/testutil"
)

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

// buildAgent builds cmd/sbx-agent the way the Makefile does, once per run.
func buildAgent(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "sbx-agent-test-")
		if err != nil {
			buildErr = err
			return
		}
		agentBin = filepath.Join(dir, "sbx-agent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", agentBin, "github.com/sbx-sh/sbx/cmd/sbx-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building sbx-agent: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agentBin
}

// childrenOf returns the pids and states of the processes whose parent is
// pid, read from the host's /proc.
func childrenOf(t *testing.T, pid int) map[int]byte {
	t.Helper()
	out := map[int]byte{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		var p int
		if _, err := fmt.Sscanf(e.Name(), "%d", &p); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		var state byte
		var ppid int
		if _, err := fmt.Sscanf(string(data[i+2:]), "%c %d", &state, &ppid); err == nil && ppid == pid {
			out[p] = state
		}
	}
	return out
}

// startAgent runs the built sbx-agent as `init` with a listener on fd 3.
func startAgent(t *testing.T, sys *syscall.SysProcAttr, entrypoint ...string) (*exec.Cmd, *Client, *bytes.Buffer) {
	t.Helper()
	bin := buildAgent(t)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	f, err := ul.File()
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"init", "--listen-fd", "3", "--log-limit", "4096", "--"}, entrypoint...)
	cmd := exec.Command(bin, args...)
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = sys
	cmd.Dir = t.TempDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ln.Close() // the agent holds its own copy, as with the runtime's --preserve-fds
	c := NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, c, &stderr
}

func TestInitSubreaper(t *testing.T) {
	testInit(t, nil, false)
}

func TestInitPIDNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	testInit(t, &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}, true)
}

func testInit(t *testing.T, sys *syscall.SysProcAttr, pid1 bool) {
	cmd, c, stderr := startAgent(t, sys, "sh", "-c", "echo hello-entrypoint; exec sleep 1000")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	h, err := c.Health(ctx)
	if err != nil {
		t.Fatalf("health: %v (agent stderr: %s)", err, stderr)
	}
	if pid1 && h.PID != 1 {
		t.Errorf("agent pid %d in its namespace, want 1", h.PID)
	}
	if h.Entrypoint == nil || !h.Entrypoint.Running {
		t.Errorf("entrypoint %+v, want running", h.Entrypoint)
	}

	// The entrypoint's output shows in the logs.
	deadline := time.Now().Add(5 * time.Second)
	for {
		rc, err := c.Logs(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if string(data) == "hello-entrypoint\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs %q", data)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// An orphan is re-parented to the agent and reaped when it exits.
	agentPid := cmd.Process.Pid
	before := len(childrenOf(t, agentPid))
	st, err := c.Run(ctx, ExecRequest{Shell: "sleep 0.5 & exit 0"}, nil, nil, nil)
	if err != nil || st.Code != 0 {
		t.Fatalf("exec: %+v, %v", st, err)
	}
	if got := len(childrenOf(t, agentPid)); got != before+1 {
		t.Errorf("agent has %d children after orphaning one, want %d", got, before+1)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		kids := childrenOf(t, agentPid)
		zombies := 0
		for _, state := range kids {
			if state == 'Z' {
				zombies++
			}
		}
		if len(kids) == before && zombies == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent's children %v: the orphan was not reaped", kids)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Exec through the central reaper still reports exit codes.
	var out bytes.Buffer
	st, err = c.Run(ctx, ExecRequest{Shell: "echo in-sandbox; exit 3"}, nil, &out, nil)
	if err != nil || st.Code != 3 || out.String() != "in-sandbox\n" {
		t.Errorf("exec: %+v %q, %v", st, out.String(), err)
	}

	// SIGTERM reaches the entrypoint, and the agent ends once it is gone.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("agent exited with %v (stderr: %s)", err, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit after SIGTERM")
	}
	if s := stderr.String(); strings.Contains(s, "panic") {
		t.Errorf("agent stderr: %s", s)
	}
}

func TestInitWithoutEntrypointExitsOnSIGTERM(t *testing.T) {
	cmd, c, stderr := startAgent(t, nil)
	h, err := c.Health(t.Context())
	if err != nil {
		t.Fatalf("health: %v (%s)", err, stderr)
	}
	if h.Entrypoint != nil {
		t.Errorf("entrypoint %+v, want none", h.Entrypoint)
	}
	// A running exec gets SIGTERM too.
	p, err := c.Exec(t.Context(), ExecRequest{Shell: "echo ready; exec sleep 100"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if f, err := p.Recv(); err != nil || string(f.Data) != "ready\n" {
		t.Fatalf("Recv %+v, %v", f, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent exited with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit after SIGTERM")
	}
	// The exec either reports SIGTERM or loses its stream with the agent.
	f, err := p.Recv()
	if err == nil && (f.Kind != FrameExit || f.Exit.Signal != "SIGTERM") {
		t.Errorf("exec after SIGTERM: %+v", f)
	}
}

func TestAgentVersionCommand(t *testing.T) {
	out, err := exec.Command(buildAgent(t), "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "protocol "+Version) {
		t.Errorf("version output %q", out)
	}
}

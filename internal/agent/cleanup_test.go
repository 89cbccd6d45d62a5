package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

func waitProcGone(t *testing.T, what string, pid int) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if !alive(pid) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("%s: process %d outlived its owner", what, pid)
}

// readPid polls a file for a pid written by a test process.
func readPid(t *testing.T, path string) int {
	t.Helper()
	for i := 0; i < 300; i++ {
		if b, err := os.ReadFile(path); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				return pid
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", path)
	return 0
}

// TestDeleteKillsEverything: deleting a session, a terminal or a code
// context ends the processes it started, even those that left its process
// group (setsid, job control, subprocess).
func TestDeleteKillsEverything(t *testing.T) {
	dir := t.TempDir()
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/local/bin:/usr/bin:/bin"}, Dir: dir})
	ctx := t.Context()

	sid := fmt.Sprintf("cleanup-%d", os.Getpid())
	if _, err := c.CreateSession(ctx, SessionRequest{ID: sid}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SessionExec(ctx, sid, SessionExecRequest{Command: "setsid sleep 60 > /dev/null 2>&1 & echo $! > " + dir + "/s.pid"}); err != nil {
		t.Fatal(err)
	}
	spid := readPid(t, dir+"/s.pid")
	if err := c.DeleteSession(ctx, sid); err != nil {
		t.Fatal(err)
	}
	waitProcGone(t, "session", spid)

	pt, err := c.CreatePTY(ctx, PTYRequest{Argv: []string{"/bin/sh", "-c", "set -m; sleep 60 & echo $! > " + dir + "/p.pid; wait"}})
	if err != nil {
		t.Fatal(err)
	}
	ppid := readPid(t, dir+"/p.pid")
	if err := c.DeletePTY(ctx, pt.ID); err != nil {
		t.Fatal(err)
	}
	waitProcGone(t, "terminal", ppid)

	if _, err := lookPath("python3", "/usr/bin:/bin:/usr/local/bin", "/"); err == nil {
		cx, err := c.CreateContext(ctx, ContextRequest{Language: "python"})
		if err != nil {
			t.Fatal(err)
		}
		code := fmt.Sprintf("import subprocess\np = subprocess.Popen(['sleep', '60'], start_new_session=True)\nopen(%q, 'w').write(str(p.pid))", dir+"/c.pid")
		st, err := c.RunCode(ctx, CodeRequest{ContextID: cx.ID, Code: code})
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := st.Recv(); err != nil {
				break
			}
		}
		st.Close()
		cpid := readPid(t, dir+"/c.pid")
		if err := c.DeleteContext(ctx, cx.ID); err != nil {
			t.Fatal(err)
		}
		waitProcGone(t, "context", cpid)
	}
}

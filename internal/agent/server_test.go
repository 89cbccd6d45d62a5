package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/testutil"
)

// startServer runs the real server on a unix socket in a temp dir and
// returns a client of it and the socket path.
func startServer(t testing.TB, cfg ServerConfig) (*Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, cfg) }()
	c := NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c, sock
}

type runResult struct {
	stdout, stderr string
	status         ExitStatus
}

func run(t *testing.T, c *Client, req ExecRequest, stdin io.Reader) runResult {
	t.Helper()
	var out, errb bytes.Buffer
	st, err := c.Run(t.Context(), req, stdin, &out, &errb)
	if err != nil {
		t.Fatalf("Run(%+v): %v", req, err)
	}
	return runResult{out.String(), errb.String(), st}
}

func TestExec(t *testing.T) {
	dir := t.TempDir()
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin", "FOO=base", "KEEP=yes"}, Dir: dir})
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		req        ExecRequest
		stdin      string
		wantOut    string
		wantErr    string
		wantCode   int
		wantSignal string
	}{
		{name: "argv", req: ExecRequest{Argv: []string{"echo", "hello", "world"}}, wantOut: "hello world\n"},
		{name: "shell", req: ExecRequest{Shell: "echo a && echo b | tr b c"}, wantOut: "a\nc\n"},
		{name: "separate streams", req: ExecRequest{Shell: "echo out; echo err >&2"}, wantOut: "out\n", wantErr: "err\n"},
		{name: "env merged over sandbox env", req: ExecRequest{Shell: `echo "$FOO $KEEP $NEW"`, Env: []string{"FOO=over", "NEW=x"}}, wantOut: "over yes x\n"},
		{name: "default cwd", req: ExecRequest{Argv: []string{"pwd"}}, wantOut: dir + "\n"},
		{name: "absolute cwd", req: ExecRequest{Argv: []string{"pwd"}, Cwd: sub}, wantOut: sub + "\n"},
		{name: "relative cwd", req: ExecRequest{Argv: []string{"pwd"}, Cwd: "sub"}, wantOut: sub + "\n"},
		{name: "stdin round trip", req: ExecRequest{Argv: []string{"cat"}}, stdin: "some input\nmore\n", wantOut: "some input\nmore\n"},
		{name: "no stdin is /dev/null", req: ExecRequest{Argv: []string{"wc", "-c"}}, wantOut: "0\n"},
		{name: "exit code", req: ExecRequest{Shell: "exit 42"}, wantCode: 42},
		{name: "killed by signal", req: ExecRequest{Shell: "kill -TERM $$"}, wantCode: 128 + 15, wantSignal: "SIGTERM"},
		{name: "PATH from request env", req: ExecRequest{Argv: []string{"true"}, Env: []string{"PATH=/bin"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdin io.Reader
			if tt.stdin != "" {
				stdin = strings.NewReader(tt.stdin)
			}
			got := run(t, c, tt.req, stdin)
			if got.stdout != tt.wantOut || got.stderr != tt.wantErr {
				t.Errorf("stdout %q stderr %q, want %q and %q", got.stdout, got.stderr, tt.wantOut, tt.wantErr)
			}
			if got.status.Code != tt.wantCode || got.status.Signal != tt.wantSignal || got.status.TimedOut {
				t.Errorf("status %+v, want code %d signal %q", got.status, tt.wantCode, tt.wantSignal)
			}
		})
	}
}

func TestExecStartErrors(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin"}})
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		req      ExecRequest
		wantKind error
		wantMsg  string
	}{
		{"unknown command", ExecRequest{Argv: []string{"no-such-command-xyz"}}, errdefs.ErrNotFound, "executable file not found"},
		{"missing path", ExecRequest{Argv: []string{"/no/such/file"}}, errdefs.ErrNotFound, "no such file"},
		{"not executable", ExecRequest{Argv: []string{plain}}, errdefs.ErrPermissionDenied, "permission denied"},
		{"missing cwd", ExecRequest{Argv: []string{"true"}, Cwd: "/no/such/dir"}, errdefs.ErrNotFound, "working directory"},
		{"unknown user", ExecRequest{Argv: []string{"true"}, User: "no-such-user-xyz"}, errdefs.ErrNotFound, "not found in /etc/passwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Run(t.Context(), tt.req, nil, nil, nil)
			if !errors.Is(err, tt.wantKind) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Run: %v, want kind %v containing %q", err, tt.wantKind, tt.wantMsg)
			}
			if msg := errdefs.Message(err); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("public message %q does not contain %q", msg, tt.wantMsg)
			}
		})
	}

	// The streaming API sees the same as an error frame, then EOF.
	p, err := c.Exec(t.Context(), ExecRequest{Argv: []string{"no-such-command-xyz"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	f, err := p.Recv()
	if err != nil || f.Kind != FrameError || !strings.Contains(string(f.Data), "executable file not found") {
		t.Fatalf("Recv = %+v, %v; want an error frame", f, err)
	}
	if _, err := p.Recv(); err != io.EOF {
		t.Fatalf("Recv after error frame: %v, want io.EOF", err)
	}

	// Bad requests are refused before any stream.
	if _, err := c.Exec(t.Context(), ExecRequest{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Exec without argv or shell: %v, want invalid argument", err)
	}
}

func TestExecStreamsWhileRunning(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	p, err := c.Exec(t.Context(), ExecRequest{Argv: []string{"cat"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// Each line must come back before the next is sent: true streaming.
	for i := range 3 {
		line := fmt.Sprintf("line %d\n", i)
		if _, err := p.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		f, err := p.Recv()
		if err != nil || f.Kind != FrameStdout || string(f.Data) != line {
			t.Fatalf("Recv = %v %q, %v; want stdout %q", f.Kind, f.Data, err, line)
		}
	}
	if err := p.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	f, err := p.Recv()
	if err != nil || f.Kind != FrameExit || f.Exit.Code != 0 {
		t.Fatalf("Recv = %+v, %v; want exit 0", f, err)
	}
	if _, err := p.Recv(); err != io.EOF {
		t.Fatalf("Recv after exit: %v, want io.EOF", err)
	}
}

func TestExecSignal(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	p, err := c.Exec(t.Context(), ExecRequest{Shell: "echo ready; exec sleep 100"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if f, err := p.Recv(); err != nil || string(f.Data) != "ready\n" {
		t.Fatalf("Recv = %+v, %v", f, err)
	}
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f, err := p.Recv()
	if err != nil || f.Kind != FrameExit {
		t.Fatalf("Recv = %+v, %v; want exit", f, err)
	}
	want := ExitStatus{Code: 137, Signal: "SIGKILL"}
	if diff := cmp.Diff(want, *f.Exit, cmpIgnoreDuration); diff != "" {
		t.Errorf("exit status (-want +got):\n%s", diff)
	}
}

var cmpIgnoreDuration = cmp.Comparer(func(a, b time.Duration) bool { return true })

// pidGone reports whether pid has exited (gone, or a zombie waiting for a
// slow reaper outside our control).
func pidGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	return i > 0 && len(data) > i+2 && data[i+2] == 'Z'
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !pidGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	start := time.Now()
	got := run(t, c, ExecRequest{Shell: "sleep 100 & echo $!; sleep 100", Timeout: 300 * time.Millisecond}, nil)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("timed-out exec took %v", el)
	}
	if !got.status.TimedOut || got.status.Signal != "SIGKILL" || got.status.Code != 137 {
		t.Errorf("status %+v, want timed out by SIGKILL", got.status)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(got.stdout))
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", got.stdout, err)
	}
	waitGone(t, grandchild)
}

func TestExecCancelKillsProcess(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	p, err := c.Exec(ctx, ExecRequest{Shell: "echo $$; exec sleep 100"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := p.Recv()
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(f.Data)))
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := p.Recv(); !errors.Is(err, context.Canceled) {
		t.Errorf("Recv after cancel: %v, want context.Canceled", err)
	}
	waitGone(t, pid)

	// Close abandons likewise.
	p, err = c.Exec(t.Context(), ExecRequest{Shell: "echo $$; exec sleep 100"})
	if err != nil {
		t.Fatal(err)
	}
	if f, err = p.Recv(); err != nil {
		t.Fatal(err)
	}
	pid, _ = strconv.Atoi(strings.TrimSpace(string(f.Data)))
	p.Close()
	waitGone(t, pid)
}

func TestExecLargeOutputBoundedMemory(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	const size = 50 << 20
	p, err := c.Exec(t.Context(), ExecRequest{Argv: []string{"head", "-c", strconv.Itoa(size), "/dev/zero"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var total int
	var maxHeap uint64
	var ms runtime.MemStats
	for i := 0; ; i++ {
		f, err := p.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if f.Kind == FrameExit {
			if f.Exit.Code != 0 {
				t.Fatalf("exit %+v", f.Exit)
			}
			break
		}
		total += len(f.Data)
		if i%200 == 0 {
			runtime.ReadMemStats(&ms)
			maxHeap = max(maxHeap, ms.HeapInuse)
		}
	}
	if total != size {
		t.Errorf("received %d bytes, want %d", total, size)
	}
	// Server and client share this process: buffering the output anywhere
	// would show as a heap of tens of MB.
	if maxHeap > 24<<20 {
		t.Errorf("heap in use reached %d MB while streaming %d MB", maxHeap>>20, size>>20)
	}
	t.Logf("max heap in use %.1f MB", float64(maxHeap)/(1<<20))
}

func TestExecDrainsAfterExit(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	// A background child holding stdout must not hold the stream open,
	// and everything the command wrote before exiting must arrive.
	start := time.Now()
	got := run(t, c, ExecRequest{Shell: "head -c 200000 /dev/zero | tr '\\0' x; sleep 30 &"}, nil)
	if len(got.stdout) != 200000 || got.status.Code != 0 {
		t.Errorf("got %d bytes, status %+v", len(got.stdout), got.status)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("exec with a lingering background child took %v", el)
	}
}

func TestExecConcurrent(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			st, err := c.Run(t.Context(), ExecRequest{Shell: fmt.Sprintf("sleep 0.1; echo %d", i)}, nil, &out, nil)
			if err != nil {
				errs <- err
				return
			}
			if want := fmt.Sprintf("%d\n", i); out.String() != want || st.Code != 0 {
				errs <- fmt.Errorf("exec %d: stdout %q status %+v", i, out.String(), st)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestVersionMismatch(t *testing.T) {
	c, sock := startServer(t, ServerConfig{})
	c.version = "2"
	_, err := c.Health(t.Context())
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "version 2") {
		t.Fatalf("Health with version 2: %v", err)
	}
	if _, err := c.Exec(t.Context(), ExecRequest{Argv: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Fatalf("Exec with version 2: %v", err)
	}

	// A minor version of ours is accepted; no header at all is not.
	c.version = Version + ".7"
	if _, err := c.Health(t.Context()); err != nil {
		t.Fatalf("Health with a minor version: %v", err)
	}
	hc := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://agent/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), versionHeader) {
		t.Errorf("no version header: %s %s", resp.Status, body)
	}
}

func TestHealthAndLogs(t *testing.T) {
	c, _ := startServer(t, ServerConfig{
		Entrypoint: []string{"sh", "-c", "echo one; echo two >&2; sleep 0.3; echo three"},
	})
	h, err := c.Health(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != Version || h.PID != os.Getpid() || h.Entrypoint == nil || h.Entrypoint.PID == 0 {
		t.Errorf("health %+v", h)
	}
	rc, err := c.Logs(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc) // ends when the entrypoint's output does
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "one\ntwo\nthree\n" {
		t.Errorf("followed logs %q", data)
	}
	// The entrypoint's exit does not stop the agent, and health reports it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h, err = c.Health(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !h.Entrypoint.Running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("entrypoint still running")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h.Entrypoint.Exit == nil || h.Entrypoint.Exit.Code != 0 {
		t.Errorf("entrypoint status %+v", h.Entrypoint)
	}
	rc, err = c.Logs(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	data, _ = io.ReadAll(rc)
	rc.Close()
	if string(data) != "one\ntwo\nthree\n" {
		t.Errorf("logs %q", data)
	}
}

func TestLogsBounded(t *testing.T) {
	c, _ := startServer(t, ServerConfig{
		Entrypoint: []string{"sh", "-c", "head -c 5000 /dev/zero | tr '\\0' a; printf END"},
		LogLimit:   1000,
	})
	rc, err := c.Logs(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, rc) // wait for the output to end
	rc.Close()
	rc, err = c.Logs(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if want := strings.Repeat("a", 997) + "END"; string(data) != want {
		t.Errorf("logs: %d bytes ending %q, want the last 1000 bytes", len(data), data[max(0, len(data)-10):])
	}
}

func TestLogsFollowCancel(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Entrypoint: []string{"sh", "-c", "echo hi; exec sleep 100"}})
	ctx, cancel := context.WithCancel(t.Context())
	rc, err := c.Logs(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 10)
	n, err := io.ReadAtLeast(rc, buf, 3)
	if err != nil || string(buf[:n]) != "hi\n" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	cancel()
	if _, err := io.ReadAll(rc); err == nil {
		t.Error("followed logs did not end with an error on cancel")
	}
}

func TestEntrypointNotFound(t *testing.T) {
	c, _ := startServer(t, ServerConfig{Entrypoint: []string{"no-such-entrypoint-xyz"}})
	h, err := c.Health(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if h.Entrypoint == nil || h.Entrypoint.Running || h.Entrypoint.Exit == nil || h.Entrypoint.Exit.Code != 127 {
		t.Errorf("entrypoint %+v", h.Entrypoint)
	}
	rc, err := c.Logs(t.Context(), true)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(data), "executable file not found") {
		t.Errorf("logs %q", data)
	}
}

func TestExecUser(t *testing.T) {
	testutil.RequireRoot(t)
	etc := t.TempDir()
	os.WriteFile(filepath.Join(etc, "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1234:1234::/home/alice:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(etc, "group"), []byte("root:x:0:\nalice:x:1234:\nstaff:x:50:alice,bob\nwheel:x:10:alice\n"), 0o644)
	c, _ := startServer(t, ServerConfig{EtcDir: etc, Dir: "/"})
	tests := []struct {
		user, want string
	}{
		{"alice", "1234 1234 10 50 1234 /home/alice\n"},
		{"1234", "1234 1234 10 50 1234 /home/alice\n"},
		{"4000:4001", "4000 4001 4001 /\n"},
		{"alice:50", "1234 50 10 50 /home/alice\n"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			got := run(t, c, ExecRequest{Shell: `echo $(id -u) $(id -g) $(id -G | tr ' ' '\n' | sort -n | tr '\n' ' ')$HOME`, User: tt.user}, nil)
			if got.stdout != tt.want {
				t.Errorf("got %q (stderr %q), want %q", got.stdout, got.stderr, tt.want)
			}
		})
	}
}

// BenchmarkExecTrue measures the round trip of running `true`: request,
// fork/exec, exit frame.
func BenchmarkExecTrue(b *testing.B) {
	c, _ := startServer(b, ServerConfig{})
	req := ExecRequest{Argv: []string{"true"}}
	for b.Loop() {
		st, err := c.Run(b.Context(), req, nil, nil, nil)
		if err != nil || st.Code != 0 {
			b.Fatalf("%+v, %v", st, err)
		}
	}
}

package agent

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// watched collects an attach stream's output in the background.
type watched struct {
	s    *PTYStream
	mu   sync.Mutex
	out  bytes.Buffer
	last *Frame // the exit or error frame
	err  error  // a Recv error
	done chan struct{}
}

func watch(s *PTYStream) *watched {
	w := &watched{s: s, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			f, err := s.Recv()
			w.mu.Lock()
			switch {
			case err != nil:
				w.err = err
			case f.Kind == FrameStdout:
				w.out.Write(f.Data)
			default:
				w.last = &f
			}
			w.mu.Unlock()
			if err != nil || f.Kind != FrameStdout {
				return
			}
		}
	}()
	return w
}

func (w *watched) output() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// waitFor waits until the output contains want.
func (w *watched) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if strings.Contains(w.output(), want) {
			return
		}
		select {
		case <-w.done:
			if strings.Contains(w.output(), want) {
				return
			}
			t.Fatalf("stream ended (%v, %+v) before %q; output %q", w.err, w.last, want, w.output())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no %q in the output after 10s: %q", want, w.output())
}

// end waits for the stream's last frame.
func (w *watched) end(t *testing.T) Frame {
	t.Helper()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the stream did not end; output %q", w.output())
	}
	if w.err != nil {
		t.Fatalf("stream: %v", w.err)
	}
	return *w.last
}

func send(t *testing.T, s *PTYStream, text string) {
	t.Helper()
	if _, err := s.Write([]byte(text)); err != nil {
		t.Fatal(err)
	}
}

func requirePTY(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
}

func waitDetached(t *testing.T, c *Client, id string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		p, err := c.GetPTY(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Attached {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the terminal still shows a client attached")
}

func TestPTY(t *testing.T) {
	requirePTY(t)
	dir := t.TempDir()
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin", "TERM=dumb"}, Dir: dir})
	ctx := t.Context()

	p, err := c.CreatePTY(ctx, PTYRequest{ID: "main", Argv: []string{"/bin/sh"}, Env: []string{"PS1=$ "}})
	if err != nil {
		t.Fatal(err)
	}
	want := PTYInfo{ID: "main", PID: p.PID, Argv: []string{"/bin/sh"}, Cwd: dir, Env: []string{"PS1=$ "},
		Cols: 80, Rows: 24, Running: true, CreatedAt: p.CreatedAt}
	if diff := cmp.Diff(want, p); diff != "" || p.PID <= 0 {
		t.Fatalf("created (-want +got):\n%s", diff)
	}

	s, err := c.AttachPTY(ctx, "main", -1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Offset() != 0 || !s.Info().Attached || s.Info().ID != "main" {
		t.Fatalf("attach head: offset %d, %+v", s.Offset(), s.Info())
	}
	w := watch(s)
	// The echoed input says hi-$((1+1)): only the shell's answer says hi-2.
	send(t, s, "echo hi-$((1+1))\n")
	w.waitFor(t, "hi-2")
	send(t, s, "echo term=$TERM\n")
	w.waitFor(t, "term=xterm-256color")

	// Resizing through the stream and through the API both reach the tty.
	if err := s.Resize(PTYSize{Cols: 100, Rows: 30}); err != nil {
		t.Fatal(err)
	}
	send(t, s, "stty size\n")
	w.waitFor(t, "30 100")
	if p, err = c.ResizePTY(ctx, "main", PTYSize{Cols: 120, Rows: 40}); err != nil || p.Cols != 120 || p.Rows != 40 {
		t.Fatalf("resize: %+v %v", p, err)
	}
	send(t, s, "stty size\n")
	w.waitFor(t, "40 120")

	// Detach: the shell and its variables survive; output produced while
	// detached waits in the scrollback.
	send(t, s, "X=kept-42\n")
	s.Close()
	<-w.done
	waitDetached(t, c, "main")
	if err := c.WritePTY(ctx, "main", []byte("echo while-$X\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	s2, err := c.AttachPTY(ctx, "main", -1)
	if err != nil {
		t.Fatal(err)
	}
	w2 := watch(s2)
	w2.waitFor(t, "while-kept-42") // replayed
	if !strings.Contains(w2.output(), "hi-2") {
		t.Errorf("the replay lacks the earlier output: %q", w2.output())
	}
	send(t, s2, "echo again-$X\n")
	w2.waitFor(t, "again-kept-42")

	// A new attach takes over; resuming at an offset skips what was seen.
	seen := s2.Offset() + int64(len(w2.output()))
	s3, err := c.AttachPTY(ctx, "main", seen)
	if err != nil {
		t.Fatal(err)
	}
	if f := w2.end(t); f.Kind != FrameError || !errors.Is(f.Err, errdefs.ErrConflict) {
		t.Fatalf("the old stream ended with %+v, want a conflict error", f)
	}
	if s3.Offset() != seen {
		t.Fatalf("resumed at %d, want %d", s3.Offset(), seen)
	}
	w3 := watch(s3)
	send(t, s3, "echo third\n")
	w3.waitFor(t, "third")
	if strings.Contains(w3.output(), "kept-42") {
		t.Errorf("the resumed stream repeats old output: %q", w3.output())
	}

	// The exit code and the exit frame; the record stays for late comers.
	send(t, s3, "exit 3\n")
	if f := w3.end(t); f.Kind != FrameExit || f.Exit.Code != 3 {
		t.Fatalf("last frame %+v, want exit 3", f)
	}
	p, err = c.GetPTY(ctx, "main")
	if err != nil || p.Running || p.Exit == nil || p.Exit.Code != 3 {
		t.Fatalf("after exit: %+v %v", p, err)
	}
	late, err := c.AttachPTY(ctx, "main", -1)
	if err != nil {
		t.Fatal(err)
	}
	wl := watch(late)
	if f := wl.end(t); f.Kind != FrameExit || f.Exit.Code != 3 || !strings.Contains(wl.output(), "third") {
		t.Fatalf("late attach: %+v, output %q", f, wl.output())
	}
	if _, err := c.ResizePTY(ctx, "main", PTYSize{Cols: 10, Rows: 10}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("resizing an exited terminal: %v, want conflict", err)
	}
	if err := c.DeletePTY(ctx, "main"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPTY(ctx, "main"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestPTYKill(t *testing.T) {
	requirePTY(t)
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin"}})
	ctx := t.Context()
	tests := []struct {
		name       string
		kill       func(id string) error
		wantSignal string
		wantRecord bool
	}{
		{"delete kills and forgets", func(id string) error { return c.DeletePTY(ctx, id) }, "SIGKILL", false},
		{"signal", func(id string) error { return c.SignalPTY(ctx, id, 15) }, "SIGTERM", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A process group of two: the whole group goes.
			p, err := c.CreatePTY(ctx, PTYRequest{Argv: []string{"/bin/sh", "-c", "sleep 100 & sleep 100; wait"}})
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(p.ID, "pty-") {
				t.Errorf("generated id %q", p.ID)
			}
			s, err := c.AttachPTY(ctx, p.ID, -1)
			if err != nil {
				t.Fatal(err)
			}
			w := watch(s)
			if err := tt.kill(p.ID); err != nil {
				t.Fatal(err)
			}
			if f := w.end(t); f.Kind != FrameExit || f.Exit.Signal != tt.wantSignal {
				t.Fatalf("last frame %+v, want exit by %s", f, tt.wantSignal)
			}
			_, err = c.GetPTY(ctx, p.ID)
			if tt.wantRecord != (err == nil) {
				t.Fatalf("get after kill: %v", err)
			}
		})
	}
}

func TestPTYErrors(t *testing.T) {
	requirePTY(t)
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin"}})
	ctx := t.Context()
	if _, err := c.CreatePTY(ctx, PTYRequest{ID: "taken", Argv: []string{"sleep", "100"}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"unknown command", func() error { _, err := c.CreatePTY(ctx, PTYRequest{Argv: []string{"nosuch"}}); return err }, errdefs.ErrNotFound},
		{"unknown cwd", func() error { _, err := c.CreatePTY(ctx, PTYRequest{Cwd: "/nonexistent"}); return err }, errdefs.ErrNotFound},
		{"bad id", func() error { _, err := c.CreatePTY(ctx, PTYRequest{ID: "../x"}); return err }, errdefs.ErrInvalidArgument},
		{"taken id", func() error { _, err := c.CreatePTY(ctx, PTYRequest{ID: "taken"}); return err }, errdefs.ErrAlreadyExists},
		{"bad size", func() error { _, err := c.CreatePTY(ctx, PTYRequest{Cols: -1}); return err }, errdefs.ErrInvalidArgument},
		{"get unknown", func() error { _, err := c.GetPTY(ctx, "nope"); return err }, errdefs.ErrNotFound},
		{"attach unknown", func() error { _, err := c.AttachPTY(ctx, "nope", -1); return err }, errdefs.ErrNotFound},
		{"resize unknown", func() error { _, err := c.ResizePTY(ctx, "nope", PTYSize{Cols: 1, Rows: 1}); return err }, errdefs.ErrNotFound},
		{"resize to zero", func() error { _, err := c.ResizePTY(ctx, "taken", PTYSize{}); return err }, errdefs.ErrInvalidArgument},
		{"delete unknown", func() error { return c.DeletePTY(ctx, "nope") }, errdefs.ErrNotFound},
		{"input unknown", func() error { return c.WritePTY(ctx, "nope", []byte("x")) }, errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want kind %v", err, tt.want)
			}
		})
	}
}

func TestPTYLimit(t *testing.T) {
	requirePTY(t)
	c, _ := startServer(t, ServerConfig{Env: []string{"PATH=/usr/bin:/bin"}})
	ctx := t.Context()
	// One exited terminal and the rest running.
	done, err := c.CreatePTY(ctx, PTYRequest{Argv: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.AttachPTY(ctx, done.ID, -1)
	if err != nil {
		t.Fatal(err)
	}
	if f := watch(s).end(t); f.Kind != FrameExit {
		t.Fatalf("%+v", f)
	}
	for i := 1; i < maxPTYs; i++ {
		if _, err := c.CreatePTY(ctx, PTYRequest{Argv: []string{"sleep", "100"}}); err != nil {
			t.Fatalf("terminal %d: %v", i, err)
		}
	}
	// At the limit the exited one makes room, then there is none.
	if _, err := c.CreatePTY(ctx, PTYRequest{Argv: []string{"sleep", "100"}}); err != nil {
		t.Fatalf("replacing the exited terminal: %v", err)
	}
	if _, err := c.GetPTY(ctx, done.ID); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("the exited terminal is still there: %v", err)
	}
	_, err = c.CreatePTY(ctx, PTYRequest{Argv: []string{"sleep", "100"}})
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "64 terminals") {
		t.Fatalf("beyond the limit: %v", err)
	}
	list, err := c.ListPTYs(ctx)
	if err != nil || len(list) != maxPTYs {
		t.Fatalf("list: %d terminals, %v", len(list), err)
	}
}

// The scrollback grows with the output instead of being allocated whole.
func TestRingGrows(t *testing.T) {
	const limit = 20 << 10
	r := newRing(limit)
	var all []byte
	for i := 0; i < 12; i++ {
		chunk := bytes.Repeat([]byte{byte('a' + i)}, 3000)
		r.Write(chunk)
		all = append(all, chunk...)
		if i == 0 && cap(r.buf) >= limit {
			t.Fatalf("cap %d after 3000 bytes", cap(r.buf))
		}
		got := make([]byte, limit+1)
		n, _, _, _ := r.readAt(0, got)
		want := all[max(0, len(all)-limit):]
		if !bytes.Equal(got[:n], want) {
			t.Fatalf("after %d bytes: %d retained, want the last %d", len(all), n, len(want))
		}
	}
	if len(r.buf) != limit || cap(r.buf) != limit {
		t.Errorf("len %d cap %d, want %d", len(r.buf), cap(r.buf), limit)
	}
}

package agent

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

const (
	// defaultPath is used when the sandbox's environment has no PATH.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// drainGrace is how long output is still read after the process has
	// exited. Background children that inherited stdout would otherwise
	// hold the stream open forever; what they write later is dropped.
	drainGrace = 100 * time.Millisecond
	// exitWriteGrace bounds how long a client that stopped reading can
	// hold a finished session open.
	exitWriteGrace = time.Minute
)

// execSession is one exec stream on a hijacked connection.
type execSession struct {
	s    *server
	conn net.Conn
	br   *bufio.Reader

	wmu  sync.Mutex
	werr error // first write error; later frames are dropped

	mu       sync.Mutex
	pgid     int // the process group while its leader runs, else 0
	timedOut bool
}

func (s *server) handleExec(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), upgradeProto) {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "exec needs Upgrade: %s", upgradeProto))
		return
	}
	var req ExecRequest
	body := http.MaxBytesReader(w, r.Body, 1<<20)
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "decoding exec request: %v", err))
		return
	}
	// Whatever follows the JSON in the body must not be taken for frames.
	if _, err := io.Copy(io.Discard, body); err != nil {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "reading exec request: %v", err))
		return
	}
	if (len(req.Argv) == 0) == (req.Shell == "") {
		writeError(w, http.StatusBadRequest, errdefs.Public(errdefs.ErrInvalidArgument, "exactly one of argv and shell must be given"))
		return
	}
	if req.Timeout < 0 {
		writeError(w, http.StatusBadRequest, errdefs.Public(errdefs.ErrInvalidArgument, "timeout must not be negative"))
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("hijacking exec connection: %w", err))
		return
	}
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+upgradeProto+"\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	e := &execSession{s: s, conn: conn, br: brw.Reader}
	e.run(req)
}

// procSpec is an ExecRequest resolved against the sandbox.
type procSpec struct {
	path string
	argv []string
	env  []string
	dir  string
	cred *syscall.Credential
}

// prepare resolves cwd, user, environment and executable. Its errors are
// meant for the user and carry errdefs kinds.
func (s *server) prepare(req ExecRequest) (*procSpec, error) {
	sp := &procSpec{dir: s.dir, env: s.env}
	if req.Cwd != "" {
		sp.dir = req.Cwd
		if !filepath.IsAbs(sp.dir) {
			sp.dir = filepath.Join(s.dir, sp.dir)
		}
	}
	if fi, err := os.Stat(sp.dir); err != nil || !fi.IsDir() {
		return nil, errdefs.Publicf(errdefs.ErrNotFound, "working directory %s does not exist", sp.dir)
	}
	userSpec := req.User
	if userSpec == "" {
		userSpec = s.user
	}
	if userSpec != "" {
		id, err := resolveUser(s.etcDir, userSpec)
		if err != nil {
			return nil, err
		}
		sp.env = mergeEnv(sp.env, []string{"HOME=" + id.Home})
		if os.Geteuid() == 0 || id.UID != uint32(os.Getuid()) || id.GID != uint32(os.Getgid()) {
			sp.cred = &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: id.Groups}
		}
	}
	sp.env = mergeEnv(sp.env, req.Env)
	sp.argv = req.Argv
	if req.Shell != "" {
		if _, err := os.Stat("/bin/sh"); err != nil {
			return nil, errdefs.Public(errdefs.ErrNotFound, "no /bin/sh in this image")
		}
		sp.argv = []string{"/bin/sh", "-c", req.Shell}
	}
	path, err := lookPath(sp.argv[0], envValue(sp.env, "PATH"), sp.dir)
	if err != nil {
		return nil, err
	}
	sp.path = path
	return sp, nil
}

// run starts the process, streams it and closes the connection.
func (e *execSession) run(req ExecRequest) {
	defer e.conn.Close()
	sp, err := e.s.prepare(req)
	if err != nil {
		e.sendError(err)
		return
	}
	st, ok := e.spawn(sp, req.Stdin, req.Timeout)
	if !ok {
		return
	}
	payload, _ := json.Marshal(st)
	e.send(appendFrame(nil, FrameExit, payload))
}

// spawn starts sp with its stdout and stderr streamed as frames (and its
// stdin fed from the client's frames with withStdin, else /dev/null),
// kills its process group after timeout, and returns how it ended once
// its output is drained. A process that cannot be started has had its
// error frame sent: ok is false.
func (e *execSession) spawn(sp *procSpec, withStdin bool, timeout time.Duration) (st ExitStatus, ok bool) {
	var err error
	var stdinChild, stdinW *os.File
	if withStdin {
		stdinChild, stdinW, err = os.Pipe()
	} else {
		stdinChild, err = os.Open(os.DevNull)
	}
	if err != nil {
		e.sendError(fmt.Errorf("opening stdin: %w", err))
		return ExitStatus{}, false
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		stdinChild.Close()
		e.sendError(fmt.Errorf("creating stdout pipe: %w", err))
		return ExitStatus{}, false
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		stdinChild.Close()
		outR.Close()
		outW.Close()
		e.sendError(fmt.Errorf("creating stderr pipe: %w", err))
		return ExitStatus{}, false
	}
	c, err := e.s.reaper.start(sp.path, sp.argv, &syscall.ProcAttr{
		Dir:   sp.dir,
		Env:   sp.env,
		Files: []uintptr{stdinChild.Fd(), outW.Fd(), errW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: sp.cred},
	})
	stdinChild.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if stdinW != nil {
			stdinW.Close()
		}
		e.sendError(startError(sp.argv[0], err))
		return ExitStatus{}, false
	}

	e.mu.Lock()
	e.pgid = c.pid
	e.mu.Unlock()
	e.s.mu.Lock()
	e.s.sessions[e] = struct{}{}
	e.s.mu.Unlock()
	defer func() {
		e.s.mu.Lock()
		delete(e.s.sessions, e)
		e.s.mu.Unlock()
	}()
	if timeout > 0 {
		t := time.AfterFunc(timeout, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.pgid > 0 {
				e.timedOut = true
				syscall.Kill(-e.pgid, syscall.SIGKILL)
			}
		})
		defer t.Stop()
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); e.pump(outR, FrameStdout) }()
	go func() { defer wg.Done(); e.pump(errR, FrameStderr) }()
	go e.readClient(stdinW)

	<-c.done
	e.mu.Lock()
	e.pgid = 0 // the leader is reaped: never signal a group id that may be reused
	timedOut := e.timedOut
	e.mu.Unlock()
	deadline := time.Now().Add(drainGrace)
	outR.SetReadDeadline(deadline)
	errR.SetReadDeadline(deadline)
	e.conn.SetWriteDeadline(time.Now().Add(exitWriteGrace))
	wg.Wait()
	outR.Close()
	errR.Close()

	st = c.exitStatus()
	st.TimedOut = timedOut
	return st, true
}

// pump copies one output pipe into frames until EOF. After the process
// exits, the read deadline turns into one last non-blocking drain, so
// nothing the process itself wrote is lost however slow the client is.
func (e *execSession) pump(f *os.File, kind FrameKind) {
	buf := make([]byte, frameHeaderLen+chunkSize)
	for {
		n, err := f.Read(buf[frameHeaderLen:])
		if n > 0 {
			putFrameHeader(buf, kind, n)
			e.send(buf[:frameHeaderLen+n])
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			e.drain(f, kind, buf)
		}
		return
	}
}

func (e *execSession) drain(f *os.File, kind FrameKind, buf []byte) {
	f.SetReadDeadline(time.Time{})
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for {
		n := 0
		rc.Read(func(fd uintptr) bool {
			n, _ = syscall.Read(int(fd), buf[frameHeaderLen:])
			return true // never wait: an empty pipe ends the drain
		})
		if n <= 0 {
			return
		}
		putFrameHeader(buf, kind, n)
		e.send(buf[:frameHeaderLen+n])
	}
}

// send writes one encoded frame. After a write error frames are dropped,
// but the pumps keep reading so the process is never stuck on a full pipe
// while it is being killed.
func (e *execSession) send(frame []byte) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if e.werr != nil {
		return
	}
	_, e.werr = e.conn.Write(frame)
}

func (e *execSession) sendError(err error) {
	payload, _ := json.Marshal(wireError{Message: err.Error(), Kind: kindName(err)})
	e.send(appendFrame(nil, FrameError, payload))
}

// readClient applies the client's frames. A stdin write blocks while the
// process does not read, and the frames behind it (signals) wait too: the
// pipe is the backpressure. EOF or an error on the connection while the
// process runs means the client is gone: the process group is killed.
func (e *execSession) readClient(stdin *os.File) {
	defer func() {
		if stdin != nil {
			stdin.Close()
		}
	}()
	for {
		kind, p, err := readFrame(e.br)
		if err != nil {
			e.signal(syscall.SIGKILL)
			return
		}
		switch kind {
		case frameStdin:
			if stdin != nil {
				stdin.Write(p) // EPIPE once the process closed stdin: nothing to do
			}
		case frameStdinClose:
			if stdin != nil {
				stdin.Close()
				stdin = nil
			}
		case frameSignal:
			if len(p) == 4 {
				if sig := syscall.Signal(binary.BigEndian.Uint32(p)); sig > 0 && sig < 65 {
					e.signal(sig)
				}
			}
		}
	}
}

// signal sends sig to the process group while its leader runs.
func (e *execSession) signal(sig syscall.Signal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pgid > 0 {
		syscall.Kill(-e.pgid, sig)
	}
}

// startError describes a failed fork/exec for the user.
func startError(name string, err error) error {
	switch {
	case errors.Is(err, syscall.ENOENT):
		// The file exists (lookPath checked), so its interpreter does not.
		return errdefs.Publicf(errdefs.ErrNotFound, "exec: %q: %v (is its interpreter missing?)", name, err)
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return errdefs.Publicf(errdefs.ErrPermissionDenied, "exec: %q: %v", name, err)
	}
	return fmt.Errorf("exec: %q: %w", name, err)
}

// lookPath finds file like a shell does, in pathEnv (the sandbox's PATH)
// and relative to dir, not the agent's own PATH and cwd.
func lookPath(file, pathEnv, dir string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if err := checkExecutable(p); err != nil {
			kind := errdefs.ErrNotFound
			if errors.Is(err, fs.ErrPermission) {
				kind = errdefs.ErrPermissionDenied
			}
			return "", errdefs.Publicf(kind, "exec: %q: %v", file, err)
		}
		return p, nil
	}
	if pathEnv == "" {
		pathEnv = defaultPath
	}
	for _, d := range filepath.SplitList(pathEnv) {
		if d == "" {
			d = "."
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		p := filepath.Join(d, file)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", errdefs.Publicf(errdefs.ErrNotFound, "exec: %q: executable file not found in $PATH", file)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("no such file")
		}
		return err
	}
	if fi.IsDir() {
		return errors.New("is a directory")
	}
	if fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// mergeEnv returns base with each "K=V" of over replacing or adding K.
func mergeEnv(base, over []string) []string {
	out := make([]string, 0, len(base)+len(over))
	idx := make(map[string]int, len(base)+len(over))
	for _, list := range [][]string{base, over} {
		for _, kv := range list {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := idx[k]; ok {
				out[i] = kv
				continue
			}
			idx[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// envValue returns the value of key in env; the last one wins.
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// signalName returns "SIGKILL" for SIGKILL and "signal 42" for signals
// without a name.
func signalName(sig syscall.Signal) string {
	if n := unix.SignalName(sig); n != "" {
		return n
	}
	return fmt.Sprintf("signal %d", int(sig))
}

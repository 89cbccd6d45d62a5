package agent

// Sessions: named, long-lived shells (protocol version 1).
//
//	POST   /v1/sessions                           SessionRequest -> Session (201)
//	GET    /v1/sessions                           -> []Session
//	GET    /v1/sessions/{sid}                     -> Session
//	DELETE /v1/sessions/{sid}                     -> 204: kills the shell and all it started
//	POST   /v1/sessions/{sid}/exec                SessionExecRequest -> SessionExecResult
//	GET    /v1/sessions/{sid}/commands/{cid}      -> SessionCommand
//	GET    /v1/sessions/{sid}/commands/{cid}/logs[?follow=1] -> frames (stdout 1, stderr 2, exit 3)
//	POST   /v1/sessions/{sid}/commands/{cid}/input SessionInput -> 204
//	POST   /v1/sessions/{sid}/commands/{cid}/kill[?signal=N] -> 204
//
// A session is one shell (bash if the image has it, else sh) reading
// commands from a pipe, so cd, variables and functions carry over from one
// command to the next. Each command is written to a script file and run as
//
//	{ export SBX_SESSION_COMMAND=<cid>; . <script>; } <in >out 2>err 3>&-; echo "<cid> $?" >&3
//
// where in/out/err are FIFOs in a private directory (mode 0700, owned by
// the session's user) that the agent holds open, and fd 3 is the status
// pipe: the agent learns each command's end from it, without polling. The
// script is syntax-checked with `sh -n` first, because a syntax error in
// a dot script ends a POSIX shell. Output is kept per command in a bounded
// log (oldest dropped first) that keeps the order of stdout and stderr
// chunks. A command's processes carry SBX_SESSION_COMMAND in their
// environment, so a timeout or kill reaches exactly them (background jobs
// of other commands keep running).
//
// Every process of a session carries SBX_SESSION (its name, for the user)
// and SBX_SESSION_KEY, random per session, by which deleting the session
// finds the processes that escaped the shell's tree. The name is not
// enough: another agent whose /proc shows the same processes (a server
// embedded on the host, as in the agent's tests, sees every sandbox's)
// would kill every session of that name on the machine.

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

const (
	maxSessions        = 64
	maxSessionCommands = 1000    // kept per session; the oldest ended ones are dropped
	maxQueuedCommands  = 32      // running or waiting for the shell, per session
	sessionLogLimit    = 8 << 20 // output kept per command
	sessionMarkerEnv   = "SBX_SESSION_COMMAND"
	sessionKeyEnv      = "SBX_SESSION_KEY"
)

var sessionIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// shellSet is the server's sessions.
type shellSet struct {
	mu sync.Mutex
	m  map[string]*shellSession
}

type shellSession struct {
	s       *server
	id      string
	key     string // random: the mark of the session's processes
	created time.Time
	dir     string // FIFOs and scripts
	shell   string
	cred    *syscall.Credential
	uid     int
	gid     int
	child   *child
	stdin   *os.File // commands to the shell

	mu    sync.Mutex
	cmds  []*sessionCmd
	byID  map[string]*sessionCmd
	queue []*sessionCmd // submitted, not ended, in order
	alive bool
	exit  *ExitStatus
	done  chan struct{}
}

type sessionCmd struct {
	sess *shellSession
	info SessionCommand // guarded by sess.mu
	log  *cmdLog
	in   *os.File // stdin FIFO, O_RDWR; nil once closed
	keep []*os.File
	done chan struct{}
}

func (s *server) sessionRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/sessions", s.handleSessionCreate)
	mux.HandleFunc("GET /v1/sessions", s.handleSessionList)
	mux.HandleFunc("GET /v1/sessions/{sid}", s.sessionHandler(s.handleSessionGet))
	mux.HandleFunc("DELETE /v1/sessions/{sid}", s.sessionHandler(s.handleSessionDelete))
	mux.HandleFunc("POST /v1/sessions/{sid}/exec", s.sessionHandler(s.handleSessionExec))
	mux.HandleFunc("GET /v1/sessions/{sid}/commands/{cid}", s.commandHandler(s.handleCommandGet))
	mux.HandleFunc("GET /v1/sessions/{sid}/commands/{cid}/logs", s.commandHandler(s.handleCommandLogs))
	mux.HandleFunc("POST /v1/sessions/{sid}/commands/{cid}/input", s.commandHandler(s.handleCommandInput))
	mux.HandleFunc("POST /v1/sessions/{sid}/commands/{cid}/kill", s.commandHandler(s.handleCommandKill))
}

func (s *server) sessionHandler(fn func(w http.ResponseWriter, r *http.Request, ss *shellSession) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.shells.mu.Lock()
		ss := s.shells.m[r.PathValue("sid")]
		s.shells.mu.Unlock()
		var err error
		if ss == nil {
			err = errdefs.Publicf(errdefs.ErrNotFound, "session %q not found", r.PathValue("sid"))
		} else {
			err = fn(w, r, ss)
		}
		if err != nil {
			writeError(w, statusOfKind(err), err)
		}
	}
}

func (s *server) commandHandler(fn func(w http.ResponseWriter, r *http.Request, c *sessionCmd) error) http.HandlerFunc {
	return s.sessionHandler(func(w http.ResponseWriter, r *http.Request, ss *shellSession) error {
		ss.mu.Lock()
		c := ss.byID[r.PathValue("cid")]
		ss.mu.Unlock()
		if c == nil {
			return errdefs.Publicf(errdefs.ErrNotFound, "command %q not found in session %q", r.PathValue("cid"), ss.id)
		}
		return fn(w, r, c)
	})
}

func (s *server) handleSessionCreate(w http.ResponseWriter, r *http.Request) {
	var req SessionRequest
	err := decodeJSON(r, &req)
	var ss *shellSession
	if err == nil {
		ss, err = s.newSession(req)
	}
	if err != nil {
		writeError(w, statusOfKind(err), err)
		return
	}
	writeJSON(w, http.StatusCreated, ss.snapshot())
}

func (s *server) handleSessionList(w http.ResponseWriter, r *http.Request) {
	s.shells.mu.Lock()
	list := make([]*shellSession, 0, len(s.shells.m))
	for _, ss := range s.shells.m {
		list = append(list, ss)
	}
	s.shells.mu.Unlock()
	out := make([]Session, 0, len(list))
	for _, ss := range list {
		out = append(out, ss.snapshot())
	}
	sortSessions(out)
	writeJSON(w, http.StatusOK, out)
}

func sortSessions(out []Session) {
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].CreatedAt.Before(out[j-1].CreatedAt); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
}

func (s *server) handleSessionGet(w http.ResponseWriter, r *http.Request, ss *shellSession) error {
	writeJSON(w, http.StatusOK, ss.snapshot())
	return nil
}

func (s *server) handleSessionDelete(w http.ResponseWriter, r *http.Request, ss *shellSession) error {
	s.shells.mu.Lock()
	delete(s.shells.m, ss.id)
	s.shells.mu.Unlock()
	ss.kill()
	select {
	case <-ss.done:
	case <-time.After(5 * time.Second):
	}
	os.RemoveAll(ss.dir)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// newSession starts a session's shell.
func (s *server) newSession(req SessionRequest) (*shellSession, error) {
	if !sessionIDPattern.MatchString(req.ID) {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "session id %q: use 1-128 letters, digits, '.', '_' or '-'", req.ID)
	}
	sp, err := s.prepare(ExecRequest{Argv: []string{"sh"}, Cwd: req.Cwd, Env: req.Env, User: req.User})
	if err != nil {
		return nil, err
	}
	shell := "/bin/sh"
	if p, err := lookPath("bash", envValue(sp.env, "PATH"), sp.dir); err == nil {
		shell = p
	} else if _, err := os.Stat(shell); err != nil {
		return nil, errdefs.Public(errdefs.ErrNotFound, "sessions need a shell: this image has no /bin/sh")
	}
	s.shells.mu.Lock()
	if s.shells.m == nil {
		s.shells.m = map[string]*shellSession{}
	}
	if _, dup := s.shells.m[req.ID]; dup {
		s.shells.mu.Unlock()
		return nil, errdefs.Publicf(errdefs.ErrAlreadyExists, "session %q already exists", req.ID)
	}
	if len(s.shells.m) >= maxSessions {
		s.shells.mu.Unlock()
		return nil, errdefs.Publicf(errdefs.ErrResourceExhausted, "a sandbox may have at most %d sessions: delete one first", maxSessions)
	}
	ss := &shellSession{s: s, id: req.ID, key: randomID() + randomID(), created: time.Now().UTC(), shell: shell, cred: sp.cred,
		uid: os.Getuid(), gid: os.Getgid(), byID: map[string]*sessionCmd{}, alive: true, done: make(chan struct{})}
	if sp.cred != nil {
		ss.uid, ss.gid = int(sp.cred.Uid), int(sp.cred.Gid)
	}
	s.shells.m[req.ID] = ss // reserve the name; removed again on failure
	s.shells.mu.Unlock()
	if err := ss.start(sp); err != nil {
		s.shells.mu.Lock()
		delete(s.shells.m, req.ID)
		s.shells.mu.Unlock()
		return nil, err
	}
	return ss, nil
}

// privateDir makes the directory of a session's FIFOs and scripts,
// preferring /dev/shm (a tmpfs in every sandbox) over $TMPDIR. It stays
// owned by the agent (root) with mode 0711: the session's user can open
// the entries the agent made for it by name, but cannot rename, replace
// or plant anything there, so the agent's later chown and open calls by
// path cannot be turned onto another file.
func privateDir(prefix string) (string, error) {
	var dir string
	var err error
	for _, base := range []string{"/dev/shm", os.TempDir(), "/tmp"} {
		if dir, err = os.MkdirTemp(base, prefix); err == nil {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("making a private directory: %w", err)
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

func (ss *shellSession) start(sp *procSpec) error {
	dir, err := privateDir("sbx-session-")
	if err != nil {
		return err
	}
	ss.dir = dir
	inR, inW, err := os.Pipe()
	if err != nil {
		os.RemoveAll(dir)
		return err
	}
	stR, stW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		os.RemoveAll(dir)
		return err
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		inR.Close()
		inW.Close()
		stR.Close()
		stW.Close()
		os.RemoveAll(dir)
		return err
	}
	env := mergeEnv(sp.env, []string{"SBX_SESSION=" + ss.id, sessionKeyEnv + "=" + ss.key})
	c, err := ss.s.reaper.start(ss.shell, []string{ss.shell, "-s"}, &syscall.ProcAttr{
		Dir:   sp.dir,
		Env:   env,
		Files: []uintptr{inR.Fd(), null.Fd(), null.Fd(), stW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: sp.cred},
	})
	inR.Close()
	stW.Close()
	null.Close()
	if err != nil {
		inW.Close()
		stR.Close()
		os.RemoveAll(dir)
		return startError(ss.shell, err)
	}
	ss.child, ss.stdin = c, inW
	go ss.readStatus(stR)
	go func() {
		<-c.done
		st := c.exitStatus()
		ss.mu.Lock()
		ss.alive, ss.exit = false, &st
		ss.mu.Unlock()
		ss.stdin.Close()
		// A background subshell may hold the status pipe's write end
		// after the shell is gone: stop waiting for its EOF.
		time.AfterFunc(drainGrace, func() { stR.Close() })
	}()
	return nil
}

// readStatus applies the "<cid> <code>" lines of the status pipe; EOF
// means the shell is gone: its commands end with its exit status.
func (ss *shellSession) readStatus(f *os.File) {
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, code, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(code)
		if err != nil {
			continue
		}
		ss.mu.Lock()
		c := ss.byID[id]
		ss.mu.Unlock()
		if c != nil {
			c.finish(n)
		}
	}
	<-ss.child.done
	st := ss.child.exitStatus()
	ss.mu.Lock()
	// Dead before its commands end: whoever sees a command ended by the
	// shell's exit also sees the session ended.
	ss.alive, ss.exit = false, &st
	pending := append([]*sessionCmd(nil), ss.queue...)
	ss.mu.Unlock()
	for _, c := range pending {
		c.finish(st.Code)
	}
	close(ss.done)
}

func (ss *shellSession) snapshot() Session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := Session{ID: ss.id, CreatedAt: ss.created, Alive: ss.alive, Commands: make([]SessionCommand, 0, len(ss.cmds))}
	if ss.exit != nil {
		e := *ss.exit
		out.Exit = &e
	}
	for _, c := range ss.cmds {
		out.Commands = append(out.Commands, c.snapshotLocked())
	}
	return out
}

func (c *sessionCmd) snapshotLocked() SessionCommand {
	info := c.info
	info.OutputTruncated = c.log.truncated()
	return info
}

func (c *sessionCmd) snapshot() SessionCommand {
	c.sess.mu.Lock()
	defer c.sess.mu.Unlock()
	return c.snapshotLocked()
}

// kill ends the shell and every process of the session: the shell's
// descendants, and anything still carrying the session's key (children
// that were re-parented to the agent, or setsid'd away).
func (ss *shellSession) kill() {
	if ss.child == nil {
		return
	}
	shell := ss.child.pid
	mark := sessionKeyEnv + "=" + ss.key
	below := map[int]bool{}
	for _, pid := range descendants(procTable(), shell) {
		below[pid] = true
	}
	ss.mu.Lock()
	alive := ss.alive
	ss.mu.Unlock()
	if alive {
		syscall.Kill(-shell, syscall.SIGKILL)
	}
	killOwned(func(p proc) bool {
		return below[p.pid] || (alive && p.pid == shell) || hasEnv(p.pid, mark)
	})
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func shQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (s *server) handleSessionExec(w http.ResponseWriter, r *http.Request, ss *shellSession) error {
	var req SessionExecRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Command) == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "command must not be empty")
	}
	if req.Timeout < 0 {
		return errdefs.Public(errdefs.ErrInvalidArgument, "timeout must not be negative")
	}
	c, err := ss.submit(req)
	if err != nil {
		return err
	}
	if req.Async {
		writeJSON(w, http.StatusAccepted, SessionExecResult{Command: c.snapshot()})
		return nil
	}
	select {
	case <-c.done:
	case <-r.Context().Done():
		return nil // the command goes on; the client can ask for it by id
	}
	var out, errb bytes.Buffer
	c.log.collect(&out, &errb)
	writeJSON(w, http.StatusOK, SessionExecResult{
		Command: c.snapshot(),
		Stdout:  strings.ToValidUTF8(out.String(), "\uFFFD"),
		Stderr:  strings.ToValidUTF8(errb.String(), "\uFFFD"),
	})
	return nil
}

// submit hands a command to the shell.
func (ss *shellSession) submit(req SessionExecRequest) (*sessionCmd, error) {
	id := randomID()
	c := &sessionCmd{sess: ss, log: newCmdLog(sessionLogLimit), done: make(chan struct{}),
		info: SessionCommand{ID: id, Command: req.Command, StartedAt: time.Now().UTC(), Running: true}}
	base := filepath.Join(ss.dir, id)
	script := base + ".sh"
	if err := os.WriteFile(script, []byte(req.Command+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("writing the command: %w", err)
	}
	cleanup := func() {
		for _, f := range c.keep {
			f.Close()
		}
		if c.in != nil {
			c.in.Close()
		}
		c.keep, c.in = nil, nil
		for _, suffix := range []string{".sh", ".in", ".out", ".err"} {
			os.Remove(base + suffix)
		}
	}
	os.Chown(script, ss.uid, ss.gid)
	if err := ss.register(c); err != nil {
		os.Remove(script)
		return nil, err
	}
	// A syntax error would end the shell: check first, and report it as
	// the command's own failure.
	if msg, ok := ss.syntaxCheck(script); !ok {
		c.log.Write(FrameStderr, []byte(msg))
		cleanup()
		c.log.Close()
		c.finish(2)
		return c, nil
	}
	var readers []*os.File
	for _, suffix := range []string{".in", ".out", ".err"} {
		if err := unix.Mkfifo(base+suffix, 0o600); err != nil {
			cleanup()
			c.log.Close()
			c.finish(126)
			return nil, fmt.Errorf("making a FIFO: %w", err)
		}
		os.Chown(base+suffix, ss.uid, ss.gid)
	}
	in, err := os.OpenFile(base+".in", os.O_RDWR, 0)
	if err != nil {
		cleanup()
		c.log.Close()
		c.finish(126)
		return nil, err
	}
	c.in = in
	for _, suffix := range []string{".out", ".err"} {
		rd, err := os.OpenFile(base+suffix, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			cleanup()
			c.log.Close()
			c.finish(126)
			return nil, err
		}
		// A writer of our own keeps the FIFO from reading as EOF before
		// the shell opens it; it is closed when the command ends.
		wr, err := os.OpenFile(base+suffix, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			rd.Close()
			cleanup()
			c.log.Close()
			c.finish(126)
			return nil, err
		}
		readers = append(readers, rd)
		c.keep = append(c.keep, wr)
	}
	var pumps sync.WaitGroup
	for i, rd := range readers {
		kind := FrameStdout
		if i == 1 {
			kind = FrameStderr
		}
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			defer rd.Close()
			buf := make([]byte, chunkSize)
			for {
				n, err := rd.Read(buf)
				if n > 0 {
					c.log.Write(kind, buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	go func() {
		// When the command has ended, its output is read to EOF (or for
		// drainGrace if a background job holds it open).
		<-c.done
		deadline := time.Now().Add(drainGrace)
		for _, rd := range readers {
			rd.SetReadDeadline(deadline)
		}
		pumps.Wait()
		c.log.Close()
		for _, suffix := range []string{".sh", ".in", ".out", ".err"} {
			os.Remove(base + suffix)
		}
	}()
	line := fmt.Sprintf("{ export %s=%s; . %s; } <%s >%s 2>%s 3>&-; __sbx_status=$?; unset %s; echo \"%s $__sbx_status\" >&3\n",
		sessionMarkerEnv, id, shQuote(script), shQuote(base+".in"), shQuote(base+".out"), shQuote(base+".err"), sessionMarkerEnv, id)
	// The shell reads the next command only when the previous one has
	// ended; the queue bound keeps this write within the pipe's buffer,
	// and the deadline guards against a shell that stopped reading.
	ss.stdin.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(ss.stdin, line)
	ss.stdin.SetWriteDeadline(time.Time{})
	if err != nil {
		c.finish(126)
		return nil, errdefs.Publicf(errdefs.ErrConflict, "session %q has ended", ss.id)
	}
	if req.Timeout > 0 {
		t := time.AfterFunc(req.Timeout, func() {
			c.sess.mu.Lock()
			c.info.TimedOut = c.info.Running
			c.sess.mu.Unlock()
			c.signal(syscall.SIGKILL)
		})
		go func() { <-c.done; t.Stop() }()
	}
	return c, nil
}

// register queues c unless the shell has ended or the queue is full.
// It holds the lock readStatus takes to mark the shell dead and end what
// is queued, so a command is either refused or ended with the shell.
func (ss *shellSession) register(c *sessionCmd) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.alive {
		return errdefs.Publicf(errdefs.ErrConflict, "session %q has ended (its shell exited): delete it and create it again", ss.id)
	}
	if n := len(ss.queue); n >= maxQueuedCommands {
		return errdefs.Publicf(errdefs.ErrResourceExhausted,
			"session %q already has %d commands running or waiting for the shell: wait for one to end", ss.id, n)
	}
	ss.cmds = append(ss.cmds, c)
	ss.byID[c.info.ID] = c
	ss.queue = append(ss.queue, c)
	// Forget the oldest ended commands past the bound.
	for len(ss.cmds) > maxSessionCommands {
		old := ss.cmds[0]
		if old.info.Running {
			break
		}
		ss.cmds = ss.cmds[1:]
		delete(ss.byID, old.info.ID)
	}
	return nil
}

// syntaxCheck runs `shell -n script` as the session's user.
func (ss *shellSession) syntaxCheck(script string) (string, bool) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", true
	}
	null, _ := os.Open(os.DevNull)
	defer null.Close()
	c, err := ss.s.reaper.start(ss.shell, []string{ss.shell, "-n", script}, &syscall.ProcAttr{
		Env:   []string{"PATH=" + defaultPath},
		Files: []uintptr{null.Fd(), pw.Fd(), pw.Fd()},
		Sys:   &syscall.SysProcAttr{Credential: ss.cred},
	})
	pw.Close()
	if err != nil {
		pr.Close()
		return "", true
	}
	msg, _ := io.ReadAll(io.LimitReader(pr, 64<<10))
	pr.Close()
	<-c.done
	if st := c.exitStatus(); st.Code != 0 {
		return string(msg), false
	}
	return "", true
}

// finish records a command's end, once.
func (c *sessionCmd) finish(code int) {
	ss := c.sess
	ss.mu.Lock()
	if !c.info.Running {
		ss.mu.Unlock()
		return
	}
	now := time.Now().UTC()
	c.info.Running, c.info.EndedAt, c.info.ExitCode = false, &now, &code
	for i, q := range ss.queue {
		if q == c {
			ss.queue = append(ss.queue[:i], ss.queue[i+1:]...)
			break
		}
	}
	keep, in := c.keep, c.in
	c.keep, c.in = nil, nil
	ss.mu.Unlock()
	for _, f := range keep {
		f.Close()
	}
	if in != nil {
		in.Close()
	}
	close(c.done)
}

// signal sends sig to every process started by this command: those whose
// environment has its marker, and those holding one of its FIFOs. A
// process the shell forked but that did not exec (a subshell, a part of
// a pipeline, one of busybox's NOEXEC applets such as head or xargs)
// shows in /proc the environment the shell was started with, without the
// marker, but has the command's stdin, stdout or stderr open. For a while
// the scan is repeated for processes that appear, each signalled once,
// until the command ends. The shell itself
// is never signalled (nor its process group, which holds every
// session's background jobs): a builtin or a shell loop running in the
// shell is out of reach of kill and timeout.
func (c *sessionCmd) signal(sig syscall.Signal) {
	sent := map[int]bool{c.sess.child.pid: true}
	deadline := time.Now().Add(2 * time.Second)
	for {
		for _, pid := range sessionProcs(c.sess.child.pid, c.info.ID, c.fifos()) {
			if !sent[pid] {
				sent[pid] = true
				syscall.Kill(pid, sig)
			}
		}
		select {
		case <-c.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return
		}
	}
}

// fifos are the paths of the command's stdin, stdout and stderr FIFOs.
func (c *sessionCmd) fifos() []string {
	base := filepath.Join(c.sess.dir, c.info.ID)
	return []string{base + ".in", base + ".out", base + ".err"}
}

// sessionProcs lists the descendants of root (never root itself) whose
// environment marks them as started by command cmdID, or that hold one of
// the files in open.
func sessionProcs(root int, cmdID string, open []string) []int {
	var out []int
	for _, pid := range descendants(procTable(), root) {
		if pid != root && (hasEnv(pid, sessionMarkerEnv+"="+cmdID) || holdsFile(pid, open)) {
			out = append(out, pid)
		}
	}
	return out
}

func (s *server) handleCommandGet(w http.ResponseWriter, r *http.Request, c *sessionCmd) error {
	writeJSON(w, http.StatusOK, c.snapshot())
	return nil
}

func (s *server) handleCommandInput(w http.ResponseWriter, r *http.Request, c *sessionCmd) error {
	var in SessionInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	c.sess.mu.Lock()
	f := c.in
	if in.EOF {
		c.in = nil
	}
	c.sess.mu.Unlock()
	if f == nil {
		return errdefs.Public(errdefs.ErrConflict, "the command has ended or its input was closed")
	}
	if len(in.Data) > 0 {
		// A command that does not read fills the FIFO: do not hang the
		// caller forever.
		f.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := f.Write(in.Data)
		f.SetWriteDeadline(time.Time{})
		if err != nil {
			if in.EOF {
				go c.closeInput(f)
			}
			return errdefs.Publicf(errdefs.ErrConflict, "writing to the command's input: %v", err)
		}
	}
	if in.EOF {
		go c.closeInput(f)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// closeInput closes the agent's end of a command's stdin FIFO, which is
// the command's EOF. The FIFO must have been opened by the shell first:
// closed before that, it would lose what was written and the shell's
// open would wait for a writer forever.
func (c *sessionCmd) closeInput(f *os.File) {
	defer f.Close()
	fifo := f.Name()
	fdDir := "/proc/" + strconv.Itoa(c.sess.child.pid) + "/fd"
	for i := 0; i < 6000; i++ {
		ents, _ := os.ReadDir(fdDir)
		for _, e := range ents {
			if target, err := os.Readlink(fdDir + "/" + e.Name()); err == nil && target == fifo {
				return
			}
		}
		select {
		case <-c.done:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *server) handleCommandKill(w http.ResponseWriter, r *http.Request, c *sessionCmd) error {
	sig := syscall.SIGKILL
	if v := r.URL.Query().Get("signal"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 64 {
			return errdefs.Publicf(errdefs.ErrInvalidArgument, "signal %q is not a signal number", v)
		}
		sig = syscall.Signal(n)
	}
	if !c.snapshot().Running {
		return errdefs.Public(errdefs.ErrConflict, "the command has ended")
	}
	go c.signal(sig)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) handleCommandLogs(w http.ResponseWriter, r *http.Request, c *sessionCmd) error {
	follow := r.URL.Query().Get("follow") == "1"
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	send := func(kind FrameKind, p []byte) bool {
		if _, err := w.Write(appendFrame(nil, kind, p)); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	var off int64
	for {
		chunks, next, ended, wait := c.log.read(off)
		off = next
		for _, ch := range chunks {
			if !send(ch.kind, ch.data) {
				return nil
			}
		}
		if ended {
			if info := c.snapshot(); info.ExitCode != nil {
				st, _ := json.Marshal(ExitStatus{Code: *info.ExitCode})
				send(FrameExit, st)
			}
			return nil
		}
		if !follow {
			return nil
		}
		select {
		case <-wait:
		case <-r.Context().Done():
			return nil
		case <-s.ctx.Done():
			return nil
		}
	}
}

// cmdLog keeps a command's output as ordered chunks, bounded in bytes:
// the oldest chunks go first. Offsets count chunks ever written.
type cmdLog struct {
	mu      sync.Mutex
	limit   int
	size    int
	first   int64 // offset of chunks[0]
	chunks  []logChunk
	dropped bool
	closed  bool
	waitc   chan struct{}
}

type logChunk struct {
	kind FrameKind
	data []byte
}

func newCmdLog(limit int) *cmdLog { return &cmdLog{limit: limit, waitc: make(chan struct{})} }

func (l *cmdLog) Write(kind FrameKind, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.chunks = append(l.chunks, logChunk{kind, append([]byte(nil), p...)})
	l.size += len(p)
	for l.size > l.limit && len(l.chunks) > 1 {
		l.size -= len(l.chunks[0].data)
		l.chunks = l.chunks[1:]
		l.first++
		l.dropped = true
	}
	close(l.waitc)
	l.waitc = make(chan struct{})
}

func (l *cmdLog) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.waitc)
	}
}

func (l *cmdLog) truncated() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

// read returns the chunks from offset off on, the next offset, whether the
// log is complete, and a channel closed on the next write.
func (l *cmdLog) read(off int64) ([]logChunk, int64, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if off < l.first {
		off = l.first
	}
	chunks := append([]logChunk(nil), l.chunks[off-l.first:]...)
	return chunks, l.first + int64(len(l.chunks)), l.closed, l.waitc
}

// collect writes the whole log, split by stream.
func (l *cmdLog) collect(stdout, stderr io.Writer) {
	// The log closes just after the command ends; wait for that briefly
	// so that the last output is in.
	for i := 0; i < 50; i++ {
		_, _, closed, wait := l.read(0)
		if closed {
			break
		}
		select {
		case <-wait:
		case <-time.After(drainGrace):
		}
	}
	chunks, _, _, _ := l.read(0)
	for _, ch := range chunks {
		if ch.kind == FrameStderr {
			stderr.Write(ch.data)
		} else {
			stdout.Write(ch.data)
		}
	}
}

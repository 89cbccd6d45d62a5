package agent

// Terminals (PTYs): long-lived processes on a pseudo-terminal that outlive
// the connection watching them.
//
// Wire protocol (part of version 1; errors before a stream are JSON
// {"message","kind"} as everywhere):
//
//	POST   /v1/ptys              body: PTYRequest -> 201 PTYInfo
//	GET    /v1/ptys              -> []PTYInfo, oldest first
//	GET    /v1/ptys/{id}         -> PTYInfo
//	POST   /v1/ptys/{id}/resize  body: {"cols","rows"} -> PTYInfo
//	POST   /v1/ptys/{id}/signal  body: {"signal": N} -> 204, to the process group
//	POST   /v1/ptys/{id}/input   body: raw bytes -> 204 (input without attaching)
//	DELETE /v1/ptys/{id}         -> 204: SIGKILL to the process group (if it
//	                             runs) and the record is forgotten
//	GET    /v1/ptys/{id}/attach[?offset=N]
//	                             with Connection: Upgrade, Upgrade: sbx-pty
//	                             -> 101 Switching Protocols, then frames
//
// The attach stream uses the exec framing (wire.go). Agent to host: pty (5,
// JSON PTYAttach: the terminal as it is at attach time and the absolute
// output offset the replay starts at; always first), output (1, the
// terminal's bytes, contiguous from that offset), exit (3, JSON ExitStatus,
// last), error (4, JSON {"message","kind"}, last: kind conflict when
// another client attached and took the terminal over). Host to agent:
// input (16), resize (19, 2-byte big-endian cols then 2-byte rows) and
// signal (18, as for exec). EOF from the host detaches: unlike an exec,
// the process keeps running.
//
// Every byte the terminal writes goes to a bounded ring (ptyScrollback)
// whether or not a client is attached; an attach replays the ring from
// offset (default: the oldest byte retained) and then follows it, so a
// client that reconnects loses nothing recent, and one that counts the
// bytes it received can resume exactly with ?offset=. One client is
// attached at a time: a new attach ends the previous stream. After the
// process exits its record (with the exit status and the scrollback) is
// kept for ptyRetention, so a late reconnect still gets the exit frame;
// DELETE forgets it at once. A sandbox holds at most maxPTYs records; at
// the limit the oldest exited one makes room, and with all of them running
// create fails with kind resource_exhausted.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

const (
	// maxPTYs bounds the terminals of one sandbox, exited ones included.
	maxPTYs = 64
	// ptyScrollback is how much recent output each terminal keeps.
	ptyScrollback = 256 << 10
	// ptyRetention is how long an exited terminal's record is kept.
	ptyRetention = 10 * time.Minute
	// ptyUpgradeProto is the Upgrade token of an attach stream.
	ptyUpgradeProto = "sbx-pty"
	// defaultTerm is TERM unless the request sets it.
	defaultTerm = "xterm-256color"
)

var ptyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ptyManager holds a server's terminals.
type ptyManager struct {
	s *server

	mu   sync.Mutex
	ptys map[string]*ptySession
}

// ptySession is one terminal and its process.
type ptySession struct {
	m       *ptyManager
	id      string
	master  *os.File
	out     *ring
	proc    *child
	created time.Time
	argv    []string
	cwd     string
	env     []string // as requested, not the whole environment

	wmu sync.Mutex // one input write at a time

	// retire forgets the exited terminal after ptyRetention; guarded by
	// m.mu and stopped when the record goes earlier, so that a forgotten
	// terminal's scrollback is not kept alive by its timer.
	retire *time.Timer

	mu       sync.Mutex
	cols     int
	rows     int
	pgid     int         // while the leader runs, else 0
	exit     *ExitStatus // once it ended and its output is drained
	attached *ptyAttachment
}

// ptyAttachment is one attached client.
type ptyAttachment struct {
	conn     net.Conn
	cancel   context.CancelFunc
	takenMu  sync.Mutex
	takenFor bool // ended by a newer attach
}

// ptyRoutes serves the terminals; the protocol is described at the top of
// this file.
func (s *server) ptyRoutes(mux *http.ServeMux) {
	m := &ptyManager{s: s, ptys: make(map[string]*ptySession)}
	// The terminals end with the server: in a sandbox that is when the
	// agent itself is going away; in tests it keeps shells from leaking.
	context.AfterFunc(s.ctx, m.closeAll)
	mux.HandleFunc("POST /v1/ptys", m.handleCreate)
	mux.HandleFunc("GET /v1/ptys", m.handleList)
	mux.HandleFunc("GET /v1/ptys/{id}", m.handleGet)
	mux.HandleFunc("POST /v1/ptys/{id}/resize", m.handleResize)
	mux.HandleFunc("POST /v1/ptys/{id}/signal", m.handleSignal)
	mux.HandleFunc("POST /v1/ptys/{id}/input", m.handleInput)
	mux.HandleFunc("DELETE /v1/ptys/{id}", m.handleDelete)
	mux.HandleFunc("GET /v1/ptys/{id}/attach", m.handleAttach)
}

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeKindError answers err with the status its kind suggests. An
// internal error crosses the wire as "internal error": its text is logged
// here.
func (m *ptyManager) writeKindError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch errdefs.Kind(err) {
	case errdefs.ErrNotFound:
		status = http.StatusNotFound
	case errdefs.ErrInvalidArgument:
		status = http.StatusBadRequest
	case errdefs.ErrConflict, errdefs.ErrAlreadyExists:
		status = http.StatusConflict
	case errdefs.ErrResourceExhausted:
		status = http.StatusTooManyRequests
	case errdefs.ErrPermissionDenied:
		status = http.StatusForbidden
	}
	if status == http.StatusInternalServerError {
		m.s.log.Error("terminal request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, err)
}

func decodeJSONBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "decoding request: %v", err))
		return false
	}
	return true
}

func (m *ptyManager) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req PTYRequest
	if !decodeJSONBody(w, r, &req) {
		return
	}
	p, err := m.create(req)
	if err != nil {
		m.writeKindError(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusCreated, p.info())
}

func (m *ptyManager) handleList(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	list := make([]*ptySession, 0, len(m.ptys))
	for _, p := range m.ptys {
		if p != nil {
			list = append(list, p)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(list, func(a, b *ptySession) int {
		if c := a.created.Compare(b.created); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	out := make([]PTYInfo, 0, len(list))
	for _, p := range list {
		out = append(out, p.info())
	}
	writeJSONStatus(w, http.StatusOK, out)
}

func (m *ptyManager) lookup(id string) (*ptySession, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.ptys[id]; p != nil { // nil: still being created
		return p, nil
	}
	return nil, errdefs.Publicf(errdefs.ErrNotFound, "terminal %q not found", id)
}

func (m *ptyManager) handleGet(w http.ResponseWriter, r *http.Request) {
	p, err := m.lookup(r.PathValue("id"))
	if err != nil {
		m.writeKindError(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, p.info())
}

func (m *ptyManager) handleResize(w http.ResponseWriter, r *http.Request) {
	var req PTYSize
	if !decodeJSONBody(w, r, &req) {
		return
	}
	p, err := m.lookup(r.PathValue("id"))
	if err == nil {
		err = p.resize(req.Cols, req.Rows)
	}
	if err != nil {
		m.writeKindError(w, r, err)
		return
	}
	writeJSONStatus(w, http.StatusOK, p.info())
}

func (m *ptyManager) handleSignal(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Signal int `json:"signal"`
	}
	if !decodeJSONBody(w, r, &req) {
		return
	}
	if req.Signal <= 0 || req.Signal >= 65 {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid signal %d", req.Signal))
		return
	}
	p, err := m.lookup(r.PathValue("id"))
	if err == nil {
		err = p.signal(syscall.Signal(req.Signal))
	}
	if err != nil {
		m.writeKindError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *ptyManager) handleInput(w http.ResponseWriter, r *http.Request) {
	p, err := m.lookup(r.PathValue("id"))
	if err != nil {
		m.writeKindError(w, r, err)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFramePayload))
	if err != nil {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "reading input: %v", err))
		return
	}
	if err := p.write(data); err != nil {
		m.writeKindError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (m *ptyManager) handleDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m.mu.Lock()
	p, ok := m.ptys[id]
	if ok && p == nil {
		ok = false // still being created
	}
	if ok {
		m.forget(p)
	}
	m.mu.Unlock()
	if !ok {
		m.writeKindError(w, r, errdefs.Publicf(errdefs.ErrNotFound, "terminal %q not found", id))
		return
	}
	p.kill()
	w.WriteHeader(http.StatusNoContent)
}

// forget removes p's record; m.mu must be held.
func (m *ptyManager) forget(p *ptySession) {
	if m.ptys[p.id] == p {
		delete(m.ptys, p.id)
	}
	if p.retire != nil {
		p.retire.Stop()
	}
}

// closeAll kills every terminal's process group and forgets them all.
func (m *ptyManager) closeAll() {
	m.mu.Lock()
	var all []*ptySession
	for _, p := range m.ptys {
		if p != nil {
			all = append(all, p)
			m.forget(p)
		}
	}
	clear(m.ptys)
	m.mu.Unlock()
	for _, p := range all {
		p.kill()
	}
}

func newPTYID() string {
	var b [6]byte
	rand.Read(b[:])
	return "pty-" + hex.EncodeToString(b[:])
}

// defaultShell is the sandbox's interactive shell.
func defaultShell() []string {
	if checkExecutable("/bin/bash") == nil {
		return []string{"/bin/bash"}
	}
	return []string{"/bin/sh"}
}

// reserve checks the ID and the limit and holds the ID with a nil entry.
func (m *ptyManager) reserve(id string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if id == "" {
		for taken := true; taken; _, taken = m.ptys[id] {
			id = newPTYID()
		}
	} else if !ptyIDPattern.MatchString(id) {
		return "", errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid terminal id %q: want 1-64 letters, digits, '.', '_' or '-'", id)
	}
	if _, ok := m.ptys[id]; ok {
		return "", errdefs.Publicf(errdefs.ErrAlreadyExists, "terminal %q already exists", id)
	}
	if len(m.ptys) >= maxPTYs {
		// The oldest exited terminal makes room.
		var oldest *ptySession
		for _, p := range m.ptys {
			if p != nil && p.exited() && (oldest == nil || p.created.Before(oldest.created)) {
				oldest = p
			}
		}
		if oldest == nil {
			return "", errdefs.Publicf(errdefs.ErrResourceExhausted,
				"this sandbox already runs %d terminals, the limit: delete one first", maxPTYs)
		}
		m.forget(oldest)
	}
	m.ptys[id] = nil
	return id, nil
}

func (m *ptyManager) release(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p, ok := m.ptys[id]; ok && p == nil {
		delete(m.ptys, id)
	}
}

// create opens a terminal and starts its process.
func (m *ptyManager) create(req PTYRequest) (*ptySession, error) {
	if req.Cols == 0 {
		req.Cols = 80
	}
	if req.Rows == 0 {
		req.Rows = 24
	}
	if err := checkSize(req.Cols, req.Rows); err != nil {
		return nil, err
	}
	argv := req.Argv
	if len(argv) == 0 {
		argv = defaultShell()
	}
	sp, err := m.s.prepare(ExecRequest{
		Argv: argv, Cwd: req.Cwd, User: req.User,
		Env: append([]string{"TERM=" + defaultTerm}, req.Env...),
	})
	if err != nil {
		return nil, err
	}
	id, err := m.reserve(req.ID)
	if err != nil {
		return nil, err
	}
	p, err := m.start(id, sp, req)
	if err != nil {
		m.release(id)
		return nil, err
	}
	m.mu.Lock()
	if _, ok := m.ptys[id]; ok {
		m.ptys[id] = p
		m.mu.Unlock()
	} else {
		// The server stopped while we started it.
		m.mu.Unlock()
		p.kill()
		return nil, errdefs.Public(errdefs.ErrUnavailable, "the agent is shutting down")
	}
	return p, nil
}

func checkSize(cols, rows int) error {
	if cols < 1 || rows < 1 || cols > 10000 || rows > 10000 {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid terminal size %dx%d: cols and rows must be 1-10000", cols, rows)
	}
	return nil
}

// openPTY returns a new pseudo-terminal's master and slave.
func openPTY() (master, slave *os.File, err error) {
	// os.OpenFile makes the master non-blocking and pollable, so reads
	// honour deadlines and Close interrupts them.
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	var n int
	err = control(master, func(fd int) error {
		if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
			return fmt.Errorf("unlocking the terminal: %w", err)
		}
		u, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		if err != nil {
			return fmt.Errorf("getting the terminal's number: %w", err)
		}
		n = int(u)
		return nil
	})
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	name := "/dev/pts/" + strconv.Itoa(n)
	slave, err = os.OpenFile(name, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("opening %s: %w", name, err)
	}
	return master, slave, nil
}

// control runs fn on f's descriptor without making it blocking (as Fd
// would).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func setSize(master *os.File, cols, rows int) error {
	return control(master, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)})
	})
}

func (m *ptyManager) start(id string, sp *procSpec, req PTYRequest) (*ptySession, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	if err := setSize(master, req.Cols, req.Rows); err != nil {
		master.Close()
		slave.Close()
		return nil, fmt.Errorf("sizing the terminal: %w", err)
	}
	if sp.cred != nil {
		// The user's own terminal, as login would leave it; best effort
		// (a devpts without the user's uid mapped refuses).
		slave.Chown(int(sp.cred.Uid), int(sp.cred.Gid))
	}
	c, err := m.s.reaper.start(sp.path, sp.argv, &syscall.ProcAttr{
		Dir:   sp.dir,
		Env:   sp.env,
		Files: []uintptr{slave.Fd(), slave.Fd(), slave.Fd()},
		// A session of its own with the terminal as its controlling tty
		// (Ctty is the child's fd 0): job control and ^C work, and the
		// session leader's pid is the process group to signal.
		Sys: &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0, Credential: sp.cred},
	})
	// Only the child holds the slave: when it and its children are gone,
	// reading the master ends with EIO.
	slave.Close()
	if err != nil {
		master.Close()
		return nil, startError(sp.argv[0], err)
	}
	p := &ptySession{
		m: m, id: id, master: master, out: newRing(ptyScrollback), proc: c,
		created: time.Now(), argv: sp.argv, cwd: sp.dir, env: req.Env,
		cols: req.Cols, rows: req.Rows, pgid: c.pid,
	}
	m.s.log.Info("terminal started", "pty", id, "argv", sp.argv, "pid", c.pid)
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		p.pump()
	}()
	go p.wait(pumped)
	return p, nil
}

// pump copies the terminal's output into the ring until the master ends:
// EIO once no process holds the slave, a deadline after the leader
// exited, or Close.
func (p *ptySession) pump() {
	buf := make([]byte, chunkSize)
	for {
		n, err := p.master.Read(buf)
		if n > 0 {
			p.out.Write(buf[:n])
		}
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The leader has exited; what is buffered still counts,
			// what background children write later does not.
			p.drain(buf)
		}
		return
	}
}

func (p *ptySession) drain(buf []byte) {
	p.master.SetReadDeadline(time.Time{})
	rc, err := p.master.SyscallConn()
	if err != nil {
		return
	}
	for {
		n := 0
		rc.Read(func(fd uintptr) bool {
			n, _ = syscall.Read(int(fd), buf)
			return true // never wait
		})
		if n <= 0 {
			return
		}
		p.out.Write(buf[:n])
	}
}

// wait records the exit once the output is drained, so that an attached
// client sees all output before the exit frame.
func (p *ptySession) wait(pumped <-chan struct{}) {
	<-p.proc.done
	p.mu.Lock()
	p.pgid = 0 // reaped: never signal a group id that may be reused
	p.mu.Unlock()
	p.master.SetReadDeadline(time.Now().Add(drainGrace))
	<-pumped
	// Closing the master hangs up whatever still holds the slave.
	p.master.Close()
	st := p.proc.exitStatus()
	p.mu.Lock()
	p.exit = &st
	p.mu.Unlock()
	p.out.Close()
	p.m.s.log.Info("terminal exited", "pty", p.id, "code", st.Code, "signal", st.Signal)
	m := p.m
	m.mu.Lock()
	if m.ptys[p.id] == p {
		p.retire = time.AfterFunc(ptyRetention, func() {
			m.mu.Lock()
			m.forget(p)
			m.mu.Unlock()
		})
	}
	m.mu.Unlock()
}

func (p *ptySession) exited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit != nil
}

func (p *ptySession) info() PTYInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	in := PTYInfo{
		ID: p.id, PID: p.proc.pid, Argv: slices.Clone(p.argv), Cwd: p.cwd, Env: slices.Clone(p.env),
		Cols: p.cols, Rows: p.rows, Running: p.exit == nil, Attached: p.attached != nil, CreatedAt: p.created,
	}
	if p.exit != nil {
		e := *p.exit
		in.Exit = &e
	}
	return in
}

func (p *ptySession) resize(cols, rows int) error {
	if err := checkSize(cols, rows); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exit != nil || p.pgid == 0 {
		return errdefs.Publicf(errdefs.ErrConflict, "terminal %q has exited", p.id)
	}
	// The kernel sends SIGWINCH to the terminal's foreground group.
	if err := setSize(p.master, cols, rows); err != nil {
		return errdefs.Publicf(errdefs.ErrConflict, "terminal %q has exited", p.id)
	}
	p.cols, p.rows = cols, rows
	return nil
}

func (p *ptySession) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pgid == 0 {
		return errdefs.Publicf(errdefs.ErrConflict, "terminal %q has exited", p.id)
	}
	syscall.Kill(-p.pgid, sig)
	return nil
}

// kill ends the terminal's processes: its process group and, because job
// control gives every background job a group of its own, every process of
// the terminal's session (the leader made it with setsid).
func (p *ptySession) kill() {
	p.mu.Lock()
	sid := p.pgid
	if sid > 0 {
		syscall.Kill(-sid, syscall.SIGKILL)
	}
	p.mu.Unlock()
	if sid > 0 {
		killOwned(func(q proc) bool { return q.sid == sid })
	}
}

// write sends input to the terminal. A full input queue (the process does
// not read) blocks, which is the backpressure.
func (p *ptySession) write(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	// A process that never reads (or is stopped) must not hang the caller
	// and every input queued behind it.
	p.master.SetWriteDeadline(time.Now().Add(10 * time.Second))
	defer p.master.SetWriteDeadline(time.Time{})
	if _, err := p.master.Write(b); err != nil {
		if p.exited() || errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EIO) {
			return errdefs.Publicf(errdefs.ErrConflict, "terminal %q has exited", p.id)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return errdefs.Publicf(errdefs.ErrConflict, "terminal %q does not read its input", p.id)
		}
		return fmt.Errorf("writing to terminal %s: %w", p.id, err)
	}
	return nil
}

func (m *ptyManager) handleAttach(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), ptyUpgradeProto) {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "attach needs Upgrade: %s", ptyUpgradeProto))
		return
	}
	offset := int64(-1)
	if v := r.URL.Query().Get("offset"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid offset %q", v))
			return
		}
		offset = n
	}
	p, err := m.lookup(r.PathValue("id"))
	if err != nil {
		m.writeKindError(w, r, err)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("hijacking attach connection: %w", err))
		return
	}
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+ptyUpgradeProto+"\r\n\r\n"); err != nil {
		conn.Close()
		return
	}
	p.attach(m.s.ctx, conn, brw.Reader, offset)
}

// attach streams the terminal to conn until the process has exited (exit
// frame), the client goes away, or another client takes over.
func (p *ptySession) attach(ctx context.Context, conn net.Conn, br io.Reader, offset int64) {
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := &ptyAttachment{conn: conn, cancel: cancel}
	p.mu.Lock()
	prev := p.attached
	p.attached = a
	p.mu.Unlock()
	if prev != nil {
		prev.takenMu.Lock()
		prev.takenFor = true
		prev.takenMu.Unlock()
		prev.cancel()
	}
	defer func() {
		p.mu.Lock()
		if p.attached == a {
			p.attached = nil
		}
		p.mu.Unlock()
	}()

	rr := p.out.reader(ctx, true)
	if end := p.out.end(); offset < 0 || offset > end {
		if offset > end {
			offset = end
		} else {
			offset = 0 // readAt clamps to the oldest byte retained
		}
	}
	rr.off = offset
	// Where the replay really starts: the ring may have dropped older bytes.
	_, start, _, _ := p.out.readAt(offset, nil)
	rr.off = start
	head, _ := json.Marshal(PTYAttach{PTY: p.info(), Offset: start})
	if _, err := conn.Write(appendFrame(nil, FramePTY, head)); err != nil {
		return
	}

	go p.readClient(ctx, cancel, br)

	buf := make([]byte, frameHeaderLen+chunkSize)
	for {
		n, err := rr.Read(buf[frameHeaderLen:])
		if n > 0 {
			putFrameHeader(buf, FrameStdout, n)
			if _, werr := conn.Write(buf[:frameHeaderLen+n]); werr != nil {
				return
			}
		}
		if err == nil {
			continue
		}
		if errors.Is(err, io.EOF) {
			// The ring is closed only after the exit is recorded.
			p.mu.Lock()
			st := p.exit
			p.mu.Unlock()
			payload, _ := json.Marshal(st)
			conn.SetWriteDeadline(time.Now().Add(exitWriteGrace))
			conn.Write(appendFrame(nil, FrameExit, payload))
			return
		}
		a.takenMu.Lock()
		taken := a.takenFor
		a.takenMu.Unlock()
		if taken {
			payload, _ := json.Marshal(wireError{Message: "another client attached to this terminal", Kind: kindName(errdefs.ErrConflict)})
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			conn.Write(appendFrame(nil, FrameError, payload))
		}
		return
	}
}

// readClient applies the attached client's frames; EOF detaches.
func (p *ptySession) readClient(ctx context.Context, detach context.CancelFunc, br io.Reader) {
	defer detach()
	for {
		kind, data, err := readFrame(br)
		if err != nil || ctx.Err() != nil {
			return
		}
		switch kind {
		case frameStdin:
			p.write(data) // a terminal that exited: the exit frame tells
		case framePTYResize:
			if len(data) == 4 {
				p.resize(int(binary.BigEndian.Uint16(data[0:2])), int(binary.BigEndian.Uint16(data[2:4])))
			}
		case frameSignal:
			if len(data) == 4 {
				if sig := syscall.Signal(binary.BigEndian.Uint32(data)); sig > 0 && sig < 65 {
					p.signal(sig)
				}
			}
		}
	}
}

package agent

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

const (
	// maxContexts bounds the contexts of one sandbox, dead ones included.
	maxContexts = 16
	// interruptGrace is how long an interrupted run may take to stop
	// before its interpreter is killed.
	interruptGrace = 3 * time.Second
	// kernelStartTimeout bounds the interpreter's start-up.
	kernelStartTimeout = 30 * time.Second
	// markerGrace is how long the end markers are awaited after the
	// kernel reported a run done (they are written before, but may be
	// lost if the code closed its stdout).
	markerGrace = time.Second
)

// kernel is a context: a persistent interpreter process.
type kernel struct {
	info   ContextInfo // ID, Language, Cwd, User, CreatedAt are fixed
	req    ContextRequest
	dir    *codeDir
	proc   *child
	ctl    *os.File // commands, the kernel's fd 3
	marker []byte
	exited chan struct{} // closed when the process is gone and dead is set

	// sem serializes runs: a run holds it from before the 101 to the end.
	sem chan struct{}

	mu   sync.Mutex
	cur  *kernelRun
	dead string // why the context died; "" while it lives
	runs int
	busy bool
}

// kernelRun is the run a kernel's output currently belongs to.
type kernelRun struct {
	id      int
	e       *execSession
	done    chan kernelDone // the kernel's answer
	outDone chan struct{}   // the stdout marker arrived
	errDone chan struct{}   // the stderr marker arrived
	once    [2]sync.Once
}

// kernelDone is the kernel's answer to a run (see codekit/kernel.py).
type kernelDone struct {
	Type   string     `json:"type"`
	ID     int        `json:"id"`
	Code   int        `json:"code"`
	Error  *CodeError `json:"error"`
	Result *string    `json:"result"`
}

func newContextID() string {
	var b [6]byte
	rand.Read(b[:])
	return "ctx-" + hex.EncodeToString(b[:])
}

func (cs *codeServer) handleCreateContext(w http.ResponseWriter, r *http.Request) {
	var req ContextRequest
	body := http.MaxBytesReader(w, r.Body, 1<<20)
	if err := json.NewDecoder(body).Decode(&req); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "decoding context request: %v", err))
		return
	}
	k, err := cs.createContext(req)
	if err != nil {
		writeError(w, errorStatus(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(k.snapshot())
}

func (cs *codeServer) handleListContexts(w http.ResponseWriter, r *http.Request) {
	cs.mu.Lock()
	out := make([]ContextInfo, 0, len(cs.order))
	for _, id := range cs.order {
		out = append(out, cs.kernels[id].snapshot())
	}
	cs.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

func (cs *codeServer) handleDeleteContext(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cs.mu.Lock()
	k, ok := cs.kernels[id]
	if ok {
		delete(cs.kernels, id)
		for i, o := range cs.order {
			if o == id {
				cs.order = append(cs.order[:i], cs.order[i+1:]...)
				break
			}
		}
	}
	cs.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, errdefs.Publicf(errdefs.ErrNotFound, "context %q not found", id))
		return
	}
	k.close("the context was deleted")
	w.WriteHeader(http.StatusNoContent)
}

// handleRestartContext replaces a context's interpreter by a new one with
// the same ID and settings: its variables are gone, a dead context lives
// again, and a run still going in the old one ends as ContextDied.
func (cs *codeServer) handleRestartContext(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	cs.mu.Lock()
	old, ok := cs.kernels[id]
	cs.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, errdefs.Publicf(errdefs.ErrNotFound, "context %q not found", id))
		return
	}
	old.close("the context was restarted")
	// The new kernel waits for the runs queued on the old one to end.
	select {
	case old.sem <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	k, err := cs.startKernel(old.req, old.info.Language)
	<-old.sem
	if err != nil {
		writeError(w, errorStatus(err), err)
		return
	}
	k.info.ID = id
	cs.mu.Lock()
	if cs.kernels[id] != old {
		cs.mu.Unlock()
		k.close("the context was deleted")
		writeError(w, http.StatusNotFound, errdefs.Publicf(errdefs.ErrNotFound, "context %q not found", id))
		return
	}
	cs.kernels[id] = k
	cs.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(k.snapshot())
}

func (cs *codeServer) closeAll() {
	cs.mu.Lock()
	ks := make([]*kernel, 0, len(cs.kernels))
	for _, k := range cs.kernels {
		ks = append(ks, k)
	}
	cs.kernels, cs.order = map[string]*kernel{}, nil
	cs.mu.Unlock()
	for _, k := range ks {
		k.close("the agent stopped")
	}
}

func (cs *codeServer) createContext(req ContextRequest) (*kernel, error) {
	lang := LangPython
	if req.Language != "" {
		var ok bool
		if lang, ok = Language(req.Language); !ok {
			return nil, unknownLanguage(req.Language)
		}
	}
	if lang != LangPython && lang != LangJavaScript {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "contexts run python or javascript, not %s", lang)
	}
	cs.mu.Lock()
	n := len(cs.kernels)
	cs.mu.Unlock()
	if n >= maxContexts {
		return nil, errdefs.Publicf(errdefs.ErrConflict, "this sandbox already has %d code contexts, the most it may have: delete one first", maxContexts)
	}
	k, err := cs.startKernel(req, lang)
	if err != nil {
		return nil, err
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if len(cs.kernels) >= maxContexts {
		go k.close("too many contexts")
		return nil, errdefs.Publicf(errdefs.ErrConflict, "this sandbox already has %d code contexts, the most it may have: delete one first", maxContexts)
	}
	cs.kernels[k.info.ID] = k
	cs.order = append(cs.order, k.info.ID)
	return k, nil
}

// startKernel starts the interpreter and waits for it to be ready.
func (cs *codeServer) startKernel(req ContextRequest, lang string) (*kernel, error) {
	s := cs.s
	interp, script, flags := "python3", "kernel.py", []string{"-u"}
	if lang == LangJavaScript {
		interp, script, flags = "node", "kernel.js", nil
	}
	sp, err := s.prepare(ExecRequest{Argv: []string{interp}, Cwd: req.Cwd, Env: req.Env, User: req.User})
	if err != nil {
		if errdefs.Kind(err) == errdefs.ErrNotFound && strings.Contains(err.Error(), "not found in $PATH") {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "%s contexts need %s, which is not on this sandbox's PATH", lang, interp)
		}
		return nil, err
	}
	dir, err := newCodeDir(sp.cred)
	if err != nil {
		return nil, err
	}
	src, err := codekit.ReadFile("codekit/" + script)
	if err == nil {
		err = dir.writeFile(script, src, sp.cred)
	}
	if err != nil {
		dir.remove()
		return nil, fmt.Errorf("writing the kernel: %w", err)
	}
	var nonce [12]byte
	rand.Read(nonce[:])
	marker := "\x1e\x1fsbx-end-" + hex.EncodeToString(nonce[:]) + "\x1f\x1e"
	env := sp.env
	if lang == LangPython {
		env = withFigureEnv(env, req.Env, dir, "")
	}
	env = mergeEnv(env, []string{"SBX_KERNEL_MARKER=" + marker})

	// Pipes: the kernel's stdin is /dev/null, fds 3 and 4 are the control
	// channel, stdout and stderr are read all the time.
	var closers []*os.File
	cleanup := func() {
		for _, f := range closers {
			f.Close()
		}
	}
	pipe := func() (*os.File, *os.File, error) {
		r, w, err := os.Pipe()
		if err == nil {
			closers = append(closers, r, w)
		}
		return r, w, err
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		dir.remove()
		return nil, err
	}
	closers = append(closers, null)
	cmdR, cmdW, err1 := pipe()
	ansR, ansW, err2 := pipe()
	outR, outW, err3 := pipe()
	errR, errW, err4 := pipe()
	for _, e := range []error{err1, err2, err3, err4} {
		if e != nil {
			cleanup()
			dir.remove()
			return nil, fmt.Errorf("creating the kernel's pipes: %w", e)
		}
	}
	argv := append(append([]string{interp}, flags...), filepath.Join(dir.path, script))
	c, err := s.reaper.start(sp.path, argv, &syscall.ProcAttr{
		Dir:   sp.dir,
		Env:   env,
		Files: []uintptr{null.Fd(), outW.Fd(), errW.Fd(), cmdR.Fd(), ansW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: sp.cred},
	})
	null.Close()
	cmdR.Close()
	ansW.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		cmdW.Close()
		ansR.Close()
		outR.Close()
		errR.Close()
		dir.remove()
		return nil, startError(argv[0], err)
	}
	user := req.User
	if user == "" {
		user = s.user
	}
	k := &kernel{
		info: ContextInfo{
			ID: newContextID(), Language: lang, Cwd: sp.dir, User: user,
			CreatedAt: time.Now().UTC(),
		},
		req: req, dir: dir, proc: c, ctl: cmdW, marker: []byte(marker),
		exited: make(chan struct{}), sem: make(chan struct{}, 1),
	}
	ready := make(chan error, 1)
	var startErr bytes.Buffer // what the kernel said before it was ready
	go k.readAnswers(ansR, ready)
	errDone := make(chan struct{})
	go k.pump(outR, FrameStdout, nil)
	go func() { k.pump(errR, FrameStderr, &startErr); close(errDone) }()
	go func() {
		<-c.done
		st := c.exitStatus()
		k.mu.Lock()
		if k.dead == "" {
			how := fmt.Sprintf("exited with code %d", st.Code)
			if st.Signal != "" {
				how = "was killed by " + st.Signal
			}
			k.dead = fmt.Sprintf("its %s process %s", interp, how)
		}
		k.mu.Unlock()
		cmdW.Close()
		close(k.exited)
		s.log.Info("code context ended", "context", k.info.ID, "code", st.Code, "signal", st.Signal)
	}()
	select {
	case err := <-ready:
		if err == nil {
			s.log.Info("code context started", "context", k.info.ID, "pid", c.pid)
			return k, nil
		}
	case <-time.After(kernelStartTimeout):
	}
	k.close("it did not start")
	<-k.exited
	select {
	case <-errDone:
	case <-time.After(time.Second): // a child of the kernel holds stderr
	}
	k.mu.Lock() // startErr is written under k.mu
	msg := strings.TrimSpace(startErr.String())
	k.mu.Unlock()
	if len(msg) > 2000 {
		msg = msg[len(msg)-2000:]
	}
	return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "the %s context did not start: %s", lang, firstNonEmpty(msg, k.deadReason()))
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (k *kernel) deadReason() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dead
}

func (k *kernel) snapshot() ContextInfo {
	k.mu.Lock()
	defer k.mu.Unlock()
	ci := k.info
	ci.Runs = k.runs
	switch {
	case k.dead != "":
		ci.State, ci.Error = ContextDead, "the context is dead: "+k.dead
	case k.busy:
		ci.State = ContextBusy
	default:
		ci.State = ContextIdle
	}
	return ci
}

// close ends the kernel: EOF on its commands, SIGKILL to its group after a
// short grace. It does not wait.
func (k *kernel) close(why string) {
	k.mu.Lock()
	if k.dead == "" {
		k.dead = why
	}
	k.mu.Unlock()
	k.ctl.Close()
	go func() {
		select {
		case <-k.exited:
		case <-time.After(500 * time.Millisecond):
			k.kill()
			<-k.exited
		}
		k.dir.remove()
	}()
}

// kill sends SIGKILL to the kernel's process group while its leader has not
// been reaped (a reaped pid may be reused).
func (k *kernel) kill() {
	select {
	case <-k.proc.done:
	default:
		syscall.Kill(-k.proc.pid, syscall.SIGKILL)
	}
}

func (k *kernel) interrupt() {
	select {
	case <-k.proc.done:
	default:
		syscall.Kill(-k.proc.pid, syscall.SIGINT)
	}
}

// readAnswers dispatches the kernel's answers; the first is "ready".
func (k *kernel) readAnswers(f *os.File, ready chan<- error) {
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	first := true
	for {
		line, err := br.ReadBytes('\n')
		if err != nil {
			if first {
				ready <- fmt.Errorf("the kernel ended before it was ready")
			}
			return
		}
		var d kernelDone
		if json.Unmarshal(line, &d) != nil {
			continue
		}
		switch d.Type {
		case "ready":
			if first {
				first = false
				ready <- nil
			}
		case "done":
			k.mu.Lock()
			r := k.cur
			k.mu.Unlock()
			if r != nil && r.id == d.ID {
				select {
				case r.done <- d:
				default:
				}
			}
		}
	}
}

// pump reads one output stream of the kernel for its whole life, hands the
// bytes to the current run and notes the end markers. Bytes that may be
// the start of a marker are held back until the next read decides.
// Before the kernel is ready, stderr goes to early (its start-up errors).
func (k *kernel) pump(f *os.File, kind FrameKind, early *bytes.Buffer) {
	defer f.Close()
	buf := make([]byte, chunkSize)
	var pending []byte
	for {
		n, err := f.Read(buf)
		data := append(pending, buf[:n]...)
		pending = nil
		for {
			i := bytes.Index(data, k.marker)
			if i < 0 {
				break
			}
			k.deliver(kind, data[:i], early)
			k.markerSeen(kind)
			data = data[i+len(k.marker):]
		}
		keep := partialSuffix(data, k.marker)
		k.deliver(kind, data[:len(data)-keep], early)
		pending = append([]byte(nil), data[len(data)-keep:]...)
		if err != nil {
			k.deliver(kind, pending, early)
			return
		}
	}
}

// partialSuffix returns the length of the longest end of data that is a
// proper prefix of marker.
func partialSuffix(data, marker []byte) int {
	for n := min(len(data), len(marker)-1); n > 0; n-- {
		if bytes.HasPrefix(marker, data[len(data)-n:]) {
			return n
		}
	}
	return 0
}

func (k *kernel) deliver(kind FrameKind, p []byte, early *bytes.Buffer) {
	if len(p) == 0 {
		return
	}
	k.mu.Lock()
	r := k.cur
	started := k.runs > 0 || r != nil
	if early != nil && !started && early.Len() < 64<<10 {
		early.Write(p)
	}
	k.mu.Unlock()
	if r == nil {
		return // between runs: nobody to tell
	}
	for len(p) > 0 {
		n := min(len(p), chunkSize)
		r.e.send(appendFrame(nil, kind, p[:n]))
		p = p[n:]
	}
}

func (k *kernel) markerSeen(kind FrameKind) {
	k.mu.Lock()
	r := k.cur
	k.mu.Unlock()
	if r == nil {
		return
	}
	if kind == FrameStdout {
		r.once[0].Do(func() { close(r.outDone) })
	} else {
		r.once[1].Do(func() { close(r.errDone) })
	}
}

// runInContext runs req in its context, serialized with the context's
// other runs.
func (cs *codeServer) runInContext(w http.ResponseWriter, r *http.Request, req CodeRequest) {
	cs.mu.Lock()
	k, ok := cs.kernels[req.ContextID]
	cs.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, errdefs.Publicf(errdefs.ErrNotFound, "context %q not found", req.ContextID))
		return
	}
	if req.Language != "" {
		if lang, ok := Language(req.Language); !ok {
			writeError(w, http.StatusBadRequest, unknownLanguage(req.Language))
			return
		} else if lang != k.info.Language {
			writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "context %s runs %s, not %s", k.info.ID, k.info.Language, lang))
			return
		}
	}
	if len(req.Argv) > 0 || req.Cwd != "" || req.User != "" {
		writeError(w, http.StatusBadRequest, errdefs.Public(errdefs.ErrInvalidArgument, "argv, cwd and user cannot be given for a run in a context: the context has its own"))
		return
	}
	env := map[string]string{}
	for _, kv := range req.Env {
		key, v, ok := strings.Cut(kv, "=")
		if !ok || key == "" {
			writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid environment variable %q", kv))
			return
		}
		env[key] = v
	}
	select {
	case k.sem <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	defer func() { <-k.sem }()
	if dead := k.deadReason(); dead != "" {
		writeError(w, http.StatusConflict, errdefs.Publicf(errdefs.ErrConflict, "context %s is dead: %s; delete it and create a new one", k.info.ID, dead))
		return
	}
	e, ok := upgradeCode(w, cs.s)
	if !ok {
		return
	}
	defer e.conn.Close()
	k.run(e, req, env)
}

// run executes one run; the caller holds k.sem.
func (k *kernel) run(e *execSession, req CodeRequest, env map[string]string) {
	start := time.Now()
	k.mu.Lock()
	k.runs++
	r := &kernelRun{
		id: k.runs, e: e, done: make(chan kernelDone, 1),
		outDone: make(chan struct{}), errDone: make(chan struct{}),
	}
	k.cur, k.busy = r, true
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.cur, k.busy = nil, false
		k.mu.Unlock()
	}()

	// An interrupt (timeout, the client's SIGINT or departure) sends
	// SIGINT; a run still going interruptGrace later costs the context.
	var (
		imu         sync.Mutex
		interrupted bool
		timedOut    bool
		killer      *time.Timer
	)
	interrupt := func(timeout bool) {
		imu.Lock()
		defer imu.Unlock()
		if timeout {
			timedOut = true
		}
		if interrupted {
			return
		}
		interrupted = true
		k.interrupt()
		killer = time.AfterFunc(interruptGrace, func() {
			k.mu.Lock()
			if k.dead == "" {
				k.dead = fmt.Sprintf("its interpreter did not stop within %v of an interrupt and was killed", interruptGrace)
			}
			k.mu.Unlock()
			k.kill()
		})
	}
	finished := make(chan struct{})
	defer func() {
		close(finished)
		imu.Lock()
		if killer != nil {
			killer.Stop()
		}
		imu.Unlock()
	}()
	if req.Timeout > 0 {
		t := time.AfterFunc(req.Timeout, func() { interrupt(true) })
		defer t.Stop()
	}
	go func() {
		for {
			kind, p, err := readFrame(e.br)
			if err != nil {
				select {
				case <-finished:
				default:
					interrupt(false) // the client went away
				}
				return
			}
			if kind == frameSignal && len(p) == 4 && syscall.Signal(binary.BigEndian.Uint32(p)) == syscall.SIGINT {
				interrupt(false)
			}
		}
	}()

	// The command is written once the interrupts are armed: a kernel that
	// does not read it is interrupted, then killed, like one that runs.
	cmd, _ := json.Marshal(map[string]any{"type": "run", "id": r.id, "code": req.Code, "env": env})
	cmd = append(cmd, '\n')
	if _, err := k.ctl.Write(cmd); err != nil {
		e.sendError(errdefs.Publicf(errdefs.ErrConflict, "context %s is dead: %s", k.info.ID, firstNonEmpty(k.deadReason(), "its interpreter does not read")))
		return
	}

	var (
		d    kernelDone
		died bool
	)
	select {
	case d = <-r.done:
		grace := time.NewTimer(markerGrace)
		for _, ch := range []chan struct{}{r.outDone, r.errDone} {
			select {
			case <-ch:
			case <-grace.C:
			case <-k.exited:
			}
		}
		grace.Stop()
	case <-k.exited:
		died = true
		// What the kernel wrote before it died is still in the pipes.
		time.Sleep(drainGrace)
	}
	imu.Lock()
	if killer != nil {
		killer.Stop()
	}
	interrupted = true // the run is over: nothing more to interrupt
	to := timedOut
	imu.Unlock()
	k.mu.Lock()
	k.cur = nil
	k.mu.Unlock()
	e.conn.SetWriteDeadline(time.Now().Add(exitWriteGrace))
	exit := CodeExit{ExitStatus: ExitStatus{Duration: time.Since(start), TimedOut: to}, ExecutionCount: r.id}
	if died {
		st := k.proc.exitStatus()
		exit.Code, exit.Signal = st.Code, st.Signal
		exit.Error = &CodeError{Name: "ContextDied", Value: fmt.Sprintf("context %s is dead: %s", k.info.ID, k.deadReason())}
	} else {
		exit.Code, exit.Error = d.Code, d.Error
	}
	for _, a := range k.dir.artifacts() {
		e.sendArtifact(a)
	}
	if !died && d.Result != nil {
		e.sendArtifact(textArtifact(*d.Result))
	}
	payload, _ := json.Marshal(exit)
	e.send(appendFrame(nil, FrameExit, payload))
}

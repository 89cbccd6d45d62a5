package agent

// Code runs: code in a language rather than a command line, with rich
// results (matplotlib figures as PNG plus a chart description), once in a
// fresh process or in a context, a persistent interpreter whose variables
// survive between runs.
//
// Wire protocol (part of version 1):
//
//	POST   /v1/code            body: CodeRequest, Connection: Upgrade,
//	                           Upgrade: sbx-exec -> 101, then frames
//	POST   /v1/contexts        body: ContextRequest -> 201 ContextInfo
//	GET    /v1/contexts        -> 200 [ContextInfo], oldest first
//	DELETE /v1/contexts/{id}   -> 204
//	POST   /v1/contexts/{id}/restart -> 200 ContextInfo: a new interpreter,
//	                           same ID and settings, variables gone
//
// A code stream uses exec's framing (wire.go) and its kinds: stdout (1),
// stderr (2), error (4, last: the run could not start). Two kinds are its
// own: artifact (5, JSON Artifact without its data, with "size"), followed
// by size bytes of artifact data (6) in frames of at most 32 KiB, so that a
// large PNG never exceeds the frame limit. Artifacts come after all output
// and before the exit frame (3), whose JSON is a CodeExit: ExitStatus plus
// "error" (the exception a run in a context ended with). From the host
// only signal frames (18) are read: SIGINT interrupts the run; other
// signals go to a one-shot run's process group. EOF from the host kills a
// one-shot run and interrupts a run in a context.
//
// One-shot runs. The code is written to a private directory (0700, owned
// by the run's user, removed afterwards) and run as `python3 -u main.py`,
// `node main.js`, `tsx main.ts` (tsx must be on PATH) or `bash main.sh`
// (sh without bash), with Argv after it, in Cwd (default: the sandbox's
// workdir). Python finds modules in Cwd (PYTHONPATH), Node in
// Cwd/node_modules (NODE_PATH). The timeout kills the process group, as
// exec's.
//
// Figures. Python runs get MPLBACKEND=module://sbx_mpl_backend and the
// backend module (codekit/sbx_mpl_backend.py) on PYTHONPATH, so matplotlib
// is only imported when the code imports it, and no code has to change.
// The backend renders with Agg and captures each figure on plt.show(), on
// savefig and, at exit, those still open (a figure unchanged since its last
// capture is not captured again), as PNG and JSON files in the run's
// directory, which the agent reads after the run. A sandbox environment's
// MPLBACKEND (the default image sets Agg) is overridden; an MPLBACKEND
// given in the request's Env wins, and then nothing is captured.
//
// Contexts (python, javascript). Each is a `python3 -u kernel.py` or a
// `node kernel.js` (codekit/) in its own process group, started as
// ContextRequest says, talking to the agent over two pipes (fd 3 commands
// in, fd 4 results out, one JSON per line); its stdout and stderr are pipes
// the agent reads all the time. Runs in one context are serialized (a
// waiting run gives up when its client goes away). A python run executes
// in the context's __main__ (top-level await allowed), a javascript run in
// the kernel's global scope (vm.runInThisContext: top-level let, const and
// function persist; code with top-level await runs as an async function,
// its declarations local). The value of a last expression (a promise's
// value, in javascript) becomes a text/plain artifact; in python, figures
// open at the end are captured and closed, as Jupyter's inline backend
// does. Output is attributed to a run by a per-kernel random marker that
// the kernel writes to stdout and stderr after flushing them at the end of
// the run; output between runs (a background thread's) is dropped. A
// timeout sends SIGINT to the kernel's process group (KeyboardInterrupt in
// python, vm's breakOnSigint in javascript; exit code 130, error name
// KeyboardInterrupt, the context lives on); an interpreter that has not
// finished the run interruptGrace later is killed with SIGKILL and the
// context is dead. A context whose interpreter died answers 409 (conflict)
// to every later run, saying why, until it is deleted. There are at most
// maxContexts per sandbox, dead ones included.

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

//go:embed codekit/*.py codekit/*.js
var codekit embed.FS

const (
	mplBackend    = "module://sbx_mpl_backend"
	artifactsEnv  = "SBX_CODE_ARTIFACTS"
	maxArtifacts  = 100 // per run; more are dropped
	maxChartJSON  = 4 << 20
	artifactsDir  = "artifacts"
	codeLibDir    = "lib" // the backend module, on PYTHONPATH
	codeDirPrefix = "sbx-code-"
)

// codeServer serves code runs and owns the contexts of one server.
type codeServer struct {
	s *server

	mu      sync.Mutex
	kernels map[string]*kernel
	order   []string // context IDs, oldest first
}

func (s *server) codeRoutes(mux *http.ServeMux) {
	cs := &codeServer{s: s, kernels: make(map[string]*kernel)}
	mux.HandleFunc("POST /v1/code", cs.handleCode)
	mux.HandleFunc("POST /v1/contexts", cs.handleCreateContext)
	mux.HandleFunc("GET /v1/contexts", cs.handleListContexts)
	mux.HandleFunc("DELETE /v1/contexts/{id}", cs.handleDeleteContext)
	mux.HandleFunc("POST /v1/contexts/{id}/restart", cs.handleRestartContext)
	// The contexts' interpreters end with the server.
	context.AfterFunc(s.ctx, cs.closeAll)
}

// upgradeCode hijacks the connection after the checks and answers 101.
func upgradeCode(w http.ResponseWriter, s *server) (*execSession, bool) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("hijacking code connection: %w", err))
		return nil, false
	}
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+upgradeProto+"\r\n\r\n"); err != nil {
		conn.Close()
		return nil, false
	}
	return &execSession{s: s, conn: conn, br: brw.Reader}, true
}

func errorStatus(err error) int {
	switch errdefs.Kind(err) {
	case errdefs.ErrNotFound:
		return http.StatusNotFound
	case errdefs.ErrConflict:
		return http.StatusConflict
	case errdefs.ErrInvalidArgument:
		return http.StatusBadRequest
	case errdefs.ErrPermissionDenied:
		return http.StatusForbidden
	case errdefs.ErrUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (cs *codeServer) handleCode(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), upgradeProto) {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "code runs need Upgrade: %s", upgradeProto))
		return
	}
	var req CodeRequest
	body := http.MaxBytesReader(w, r.Body, 2<<20)
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "decoding code request: %v", err))
		return
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "reading code request: %v", err))
		return
	}
	if req.Timeout < 0 {
		writeError(w, http.StatusBadRequest, errdefs.Public(errdefs.ErrInvalidArgument, "timeout must not be negative"))
		return
	}
	if req.ContextID != "" {
		cs.runInContext(w, r, req)
		return
	}
	lang, ok := Language(req.Language)
	if !ok {
		writeError(w, http.StatusBadRequest, unknownLanguage(req.Language))
		return
	}
	e, ok := upgradeCode(w, cs.s)
	if !ok {
		return
	}
	e.runCode(req, lang)
}

func unknownLanguage(name string) error {
	if name == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "language is required: python, javascript, typescript or bash")
	}
	return errdefs.Publicf(errdefs.ErrInvalidArgument, "unknown language %q: want python, javascript, typescript or bash", name)
}

// codeDir is a run's (or a context's) private directory.
type codeDir struct {
	path string
	root *os.Root // opened at creation: the code cannot redirect it
}

// newCodeDir makes a 0700 directory owned by cred (nil: the agent's user)
// with the backend module in lib/ and an empty artifacts/.
func newCodeDir(cred *syscall.Credential) (*codeDir, error) {
	path, err := os.MkdirTemp("", codeDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("creating the code directory: %w", err)
	}
	d := &codeDir{path: path}
	fail := func(err error) (*codeDir, error) {
		d.remove()
		return nil, fmt.Errorf("preparing the code directory: %w", err)
	}
	if d.root, err = os.OpenRoot(path); err != nil {
		return fail(err)
	}
	for _, sub := range []string{codeLibDir, artifactsDir} {
		if err := d.root.Mkdir(sub, 0o700); err != nil {
			return fail(err)
		}
	}
	backend, _ := codekit.ReadFile("codekit/sbx_mpl_backend.py")
	if err := d.root.WriteFile(filepath.Join(codeLibDir, "sbx_mpl_backend.py"), backend, 0o600); err != nil {
		return fail(err)
	}
	if cred != nil {
		// Everything the run may need to read or write belongs to its user.
		for _, p := range []string{".", codeLibDir, artifactsDir, filepath.Join(codeLibDir, "sbx_mpl_backend.py")} {
			if err := d.root.Lchown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return fail(err)
			}
		}
	}
	return d, nil
}

// writeFile writes a file of the run, owned by cred.
func (d *codeDir) writeFile(name string, data []byte, cred *syscall.Credential) error {
	if err := d.root.WriteFile(name, data, 0o600); err != nil {
		return err
	}
	if cred != nil {
		return d.root.Lchown(name, int(cred.Uid), int(cred.Gid))
	}
	return nil
}

// remove deletes the directory. RemoveAll does not follow a symlink the
// code may have put in its place.
func (d *codeDir) remove() {
	if d.root != nil {
		d.root.Close()
	}
	os.RemoveAll(d.path)
}

// artifacts reads and removes the captured figures, oldest first: each is
// NAME.png with its description NAME.json. Files are opened through the
// directory's os.Root, so a symlink cannot make the agent read elsewhere.
func (d *codeDir) artifacts() []Artifact {
	f, err := d.root.Open(artifactsDir)
	if err != nil {
		return nil
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	sort.Strings(names)
	var out []Artifact
	for _, n := range names {
		base, ok := strings.CutSuffix(n, ".json")
		if !ok {
			continue
		}
		jsonPath, pngPath := filepath.Join(artifactsDir, n), filepath.Join(artifactsDir, base+".png")
		desc, err1 := readLimited(d.root, jsonPath, maxChartJSON)
		png, err2 := readLimited(d.root, pngPath, maxArtifactSize)
		d.root.Remove(jsonPath)
		d.root.Remove(pngPath)
		if err1 != nil || err2 != nil || len(out) >= maxArtifacts {
			continue
		}
		a := Artifact{Type: "image/png", Data: png}
		var meta struct {
			Chart
			Text string `json:"text"`
		}
		if json.Unmarshal(desc, &meta) == nil {
			a.Chart, a.Text = meta.Chart, meta.Text
		}
		out = append(out, a)
	}
	// Leftovers (a figure half written when the run was killed) go too.
	for _, n := range names {
		d.root.Remove(filepath.Join(artifactsDir, n))
	}
	return out
}

func readLimited(root *os.Root, name string, limit int64) ([]byte, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// withFigureEnv adds the figure capture to env (which already holds the
// request's variables) unless the request chose a backend itself.
func withFigureEnv(env, reqEnv []string, dir *codeDir, cwd string) []string {
	for _, kv := range reqEnv {
		if strings.HasPrefix(kv, "MPLBACKEND=") {
			return env
		}
	}
	pp := filepath.Join(dir.path, codeLibDir)
	if cwd != "" {
		pp += ":" + cwd
	}
	if old := envValue(env, "PYTHONPATH"); old != "" {
		pp += ":" + old
	}
	return mergeEnv(env, []string{
		"MPLBACKEND=" + mplBackend,
		"PYTHONPATH=" + pp,
		artifactsEnv + "=" + filepath.Join(dir.path, artifactsDir),
	})
}

// codeJob is a one-shot run ready to start.
type codeJob struct {
	sp  *procSpec
	dir *codeDir
}

// prepareCode resolves the run like an exec, then writes the code and
// picks the interpreter.
func (s *server) prepareCode(req CodeRequest, lang string) (*codeJob, error) {
	var file string
	var argv []string
	switch lang {
	case LangPython:
		file, argv = "main.py", []string{"python3", "-u"}
	case LangJavaScript:
		file, argv = "main.js", []string{"node"}
	case LangTypeScript:
		file, argv = "main.ts", []string{"tsx"}
	case LangBash:
		file, argv = "main.sh", []string{"bash"}
	}
	// Resolve with a placeholder: the directory's owner depends on the
	// user, the argv on the directory.
	sp, err := s.prepare(ExecRequest{Argv: argv, Cwd: req.Cwd, Env: req.Env, User: req.User})
	if err != nil && lang == LangBash && errdefs.Kind(err) == errdefs.ErrNotFound && strings.Contains(err.Error(), "not found in $PATH") {
		argv = []string{"sh"}
		sp, err = s.prepare(ExecRequest{Argv: argv, Cwd: req.Cwd, Env: req.Env, User: req.User})
	}
	if err != nil {
		if errdefs.Kind(err) == errdefs.ErrNotFound && strings.Contains(err.Error(), "not found in $PATH") {
			hint := ""
			if lang == LangTypeScript {
				hint = " (install it with `npm install -g tsx`)"
			}
			return nil, errdefs.Publicf(errdefs.ErrNotFound, "%s code needs %s, which is not on this sandbox's PATH%s", lang, argv[0], hint)
		}
		return nil, err
	}
	dir, err := newCodeDir(sp.cred)
	if err != nil {
		return nil, err
	}
	if err := dir.writeFile(file, []byte(req.Code), sp.cred); err != nil {
		dir.remove()
		return nil, fmt.Errorf("writing the code: %w", err)
	}
	sp.argv = append(append(argv, filepath.Join(dir.path, file)), req.Argv...)
	switch lang {
	case LangPython:
		sp.env = withFigureEnv(sp.env, req.Env, dir, sp.dir)
	case LangJavaScript, LangTypeScript:
		np := filepath.Join(sp.dir, "node_modules")
		if old := envValue(sp.env, "NODE_PATH"); old != "" {
			np += ":" + old
		}
		sp.env = mergeEnv(sp.env, []string{"NODE_PATH=" + np})
	}
	return &codeJob{sp: sp, dir: dir}, nil
}

// runCode runs a one-shot code run on the session, like run does a
// command, and sends the artifacts before the exit frame.
func (e *execSession) runCode(req CodeRequest, lang string) {
	defer e.conn.Close()
	job, err := e.s.prepareCode(req, lang)
	if err != nil {
		e.sendError(err)
		return
	}
	defer job.dir.remove()
	st, ok := e.spawn(job.sp, false, req.Timeout)
	if !ok {
		return
	}

	// The directory is gone before the client hears of the exit.
	arts := job.dir.artifacts()
	job.dir.remove()
	for _, a := range arts {
		e.sendArtifact(a)
	}
	payload, _ := json.Marshal(CodeExit{ExitStatus: st})
	e.send(appendFrame(nil, FrameExit, payload))
}

// sendArtifact sends the metadata frame and the data frames of a.
func (e *execSession) sendArtifact(a Artifact) {
	data := a.Data
	a.Data, a.Size = nil, len(data)
	meta, err := json.Marshal(a)
	if err != nil || len(meta) > maxFramePayload {
		return
	}
	e.send(appendFrame(nil, FrameArtifact, meta))
	for len(data) > 0 {
		n := min(len(data), chunkSize)
		e.send(appendFrame(nil, frameArtifactData, data[:n]))
		data = data[n:]
	}
}

// textArtifact is a run's value.
func textArtifact(text string) Artifact {
	return Artifact{Type: "text/plain", Text: text, Main: true}
}

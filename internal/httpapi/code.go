package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// maxArtifactBytes caps the artifacts of a buffered code answer.
const maxArtifactBytes = 64 << 20

func (h *handler) codeRoutes(route func(string, func(http.ResponseWriter, *http.Request, store.Tenant))) {
	route("POST /v1/sandboxes/{id}/code", h.runCode)
	route("POST /v1/sandboxes/{id}/contexts", h.createContext)
	route("GET /v1/sandboxes/{id}/contexts", h.listContexts)
	route("DELETE /v1/sandboxes/{id}/contexts/{contextID}", h.deleteContext)
	route("POST /v1/sandboxes/{id}/contexts/{contextID}/restart", h.restartContext)
}

// envList (session.go) turns an API environment into sorted "K=V" pairs.

// toAgentCode checks a code request and turns it into the agent's.
func toAgentCode(req sbx.CodeRequest) (agent.CodeRequest, error) {
	if req.Language == "" && req.ContextID == "" {
		return agent.CodeRequest{}, invalidf("language is required (python, javascript, typescript or bash) unless context_id is given")
	}
	lang := ""
	if req.Language != "" {
		var ok bool
		if lang, ok = agent.Language(req.Language); !ok {
			return agent.CodeRequest{}, invalidf("unknown language %q: want python, javascript, typescript or bash", req.Language)
		}
	}
	if req.TimeoutSeconds < 0 || math.IsNaN(req.TimeoutSeconds) || req.TimeoutSeconds > 365*24*3600 {
		return agent.CodeRequest{}, invalidf("timeout_seconds must not be negative")
	}
	if req.ContextID != "" && (len(req.Argv) > 0 || req.Cwd != "" || req.User != "") {
		return agent.CodeRequest{}, invalidf("argv, cwd and user cannot be given for a run in a context: the context has its own")
	}
	env, err := envList(req.Env)
	if err != nil {
		return agent.CodeRequest{}, err
	}
	return agent.CodeRequest{
		Language: lang, Code: req.Code, Argv: req.Argv, Env: env, Cwd: req.Cwd, User: req.User,
		Timeout: time.Duration(req.TimeoutSeconds * float64(time.Second)), ContextID: req.ContextID,
	}, nil
}

func toArtifact(a *agent.Artifact) sbx.Artifact {
	return sbx.Artifact{Type: a.Type, Data: a.Data, Text: a.Text, Main: a.Main, Chart: toChart(a.Chart)}
}

func toChart(c agent.Chart) sbx.Chart {
	out := sbx.Chart{Kind: c.Kind, Title: c.Title, XLabel: c.XLabel, YLabel: c.YLabel, XScale: c.XScale, YScale: c.YScale}
	for _, e := range c.Elements {
		out.Elements = append(out.Elements, sbx.ChartElement{
			Label: e.Label, Group: e.Group, Points: e.Points, Value: e.Value, Angle: e.Angle, Radius: e.Radius,
			Min: e.Min, FirstQuartile: e.FirstQuartile, Median: e.Median, ThirdQuartile: e.ThirdQuartile, Max: e.Max, Outliers: e.Outliers,
		})
	}
	for _, sub := range c.Charts {
		out.Charts = append(out.Charts, toChart(sub))
	}
	return out
}

func toCodeError(e *agent.CodeError) *sbx.CodeError {
	if e == nil {
		return nil
	}
	return &sbx.CodeError{Name: e.Name, Value: e.Value, Traceback: e.Traceback}
}

// codeFrameError is the API error for a run the agent could not start: the
// caller's input (an interpreter the image lacks, a bad cwd or user), or a
// context that died meanwhile.
func codeFrameError(f agent.CodeFrame) error {
	if errdefs.Kind(f.Err) == errdefs.ErrConflict {
		return f.Err
	}
	return errdefs.Public(errdefs.ErrInvalidArgument, string(f.Data))
}

func (h *handler) runCode(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.CodeRequest
	if !h.decodeOrFail(w, r, &req, false) {
		return
	}
	areq, err := toAgentCode(req)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ag, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	// The request's context: a client that goes away ends the run.
	st, err := ag.RunCode(r.Context(), areq)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	defer st.Close()
	stop := context.AfterFunc(r.Context(), func() { st.Close() })
	defer stop()
	if wantsNDJSON(r) {
		h.streamCode(w, r, st)
		return
	}
	h.bufferCode(w, r, st)
}

func (h *handler) streamCode(w http.ResponseWriter, r *http.Request, st *agent.CodeStream) {
	w.Header().Set("Content-Type", sbx.NDJSON)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	send := func(f sbx.CodeFrame) bool {
		if err := enc.Encode(f); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	fail := func(err error) {
		status, code := statusOf(err)
		if status == http.StatusInternalServerError {
			h.log.ErrorContext(r.Context(), "code stream", "path", r.URL.Path, "err", err)
		}
		send(sbx.CodeFrame{Type: sbx.FrameError, Code: code, Message: publicMessage(err)})
	}
	rc.Flush()
	for {
		f, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the code's stream ended without an exit status")
			}
			if r.Context().Err() != nil {
				return
			}
			fail(err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout, agent.FrameStderr:
			typ := sbx.FrameStdout
			if f.Kind == agent.FrameStderr {
				typ = sbx.FrameStderr
			}
			if !send(sbx.CodeFrame{Type: typ, Data: f.Data}) {
				return
			}
		case agent.FrameArtifact:
			a := toArtifact(f.Artifact)
			if !send(sbx.CodeFrame{Type: sbx.FrameArtifact, Artifact: &a}) {
				return
			}
		case agent.FrameExit:
			send(sbx.CodeFrame{Type: sbx.FrameExit, Exit: toExitStatus(&f.Exit.ExitStatus), Error: toCodeError(f.Exit.Error), ExecutionCount: f.Exit.ExecutionCount})
			return
		case agent.FrameError:
			fail(codeFrameError(f))
			return
		}
	}
}

// bufferCode collects the run and answers once it has ended. Output past
// the caps is read and dropped, so the code is never blocked.
func (h *handler) bufferCode(w http.ResponseWriter, r *http.Request, st *agent.CodeStream) {
	stdout := &capped{max: h.cfg.MaxExecOutput}
	stderr := &capped{max: h.cfg.MaxExecOutput}
	res := sbx.CodeResult{Artifacts: []sbx.Artifact{}}
	size := 0
	for {
		f, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the code's stream ended without an exit status")
			}
			h.writeError(w, r, err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout:
			stdout.add(f.Data)
		case agent.FrameStderr:
			stderr.add(f.Data)
		case agent.FrameArtifact:
			if size += len(f.Artifact.Data) + len(f.Artifact.Text); size > maxArtifactBytes {
				res.ArtifactsTruncated = true
				continue
			}
			res.Artifacts = append(res.Artifacts, toArtifact(f.Artifact))
		case agent.FrameError:
			h.writeError(w, r, codeFrameError(f))
			return
		case agent.FrameExit:
			e := toExitStatus(&f.Exit.ExitStatus)
			res.ExitCode, res.Signal, res.TimedOut, res.OOMKilled, res.DurationMS = e.Code, e.Signal, e.TimedOut, e.OOMKilled, e.DurationMS
			res.Error, res.ExecutionCount = toCodeError(f.Exit.Error), f.Exit.ExecutionCount
			res.Stdout = strings.ToValidUTF8(string(stdout.buf), "\uFFFD")
			res.Stderr = strings.ToValidUTF8(string(stderr.buf), "\uFFFD")
			res.StdoutTruncated, res.StderrTruncated = stdout.truncated, stderr.truncated
			writeJSON(w, http.StatusOK, res)
			return
		}
	}
}

func toCodeContext(c agent.ContextInfo) sbx.CodeContext {
	return sbx.CodeContext{
		ID: c.ID, Language: c.Language, Cwd: c.Cwd, User: c.User, CreatedAt: c.CreatedAt,
		State: c.State, Runs: c.Runs, Error: c.Error,
	}
}

func (h *handler) createContext(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req sbx.CreateContextRequest
	if !h.decodeOrFail(w, r, &req, true) {
		return
	}
	if req.Language != "" {
		if _, ok := agent.Language(req.Language); !ok {
			h.writeError(w, r, invalidf("unknown language %q", req.Language))
			return
		}
	}
	env, err := envList(req.Env)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ag, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ci, err := ag.CreateContext(r.Context(), agent.ContextRequest{Language: req.Language, Cwd: req.Cwd, Env: env, User: req.User})
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toCodeContext(ci))
}

func (h *handler) listContexts(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	ag, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	list, err := ag.ListContexts(r.Context())
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := sbx.CodeContextList{Items: make([]sbx.CodeContext, 0, len(list))}
	for _, c := range list {
		out.Items = append(out.Items, toCodeContext(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) deleteContext(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	ag, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := ag.DeleteContext(r.Context(), r.PathValue("contextID")); err != nil {
		h.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) restartContext(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	ag, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	ci, err := ag.RestartContext(r.Context(), r.PathValue("contextID"))
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toCodeContext(ci))
}

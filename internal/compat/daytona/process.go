package daytona

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// isToolbox reports whether the request is a toolbox call (errors then
// carry the daemon's source).
func isToolbox(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, Prefix+toolboxPath+"/")
}

// tb registers a toolbox route: pattern is "METHOD /path" below
// /toolbox/{sandbox}.
func (h *handler) tb(pattern string, fn func(http.ResponseWriter, *http.Request, store.Tenant)) {
	method, path, _ := strings.Cut(pattern, " ")
	h.route(method+" "+toolboxPath+"/{sandbox}"+path, fn)
}

func (h *handler) toolboxRoutes() {
	h.tb("POST /process/execute", h.execute)
	h.tb("POST /process/code-run", h.codeRun)
	h.tb("GET /user-home-dir", h.dirOf(`printf '%s' "$HOME"`))
	h.tb("GET /work-dir", h.dirOf(`pwd`))
	h.tb("GET /version", func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		if _, ok := h.agentOf(w, r, t); ok {
			writeJSON(w, http.StatusOK, map[string]string{"version": "sbx-agent/" + agent.Version})
		}
	})
	h.fileRoutes()
	h.sessionRoutes()
	h.ptyRoutes()
}

// agentOf returns the agent of the request's sandbox, or answers the error
// (unknown: 404, not started: 409).
func (h *handler) agentOf(w http.ResponseWriter, r *http.Request, t store.Tenant) (*agent.Client, bool) {
	a, err := h.cfg.Sandboxes.Agent(r.Context(), t.ID, r.PathValue("sandbox"))
	if err != nil {
		h.fail(w, r, err)
		return nil, false
	}
	return a, true
}

// envPairs turns Daytona's env object into sorted "K=V" pairs.
func envPairs(env map[string]string) ([]string, error) { return agent.EnvList(env) }

// seconds turns Daytona's timeout (seconds, 0 or absent = none).
func seconds(s float64) (time.Duration, error) {
	if s < 0 || math.IsNaN(s) || s > 365*24*3600 {
		return 0, invalidf("timeout must be a non-negative number of seconds")
	}
	return time.Duration(s * float64(time.Second)), nil
}

// combined collects stdout and stderr in the order they arrive, up to max
// bytes (the rest is read and dropped, so the command never blocks).
type combined struct {
	buf []byte
	max int
}

func (c *combined) add(p []byte) {
	if room := c.max - len(c.buf); room < len(p) {
		p = p[:max(room, 0)]
	}
	c.buf = append(c.buf, p...)
}

func (c *combined) String() string { return strings.ToValidUTF8(string(c.buf), "\uFFFD") }

// executeResponse is the answer of process/execute.
type executeResponse struct {
	ExitCode int    `json:"exitCode"`
	Result   string `json:"result"`
}

// timeoutError is the daemon's answer to a command killed by its timeout:
// 408, which the SDK raises as DaytonaProcessExecutionTimeoutError.
func timeoutError(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, http.StatusRequestTimeout, codeExecTimeout, sourceDaemon, "command execution timed out")
}

func (h *handler) execute(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Command string            `json:"command"`
		Cwd     string            `json:"cwd"`
		Envs    map[string]string `json:"envs"`
		Timeout float64           `json:"timeout"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.Command) == "" {
		h.fail(w, r, invalidf("command is required"))
		return
	}
	env, err := envPairs(req.Envs)
	timeout, err2 := seconds(req.Timeout)
	if err = errors.Join(err, err2); err != nil {
		h.fail(w, r, err)
		return
	}
	// Daytona runs the command line with a shell; so does Shell.
	p, err := h.cfg.Sandboxes.Exec(r.Context(), t.ID, r.PathValue("sandbox"), agent.ExecRequest{
		Shell: req.Command, Cwd: req.Cwd, Env: env, Timeout: timeout,
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer p.Close()
	stop := context.AfterFunc(r.Context(), func() { p.Close() })
	defer stop()
	out := &combined{max: h.cfg.MaxExecOutput}
	for {
		f, err := p.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the command's stream ended without an exit status")
			}
			h.fail(w, r, err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout, agent.FrameStderr:
			out.add(f.Data)
		case agent.FrameError:
			// Daytona's daemon answers a command it cannot start
			// with exit code -1 and the error as the result.
			writeJSON(w, http.StatusOK, executeResponse{ExitCode: -1, Result: string(f.Data)})
			return
		case agent.FrameExit:
			if f.Exit.TimedOut {
				timeoutError(w, r)
				return
			}
			writeJSON(w, http.StatusOK, executeResponse{ExitCode: f.Exit.Code, Result: out.String()})
			return
		}
	}
}

// dirOf answers {dir} with the output of a command run as the sandbox's
// user in its working directory (the user's home, the working directory).
func (h *handler) dirOf(command string) func(http.ResponseWriter, *http.Request, store.Tenant) {
	return func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		p, err := h.cfg.Sandboxes.Exec(r.Context(), t.ID, r.PathValue("sandbox"), agent.ExecRequest{Shell: command, Timeout: 10 * time.Second})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		defer p.Close()
		out := &combined{max: 64 << 10}
		for {
			f, err := p.Recv()
			if err != nil {
				h.fail(w, r, err)
				return
			}
			switch f.Kind {
			case agent.FrameStdout:
				out.add(f.Data)
			case agent.FrameError:
				h.fail(w, r, f.Err)
				return
			case agent.FrameExit:
				if f.Exit.Code != 0 {
					h.fail(w, r, fmt.Errorf("%q exited with %d", command, f.Exit.Code))
					return
				}
				writeJSON(w, http.StatusOK, map[string]string{"dir": strings.TrimRight(out.String(), "\n")})
				return
			}
		}
	}
}

// Chart is a chart artifact as the SDK parses it (snake_case, like
// Daytona's matplotlib harness).
type Chart struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	PNG      string `json:"png,omitempty"`
	XLabel   string `json:"x_label,omitempty"`
	YLabel   string `json:"y_label,omitempty"`
	XScale   string `json:"x_scale,omitempty"`
	YScale   string `json:"y_scale,omitempty"`
	Elements []any  `json:"elements"`
}

// chartElement is one series, bar, wedge or box of a chart.
type chartElement struct {
	Label         string       `json:"label,omitempty"`
	Group         string       `json:"group,omitempty"`
	Points        [][2]float64 `json:"points,omitempty"`
	Value         *float64     `json:"value,omitempty"`
	Angle         *float64     `json:"angle,omitempty"`
	Radius        *float64     `json:"radius,omitempty"`
	Min           *float64     `json:"min,omitempty"`
	FirstQuartile *float64     `json:"first_quartile,omitempty"`
	Median        *float64     `json:"median,omitempty"`
	ThirdQuartile *float64     `json:"third_quartile,omitempty"`
	Max           *float64     `json:"max,omitempty"`
	Outliers      []float64    `json:"outliers,omitempty"`
}

// chartType maps sbx's chart kinds to Daytona's ChartType names.
func chartType(kind string) string {
	switch kind {
	case "line", "scatter", "bar", "pie":
		return kind
	case "histogram":
		return "bar"
	case "box":
		return "box_and_whisker"
	case "composite":
		return "composite_chart"
	}
	return "unknown"
}

// toChart translates a figure; png is its image (empty for the axes of a
// composite figure, which share the figure's).
func toChart(c agent.Chart, png []byte) Chart {
	out := Chart{
		Type: chartType(c.Kind), Title: c.Title, XLabel: c.XLabel, YLabel: c.YLabel, XScale: c.XScale, YScale: c.YScale,
		Elements: []any{},
	}
	if len(png) > 0 {
		out.PNG = base64.StdEncoding.EncodeToString(png)
	}
	if c.Kind == "composite" {
		for _, sub := range c.Charts {
			out.Elements = append(out.Elements, toChart(sub, nil))
		}
		return out
	}
	for _, e := range c.Elements {
		out.Elements = append(out.Elements, chartElement{
			Label: e.Label, Group: e.Group, Points: e.Points, Value: e.Value, Angle: e.Angle, Radius: e.Radius,
			Min: e.Min, FirstQuartile: e.FirstQuartile, Median: e.Median, ThirdQuartile: e.ThirdQuartile, Max: e.Max, Outliers: e.Outliers,
		})
	}
	return out
}

// codeRunResponse is the answer of process/code-run.
type codeRunResponse struct {
	ExitCode  int    `json:"exitCode"`
	Result    string `json:"result"`
	Artifacts struct {
		Charts []Chart `json:"charts"`
	} `json:"artifacts"`
}

// maxArtifactBytes caps the figures of one answer.
const maxArtifactBytes = 64 << 20

func (h *handler) codeRun(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Code     string            `json:"code"`
		Language string            `json:"language"`
		Argv     []string          `json:"argv"`
		Envs     map[string]string `json:"envs"`
		Timeout  float64           `json:"timeout"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	lang := agent.LangPython // Daytona's default
	if req.Language != "" {
		var ok bool
		if lang, ok = agent.Language(req.Language); !ok {
			h.fail(w, r, invalidf("unknown language %q: want python, javascript or typescript", req.Language))
			return
		}
	}
	env, err := envPairs(req.Envs)
	timeout, err2 := seconds(req.Timeout)
	if err = errors.Join(err, err2); err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	st, err := a.RunCode(r.Context(), agent.CodeRequest{Language: lang, Code: req.Code, Argv: req.Argv, Env: env, Timeout: timeout})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer st.Close()
	stop := context.AfterFunc(r.Context(), func() { st.Close() })
	defer stop()
	out := &combined{max: h.cfg.MaxExecOutput}
	res := codeRunResponse{}
	res.Artifacts.Charts = []Chart{}
	artifactBytes := 0
	for {
		f, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the code run's stream ended without an exit status")
			}
			h.fail(w, r, err)
			return
		}
		switch f.Kind {
		case agent.FrameStdout, agent.FrameStderr:
			out.add(f.Data)
		case agent.FrameArtifact:
			a := f.Artifact
			if a.Type != "image/png" || artifactBytes+len(a.Data) > maxArtifactBytes {
				continue
			}
			artifactBytes += len(a.Data)
			res.Artifacts.Charts = append(res.Artifacts.Charts, toChart(a.Chart, a.Data))
		case agent.FrameError:
			// An interpreter the image lacks, a bad cwd: as execute,
			// exit code -1 and the reason as the result.
			if errdefs.Kind(f.Err) == errdefs.ErrConflict {
				h.fail(w, r, f.Err)
				return
			}
			writeJSON(w, http.StatusOK, codeRunResponse{ExitCode: -1, Result: string(f.Data)})
			return
		case agent.FrameExit:
			if f.Exit.TimedOut {
				timeoutError(w, r)
				return
			}
			res.ExitCode, res.Result = f.Exit.Code, out.String()
			writeJSON(w, http.StatusOK, res)
			return
		}
	}
}

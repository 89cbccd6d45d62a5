package sbx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Languages of code runs.
const (
	LangPython     = "python"
	LangJavaScript = "javascript"
	LangTypeScript = "typescript"
	LangBash       = "bash"
)

// FrameArtifact is the frame type of a streamed code run's artifacts.
const FrameArtifact = "artifact"

// CodeRequest is the body of POST /v1/sandboxes/{id}/code.
type CodeRequest struct {
	// Language is python, javascript, typescript or bash; optional with
	// ContextID, where it must be the context's.
	Language string            `json:"language,omitempty"`
	Code     string            `json:"code"`
	Argv     []string          `json:"argv,omitempty"` // one-shot runs only
	Env      map[string]string `json:"env,omitempty"`
	Cwd      string            `json:"cwd,omitempty"`  // one-shot runs only
	User     string            `json:"user,omitempty"` // one-shot runs only
	// TimeoutSeconds kills a one-shot run; in a context it interrupts the
	// run (KeyboardInterrupt) and the context lives on. 0 = none.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
	// ContextID runs the code in a context (see CreateContext).
	ContextID string `json:"context_id,omitempty"`
}

// Artifact is a rich result of a code run: a matplotlib figure (Type
// "image/png", Data the PNG, and a chart description) or the value of a
// context run's last expression (Type "text/plain", Text, Main).
type Artifact struct {
	Type string `json:"type"`
	Data []byte `json:"data,omitempty"`
	Text string `json:"text,omitempty"`
	Main bool   `json:"main,omitempty"`
	Chart
}

// Chart describes a figure or one axes of a composite figure.
type Chart struct {
	// Kind is line, scatter, bar, histogram, pie, box, image, composite
	// or unknown.
	Kind     string         `json:"kind,omitempty"`
	Title    string         `json:"title,omitempty"`
	XLabel   string         `json:"x_label,omitempty"`
	YLabel   string         `json:"y_label,omitempty"`
	XScale   string         `json:"x_scale,omitempty"`
	YScale   string         `json:"y_scale,omitempty"`
	Elements []ChartElement `json:"elements,omitempty"`
	Charts   []Chart        `json:"charts,omitempty"` // composite: one per axes
}

// ChartElement is one series (line, scatter), bar, wedge (pie) or box.
type ChartElement struct {
	Label  string       `json:"label,omitempty"`
	Group  string       `json:"group,omitempty"`
	Points [][2]float64 `json:"points,omitempty"`
	Value  *float64     `json:"value,omitempty"`
	Angle  *float64     `json:"angle,omitempty"`
	Radius *float64     `json:"radius,omitempty"`
	// Box plots: the whiskers' ends, the quartiles and the outliers.
	Min           *float64  `json:"min,omitempty"`
	FirstQuartile *float64  `json:"first_quartile,omitempty"`
	Median        *float64  `json:"median,omitempty"`
	ThirdQuartile *float64  `json:"third_quartile,omitempty"`
	Max           *float64  `json:"max,omitempty"`
	Outliers      []float64 `json:"outliers,omitempty"`
}

// CodeError is the exception a run in a context ended with.
type CodeError struct {
	Name      string `json:"name"`
	Value     string `json:"value"`
	Traceback string `json:"traceback,omitempty"`
}

// CodeResult is the answer of a code run. In a context ExitCode is 0, 1
// for an exception (Error), 130 when interrupted, or sys.exit's code.
type CodeResult struct {
	ExitCode           int        `json:"exit_code"`
	Signal             string     `json:"signal"`
	TimedOut           bool       `json:"timed_out"`
	OOMKilled          bool       `json:"oom_killed"`
	DurationMS         int64      `json:"duration_ms"`
	Stdout             string     `json:"stdout"`
	Stderr             string     `json:"stderr"`
	StdoutTruncated    bool       `json:"stdout_truncated"`
	StderrTruncated    bool       `json:"stderr_truncated"`
	Artifacts          []Artifact `json:"artifacts"`
	ArtifactsTruncated bool       `json:"artifacts_truncated"`
	Error              *CodeError `json:"error,omitempty"`
	// ExecutionCount numbers the runs of a context, from 1 (0 for a
	// one-shot run).
	ExecutionCount int `json:"execution_count,omitempty"`
}

// CodeFrame is one line of a streamed code run.
type CodeFrame struct {
	Type     string      `json:"type"` // stdout, stderr, artifact, exit, error
	Data     []byte      `json:"data,omitempty"`
	Artifact *Artifact   `json:"artifact,omitempty"`
	Exit     *ExitStatus `json:"exit,omitempty"`
	Error    *CodeError  `json:"error,omitempty"` // on exit: the run's exception
	// ExecutionCount is on the exit frame of a run in a context.
	ExecutionCount int    `json:"execution_count,omitempty"`
	Message        string `json:"message,omitempty"` // for "error"
	Code           string `json:"code,omitempty"`    // for "error": a problem code
}

// CreateContextRequest is the body of POST /v1/sandboxes/{id}/contexts.
type CreateContextRequest struct {
	Language string            `json:"language,omitempty"` // python (default) or javascript
	Cwd      string            `json:"cwd,omitempty"`
	Env      map[string]string `json:"env,omitempty"`
	User     string            `json:"user,omitempty"`
}

// Context states.
const (
	ContextIdle = "idle"
	ContextBusy = "busy"
	ContextDead = "dead"
)

// CodeContext is a persistent interpreter in a sandbox.
type CodeContext struct {
	ID        string    `json:"id"`
	Language  string    `json:"language"`
	Cwd       string    `json:"cwd"`
	User      string    `json:"user,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	State     string    `json:"state"` // idle, busy or dead
	Runs      int       `json:"runs"`
	Error     string    `json:"error,omitempty"` // why a dead context died
}

// CodeContextList is the answer of GET /v1/sandboxes/{id}/contexts.
type CodeContextList struct {
	Items []CodeContext `json:"items"`
}

// CodeHandlers receive a streamed run's output as it arrives; nil ones
// are skipped. An error a handler returns ends the stream (and the run).
type CodeHandlers struct {
	Stdout   func([]byte) error
	Stderr   func([]byte) error
	Artifact func(Artifact) error
}

// RunCode runs code and returns its buffered result.
func (c *Client) RunCode(ctx context.Context, id string, req CodeRequest) (CodeResult, error) {
	var r CodeResult
	return r, c.do(ctx, http.MethodPost, sandboxPath(id, "code"), nil, req, &r)
}

// RunCodeStream runs code and hands its output and artifacts to h as they
// arrive. The result has the exit status, the exception and the artifacts,
// but no stdout or stderr (they went to h). The returned error is an API
// or transport error; the code's own failure is in the result. Cancelling
// ctx kills a one-shot run and interrupts a run in a context.
func (c *Client) RunCodeStream(ctx context.Context, id string, req CodeRequest, h CodeHandlers) (CodeResult, error) {
	resp, err := c.open(ctx, http.MethodPost, sandboxPath(id, "code"), nil, req, NDJSON)
	if err != nil {
		return CodeResult{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	res := CodeResult{Artifacts: []Artifact{}}
	for {
		var f CodeFrame
		if err := dec.Decode(&f); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return CodeResult{}, fmt.Errorf("reading code stream: %w", err)
		}
		var herr error
		switch f.Type {
		case FrameStdout:
			if h.Stdout != nil {
				herr = h.Stdout(f.Data)
			}
		case FrameStderr:
			if h.Stderr != nil {
				herr = h.Stderr(f.Data)
			}
		case FrameArtifact:
			if f.Artifact == nil {
				continue
			}
			res.Artifacts = append(res.Artifacts, *f.Artifact)
			if h.Artifact != nil {
				herr = h.Artifact(*f.Artifact)
			}
		case FrameExit:
			if f.Exit == nil {
				return CodeResult{}, errors.New("reading code stream: exit frame without status")
			}
			e := f.Exit
			res.ExitCode, res.Signal, res.TimedOut, res.OOMKilled, res.DurationMS = e.Code, e.Signal, e.TimedOut, e.OOMKilled, e.DurationMS
			res.Error, res.ExecutionCount = f.Error, f.ExecutionCount
			return res, nil
		case FrameError:
			return CodeResult{}, streamError(f.Code, f.Message)
		}
		if herr != nil {
			return CodeResult{}, herr
		}
	}
}

// CreateContext starts a code context in a sandbox.
func (c *Client) CreateContext(ctx context.Context, id string, req CreateContextRequest) (CodeContext, error) {
	var cc CodeContext
	return cc, c.do(ctx, http.MethodPost, sandboxPath(id, "contexts"), nil, req, &cc)
}

// ListContexts returns a sandbox's code contexts, oldest first.
func (c *Client) ListContexts(ctx context.Context, id string) ([]CodeContext, error) {
	var l CodeContextList
	return l.Items, c.do(ctx, http.MethodGet, sandboxPath(id, "contexts"), nil, nil, &l)
}

// DeleteContext stops a code context and forgets it.
func (c *Client) DeleteContext(ctx context.Context, id, contextID string) error {
	return c.do(ctx, http.MethodDelete, sandboxPath(id, "contexts", url.PathEscape(contextID)), nil, nil, nil)
}

// RestartContext replaces a code context's interpreter by a fresh one with
// the same ID and settings (its variables are gone); a dead context lives
// again.
func (c *Client) RestartContext(ctx context.Context, id, contextID string) (CodeContext, error) {
	var cc CodeContext
	return cc, c.do(ctx, http.MethodPost, sandboxPath(id, "contexts", url.PathEscape(contextID), "restart"), nil, nil, &cc)
}

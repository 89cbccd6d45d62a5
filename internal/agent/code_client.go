package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Frame kinds of a code stream besides those of exec (see code_linux.go).
const (
	// FrameArtifact carries an Artifact (JSON) whose Data follows in
	// Size bytes of frameArtifactData frames; Recv joins them.
	FrameArtifact FrameKind = 5
	// frameArtifactData carries raw bytes of the artifact announced last.
	frameArtifactData FrameKind = 6
)

// Languages of code runs.
const (
	LangPython     = "python"
	LangJavaScript = "javascript"
	LangTypeScript = "typescript"
	LangBash       = "bash"
)

// Language returns the canonical name of a language or one of its aliases
// (py, js, node, ts, sh, shell), and false for an unknown one.
func Language(name string) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "python", "python3", "py":
		return LangPython, true
	case "javascript", "js", "node", "nodejs":
		return LangJavaScript, true
	case "typescript", "ts":
		return LangTypeScript, true
	case "bash", "sh", "shell":
		return LangBash, true
	}
	return "", false
}

// CodeRequest asks the agent to run code, once in a fresh process or in a
// context (a persistent interpreter).
type CodeRequest struct {
	// Language is python, javascript, typescript or bash (or an alias);
	// optional with ContextID, where it must match the context's.
	Language string `json:"language,omitempty"`
	Code     string `json:"code"`
	// Argv are the program's arguments (not in a context).
	Argv []string `json:"argv,omitempty"`
	// Env is added to (and overrides) the environment, "K=V". In a context
	// it is set for this run only.
	Env []string `json:"env,omitempty"`
	// Cwd and User as in ExecRequest (not in a context: it has its own).
	Cwd  string `json:"cwd,omitempty"`
	User string `json:"user,omitempty"`
	// Timeout kills a one-shot run's process group; in a context it
	// interrupts the run (SIGINT) and kills the context only if the
	// interpreter does not stop within a grace. 0 = none.
	Timeout time.Duration `json:"timeout,omitempty"`
	// ContextID runs the code in that context.
	ContextID string `json:"context_id,omitempty"`
}

// Artifact is a rich result of a code run: a figure (image/png with a
// chart description) or, in a context, the value of the code's last
// expression (text/plain, Main set).
type Artifact struct {
	Type string `json:"type"`           // "image/png" or "text/plain"
	Data []byte `json:"data,omitempty"` // the PNG; not sent in the metadata frame
	Size int    `json:"size,omitempty"` // bytes of Data on the wire
	// Text is the value's repr for text/plain and the figure's repr
	// ("<Figure size 640x480 with 1 Axes>") for an image.
	Text string `json:"text,omitempty"`
	// Main marks the run's own value (Jupyter's execute_result), as
	// opposed to figures the code displayed.
	Main bool `json:"main,omitempty"`
	Chart
}

// Chart describes a matplotlib figure or one axes of it.
type Chart struct {
	// Kind is line, scatter, bar, histogram, pie, box, image, composite
	// (several axes or kinds) or unknown.
	Kind     string         `json:"kind,omitempty"`
	Title    string         `json:"title,omitempty"` // the suptitle or the axes' title
	XLabel   string         `json:"x_label,omitempty"`
	YLabel   string         `json:"y_label,omitempty"`
	XScale   string         `json:"x_scale,omitempty"`
	YScale   string         `json:"y_scale,omitempty"`
	Elements []ChartElement `json:"elements,omitempty"`
	// Charts are the axes of a composite figure.
	Charts []Chart `json:"charts,omitempty"`
}

// ChartElement is one series, bar or wedge of a chart.
type ChartElement struct {
	Label  string       `json:"label,omitempty"`
	Group  string       `json:"group,omitempty"`  // bar: the series' label
	Points [][2]float64 `json:"points,omitempty"` // line, scatter
	Value  *float64     `json:"value,omitempty"`  // bar, histogram
	Angle  *float64     `json:"angle,omitempty"`  // pie, degrees
	Radius *float64     `json:"radius,omitempty"` // pie
	// box: the whiskers' ends, the quartiles and the outliers.
	Min           *float64  `json:"min,omitempty"`
	FirstQuartile *float64  `json:"first_quartile,omitempty"`
	Median        *float64  `json:"median,omitempty"`
	ThirdQuartile *float64  `json:"third_quartile,omitempty"`
	Max           *float64  `json:"max,omitempty"`
	Outliers      []float64 `json:"outliers,omitempty"`
}

// CodeError is the exception a run in a context ended with.
type CodeError struct {
	Name      string `json:"name"`  // e.g. "ZeroDivisionError", "KeyboardInterrupt"
	Value     string `json:"value"` // str(exception)
	Traceback string `json:"traceback,omitempty"`
}

// CodeExit is the payload of a code stream's exit frame: how the run ended.
// In a context Code is 0, 1 for an exception, 130 for an interrupt, or
// sys.exit's code.
type CodeExit struct {
	ExitStatus
	Error *CodeError `json:"error,omitempty"`
	// ExecutionCount numbers the runs of a context, from 1.
	ExecutionCount int `json:"execution_count,omitempty"`
}

// ContextRequest creates a context.
type ContextRequest struct {
	Language string   `json:"language,omitempty"` // python (default) or javascript
	Cwd      string   `json:"cwd,omitempty"`
	Env      []string `json:"env,omitempty"`
	User     string   `json:"user,omitempty"`
}

// Context states.
const (
	ContextIdle = "idle"
	ContextBusy = "busy"
	ContextDead = "dead"
)

// ContextInfo describes a context.
type ContextInfo struct {
	ID        string    `json:"id"`
	Language  string    `json:"language"`
	Cwd       string    `json:"cwd"`
	User      string    `json:"user,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	State     string    `json:"state"`
	Runs      int       `json:"runs"`
	// Error says why a dead context died.
	Error string `json:"error,omitempty"`
}

// CodeFrame is one message of a code stream.
type CodeFrame struct {
	Kind     FrameKind // FrameStdout, FrameStderr, FrameArtifact, FrameExit or FrameError
	Data     []byte    // stdout/stderr bytes, or the error message
	Artifact *Artifact // FrameArtifact, Data included
	Exit     *CodeExit // FrameExit
	Err      error     // FrameError, with its errdefs kind
}

// CodeStream is a code run seen through its stream. Recv must be called
// from one goroutine at a time; Interrupt and Close may be called
// concurrently with it.
type CodeStream struct {
	ctx       context.Context
	rwc       io.ReadWriteCloser
	br        *bufio.Reader
	stopWatch func() bool
	wmu       sync.Mutex
	done      bool
	closeOnce sync.Once
}

// maxArtifactSize bounds one artifact's data on both sides.
const maxArtifactSize = 64 << 20

// RunCode starts a code run and returns its stream. Cancelling ctx closes
// the stream: a one-shot run is killed, a run in a context interrupted.
func (c *Client) RunCode(ctx context.Context, cr CodeRequest) (*CodeStream, error) {
	body, err := json.Marshal(cr)
	if err != nil {
		return nil, fmt.Errorf("encoding code request: %w", err)
	}
	p, err := c.upgrade(ctx, http.MethodPost, "/v1/code", body, upgradeProto)
	if err != nil {
		return nil, err
	}
	return &CodeStream{ctx: ctx, rwc: p.rwc, br: p.br, stopWatch: p.stopWatch}, nil
}

func (s *CodeStream) streamError(err error) error {
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		return fmt.Errorf("code stream: %w", ctxErr)
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("code stream ended before the exit status: %w: %w", errdefs.ErrUnavailable, err)
}

// Recv returns the next frame: output as it arrives, artifacts, then one
// FrameExit or FrameError, then io.EOF.
func (s *CodeStream) Recv() (CodeFrame, error) {
	if s.done {
		return CodeFrame{}, io.EOF
	}
	kind, data, err := readFrame(s.br)
	if err != nil {
		return CodeFrame{}, s.streamError(err)
	}
	switch kind {
	case FrameStdout, FrameStderr:
		return CodeFrame{Kind: kind, Data: data}, nil
	case FrameArtifact:
		var a Artifact
		if err := json.Unmarshal(data, &a); err != nil {
			return CodeFrame{}, fmt.Errorf("decoding artifact: %w", err)
		}
		if a.Size < 0 || a.Size > maxArtifactSize {
			return CodeFrame{}, fmt.Errorf("artifact of %d bytes exceeds the limit", a.Size)
		}
		a.Data = make([]byte, 0, a.Size)
		for len(a.Data) < a.Size {
			k, p, err := readFrame(s.br)
			if err != nil {
				return CodeFrame{}, s.streamError(err)
			}
			if k != frameArtifactData || len(a.Data)+len(p) > a.Size {
				return CodeFrame{}, fmt.Errorf("code stream: bad artifact data (frame kind %d)", k)
			}
			a.Data = append(a.Data, p...)
		}
		a.Size = 0
		return CodeFrame{Kind: kind, Artifact: &a}, nil
	case FrameExit:
		var st CodeExit
		if err := json.Unmarshal(data, &st); err != nil {
			return CodeFrame{}, fmt.Errorf("decoding exit status: %w", err)
		}
		s.done = true
		return CodeFrame{Kind: kind, Exit: &st}, nil
	case FrameError:
		var we wireError
		if err := json.Unmarshal(data, &we); err != nil {
			we.Message = string(data)
		}
		s.done = true
		return CodeFrame{Kind: kind, Data: []byte(we.Message), Err: we.toError()}, nil
	}
	return CodeFrame{}, fmt.Errorf("code stream: unknown frame kind %d", kind)
}

// Interrupt sends SIGINT to the run: a one-shot run's process group, or a
// context's interpreter (KeyboardInterrupt).
func (s *CodeStream) Interrupt() error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(syscall.SIGINT))
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if _, err := s.rwc.Write(appendFrame(nil, frameSignal, b[:])); err != nil {
		return fmt.Errorf("writing to code stream: %w", err)
	}
	return nil
}

// Close abandons the stream; a run still going is killed (one-shot) or
// interrupted (context).
func (s *CodeStream) Close() error {
	s.closeOnce.Do(func() {
		s.stopWatch()
		s.rwc.Close()
	})
	return nil
}

// CreateContext starts a context and returns it once its interpreter is
// ready.
func (c *Client) CreateContext(ctx context.Context, req ContextRequest) (ContextInfo, error) {
	var ci ContextInfo
	return ci, c.call(ctx, http.MethodPost, "/v1/contexts", nil, req, &ci)
}

// ListContexts returns the sandbox's contexts, oldest first.
func (c *Client) ListContexts(ctx context.Context) ([]ContextInfo, error) {
	var l []ContextInfo
	return l, c.call(ctx, http.MethodGet, "/v1/contexts", nil, nil, &l)
}

// DeleteContext stops a context's interpreter and forgets it.
func (c *Client) DeleteContext(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/v1/contexts/"+url.PathEscape(id), nil, nil, nil)
}

// RestartContext replaces a context's interpreter by a fresh one with the
// same ID and settings; a dead context lives again.
func (c *Client) RestartContext(ctx context.Context, id string) (ContextInfo, error) {
	var ci ContextInfo
	return ci, c.call(ctx, http.MethodPost, "/v1/contexts/"+url.PathEscape(id)+"/restart", nil, nil, &ci)
}

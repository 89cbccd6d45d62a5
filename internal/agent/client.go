package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Client talks to one sandbox's agent over its unix socket. It is safe for
// concurrent use; each exec stream has a connection of its own.
type Client struct {
	tr      *http.Transport
	hc      *http.Client
	version string // sent in versionHeader; a field so tests can fake another
}

// NewClient returns a client of the agent listening on socketPath. It does
// not dial until the first call.
func NewClient(socketPath string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:        16,
		MaxIdleConnsPerHost: 16,
		DisableCompression:  true,
	}
	return &Client{tr: tr, hc: &http.Client{Transport: tr}, version: Version}
}

// Close releases idle connections. Running exec streams are not affected.
func (c *Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set(versionHeader, c.version)
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, fmt.Errorf("agent %s: %w", req.URL.Path, ctxErr)
		}
		return nil, fmt.Errorf("agent %s: %w: %w", req.URL.Path, errdefs.ErrUnavailable, err)
	}
	return resp, nil
}

// responseError turns an agent's error response into an error with a kind.
func responseError(resp *http.Response) error {
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var we wireError
	if err := json.Unmarshal(data, &we); err != nil || we.Message == "" {
		return fmt.Errorf("agent %s: unexpected status %s: %s", resp.Request.URL.Path, resp.Status, bytes.TrimSpace(data))
	}
	return fmt.Errorf("agent %s: %w", resp.Request.URL.Path, we.toError())
}

// maxAnswer bounds a JSON answer from an agent: the sandbox is untrusted,
// and its agent must not be able to make the daemon buffer without end.
const maxAnswer = 64 << 20

// decodeAnswer decodes a JSON answer of at most maxAnswer bytes.
func decodeAnswer(resp *http.Response, out any) error {
	lr := &io.LimitedReader{R: resp.Body, N: maxAnswer + 1}
	if err := json.NewDecoder(lr).Decode(out); err != nil {
		if lr.N <= 0 {
			return errdefs.Publicf(errdefs.ErrTooLarge, "the sandbox's answer to %s exceeds %d MiB", resp.Request.URL.Path, maxAnswer>>20)
		}
		return fmt.Errorf("decoding agent %s answer: %w", resp.Request.URL.Path, err)
	}
	return nil
}

// call sends a request with a JSON body (unless in is nil) and decodes a
// JSON answer into out (unless nil); any 2xx is success.
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encoding agent request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := c.newRequest(ctx, method, path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	defer resp.Body.Close()
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
		return nil
	}
	return decodeAnswer(resp, out)
}

// Health asks the agent how it is.
func (c *Client) Health(ctx context.Context) (Health, error) {
	req, err := c.newRequest(ctx, http.MethodGet, "/v1/health", nil)
	if err != nil {
		return Health{}, err
	}
	resp, err := c.do(req)
	if err != nil {
		return Health{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Health{}, responseError(resp)
	}
	defer resp.Body.Close()
	var h Health
	if err := decodeAnswer(resp, &h); err != nil {
		return Health{}, err
	}
	return h, nil
}

// Logs returns the entrypoint's retained output (the last LogLimit bytes).
// With follow the reader stays open for new output until the entrypoint's
// output ends or ctx is done.
func (c *Client) Logs(ctx context.Context, follow bool) (io.ReadCloser, error) {
	path := "/v1/logs"
	if follow {
		path += "?follow=1"
	}
	req, err := c.newRequest(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, responseError(resp)
	}
	return resp.Body, nil
}

// Exec starts a command and returns its stream. Cancelling ctx closes the
// stream, which makes the agent kill the process group.
func (c *Client) Exec(ctx context.Context, er ExecRequest) (*Process, error) {
	body, err := json.Marshal(er)
	if err != nil {
		return nil, fmt.Errorf("encoding exec request: %w", err)
	}
	return c.upgrade(ctx, http.MethodPost, "/v1/exec", body, upgradeProto)
}

// upgrade sends a request (a JSON body unless nil) asking for the
// connection to be upgraded to proto and returns the framed stream that
// follows the 101. After the 101 the transport no longer watches ctx: the
// stream does, closing the connection when ctx ends.
func (c *Client) upgrade(ctx context.Context, method, path string, body []byte, proto string) (*Process, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := c.newRequest(ctx, method, path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", proto)
	resp, err := c.do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return nil, responseError(resp)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		resp.Body.Close()
		return nil, fmt.Errorf("agent %s: upgraded body is not writable", path)
	}
	p := &Process{ctx: ctx, rwc: rwc, br: bufio.NewReaderSize(rwc, 64<<10)}
	p.stopWatch = context.AfterFunc(ctx, func() { rwc.Close() })
	return p, nil
}

// Process is a command running in the sandbox, seen through its exec
// stream. Recv must be called from one goroutine at a time; Write,
// CloseStdin and Signal may be called concurrently with Recv and with
// each other.
type Process struct {
	ctx       context.Context
	rwc       io.ReadWriteCloser
	br        *bufio.Reader
	stopWatch func() bool

	wmu sync.Mutex

	done      bool // the exit or error frame has been received
	closeOnce sync.Once
}

// Recv returns the next frame: stdout and stderr data as it arrives, then
// one FrameExit (with Exit) or FrameError (with Data and Err), then io.EOF.
func (p *Process) Recv() (Frame, error) {
	if p.done {
		return Frame{}, io.EOF
	}
	kind, data, err := readFrame(p.br)
	if err != nil {
		if ctxErr := p.ctx.Err(); ctxErr != nil {
			return Frame{}, fmt.Errorf("exec stream: %w", ctxErr)
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, fmt.Errorf("exec stream ended before the exit status: %w: %w", errdefs.ErrUnavailable, err)
	}
	switch kind {
	case FrameStdout, FrameStderr:
		return Frame{Kind: kind, Data: data}, nil
	case FrameExit:
		var st ExitStatus
		if err := json.Unmarshal(data, &st); err != nil {
			return Frame{}, fmt.Errorf("decoding exit status: %w", err)
		}
		p.done = true
		return Frame{Kind: kind, Exit: &st}, nil
	case FrameError:
		var we wireError
		if err := json.Unmarshal(data, &we); err != nil {
			we.Message = string(data)
		}
		p.done = true
		return Frame{Kind: kind, Data: []byte(we.Message), Err: we.toError()}, nil
	}
	return Frame{}, fmt.Errorf("exec stream: unknown frame kind %d", kind)
}

func (p *Process) writeFrame(kind FrameKind, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if _, err := p.rwc.Write(appendFrame(nil, kind, payload)); err != nil {
		return fmt.Errorf("writing to exec stream: %w", err)
	}
	return nil
}

// Write sends p to the process's stdin (ExecRequest.Stdin must be set).
func (p *Process) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 {
		c := min(len(b), chunkSize)
		if err := p.writeFrame(frameStdin, b[:c]); err != nil {
			return n, err
		}
		n += c
		b = b[c:]
	}
	return n, nil
}

// CloseStdin closes the process's stdin.
func (p *Process) CloseStdin() error { return p.writeFrame(frameStdinClose, nil) }

// Signal sends sig to the process's process group.
func (p *Process) Signal(sig syscall.Signal) error {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(sig))
	return p.writeFrame(frameSignal, b[:])
}

// Close abandons the stream. If the process still runs, the agent kills
// its process group.
func (p *Process) Close() error {
	p.closeOnce.Do(func() {
		p.stopWatch()
		p.rwc.Close()
	})
	return nil
}

// Run runs a command to completion: stdin (may be nil, then the process
// gets /dev/null) is copied in, stdout and stderr (may be nil) receive the
// output. A command that cannot be started returns an error with its kind
// (errdefs.ErrNotFound and "executable file not found" for an unknown
// command), not an exit code.
//
// The stdin copy runs in its own goroutine; if reading stdin blocks
// forever, that goroutine outlives Run.
func (c *Client) Run(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (ExitStatus, error) {
	req.Stdin = stdin != nil
	p, err := c.Exec(ctx, req)
	if err != nil {
		return ExitStatus{}, err
	}
	defer p.Close()
	if stdin != nil {
		go func() {
			if _, err := io.Copy(p, stdin); err == nil {
				p.CloseStdin()
			}
		}()
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	for {
		f, err := p.Recv()
		if err != nil {
			return ExitStatus{}, err
		}
		switch f.Kind {
		case FrameStdout:
			if _, err := stdout.Write(f.Data); err != nil {
				return ExitStatus{}, fmt.Errorf("writing stdout: %w", err)
			}
		case FrameStderr:
			if _, err := stderr.Write(f.Data); err != nil {
				return ExitStatus{}, fmt.Errorf("writing stderr: %w", err)
			}
		case FrameExit:
			return *f.Exit, nil
		case FrameError:
			return ExitStatus{}, f.Err
		}
	}
}

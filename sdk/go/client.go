package sbx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// NDJSON is the media type of the streamed exec and pull answers.
const NDJSON = "application/x-ndjson"

// Client talks to one sbx daemon. It is safe for concurrent use.
type Client struct {
	base   string
	key    string
	http   *http.Client
	header http.Header
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send its requests through hc.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.http = hc } }

// WithUserAgent sets the User-Agent header of every request.
func WithUserAgent(ua string) Option { return func(c *Client) { c.header.Set("User-Agent", ua) } }

// New returns a client of the daemon at baseURL (e.g.
// "http://127.0.0.1:7070") that authenticates with apiKey.
func New(baseURL, apiKey string, opts ...Option) *Client {
	c := &Client{base: strings.TrimRight(baseURL, "/"), key: apiKey, http: http.DefaultClient, header: http.Header{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// request builds a request; body is JSON-encoded unless it is an io.Reader.
func (c *Client) request(ctx context.Context, method, path string, q url.Values, body any) (*http.Request, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var r io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case io.Reader:
		r, ctype = b, "application/octet-stream"
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encoding request: %w", err)
		}
		r, ctype = bytes.NewReader(buf), "application/json"
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	}
	return req, nil
}

// send performs req and turns a non-2xx answer into an *Error.
func (c *Client) send(req *http.Request) (*http.Response, error) {
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, decodeProblem(resp)
}

func decodeProblem(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	e := &Error{}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(b, e) == nil && e.Code != "" {
		e.Status = resp.StatusCode
		return e
	}
	// Not one of ours (a proxy, a wrong URL): keep what can be said.
	e = &Error{Status: resp.StatusCode, Title: http.StatusText(resp.StatusCode), Code: codeOfStatus(resp.StatusCode)}
	if t := strings.TrimSpace(string(b)); t != "" && len(t) < 512 {
		e.Detail = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, t)
	} else {
		e.Detail = fmt.Sprintf("HTTP %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return e
}

func codeOfStatus(status int) string {
	switch status {
	case 400:
		return CodeInvalidArgument
	case 401:
		return CodeUnauthenticated
	case 403:
		return CodePermissionDenied
	case 404:
		return CodeNotFound
	case 409:
		return CodeConflict
	case 413:
		return CodeTooLarge
	case 415:
		return CodeUnsupportedMedia
	case 429, 507:
		return CodeResourceExhausted
	case 503:
		return CodeUnavailable
	case 504:
		return CodeDeadlineExceeded
	}
	return CodeInternal
}

// open sends a request and returns the answer, which is a 2xx (send turns
// the others into errors); accept, when not "", is its Accept header. The
// caller closes the body.
func (c *Client) open(ctx context.Context, method, path string, q url.Values, body any, accept string) (*http.Response, error) {
	req, err := c.request(ctx, method, path, q, body)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return c.send(req)
}

// do sends a JSON request and decodes a JSON answer into out (unless nil).
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	resp, err := c.open(ctx, method, path, q, body, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decoding %s %s answer: %w", method, path, err)
	}
	return nil
}

func sandboxPath(id string, rest ...string) string {
	p := "/v1/sandboxes/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// imagePath escapes only what would end or corrupt the path: references keep
// their slashes and colons, which the server's {ref...} route takes whole.
func imagePath(ref string) string {
	return "/v1/images/" + strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(ref)
}

// Health checks that the daemon answers; it needs no API key.
func (c *Client) Health(ctx context.Context) (Health, error) {
	var h Health
	return h, c.do(ctx, http.MethodGet, "/healthz", nil, nil, &h)
}

// WhoAmI returns the tenant the API key belongs to.
func (c *Client) WhoAmI(ctx context.Context) (Tenant, error) {
	var t Tenant
	return t, c.do(ctx, http.MethodGet, "/v1/whoami", nil, nil, &t)
}

// CreateSandbox creates a sandbox and returns it once it has started.
func (c *Client) CreateSandbox(ctx context.Context, req CreateSandboxRequest) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, "/v1/sandboxes", nil, req, &s)
}

// GetSandbox returns a sandbox by ID or name.
func (c *Client) GetSandbox(ctx context.Context, id string) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodGet, sandboxPath(id), nil, nil, &s)
}

// ListOptions filter and page GET /v1/sandboxes.
type ListOptions struct {
	Labels map[string]string // every pair must match
	States []string          // any of; empty = every state but destroyed
	Limit  int               // page size; 0 = the server's default
	Cursor string            // from a previous page's NextCursor
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	for k, v := range o.Labels {
		q.Add("label", k+"="+v)
	}
	for _, s := range o.States {
		q.Add("state", s)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	return q
}

// ListSandboxes returns one page of sandboxes.
func (c *Client) ListSandboxes(ctx context.Context, opts ListOptions) (SandboxList, error) {
	var l SandboxList
	return l, c.do(ctx, http.MethodGet, "/v1/sandboxes", opts.query(), nil, &l)
}

// ListAllSandboxes follows the cursor through every page.
func (c *Client) ListAllSandboxes(ctx context.Context, opts ListOptions) ([]Sandbox, error) {
	var all []Sandbox
	for {
		page, err := c.ListSandboxes(ctx, opts)
		if err != nil {
			return nil, err
		}
		all = append(all, page.Items...)
		if page.NextCursor == "" || page.NextCursor == opts.Cursor {
			return all, nil
		}
		opts.Cursor = page.NextCursor
	}
}

// StartSandbox starts a stopped sandbox.
func (c *Client) StartSandbox(ctx context.Context, id string) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "start"), nil, nil, &s)
}

// StopSandbox stops a sandbox: SIGTERM, then SIGKILL after grace (0 = the
// operator's default).
func (c *Client) StopSandbox(ctx context.Context, id string, grace time.Duration) (Sandbox, error) {
	var s Sandbox
	var body any
	if grace > 0 {
		body = StopRequest{GraceSeconds: grace.Seconds()}
	}
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "stop"), nil, body, &s)
}

// RestartSandbox stops and starts a sandbox.
func (c *Client) RestartSandbox(ctx context.Context, id string) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "restart"), nil, nil, &s)
}

// DeleteSandbox destroys a sandbox and its files.
func (c *Client) DeleteSandbox(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, sandboxPath(id), nil, nil, nil)
}

// ResizeSandbox changes a sandbox's limits; zero fields stay as they are.
func (c *Client) ResizeSandbox(ctx context.Context, id string, r ResizeRequest) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "resize"), nil, r, &s)
}

// SetLabels replaces a sandbox's labels.
func (c *Client) SetLabels(ctx context.Context, id string, labels map[string]string) (Sandbox, error) {
	if labels == nil {
		labels = map[string]string{}
	}
	var s Sandbox
	return s, c.do(ctx, http.MethodPut, sandboxPath(id, "labels"), nil, LabelsRequest{Labels: labels}, &s)
}

// ArchiveSandbox moves a stopped sandbox's writable layer into the
// server's archive store, freeing its local disk; StartSandbox restores it.
func (c *Client) ArchiveSandbox(ctx context.Context, id string) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "archive"), nil, nil, &s)
}

// SetLifecycle changes a sandbox's auto-stop/archive/delete policy; nil
// fields stay as they are.
func (c *Client) SetLifecycle(ctx context.Context, id string, p LifecyclePolicy) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPut, sandboxPath(id, "lifecycle"), nil, p, &s)
}

// Keepalive records activity on a sandbox and, with d > 0, holds off its
// auto-stop until now+d (d = 0 ends a lease).
func (c *Client) Keepalive(ctx context.Context, id string, d time.Duration) (Sandbox, error) {
	var s Sandbox
	return s, c.do(ctx, http.MethodPost, sandboxPath(id, "keepalive"), nil, KeepaliveRequest{Seconds: int64(d / time.Second)}, &s)
}

// Metrics returns a started sandbox's resource use (CPU, memory, pids,
// disk, network). Reading it does not count as activity.
func (c *Client) Metrics(ctx context.Context, id string) (Metrics, error) {
	var m Metrics
	return m, c.do(ctx, http.MethodGet, sandboxPath(id, "metrics"), nil, nil, &m)
}

// NetworkAudit returns a bridged sandbox's egress audit entries with a
// sequence number above after (the last AuditRingSize the server keeps).
func (c *Client) NetworkAudit(ctx context.Context, id string, after int64) ([]AuditEntry, error) {
	var l AuditList
	err := c.do(ctx, http.MethodGet, sandboxPath(id, "network", "audit"), url.Values{"after": {strconv.FormatInt(after, 10)}}, nil, &l)
	return l.Items, err
}

// FollowNetworkAudit calls fn with each audit entry after after, as they
// come, until ctx ends or fn returns an error (which it returns).
func (c *Client) FollowNetworkAudit(ctx context.Context, id string, after int64, fn func(AuditEntry) error) error {
	resp, err := c.open(ctx, http.MethodGet, sandboxPath(id, "network", "audit"),
		url.Values{"after": {strconv.FormatInt(after, 10)}, "follow": {"true"}}, nil, NDJSON)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var e AuditEntry
		if err := dec.Decode(&e); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("reading the audit log: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
}

// Network returns a sandbox's networking and egress policy.
func (c *Client) Network(ctx context.Context, id string) (Network, error) {
	var n Network
	return n, c.do(ctx, http.MethodGet, sandboxPath(id, "network"), nil, nil, &n)
}

// SetNetworkPolicy replaces a bridged sandbox's egress policy, live: it
// applies from the next packet (established connections it forbids are
// cut). A sandbox without network answers a conflict.
func (c *Client) SetNetworkPolicy(ctx context.Context, id string, p NetworkPolicy) (Network, error) {
	if p.Allow == nil {
		p.Allow = []string{}
	}
	if p.Deny == nil {
		p.Deny = []string{}
	}
	var n Network
	return n, c.do(ctx, http.MethodPut, sandboxPath(id, "network"), nil, p, &n)
}

// Events returns a sandbox's events with a sequence number above after.
func (c *Client) Events(ctx context.Context, id string, after int64) ([]Event, error) {
	q := url.Values{}
	if after > 0 {
		q.Set("after", strconv.FormatInt(after, 10))
	}
	var l EventList
	return l.Items, c.do(ctx, http.MethodGet, sandboxPath(id, "events"), q, nil, &l)
}

// Logs returns the output of the sandbox's entrypoint. With follow the
// stream stays open until ctx ends or the caller closes it.
func (c *Client) Logs(ctx context.Context, id string, follow bool) (io.ReadCloser, error) {
	return c.openLog(ctx, sandboxPath(id, "logs"), follow)
}

// openLog opens a plain-text log at path; with follow the server keeps the
// stream open while more may come.
func (c *Client) openLog(ctx context.Context, path string, follow bool) (io.ReadCloser, error) {
	q := url.Values{}
	if follow {
		q.Set("follow", "true")
	}
	resp, err := c.open(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Exec runs a command and returns its buffered output.
func (c *Client) Exec(ctx context.Context, id string, req ExecRequest) (ExecResult, error) {
	var r ExecResult
	return r, c.do(ctx, http.MethodPost, sandboxPath(id, "exec"), nil, req, &r)
}

// ExecStream runs a command and copies its output to stdout and stderr (either
// may be nil) as it arrives. The returned error is an API or transport error;
// the command's own failure is in the ExitStatus. Cancelling ctx kills the
// command.
func (c *Client) ExecStream(ctx context.Context, id string, req ExecRequest, stdout, stderr io.Writer) (ExitStatus, error) {
	resp, err := c.open(ctx, http.MethodPost, sandboxPath(id, "exec"), nil, req, NDJSON)
	if err != nil {
		return ExitStatus{}, err
	}
	defer resp.Body.Close()
	return consumeFrames(ndjsonFrames(resp.Body, "exec stream"), stdout, stderr)
}

// ndjsonFrames reads ExecFrames from an NDJSON body.
func ndjsonFrames(r io.Reader, what string) func() (ExecFrame, error) {
	dec := json.NewDecoder(r)
	return func() (ExecFrame, error) {
		var f ExecFrame
		if err := dec.Decode(&f); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return f, fmt.Errorf("reading %s: %w", what, err)
		}
		return f, nil
	}
}

// consumeFrames copies stdout and stderr frames to the writers (either may
// be nil) until the exit frame, whose status it returns, or an error frame.
func consumeFrames(next func() (ExecFrame, error), stdout, stderr io.Writer) (ExitStatus, error) {
	for {
		f, err := next()
		if err != nil {
			return ExitStatus{}, err
		}
		switch f.Type {
		case FrameStdout, FrameStderr:
			w := stdout
			if f.Type == FrameStderr {
				w = stderr
			}
			if w != nil {
				if _, err := w.Write(f.Data); err != nil {
					return ExitStatus{}, fmt.Errorf("writing %s: %w", f.Type, err)
				}
			}
		case FrameExit:
			if f.Exit == nil {
				return ExitStatus{}, errors.New("exit frame without status")
			}
			return *f.Exit, nil
		case FrameError:
			return ExitStatus{}, streamError(f.Code, f.Message)
		}
	}
}

func streamError(code, msg string) error {
	if code == "" {
		code = CodeInternal
	}
	return &Error{Type: ProblemTypeBase + code, Code: code, Detail: msg}
}

// ListImages lists the images the tenant can use.
func (c *Client) ListImages(ctx context.Context) ([]Image, error) {
	var l ImageList
	return l.Items, c.do(ctx, http.MethodGet, "/v1/images", nil, nil, &l)
}

// GetImage inspects an image by reference.
func (c *Client) GetImage(ctx context.Context, ref string) (Image, error) {
	var i Image
	return i, c.do(ctx, http.MethodGet, imagePath(ref), nil, nil, &i)
}

// RemoveImage removes the tenant's reference to an image.
func (c *Client) RemoveImage(ctx context.Context, ref string) error {
	return c.do(ctx, http.MethodDelete, imagePath(ref), nil, nil, nil)
}

// PullImage pulls an image from a registry. When progress is not nil the
// pull is streamed and progress is called as bytes arrive.
func (c *Client) PullImage(ctx context.Context, req PullRequest, progress func(PullProgress)) (Image, error) {
	if progress == nil {
		var i Image
		return i, c.do(ctx, http.MethodPost, "/v1/images/pull", nil, req, &i)
	}
	resp, err := c.open(ctx, http.MethodPost, "/v1/images/pull", nil, req, NDJSON)
	if err != nil {
		return Image{}, err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var f PullFrame
		if err := dec.Decode(&f); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return Image{}, fmt.Errorf("reading pull stream: %w", err)
		}
		switch f.Type {
		case FrameProgress:
			progress(PullProgress{Complete: f.Complete, Total: f.Total})
		case FrameDone:
			if f.Image == nil {
				return Image{}, errors.New("reading pull stream: done frame without image")
			}
			return *f.Image, nil
		case FrameError:
			return Image{}, streamError(f.Code, f.Message)
		}
	}
}

// ImportImage uploads an OCI layout or docker-archive tarball (streamed, not
// buffered). ref names the image when the archive names none (or overrides
// a single one).
func (c *Client) ImportImage(ctx context.Context, r io.Reader, ref string) ([]Image, error) {
	q := url.Values{}
	if ref != "" {
		q.Set("ref", ref)
	}
	var l ImageList
	// Wrap r so that net/http never sniffs a length or re-reads it.
	return l.Items, c.do(ctx, http.MethodPost, "/v1/images/import", q, io.MultiReader(r), &l)
}

// CreateTenant creates a tenant (admin only).
func (c *Client) CreateTenant(ctx context.Context, req CreateTenantRequest) (Tenant, error) {
	var t Tenant
	return t, c.do(ctx, http.MethodPost, "/v1/tenants", nil, req, &t)
}

// ListTenants lists the tenants (admin only).
func (c *Client) ListTenants(ctx context.Context) ([]Tenant, error) {
	var l TenantList
	return l.Items, c.do(ctx, http.MethodGet, "/v1/tenants", nil, nil, &l)
}

// CreateKey creates an API key for a tenant (admin only); the answer's Key
// is the secret, shown this once.
func (c *Client) CreateKey(ctx context.Context, tenantID, name string) (APIKey, error) {
	var k APIKey
	return k, c.do(ctx, http.MethodPost, "/v1/tenants/"+url.PathEscape(tenantID)+"/keys", nil, CreateKeyRequest{Name: name}, &k)
}

// ListKeys lists a tenant's API keys, without secrets (admin only).
func (c *Client) ListKeys(ctx context.Context, tenantID string) ([]APIKey, error) {
	var l APIKeyList
	return l.Items, c.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(tenantID)+"/keys", nil, nil, &l)
}

// DeleteKey revokes an API key (admin only).
func (c *Client) DeleteKey(ctx context.Context, tenantID, keyID string) error {
	return c.do(ctx, http.MethodDelete, "/v1/tenants/"+url.PathEscape(tenantID)+"/keys/"+url.PathEscape(keyID), nil, nil, nil)
}

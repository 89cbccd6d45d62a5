// Package apitest checks HTTP traffic against the native API's contract,
// api/openapi.yaml. Wrap a client's transport with NewTransport and every
// request and answer that passes through is validated; violations fail the
// test. The httpapi unit tests and the end-to-end tests use it alike.
//
// What counts as a violation:
//   - an answer (status, headers, body) that the document does not allow;
//   - a request the document forbids that the server nevertheless accepted
//     with a 2xx status. Requests that are wrong on purpose and refused
//     (4xx) are the server doing its job, not a violation.
//
// Streamed bodies (NDJSON, text) are validated when the client has read
// them to the end; a client that closes a stream early (logs -f) has only
// the status and headers checked, as has a WebSocket upgrade (101), whose
// connection is handed to the client untouched.
package apitest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/sbx-sh/sbx/api"
)

var registerOnce sync.Once

// Load parses and validates the OpenAPI document.
func Load() (*openapi3.T, error) {
	registerOnce.Do(func() {
		// An NDJSON body is checked as an array of its lines, which is how
		// the document describes it.
		openapi3filter.RegisterBodyDecoder("application/x-ndjson", decodeNDJSON)
		openapi3filter.RegisterBodyDecoder("application/x-tar", openapi3filter.FileBodyDecoder)
	})
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(api.OpenAPI)
	if err != nil {
		return nil, fmt.Errorf("loading openapi.yaml: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validating openapi.yaml: %w", err)
	}
	return doc, nil
}

func decodeNDJSON(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	var lines []any
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			return nil, fmt.Errorf("empty NDJSON line")
		}
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			return nil, fmt.Errorf("NDJSON line %d: %w", len(lines)+1, err)
		}
		lines = append(lines, v)
	}
	return lines, sc.Err()
}

// Validator validates traffic against the document.
type Validator struct {
	doc    *openapi3.T
	router routers.Router

	mu         sync.Mutex
	violations []string
	checked    int
}

// NewValidator loads the document.
func NewValidator() (*Validator, error) {
	doc, err := Load()
	if err != nil {
		return nil, err
	}
	// The requests carry the test server's address, not the document's.
	doc.Servers = nil
	r, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("routing openapi.yaml: %w", err)
	}
	return &Validator{doc: doc, router: r}, nil
}

// NewTransport returns a transport that sends through next (nil:
// http.DefaultTransport) and validates every exchange; at the end of the
// test any violation fails it.
func NewTransport(tb testing.TB, next http.RoundTripper) http.RoundTripper {
	tb.Helper()
	v, err := NewValidator()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		for _, s := range v.Violations() {
			tb.Errorf("OpenAPI violation: %s", s)
		}
	})
	return v.Transport(next)
}

// Violations returns what has been found so far.
func (v *Validator) Violations() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.violations...)
}

// Checked returns how many exchanges were validated.
func (v *Validator) Checked() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.checked
}

func (v *Validator) violate(format string, args ...any) {
	v.mu.Lock()
	v.violations = append(v.violations, fmt.Sprintf(format, args...))
	v.mu.Unlock()
}

// Transport wraps next.
func (v *Validator) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return roundTripper{v: v, next: next}
}

type roundTripper struct {
	v    *Validator
	next http.RoundTripper
}

// imagePrefix routes /v1/images/<ref with slashes>: OpenAPI path parameters
// cannot hold a slash, so the ref is folded for routing and handed to the
// validator whole.
const imagePrefix = "/v1/images/"

func (v *Validator) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	p := req.URL.Path
	if rest, ok := strings.CutPrefix(p, imagePrefix); ok && strings.Contains(rest, "/") {
		probe := req.Clone(req.Context())
		u := *req.URL
		u.Path, u.RawPath = imagePrefix+"x", ""
		probe.URL = &u
		route, _, err := v.router.FindRoute(probe)
		if err != nil {
			return nil, nil, err
		}
		return route, map[string]string{"ref": rest}, nil
	}
	return v.router.FindRoute(req)
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	v := rt.v
	what := req.Method + " " + req.URL.Path
	route, params, err := v.findRoute(req)
	if err != nil {
		v.violate("%s: no such operation in the document: %v", what, err)
		return rt.next.RoundTrip(req)
	}
	// Read the request body so it can be both validated and sent.
	var body []byte
	if req.Body != nil && req.Body != http.NoBody {
		body, err = io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	check := req.Clone(context.WithoutCancel(req.Context()))
	check.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{
		Request:    check,
		PathParams: params,
		Route:      route,
		Options: &openapi3filter.Options{
			// Authentication is the server's job, tested on its own.
			AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
			MultiError:         true,
		},
	}
	reqErr := openapi3filter.ValidateRequest(check.Context(), in)

	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if reqErr != nil && resp.StatusCode < 300 {
		v.violate("%s: the server accepted (%d) a request the document forbids: %v", what, resp.StatusCode, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Options:                &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// A WebSocket: the status and headers are checked; the body is
		// the upgraded connection and must reach the client unwrapped.
		out.Options.ExcludeResponseBody = true
		err := openapi3filter.ValidateResponse(context.Background(), out)
		v.mu.Lock()
		v.checked++
		v.mu.Unlock()
		if err != nil {
			v.violate("%s -> %d: %v", what, resp.StatusCode, err)
		}
		return resp, nil
	}
	mt := strings.TrimSpace(strings.Split(resp.Header.Get("Content-Type"), ";")[0])
	resp.Body = &checkedBody{rc: resp.Body, endless: mt == "text/plain", done: func(b []byte, complete bool) {
		if !complete {
			out.Options.ExcludeResponseBody = true
		}
		out.SetBodyBytes(b)
		err := openapi3filter.ValidateResponse(context.Background(), out)
		v.mu.Lock()
		v.checked++
		v.mu.Unlock()
		if err != nil {
			v.violate("%s -> %d: %v", what, resp.StatusCode, err)
		}
	}}
	return resp, nil
}

// checkedBody keeps a copy of what the client reads and validates it at
// EOF. A client that closes before EOF (a JSON decoder stops at the end of
// the value) has the rest drained for it, except from a body that may never
// end (logs), where only the status and headers are checked.
type checkedBody struct {
	rc      io.ReadCloser
	buf     bytes.Buffer
	once    sync.Once
	endless bool
	done    func(b []byte, complete bool)
}

func (c *checkedBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.buf.Write(p[:n])
	if err == io.EOF {
		c.once.Do(func() { c.done(c.buf.Bytes(), true) })
	}
	return n, err
}

func (c *checkedBody) Close() error {
	if !c.endless {
		drained := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, c)
			drained <- err
		}()
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
			c.rc.Close() // unblocks the copy; the body is checked partially
			<-drained
		}
	}
	c.once.Do(func() { c.done(c.buf.Bytes(), false) })
	return c.rc.Close()
}

// Client returns an http.Client whose transport validates every exchange.
func Client(tb testing.TB) *http.Client {
	return &http.Client{Transport: NewTransport(tb, nil)}
}

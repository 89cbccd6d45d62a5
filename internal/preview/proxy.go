package preview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Where tokens are presented.
const (
	TokenHeader = "X-Sbx-Preview-Token"
	TokenQuery  = "token"
	CookieName  = "sbx_preview_token"
	PathPrefix  = "/preview/"

	// The Daytona SDK's names for the same thing, accepted alike.
	daytonaHeader = "X-Daytona-Preview-Token"
	daytonaQuery  = "DAYTONA_SANDBOX_AUTH_KEY"
)

// touchEvery is how often a long request (a WebSocket, a stream) counts
// as activity again while it lasts.
const touchEvery = 30 * time.Second

var errNoTarget = errdefs.Public(errdefs.ErrNotFound, "not a preview address: want {port}-{sandbox id}.{domain} or /preview/{sandbox id}/{port}/")

// UpstreamError is a failure to reach, or hear from, the server in the
// sandbox: transports answer 502 Bad Gateway with Message.
type UpstreamError struct {
	Message string
	Err     error
}

func (e *UpstreamError) Error() string { return e.Message + ": " + e.Err.Error() }
func (e *UpstreamError) Unwrap() error { return e.Err }

// route is what the rewrite of one request needs, carried in its context.
type route struct {
	t      Target
	prefix string // "/preview/{id}/{port}" in the path form, else ""
}

type routeKey struct{}

// upstreamHost names a sandbox port as a URL host, so that the transport
// keeps one pool of connections per sandbox port; dial parses it back.
// ".invalid" cannot resolve, should it ever reach a resolver.
func upstreamHost(t Target) string {
	return t.SandboxID + "." + strconv.Itoa(t.Port) + ".sbx.invalid"
}

func (s *Service) initProxy() {
	s.proxy = &http.Transport{
		DialContext:            s.dial,
		MaxResponseHeaderBytes: 64 << 10,
		ResponseHeaderTimeout:  5 * time.Minute, // slow apps, not stalled ones
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    32,
		IdleConnTimeout:        60 * time.Second,
		ExpectContinueTimeout:  time.Second,
		// Pass the client's Accept-Encoding through and the answer back
		// as it is: no decompression in the proxy.
		DisableCompression: true,
	}
	s.rp = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      s.proxy,
		FlushInterval:  -1, // streams reach the client as they are written
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.proxyError,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// dial connects to the sandbox port named by addr through its agent.
func (s *Service) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	id, rest, _ := strings.Cut(host, ".")
	ps, _, _ := strings.Cut(rest, ".")
	port, err := agent.ParsePort(ps)
	if err != nil {
		return nil, err
	}
	a, err := s.cfg.Sandboxes.Agent(ctx, "", id)
	if err != nil {
		return nil, err
	}
	return a.DialPort(ctx, port)
}

// Handler serves preview requests and passes everything else to next: a
// request whose Host is under the preview domain, or (on any other host)
// whose path starts with /preview/.
func (s *Service) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if t, under, err := ParseHost(r.Host, s.cfg.Domain); under {
			if err != nil {
				s.cfg.WriteError(w, r, err)
				return
			}
			s.serve(w, r, route{t: t})
			return
		}
		if strings.HasPrefix(r.URL.Path, PathPrefix) {
			s.servePath(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// servePath serves /preview/{id}/{port}/rest.
func (s *Service) servePath(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), PathPrefix)
	id, rest, _ := strings.Cut(rest, "/")
	ps, _, slash := strings.Cut(rest, "/")
	port, err := agent.ParsePort(ps)
	if err != nil || !validID(id) {
		s.cfg.WriteError(w, r, errNoTarget)
		return
	}
	rt := route{t: Target{SandboxID: id, Port: port}, prefix: PathPrefix + id + "/" + ps}
	if !slash {
		// Without the slash, the page's relative links would resolve
		// against /preview/{id}/.
		u := *r.URL
		u.Path, u.RawPath = rt.prefix+"/", ""
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	s.serve(w, r, rt)
}

// credential finds the token of a request: header, then query, then cookie.
func credential(r *http.Request) (token string, fromQuery bool) {
	if v := r.Header.Get(TokenHeader); v != "" {
		return v, false
	}
	if v := r.Header.Get(daytonaHeader); v != "" {
		return v, false
	}
	q := r.URL.Query()
	if v := q.Get(TokenQuery); v != "" {
		return v, true
	}
	if v := q.Get(daytonaQuery); v != "" {
		return v, true
	}
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return c.Value, false
	}
	return "", false
}

// fromCookieOnly reports whether the request's only credential is the
// preview cookie, which a browser attaches to requests other sites'
// pages make (sibling sandboxes under the preview domain are one site).
func fromCookieOnly(r *http.Request) bool {
	return r.Header.Get(TokenHeader) == "" && r.Header.Get(daytonaHeader) == "" &&
		r.URL.Query().Get(TokenQuery) == "" && r.URL.Query().Get(daytonaQuery) == ""
}

// crossOrigin reports whether a browser sent r from a page of another
// origin: a WebSocket or a form post that a cookie must not authorize.
func crossOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-site", "cross-site":
		return true
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return false // not sent by a browser page (or a same-origin GET)
	}
	u, err := url.Parse(o)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && strings.Contains(strings.ToLower(r.Header.Get("Connection")), "upgrade")
}

// ServeTarget serves one request for a sandbox port already chosen by
// the caller, with the host form's rules (tokens, cookie for the request's
// origin, credential stripping, activity). It is for transports that
// route by other means than Host or path, such as a compat adapter that
// reads the target from headers (E2B's E2b-Sandbox-Id and
// E2b-Sandbox-Port).
func (s *Service) ServeTarget(w http.ResponseWriter, r *http.Request, t Target) {
	s.serve(w, r, route{t: t})
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request, rt route) {
	ctx := r.Context()
	sb, err := s.cfg.Sandboxes.Get(ctx, "", rt.t.SandboxID)
	if err == nil && sb.ID != rt.t.SandboxID {
		err = errdefs.ErrNotFound // a name matched: previews take IDs only
	}
	if err != nil {
		if errors.Is(err, errdefs.ErrNotFound) {
			err = errdefs.Publicf(errdefs.ErrNotFound, "sandbox %s not found", rt.t.SandboxID)
		}
		s.cfg.WriteError(w, r, err)
		return
	}
	token, fromQuery := credential(r)
	if !sb.Public && token != "" && fromCookieOnly(r) && (isUpgrade(r) || !safeMethod(r.Method)) && crossOrigin(r) {
		s.cfg.WriteError(w, r, errdefs.Public(errdefs.ErrPermissionDenied,
			"a cross-origin WebSocket or form request cannot use the preview cookie: send the token in the "+TokenHeader+" header"))
		return
	}
	if !sb.Public {
		if token == "" {
			s.cfg.WriteError(w, r, errdefs.Publicf(errdefs.ErrUnauthenticated,
				"sandbox %s is private: send its preview token in the %s header or the ?%s= query", sb.ID, TokenHeader, TokenQuery))
			return
		}
		sg, err := s.authorize(ctx, rt.t, token)
		if err != nil {
			s.cfg.WriteError(w, r, err)
			return
		}
		if fromQuery && (r.Method == http.MethodGet || r.Method == http.MethodHead) && !isUpgrade(r) {
			s.setCookie(w, rt, token, sg)
			u := *r.URL
			u.RawQuery = stripQuery(u.RawQuery)
			// Never "//host/…" or "/\host/…": a same-origin path only.
			http.Redirect(w, r, "/"+strings.TrimLeft(u.RequestURI(), "/\\"), http.StatusTemporaryRedirect)
			return
		}
	}
	if sb.State != "started" {
		s.cfg.WriteError(w, r, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s, not started: start it to reach its ports", sb.ID, sb.State))
		return
	}
	s.cfg.Sandboxes.Touch(sb.ID)
	stop := s.keepTouching(sb.ID)
	defer stop()
	s.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, routeKey{}, rt)))
}

// keepTouching counts a long request as activity every touchEvery.
func (s *Service) keepTouching(id string) func() {
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	t = time.AfterFunc(touchEvery, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped { // the request ended while this fired: do not re-arm
			return
		}
		s.cfg.Sandboxes.Touch(id)
		t.Reset(touchEvery)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// setCookie keeps a token from the query for the preview's origin (host
// form) or path (path form), so that the page's own requests carry it.
func (s *Service) setCookie(w http.ResponseWriter, rt route, token string, sg Signed) {
	c := &http.Cookie{
		Name: CookieName, Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.cfg.Scheme == "https",
	}
	if rt.prefix != "" {
		c.Path = rt.prefix + "/"
	}
	if !sg.ExpiresAt.IsZero() {
		c.MaxAge = max(1, int(time.Until(sg.ExpiresAt).Seconds()))
	}
	http.SetCookie(w, c)
}

// stripQuery removes the token parameters from a raw query, keeping the
// rest as it was written.
func stripQuery(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	kept := parts[:0]
	for _, p := range parts {
		k, _, _ := strings.Cut(p, "=")
		if uk, err := url.QueryUnescape(k); err == nil && (uk == TokenQuery || uk == daytonaQuery) {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "&")
}

// stripCookie removes the preview cookie from Cookie header lines.
func stripCookie(h http.Header) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	h.Del("Cookie")
	var kept []string
	for _, line := range lines {
		for _, c := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
			if name == CookieName || name == "" {
				continue
			}
			kept = append(kept, strings.TrimSpace(c))
		}
	}
	if len(kept) > 0 {
		h.Set("Cookie", strings.Join(kept, "; "))
	}
}

// rewrite aims the outgoing request at the sandbox port and removes every
// sbx credential from it.
func (s *Service) rewrite(pr *httputil.ProxyRequest) {
	rt := pr.In.Context().Value(routeKey{}).(route)
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = upstreamHost(rt.t)
	out.Host = pr.In.Host // the app sees the address the client used
	if rt.prefix != "" {
		p := strings.TrimPrefix(pr.In.URL.EscapedPath(), rt.prefix)
		u, err := url.Parse(p)
		if err == nil {
			out.URL.Path, out.URL.RawPath = u.Path, u.RawPath
		}
		out.Header.Set("X-Forwarded-Prefix", rt.prefix)
	}
	out.URL.RawQuery = stripQuery(pr.In.URL.RawQuery)
	out.Header.Del(TokenHeader)
	out.Header.Del(daytonaHeader)
	for _, h := range []string{"Authorization", "Proxy-Authorization"} {
		for _, v := range out.Header.Values(h) {
			if strings.Contains(v, "sbx_") {
				out.Header.Del(h) // an sbx API key is the daemon's business only
				break
			}
		}
	}
	stripCookie(out.Header)
	pr.SetXForwarded()
}

// modifyResponse keeps redirects of the path form inside it: the app
// thinks it is at "/", the client knows it is at /preview/{id}/{port}/.
//
// In the host form, a cookie the app sets is kept to the app's own
// origin: a Domain attribute would hand it to every other sandbox port
// under the preview domain.
func (s *Service) modifyResponse(resp *http.Response) error {
	rt, _ := resp.Request.Context().Value(routeKey{}).(route)
	if rt.prefix == "" {
		if lines := resp.Header.Values("Set-Cookie"); len(lines) > 0 {
			resp.Header.Del("Set-Cookie")
			for _, l := range lines {
				resp.Header.Add("Set-Cookie", withoutDomain(l))
			}
		}
		return nil
	}
	if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
		resp.Header.Set("Location", rt.prefix+loc)
	}
	// The path form shares the daemon's origin with every other sandbox:
	// no service worker may claim more than the app's prefix, and a
	// cookie the app sets stays under its prefix and off other hosts.
	resp.Header.Del("Service-Worker-Allowed")
	if lines := resp.Header.Values("Set-Cookie"); len(lines) > 0 {
		resp.Header.Del("Set-Cookie")
		for _, l := range lines {
			resp.Header.Add("Set-Cookie", underPrefix(withoutDomain(l), rt.prefix))
		}
	}
	return nil
}

// proxyError answers a failed round trip to the sandbox.
func (s *Service) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	rt, _ := r.Context().Value(routeKey{}).(route)
	switch errdefs.Kind(err) {
	case errdefs.ErrConflict, errdefs.ErrNotFound:
		// The sandbox stopped or went away between the check and the dial.
		s.cfg.WriteError(w, r, err)
		return
	case errdefs.ErrUnavailable:
		// The agent's own words: nothing listening on the port.
		s.cfg.WriteError(w, r, &UpstreamError{Message: errdefs.Message(err), Err: err})
		return
	}
	s.log.DebugContext(r.Context(), "preview upstream failed", "sandbox", rt.t.SandboxID, "port", rt.t.Port, "err", err)
	s.cfg.WriteError(w, r, &UpstreamError{
		Message: fmt.Sprintf("the server on port %d of sandbox %s did not answer properly", rt.t.Port, rt.t.SandboxID), Err: err})
}

// withoutDomain removes the Domain attribute of a Set-Cookie line.
func withoutDomain(line string) string {
	parts := strings.Split(line, ";")
	kept := parts[:1]
	for _, p := range parts[1:] {
		name, _, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(name, "domain") {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, ";")
}

// underPrefix rewrites a Set-Cookie line of the path form so its Path is
// inside the app's prefix (the app believes it is at "/").
func underPrefix(line, prefix string) string {
	parts := strings.Split(line, ";")
	kept := parts[:1]
	path := "/"
	for _, p := range parts[1:] {
		name, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(name, "path") {
			path = strings.TrimSpace(v)
			continue
		}
		kept = append(kept, p)
	}
	if !strings.HasPrefix(path, "/") || strings.Contains(path, "..") {
		path = "/"
	}
	return strings.Join(append(kept, " Path="+strings.TrimSuffix(prefix, "/")+path), ";")
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

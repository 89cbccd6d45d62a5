// Package preview serves a sandbox's ports over HTTP and WebSocket: the
// preview URLs. Two address forms reach the same proxy:
//
//	http://{port}-{sandboxID}.{domain}/…   host form (wildcard DNS), one origin per sandbox port
//	http://{daemon}/preview/{sandboxID}/{port}/…   path form, for setups without wildcard DNS
//
// The proxy does not dial the sandbox's address: it asks the sandbox's
// agent (over its unix socket) to connect to 127.0.0.1 or [::1] inside the
// sandbox's network namespace and splices the bytes (agent.Client.DialPort).
// So previews work with no network at all (mode none), with egress
// blocked, and for servers bound to loopback; and nothing but the target
// sandbox's own loopback can ever be reached, whatever the request says.
//
// Access: a public sandbox's ports need no token. A private one's need its
// preview token (derived from the daemon's secret, so it survives restarts)
// or a signed token for that port with an expiry, revocable by ID. Tokens
// come in the X-Sbx-Preview-Token header, the ?token= query (which sets a
// cookie for that origin, or that path in the path form, and redirects to
// the URL without it) or that cookie. The proxy removes all of them, and an
// sbx API key in Authorization, before the request reaches the sandbox.
// Tokens are compared in constant time and never logged.
//
// Every proxied request, and every 30 s of a long one (WebSocket,
// streams), counts as activity of the sandbox. Bodies stream both ways
// and are never buffered.
package preview

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Sandboxes is what the proxy needs of the lifecycle service;
// *sandbox.Service implements it. The proxy calls Get and Agent with the
// empty tenant ("any"): a preview request carries a token, not a key.
type Sandboxes interface {
	Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	Agent(ctx context.Context, tenantID, idOrName string) (*agent.Client, error)
	Touch(id string)
}

// Revocations keeps revoked signed tokens; store.Store implements it.
type Revocations interface {
	RevokePreviewToken(ctx context.Context, r store.PreviewRevocation) error
	PreviewTokenRevoked(ctx context.Context, tokenID string) (bool, error)
}

// Limits of signed URLs.
const (
	DefaultSignedTTL = time.Hour
	MaxSignedTTL     = 7 * 24 * time.Hour
)

// Config configures the service.
type Config struct {
	Sandboxes   Sandboxes
	Revocations Revocations
	// Key is the daemon's secret (LoadKey).
	Key []byte
	// Domain is the host (and port, if clients use one) under which
	// {port}-{id}.Domain is served; "" turns the host form off.
	Domain string
	// Scheme of the URLs handed out: "http" (default) or "https".
	Scheme string
	// WriteError answers a failed preview request; the daemon passes
	// the native API's, so statuses are chosen in one place. An
	// *UpstreamError is a 502.
	WriteError func(w http.ResponseWriter, r *http.Request, err error)
	Log        *slog.Logger
	// Now is the clock of expiries; nil is time.Now.
	Now func() time.Time
}

// Service mints preview links and serves them.
type Service struct {
	cfg    Config
	signer *Signer
	log    *slog.Logger
	now    func() time.Time
	proxy  *http.Transport
	rp     http.Handler
}

// New returns the service. Close releases its idle connections.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, signer: NewSigner(cfg.Key), log: cfg.Log, now: cfg.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.Scheme == "" {
		s.cfg.Scheme = "http"
	}
	if s.cfg.WriteError == nil {
		s.cfg.WriteError = func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, errdefs.Message(err), http.StatusBadGateway)
		}
	}
	s.initProxy()
	return s
}

// Close drops the idle connections to sandboxes.
func (s *Service) Close() error {
	s.proxy.CloseIdleConnections()
	return nil
}

// Signer returns the token signer (for transports that check tokens of
// their own, like a compat adapter).
func (s *Service) Signer() *Signer { return s.signer }

// Link is how to reach a port of a sandbox.
type Link struct {
	SandboxID string
	Port      int
	// URL is the host-form URL; "" when the host form is off.
	URL string
	// Path is the path-form path (/preview/{id}/{port}/), to be put after
	// the daemon's own address.
	Path string
	// Token is the sandbox's preview token, or the signed token.
	Token  string
	Public bool
	// ExpiresAt is set for signed links.
	ExpiresAt time.Time
}

func checkPort(port int) error {
	if port < 1 || port > 65535 {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "port %d is not a number from 1 to 65535", port)
	}
	return nil
}

// PathOf is the path-form path of a sandbox's port.
func PathOf(id string, port int) string {
	return PathPrefix + id + "/" + strconv.Itoa(port) + "/"
}

// HostURL is the host-form URL of a sandbox's port ("" without a domain).
func (s *Service) HostURL(id string, port int) string {
	if s.cfg.Domain == "" {
		return ""
	}
	return fmt.Sprintf("%s://%d-%s.%s/", s.cfg.Scheme, port, id, s.cfg.Domain)
}

// Link returns the preview link of port of a sandbox of the tenant.
func (s *Service) Link(ctx context.Context, tenantID, idOrName string, port int) (Link, error) {
	if err := checkPort(port); err != nil {
		return Link{}, err
	}
	sb, err := s.cfg.Sandboxes.Get(ctx, tenantID, idOrName)
	if err != nil {
		return Link{}, err
	}
	return Link{
		SandboxID: sb.ID, Port: port, URL: s.HostURL(sb.ID, port), Path: PathOf(sb.ID, port),
		Token: s.signer.SandboxToken(sb.ID), Public: sb.Public,
	}, nil
}

// Sign mints a signed link to port of a sandbox of the tenant, valid for
// ttl (0: DefaultSignedTTL; at most MaxSignedTTL). Its URL and Path carry
// the token in the query.
func (s *Service) Sign(ctx context.Context, tenantID, idOrName string, port int, ttl time.Duration) (Link, error) {
	if err := checkPort(port); err != nil {
		return Link{}, err
	}
	if ttl == 0 {
		ttl = DefaultSignedTTL
	}
	if ttl < time.Second || ttl > MaxSignedTTL {
		return Link{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "a signed preview URL lasts from 1 to %d seconds", int(MaxSignedTTL.Seconds()))
	}
	sb, err := s.cfg.Sandboxes.Get(ctx, tenantID, idOrName)
	if err != nil {
		return Link{}, err
	}
	tok, sg := s.signer.Sign(sb.ID, port, s.now().Add(ttl))
	l := Link{SandboxID: sb.ID, Port: port, Path: PathOf(sb.ID, port) + "?" + TokenQuery + "=" + tok, Token: tok,
		Public: sb.Public, ExpiresAt: sg.ExpiresAt}
	if u := s.HostURL(sb.ID, port); u != "" {
		l.URL = u + "?" + TokenQuery + "=" + tok
	}
	return l, nil
}

// Revoke revokes a signed token of port of a sandbox of the tenant. A
// token that is not one of that port's is ErrNotFound; revoking twice, or
// an expired token, is no error.
func (s *Service) Revoke(ctx context.Context, tenantID, idOrName string, port int, token string) error {
	if err := checkPort(port); err != nil {
		return err
	}
	sb, err := s.cfg.Sandboxes.Get(ctx, tenantID, idOrName)
	if err != nil {
		return err
	}
	sg, err := s.signer.ParseSigned(sb.ID, port, token)
	if err != nil {
		return errdefs.Publicf(errdefs.ErrNotFound, "no such signed preview token for port %d of sandbox %s", port, sb.ID)
	}
	return s.cfg.Revocations.RevokePreviewToken(ctx, store.PreviewRevocation{TokenID: sg.TokenID, SandboxID: sb.ID, ExpiresAt: sg.ExpiresAt})
}

// authorize checks a token presented for t at now, revocation included.
func (s *Service) authorize(ctx context.Context, t Target, token string) (Signed, error) {
	sg, err := s.signer.Check(t.SandboxID, t.Port, token, s.now())
	if err != nil {
		return Signed{}, err
	}
	if sg.TokenID != "" {
		revoked, err := s.cfg.Revocations.PreviewTokenRevoked(ctx, sg.TokenID)
		if err != nil {
			return Signed{}, err
		}
		if revoked {
			return Signed{}, errdefs.Public(errdefs.ErrPermissionDenied, "the signed preview URL was revoked")
		}
	}
	return sg, nil
}

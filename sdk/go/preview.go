package sbx

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// PreviewTokenHeader carries a preview token on requests to a preview URL
// (the alternative is the ?token= query, which the daemon turns into a
// cookie for the preview's origin).
const PreviewTokenHeader = "X-Sbx-Preview-Token"

// PreviewLink is how to reach a port of a sandbox over HTTP or WebSocket.
type PreviewLink struct {
	SandboxID string `json:"sandbox_id"`
	Port      int    `json:"port"`
	// URL is the host form, http://{port}-{id}.{domain}/; empty when the
	// daemon has no preview domain.
	URL string `json:"url,omitempty"`
	// PathURL is the path form, http://{daemon}/preview/{id}/{port}/, for
	// setups without wildcard DNS.
	PathURL string `json:"path_url"`
	// Token opens the sandbox's ports when it is not public: send it as
	// PreviewTokenHeader or ?token=.
	Token  string `json:"token"`
	Public bool   `json:"public"`
}

// SignedPreview is a preview link whose token opens one port until
// ExpiresAt (or until revoked). URL and PathURL already carry the token.
type SignedPreview struct {
	SandboxID string    `json:"sandbox_id"`
	Port      int       `json:"port"`
	URL       string    `json:"url,omitempty"`
	PathURL   string    `json:"path_url"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SignPreviewRequest is the body of POST …/ports/{port}/signed-preview.
type SignPreviewRequest struct {
	// ExpiresInSeconds: 0 means one hour; at most 604800 (7 days).
	ExpiresInSeconds int `json:"expires_in_seconds,omitempty"`
}

// SetPublicRequest is the body of PUT /v1/sandboxes/{id}/public.
type SetPublicRequest struct {
	Public bool `json:"public"`
}

func portPath(id string, port int, rest ...string) string {
	return sandboxPath(id, append([]string{"ports", strconv.Itoa(port)}, rest...)...)
}

// Preview returns the preview link of a sandbox's port.
func (c *Client) Preview(ctx context.Context, id string, port int) (PreviewLink, error) {
	var l PreviewLink
	return l, c.do(ctx, http.MethodGet, portPath(id, port, "preview"), nil, nil, &l)
}

// SignPreview mints a signed preview URL for a sandbox's port, valid for
// ttl (rounded down to seconds; 0 means one hour).
func (c *Client) SignPreview(ctx context.Context, id string, port int, ttl time.Duration) (SignedPreview, error) {
	var sp SignedPreview
	return sp, c.do(ctx, http.MethodPost, portPath(id, port, "signed-preview"), nil,
		SignPreviewRequest{ExpiresInSeconds: int(ttl / time.Second)}, &sp)
}

// RevokePreview revokes a signed preview token of a sandbox's port.
func (c *Client) RevokePreview(ctx context.Context, id string, port int, token string) error {
	return c.do(ctx, http.MethodDelete, portPath(id, port, "signed-preview", url.PathEscape(token)), nil, nil, nil)
}

// SetPublic makes a sandbox's preview URLs open to anyone (true) or
// token-only (false).
func (c *Client) SetPublic(ctx context.Context, id string, public bool) (Sandbox, error) {
	var sb Sandbox
	return sb, c.do(ctx, http.MethodPut, sandboxPath(id, "public"), nil, SetPublicRequest{Public: public}, &sb)
}

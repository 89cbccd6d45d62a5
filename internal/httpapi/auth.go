package httpapi

import (
	"net/http"
	"strings"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// queryKeyParams are query parameters through which clients commonly try to
// pass a key. Keys in URLs end up in logs and browser histories, so such a
// request is refused outright rather than ignored.
var queryKeyParams = []string{"api_key", "apikey", "key", "token", "access_token", "auth"}

// authenticated resolves the caller's tenant from its bearer key and hands
// it to fn.
func (h *handler) authenticated(fn func(http.ResponseWriter, *http.Request, store.Tenant)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		for _, p := range queryKeyParams {
			if q.Has(p) {
				h.writeError(w, r, errdefs.Publicf(errdefs.ErrInvalidArgument,
					"API keys are not accepted in the query string (%q); send the header Authorization: Bearer <key>", p))
				return
			}
		}
		scheme, secret, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		secret = strings.TrimSpace(secret)
		if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
			h.writeError(w, r, errdefs.Public(errdefs.ErrUnauthenticated, "missing API key: send the header Authorization: Bearer <key>"))
			return
		}
		t, err := h.cfg.Auth.Authenticate(r.Context(), secret)
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		// The empty tenant ID means "every tenant" to the store: never let
		// it through as a caller's scope.
		if t.ID == "" {
			h.writeError(w, r, errdefs.Public(errdefs.ErrUnauthenticated, "the API key has no tenant"))
			return
		}
		fn(w, r, t)
	})
}

// adminOnly lets only the admin tenant through.
func (h *handler) adminOnly(fn func(http.ResponseWriter, *http.Request, store.Tenant)) func(http.ResponseWriter, *http.Request, store.Tenant) {
	return func(w http.ResponseWriter, r *http.Request, t store.Tenant) {
		if !t.Admin {
			h.writeError(w, r, errdefs.Public(errdefs.ErrPermissionDenied, "only the admin tenant may manage tenants and keys"))
			return
		}
		fn(w, r, t)
	}
}

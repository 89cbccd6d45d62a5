package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/sbx-sh/sbx/internal/errdefs"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// statusOf is the one place where an error's kind becomes an HTTP status
// and a problem code. An error without a kind is internal.
func statusOf(err error) (int, string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		// A body cut off by MaxBytesReader, seen through whatever read it.
		return http.StatusRequestEntityTooLarge, sbx.CodeTooLarge
	}
	switch errdefs.Kind(err) {
	case errdefs.ErrNotFound:
		return http.StatusNotFound, sbx.CodeNotFound
	case errdefs.ErrAlreadyExists:
		return http.StatusConflict, sbx.CodeAlreadyExists
	case errdefs.ErrConflict:
		return http.StatusConflict, sbx.CodeConflict
	case errdefs.ErrInvalidArgument:
		return http.StatusBadRequest, sbx.CodeInvalidArgument
	case errdefs.ErrResourceExhausted:
		// 507, not 429: quotas and full disks are not fixed by retrying
		// soon. 429 is for a rate limiter, which does not exist yet.
		return http.StatusInsufficientStorage, sbx.CodeResourceExhausted
	case errdefs.ErrTooLarge:
		return http.StatusRequestEntityTooLarge, sbx.CodeTooLarge
	case errdefs.ErrUnavailable:
		return http.StatusServiceUnavailable, sbx.CodeUnavailable
	case errdefs.ErrPermissionDenied:
		return http.StatusForbidden, sbx.CodePermissionDenied
	case errdefs.ErrUnauthenticated:
		return http.StatusUnauthorized, sbx.CodeUnauthenticated
	case errdefs.ErrDeadlineExceeded:
		return http.StatusGatewayTimeout, sbx.CodeDeadlineExceeded
	case errdefs.ErrDataLoss:
		return http.StatusInternalServerError, sbx.CodeDataLoss
	}
	return http.StatusInternalServerError, sbx.CodeInternal
}

// publicMessage is the detail shown to the caller: the error's public
// message, never internal text.
func publicMessage(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) && errdefs.Kind(err) == nil {
		return "request body too large"
	}
	return errdefs.Message(err)
}

// writeError answers with the problem for err. Internal errors are logged
// with their full text, which the caller never sees.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	if status == http.StatusInternalServerError {
		h.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		h.log.DebugContext(r.Context(), "request refused", "method", r.Method, "path", r.URL.Path, "code", code, "err", err)
	}
	writeProblem(w, status, code, publicMessage(err))
}

func writeProblem(w http.ResponseWriter, status int, code, detail string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="sbx"`)
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(sbx.Problem{
		Type: sbx.ProblemTypeBase + code, Title: http.StatusText(status), Status: status, Detail: detail, Code: code,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

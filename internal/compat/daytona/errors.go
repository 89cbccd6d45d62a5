package daytona

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Error sources, as the SDK tells them apart: a (source, code) pair picks
// a precise error class (DAYTONA_DAEMON|FILE_NOT_FOUND →
// DaytonaFileNotFoundError) before the status does.
const (
	sourceAPI    = "DAYTONA_API"
	sourceDaemon = "DAYTONA_DAEMON"
)

// Daemon error codes the SDK maps to classes of their own.
const (
	codeFileNotFound     = "FILE_NOT_FOUND"
	codeFileAccessDenied = "FILE_ACCESS_DENIED"
	codeInvalidFilePath  = "INVALID_FILE_PATH"
	codeExecTimeout      = "PROCESS_EXECUTION_TIMEOUT"
)

// errorBody is Daytona's error JSON.
type errorBody struct {
	StatusCode int    `json:"statusCode"`
	Message    string `json:"message"`
	Error      string `json:"error"` // the HTTP reason phrase
	Code       string `json:"code,omitempty"`
	Source     string `json:"source,omitempty"`
	Path       string `json:"path,omitempty"`
	Timestamp  string `json:"timestamp,omitempty"`
}

// statusOf is the one place where an error's kind becomes a Daytona status
// and code, with the statuses the SDK maps to its error classes (404
// DaytonaNotFoundError, 409 DaytonaConflictError, 408
// DaytonaTimeoutError, 429 DaytonaRateLimitError, ...). An error without a
// kind is internal.
func statusOf(err error) (int, string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE"
	}
	switch errdefs.Kind(err) {
	case errdefs.ErrNotFound:
		return http.StatusNotFound, "NOT_FOUND"
	case errdefs.ErrAlreadyExists, errdefs.ErrConflict:
		return http.StatusConflict, "CONFLICT"
	case errdefs.ErrInvalidArgument:
		return http.StatusBadRequest, "BAD_REQUEST"
	case errdefs.ErrResourceExhausted:
		// Daytona's clients have no class for 507; a limit reached
		// (running commands, sandboxes of a tenant) is what they call
		// a rate limit.
		return http.StatusTooManyRequests, "TOO_MANY_REQUESTS"
	case errdefs.ErrTooLarge:
		return http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE"
	case errdefs.ErrUnavailable:
		return http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE"
	case errdefs.ErrPermissionDenied:
		return http.StatusForbidden, "FORBIDDEN"
	case errdefs.ErrUnauthenticated:
		return http.StatusUnauthorized, "UNAUTHORIZED"
	case errdefs.ErrDeadlineExceeded:
		return http.StatusRequestTimeout, "REQUEST_TIMEOUT"
	}
	return http.StatusInternalServerError, "INTERNAL_SERVER_ERROR"
}

// fileCode refines the code of an error from a file operation into the
// daemon code the SDK has a class for ("" keeps the generic one).
func fileCode(err error) string {
	switch errdefs.Kind(err) {
	case errdefs.ErrNotFound:
		return codeFileNotFound
	case errdefs.ErrPermissionDenied:
		return codeFileAccessDenied
	case errdefs.ErrInvalidArgument:
		return codeInvalidFilePath
	}
	return ""
}

// publicMessage is the text shown to the caller: the error's public
// message, never internal detail.
func publicMessage(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) && errdefs.Kind(err) == nil {
		return "request body too large"
	}
	return errdefs.Message(err)
}

// toErrorBody is the Daytona error of err; code overrides the generic code
// when not empty.
func toErrorBody(err error, code, source string) errorBody {
	status, generic := statusOf(err)
	if code == "" {
		code = generic
	}
	return errorBody{StatusCode: status, Message: publicMessage(err), Error: http.StatusText(status), Code: code, Source: source}
}

// fail answers err in Daytona's shape. Internal errors are logged with
// their full text, which the caller never sees.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, err error) { h.failAs(w, r, err, "") }

// failAs is fail with a specific daemon code (for toolbox routes).
func (h *handler) failAs(w http.ResponseWriter, r *http.Request, err error, code string) {
	source := sourceAPI
	if isToolbox(r) {
		source = sourceDaemon
	}
	b := toErrorBody(err, code, source)
	if b.StatusCode == http.StatusInternalServerError {
		h.log.ErrorContext(r.Context(), "daytona request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		h.log.DebugContext(r.Context(), "daytona request refused", "method", r.Method, "path", r.URL.Path, "code", b.Code, "err", err)
	}
	writeBody(w, r, b)
}

// writeError answers an error that has no errdefs kind (a route that does
// not exist, a timeout seen by the adapter itself).
func writeError(w http.ResponseWriter, r *http.Request, status int, code, source, msg string) {
	writeBody(w, r, errorBody{StatusCode: status, Message: msg, Error: http.StatusText(status), Code: code, Source: source})
}

func writeBody(w http.ResponseWriter, r *http.Request, b errorBody) {
	b.Path = r.URL.Path
	b.Timestamp = isoTime(time.Now())
	w.Header().Set("X-Content-Type-Options", "nosniff")
	writeJSON(w, b.StatusCode, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

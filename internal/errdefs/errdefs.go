// Package errdefs defines the closed set of error kinds that sbx's core
// returns. Transports map a kind to a status code in exactly one place
// (httpapi.statusOf); nothing matches on error text.
//
// An error carries a kind by wrapping one of the sentinel errors below:
//
//	return fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
//
// A message that is safe to show to API users is attached with Public; any
// other text in the chain is treated as internal detail.
package errdefs

import (
	"errors"
	"fmt"
)

// The kinds. Each is a sentinel to be wrapped with %w.
var (
	ErrNotFound          = errors.New("not found")
	ErrAlreadyExists     = errors.New("already exists")
	ErrConflict          = errors.New("conflict")           // invalid state for the operation
	ErrInvalidArgument   = errors.New("invalid argument")   // the caller's input is wrong
	ErrResourceExhausted = errors.New("resource exhausted") // quota, disk full, limits
	ErrUnavailable       = errors.New("unavailable")        // try again later
	ErrPermissionDenied  = errors.New("permission denied")
	ErrUnauthenticated   = errors.New("unauthenticated")
	ErrTooLarge          = errors.New("too large")
	ErrDeadlineExceeded  = errors.New("deadline exceeded")
	ErrDataLoss          = errors.New("data loss") // stored data is missing or corrupt
)

var kinds = []error{
	ErrNotFound, ErrAlreadyExists, ErrConflict, ErrInvalidArgument,
	ErrResourceExhausted, ErrUnavailable, ErrPermissionDenied,
	ErrUnauthenticated, ErrTooLarge, ErrDeadlineExceeded, ErrDataLoss,
}

// Kind returns the sentinel that err wraps, or nil for an internal error.
func Kind(err error) error {
	for _, k := range kinds {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}

// publicError attaches a user-safe message to a kind.
type publicError struct {
	msg  string
	kind error
}

func (e *publicError) Error() string { return e.msg }
func (e *publicError) Unwrap() error { return e.kind }

// Public returns an error of the given kind whose message is safe to show
// to API callers verbatim.
func Public(kind error, msg string) error { return &publicError{msg: msg, kind: kind} }

// Publicf is Public with formatting.
func Publicf(kind error, format string, args ...any) error {
	return &publicError{msg: fmt.Sprintf(format, args...), kind: kind}
}

// Message returns the user-safe message carried by err, if any. When err
// has a kind but no public message, the kind's own text is returned; an
// internal error yields "internal error".
func Message(err error) string {
	var pe *publicError
	if errors.As(err, &pe) {
		return pe.msg
	}
	if k := Kind(err); k != nil {
		return k.Error()
	}
	return "internal error"
}

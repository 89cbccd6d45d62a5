package sbx

import (
	"errors"
	"fmt"
)

// Problem codes: the stable part of an API error.
const (
	CodeNotFound          = "not_found"
	CodeAlreadyExists     = "already_exists"
	CodeConflict          = "conflict"
	CodeInvalidArgument   = "invalid_argument"
	CodeResourceExhausted = "resource_exhausted"
	CodeTooLarge          = "too_large"
	CodeUnavailable       = "unavailable"
	CodePermissionDenied  = "permission_denied"
	CodeUnauthenticated   = "unauthenticated"
	CodeDeadlineExceeded  = "deadline_exceeded"
	CodeDataLoss          = "data_loss" // stored data (an archive, a snapshot) is missing or corrupt
	CodeUnsupportedMedia  = "unsupported_media_type"
	CodeInternal          = "internal"
)

// ProblemTypeBase prefixes every problem's type URI: the type is
// ProblemTypeBase + code.
const ProblemTypeBase = "https://sbx.dev/problems/"

// Error is an API error: the server's application/problem+json body (RFC
// 9457) plus its HTTP status. Errors that arrive inside a stream (an exec or
// pull "error" frame) have Status 0.
type Error struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
}

// Problem is the name of the same shape in the OpenAPI document.
type Problem = Error

func (e *Error) Error() string {
	if e.Detail != "" {
		return e.Detail
	}
	if e.Title != "" {
		return e.Title
	}
	return fmt.Sprintf("sbx: HTTP %d", e.Status)
}

// ErrorCode returns the problem code of an *Error in err's chain, or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsNotFound reports whether err is a not_found API error.
func IsNotFound(err error) bool { return ErrorCode(err) == CodeNotFound }

// IsAlreadyExists reports whether err is an already_exists API error.
func IsAlreadyExists(err error) bool { return ErrorCode(err) == CodeAlreadyExists }

// IsConflict reports whether err is a conflict API error (the object is in
// the wrong state for the operation).
func IsConflict(err error) bool { return ErrorCode(err) == CodeConflict }

// IsInvalidArgument reports whether err is an invalid_argument API error.
func IsInvalidArgument(err error) bool { return ErrorCode(err) == CodeInvalidArgument }

// IsResourceExhausted reports whether err is a resource_exhausted API error.
func IsResourceExhausted(err error) bool { return ErrorCode(err) == CodeResourceExhausted }

// IsTooLarge reports whether err is a too_large API error.
func IsTooLarge(err error) bool { return ErrorCode(err) == CodeTooLarge }

// IsUnavailable reports whether err is an unavailable API error.
func IsUnavailable(err error) bool { return ErrorCode(err) == CodeUnavailable }

// IsPermissionDenied reports whether err is a permission_denied API error.
func IsPermissionDenied(err error) bool { return ErrorCode(err) == CodePermissionDenied }

// IsUnauthenticated reports whether err is an unauthenticated API error.
func IsUnauthenticated(err error) bool { return ErrorCode(err) == CodeUnauthenticated }

// IsDeadlineExceeded reports whether err is a deadline_exceeded API error.
func IsDeadlineExceeded(err error) bool { return ErrorCode(err) == CodeDeadlineExceeded }

package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// errUnsupportedMedia is answered with 415, a transport matter with no
// errdefs kind.
var errUnsupportedMedia = errors.New("unsupported media type")

// decodeJSON decodes the request's JSON body into dst, refusing unknown
// fields (no mass assignment: a client cannot set what the API does not
// offer) and bodies over 1 MiB. An empty body is allowed when optional.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && r.ContentLength != 0 {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return fmt.Errorf("%w: %q; send application/json", errUnsupportedMedia, ct)
		}
	}
	body := http.MaxBytesReader(w, r.Body, maxJSONBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		// One value only: trailing data is as wrong as a broken value.
		if _, terr := dec.Token(); terr != io.EOF {
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				return errdefs.Public(errdefs.ErrTooLarge, "request body larger than 1 MiB")
			}
			return errdefs.Public(errdefs.ErrInvalidArgument, "invalid JSON: data after the end of the value")
		}
		return nil
	}
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &mbe):
		return errdefs.Public(errdefs.ErrTooLarge, "request body larger than 1 MiB")
	case errors.Is(err, io.EOF):
		if optional {
			return nil
		}
		return errdefs.Public(errdefs.ErrInvalidArgument, "request body is empty; a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errdefs.Public(errdefs.ErrInvalidArgument, "invalid JSON: unexpected end of input")
	case errors.As(err, &syn):
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid JSON at offset %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		if typ.Field == "" {
			return errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid JSON: expected %s, got %s", typ.Type, typ.Value)
		}
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid JSON: field %q: expected %s, got %s", typ.Field, typ.Type, typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errdefs.Public(errdefs.ErrInvalidArgument, strings.TrimPrefix(err.Error(), "json: "))
	}
	// Other decoding failures (base64 of a []byte field, for one) carry
	// only the caller's own input.
	return errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

// decodeOrFail decodes and answers the error itself; it reports success.
func (h *handler) decodeOrFail(w http.ResponseWriter, r *http.Request, dst any, optional bool) bool {
	err := decodeJSON(w, r, dst, optional)
	if err == nil {
		return true
	}
	if errors.Is(err, errUnsupportedMedia) {
		writeProblem(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "unsupported content type"+strings.TrimPrefix(err.Error(), errUnsupportedMedia.Error()))
		return false
	}
	h.writeError(w, r, err)
	return false
}

package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// versionHeader carries the client's protocol Version on every request.
const versionHeader = "Sbx-Agent-Version"

// upgradeProto is the Upgrade token of an exec stream.
const upgradeProto = "sbx-exec"

// Frame kinds sent by the host; they share the kind byte with FrameKind.
const (
	frameStdin      FrameKind = 16
	frameStdinClose FrameKind = 17
	frameSignal     FrameKind = 18
)

const (
	frameHeaderLen = 5
	// maxFramePayload bounds what one frame may make the reader allocate.
	maxFramePayload = 1 << 20
	// chunkSize is the largest stdout/stderr/stdin payload we send.
	chunkSize = 32 << 10
)

// putFrameHeader fills the first frameHeaderLen bytes of b.
func putFrameHeader(b []byte, kind FrameKind, n int) {
	b[0] = byte(kind)
	binary.BigEndian.PutUint32(b[1:5], uint32(n))
}

// appendFrame returns b with one frame appended.
func appendFrame(b []byte, kind FrameKind, payload []byte) []byte {
	var h [frameHeaderLen]byte
	putFrameHeader(h[:], kind, len(payload))
	return append(append(b, h[:]...), payload...)
}

// readFrame reads one frame; the payload is freshly allocated.
func readFrame(r io.Reader) (FrameKind, []byte, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:5])
	if n > maxFramePayload {
		return 0, nil, fmt.Errorf("frame of %d bytes exceeds the limit of %d", n, maxFramePayload)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return FrameKind(h[0]), p, nil
}

// wireError is the JSON body of an HTTP error and the payload of an error
// frame.
type wireError struct {
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
}

// kindNames maps the errdefs kinds that cross the wire to stable names.
var kindNames = map[error]string{
	errdefs.ErrNotFound:          "not_found",
	errdefs.ErrInvalidArgument:   "invalid_argument",
	errdefs.ErrPermissionDenied:  "permission_denied",
	errdefs.ErrUnavailable:       "unavailable",
	errdefs.ErrConflict:          "conflict",
	errdefs.ErrAlreadyExists:     "already_exists",
	errdefs.ErrResourceExhausted: "resource_exhausted",
	errdefs.ErrTooLarge:          "too_large",
}

func kindName(err error) string { return kindNames[errdefs.Kind(err)] }

func kindOf(name string) error {
	for k, n := range kindNames {
		if n == name {
			return k
		}
	}
	return nil
}

// toError turns a wire error back into an error carrying its kind; the
// message is user-safe because the agent only puts user-facing text there.
func (e wireError) toError() error {
	if k := kindOf(e.Kind); k != nil {
		return errdefs.Public(k, e.Message)
	}
	return errors.New(e.Message)
}

// majorVersion returns the part of v before the first dot.
func majorVersion(v string) string {
	major, _, _ := strings.Cut(v, ".")
	return major
}

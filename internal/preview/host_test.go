package preview

import (
	"errors"
	"testing"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

func TestParseHost(t *testing.T) {
	const domain = "preview.localhost:7070"
	for _, tc := range []struct {
		host  string
		want  Target
		under bool
		kind  error // of the error, when under but malformed
	}{
		{host: "3000-abc123.preview.localhost:7070", want: Target{"abc123", 3000}, under: true},
		{host: "3000-abc123.preview.localhost", want: Target{"abc123", 3000}, under: true},
		{host: "3000-ABC123.Preview.LOCALHOST:7070", want: Target{"abc123", 3000}, under: true},
		{host: "3000-abc123.preview.localhost.", want: Target{"abc123", 3000}, under: true},
		{host: "3000-abc123.preview.localhost.:7070", want: Target{"abc123", 3000}, under: true},
		{host: "1-a.preview.localhost", want: Target{"a", 1}, under: true},
		{host: "65535-a.preview.localhost", want: Target{"a", 65535}, under: true},
		// Under the domain but not a preview address.
		{host: "0-abc.preview.localhost", under: true, kind: errdefs.ErrInvalidArgument},
		{host: "65536-abc.preview.localhost", under: true, kind: errdefs.ErrInvalidArgument},
		{host: "08080-abc.preview.localhost", under: true, kind: errdefs.ErrInvalidArgument},
		{host: "x-abc.preview.localhost", under: true, kind: errdefs.ErrInvalidArgument},
		{host: "3000.preview.localhost", under: true, kind: errdefs.ErrNotFound},
		{host: "3000-.preview.localhost", under: true, kind: errdefs.ErrNotFound},
		{host: "3000-ab-c.preview.localhost", want: Target{"ab-c", 3000}, under: true},
		{host: "3000-abc-.preview.localhost", under: true, kind: errdefs.ErrNotFound},
		{host: "a.3000-abc.preview.localhost", under: true, kind: errdefs.ErrNotFound},
		{host: "3000-abc_d.preview.localhost", under: true, kind: errdefs.ErrNotFound},
		// Not under the domain: the API's.
		{host: "preview.localhost:7070"},
		{host: "127.0.0.1:7070"},
		{host: "localhost"},
		{host: "3000-abc.preview.localhost.evil.com"},
		{host: "3000-abcpreview.localhost"},
		{host: "[::1]:7070"},
		{host: ""},
	} {
		got, under, err := ParseHost(tc.host, domain)
		if under != tc.under || got != tc.want {
			t.Errorf("ParseHost(%q) = %+v, %v, %v; want %+v, %v", tc.host, got, under, err, tc.want, tc.under)
			continue
		}
		if tc.kind == nil && err != nil {
			t.Errorf("ParseHost(%q): %v", tc.host, err)
		}
		if tc.kind != nil && !errors.Is(err, tc.kind) {
			t.Errorf("ParseHost(%q) error %v, want kind %v", tc.host, err, tc.kind)
		}
	}
	if _, under, _ := ParseHost("3000-abc.preview.localhost", ""); under {
		t.Error("with no domain, a host was taken for a preview")
	}
}

package cli

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

func TestParseVolumeFlag(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want sbx.VolumeMount
		bad  bool
	}{
		{in: "data:/data", want: sbx.VolumeMount{Volume: "data", MountPath: "/data"}},
		{in: "data:/data:ro", want: sbx.VolumeMount{Volume: "data", MountPath: "/data", ReadOnly: true}},
		{in: "data:/data:rw", want: sbx.VolumeMount{Volume: "data", MountPath: "/data"}},
		{in: "data/a/b:/x", want: sbx.VolumeMount{Volume: "data", Subpath: "a/b", MountPath: "/x"}},
		{in: "vol-abc/logs:/logs:ro", want: sbx.VolumeMount{Volume: "vol-abc", Subpath: "logs", MountPath: "/logs", ReadOnly: true}},
		{in: "data", bad: true},
		{in: ":/data", bad: true},
		{in: "data:", bad: true},
		{in: "data:/a:rx", bad: true},
		{in: "data:/a:ro:x", bad: true},
	} {
		got, err := parseVolumeFlag(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseVolumeFlag(%q) = %+v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tc.want) {
			t.Errorf("parseVolumeFlag(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

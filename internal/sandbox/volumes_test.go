package sandbox

import "testing"

func TestValidateMountPath(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/data", true},
		{"/home/user/work", true},
		{"/devices", true}, // not under /dev
		{"/etc/app", true},
		{"", false},
		{"data", false},
		{"/", false},
		{"/data/", false},
		{"/a/../b", false},
		{"/a//b", false},
		{"/proc", false},
		{"/proc/self", false},
		{"/sys/fs", false},
		{"/dev", false},
		{"/dev/shm", false},
		{"/.sbx", false},
		{"/.sbx/sbx-agent", false},
		{"/etc/resolv.conf", false},
		{"/etc", false}, // would hide the daemon's /etc/resolv.conf
	} {
		err := validateMountPath(tc.path)
		if (err == nil) != tc.ok {
			t.Errorf("validateMountPath(%q) = %v, want ok=%v", tc.path, err, tc.ok)
		}
	}
}

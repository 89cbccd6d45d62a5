package runtime

import (
	"fmt"
	"strconv"
	"strings"
)

// CheckVersion reports an error when the runtime version has a known
// container escape:
//   - runc before 1.2.8, 1.3.0–1.3.2 and the 1.4.0 release candidates before
//     rc.3 (CVE-2025-31133, CVE-2025-52565, CVE-2025-52881: masked-path and
//     /dev/console redirection to writable procfs files), and everything
//     before 1.1.12 (CVE-2024-21626, leaked fds);
//   - crun before 1.4.4 (CVE-2022-27650: inheritable capabilities).
//
// runsc versions are dates and are not gated.
func CheckVersion(class, version string) error {
	v, pre, err := semver(version)
	if err != nil {
		return fmt.Errorf("%s version %q: %w", class, version, err)
	}
	bad := false
	switch class {
	case "runc":
		switch {
		case less(v, [3]int{1, 2, 8}):
			bad = true
		case v[0] == 1 && v[1] == 3 && v[2] < 3:
			bad = true
		case v == [3]int{1, 4, 0} && pre != "" && prerelease(pre) < 3:
			bad = true
		}
	case "crun":
		bad = less(v, [3]int{1, 4, 4})
	}
	if bad {
		return fmt.Errorf("%s %s has known container escapes; install a current release (runc >= 1.4, crun >= 1.4.4) or set allow_vulnerable_runtime", class, version)
	}
	return nil
}

func semver(s string) (v [3]int, pre string, err error) {
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(s, "-+~"); i >= 0 {
		s, pre = s[:i], s[i+1:]
	}
	parts := strings.Split(s, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return v, "", fmt.Errorf("not a version")
	}
	for i, p := range parts {
		if v[i], err = strconv.Atoi(p); err != nil {
			return v, "", fmt.Errorf("not a version")
		}
	}
	return v, pre, nil
}

func less(a, b [3]int) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

// prerelease extracts N from "rc.N" / "rcN"; unknown forms count as 0.
func prerelease(pre string) int {
	pre = strings.TrimPrefix(strings.TrimPrefix(pre, "rc"), ".")
	n, _ := strconv.Atoi(pre)
	return n
}

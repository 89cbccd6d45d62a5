package preview

import (
	"net"
	"strings"

	"github.com/sbx-sh/sbx/internal/agent"
)

// Target is the sandbox port a preview request is for.
type Target struct {
	SandboxID string
	Port      int
}

// hostname returns host without its port, lowercased and without a
// trailing dot (DNS names are case-insensitive and "a.b." is "a.b").
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.TrimSuffix(strings.ToLower(host), ".")
}

// ParseHost reads a preview host "{port}-{sandboxID}.{domain}" (with or
// without a port after it; domain's own port is ignored). under reports
// whether host is under domain at all: a host that is not goes to the
// API; one that is but does not parse (several labels, a bad port, an
// empty or malformed ID) is a preview request for nothing, and err says
// why.
func ParseHost(host, domain string) (t Target, under bool, err error) {
	d := hostname(domain)
	if d == "" {
		return Target{}, false, nil
	}
	h := hostname(host)
	label, ok := strings.CutSuffix(h, "."+d)
	if !ok || label == "" {
		return Target{}, false, nil
	}
	t, err = parseLabel(label)
	return t, true, err
}

// parseLabel splits "{port}-{id}" at the first '-'.
func parseLabel(label string) (Target, error) {
	ps, id, ok := strings.Cut(label, "-")
	if !ok || strings.Contains(label, ".") {
		return Target{}, errNoTarget
	}
	port, err := agent.ParsePort(ps)
	if err != nil {
		return Target{}, err
	}
	if !validID(id) {
		return Target{}, errNoTarget
	}
	return Target{SandboxID: id, Port: port}, nil
}

// validID accepts what sandbox IDs are made of (lowercase base32), and
// some room (inner hyphens): the lookup decides whether the sandbox
// exists.
func validID(id string) bool {
	if id == "" || len(id) > 63 || id[0] == '-' || id[len(id)-1] == '-' {
		return false
	}
	for _, c := range id {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

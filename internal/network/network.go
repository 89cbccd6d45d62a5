// Package network is the sandbox network: a bridge shared by the sandboxes
// of one daemon, a network namespace and veth pair per sandbox, sbx's own
// IPAM, NAT to the outside, and the isolation and egress policy in
// nftables.
//
// Layout on the host (names from Config; the defaults shown):
//
//	bridge sbx0                 10.88.0.1/16, the sandboxes' gateway
//	  └─ vsb<id[:12]>           host end of a sandbox's veth, an isolated bridge port
//	<NetnsDir>/<id>             the sandbox's netns (a bind mount of nsfs)
//	  ├─ lo                     up
//	  └─ eth0                   10.88.x.y/16, default route via 10.88.0.1
//
//	table inet sbx
//	  map egress { ipv4_addr : verdict }   sandbox IP → jump sb-<id>
//	  chain forward (hook forward)         into sandboxes: replies only;
//	                                        out of sandboxes: ip saddr vmap @egress; else drop
//	  chain input (hook input)             from the bridge: replies only (the host is unreachable)
//	  chain postrouting (nat)               masquerade the subnet out of other interfaces
//	  chain sb-<id>                        one sandbox's egress policy
//
// Isolation holds at two layers: bridge ports are isolated (no L2 traffic
// between sandboxes, with or without br_netfilter), and routed traffic
// from the bridge back to the bridge is dropped in forward. The host
// itself (every address, including the bridge IP, 0.0.0.0 listeners and,
// over IPv6, the bridge's link-local address) is unreachable because input
// drops new connections from the bridge; 127.0.0.0/8 and 169.254.0.0/16
// are rejected in every sandbox chain whatever its policy.
//
// Policy changes are one nftables transaction (flush sb-<id>, add its
// rules) and apply from the next packet: the policy is evaluated for every
// packet a sandbox sends, not only for new connections, so an established
// flow that the new policy forbids is cut.
//
// IPAM: addresses are allocated by the caller from Allocate over the set
// of addresses in use, which the sandbox service persists in the store
// (one address per live sandbox, unique); see IPAM.
//
// Concurrency: a Manager's methods may be called concurrently for
// different sandboxes; calls for one sandbox must be serialized by the
// caller (the sandbox service holds the sandbox's lock).
package network

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Mode is how a sandbox is networked.
type Mode string

// Modes.
const (
	// ModeNone is an empty network namespace (loopback only): no egress,
	// no setup cost.
	ModeNone Mode = "none"
	// ModeBridge attaches the sandbox to the bridge, with NAT and the
	// egress policy.
	ModeBridge Mode = "bridge"
)

// Policy is a sandbox's egress policy. With BlockAll nothing leaves the
// sandbox. Otherwise Deny is checked first (matches are rejected), then,
// when Allow is not empty, only its matches may pass; an empty Allow
// lets everything not denied pass. DNS to the host's resolvers is allowed
// whenever BlockAll is false.
type Policy struct {
	BlockAll bool
	Allow    []netip.Prefix
	Deny     []netip.Prefix
}

// MaxPrefixes bounds the CIDRs of one policy (each is one rule).
const MaxPrefixes = 256

// ParsePolicy parses and validates CIDRs (an address alone is a /32).
// Errors are errdefs.ErrInvalidArgument with a user-safe message.
func ParsePolicy(blockAll bool, allow, deny []string) (Policy, error) {
	p := Policy{BlockAll: blockAll}
	if blockAll && (len(allow) > 0 || len(deny) > 0) {
		return Policy{}, errdefs.Public(errdefs.ErrInvalidArgument, "block_all excludes allow and deny")
	}
	if len(allow)+len(deny) > MaxPrefixes {
		return Policy{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "at most %d CIDRs in allow and deny together", MaxPrefixes)
	}
	var err error
	if p.Allow, err = parsePrefixes("allow", allow); err != nil {
		return Policy{}, err
	}
	if p.Deny, err = parsePrefixes("deny", deny); err != nil {
		return Policy{}, err
	}
	return p, nil
}

func parsePrefixes(field string, in []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range in {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: %q is not a CIDR", field, s)
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		if !pf.Addr().Is4() {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: %q: only IPv4 is supported (sandboxes have no IPv6 egress)", field, s)
		}
		out = append(out, pf.Masked())
	}
	return out, nil
}

// Strings returns the policy's CIDRs as strings, for records and the API.
func (p Policy) Strings() (allow, deny []string) {
	for _, a := range p.Allow {
		allow = append(allow, a.String())
	}
	for _, d := range p.Deny {
		deny = append(deny, d.String())
	}
	return allow, deny
}

// Equal reports whether two policies are the same.
func (p Policy) Equal(q Policy) bool {
	return p.BlockAll == q.BlockAll && slices.Equal(p.Allow, q.Allow) && slices.Equal(p.Deny, q.Deny)
}

// Attachment is what a sandbox's OCI spec needs from its network.
type Attachment struct {
	NetNS      string // path of the network namespace to join
	ResolvConf []byte // content of the sandbox's /etc/resolv.conf
}

// Manager is the sandbox network as the sandbox service uses it. Every
// method is idempotent.
type Manager interface {
	// Subnet is the sandboxes' subnet; Allocate addresses in it.
	Subnet() netip.Prefix
	// Setup makes (or re-checks) the sandbox's namespace, veth, address,
	// routes and egress policy.
	Setup(ctx context.Context, id string, ip netip.Addr, p Policy) (Attachment, error)
	// SetPolicy replaces a set-up sandbox's egress policy atomically.
	SetPolicy(ctx context.Context, id string, ip netip.Addr, p Policy) error
	// SetSysctl writes a net.* sysctl (e.g. "net.ipv4.ping_group_range")
	// in the sandbox's namespace from the host. The namespace belongs to
	// the host's user namespace, so that the sandbox's root has no
	// CAP_NET_ADMIN over it (it cannot change its address or routes) and
	// cannot write these itself; values are in host ids.
	SetSysctl(ctx context.Context, id, key, value string) error
	// Counters are the sandbox's traffic since its network was set up
	// (its last start), seen from the sandbox: Tx is what it sent
	// (including what the egress policy then dropped), Rx what reached it.
	Counters(ctx context.Context, id string) (Counters, error)
	// Teardown removes everything Setup made; nothing is an error.
	Teardown(ctx context.Context, id string) error
	// Sweep removes namespaces, veths and chains of sandboxes for which
	// keep returns false.
	Sweep(ctx context.Context, keep func(id string) bool) error
}

// Counters are a sandbox's network traffic counters.
type Counters struct {
	RxBytes, RxPackets, TxBytes, TxPackets uint64
}

func chainName(id string) string { return "sb-" + id }

// vethName is the host end of a sandbox's veth (IFNAMSIZ allows 15 bytes).
func vethName(id string) string {
	if len(id) > 12 {
		id = id[:12]
	}
	return "vsb" + id
}

func notReady(err error) error {
	return fmt.Errorf("sandbox network: %w", err)
}

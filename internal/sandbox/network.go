package sandbox

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/network"
	"github.com/sbx-sh/sbx/internal/store"
)

// NetworkOptions ask for a sandbox's networking at create. A zero Mode
// takes the operator's default mode; a policy is "given" when BlockAll is
// set or Allow or Deny is non-nil (an empty, non-nil list counts: allow
// [] with deny [] means no restriction), else the operator's default
// policy applies.
type NetworkOptions struct {
	Mode     string
	BlockAll bool
	Allow    []string
	Deny     []string
}

func (o NetworkOptions) policyGiven() bool {
	return o.BlockAll || o.Allow != nil || o.Deny != nil
}

// resolveNetwork validates a create's networking against the defaults.
func (s *Service) resolveNetwork(o *NetworkOptions) (store.Network, error) {
	var req NetworkOptions
	if o != nil {
		req = *o
	}
	def := s.cfg.DefaultNetwork
	mode := req.Mode
	if mode == "" {
		mode = def.Mode
	}
	if mode == "" {
		mode = string(network.ModeNone)
	}
	switch network.Mode(mode) {
	case network.ModeNone:
		if req.policyGiven() {
			return store.Network{}, invalid("network mode none has no egress policy (use mode bridge)")
		}
		return store.Network{Mode: mode}, nil
	case network.ModeBridge:
		if s.cfg.Network == nil {
			return store.Network{}, errdefs.Public(errdefs.ErrUnavailable, "bridge networking is disabled on this host")
		}
	default:
		return store.Network{}, invalid("network mode must be none or bridge, not %q", mode)
	}
	if !req.policyGiven() {
		req.BlockAll, req.Allow, req.Deny = def.BlockAll, def.Allow, def.Deny
	}
	p, err := network.ParsePolicy(req.BlockAll, req.Allow, req.Deny)
	if err != nil {
		return store.Network{}, err
	}
	return withPolicy(store.Network{Mode: mode}, p), nil
}

func withPolicy(n store.Network, p network.Policy) store.Network {
	n.BlockAll = p.BlockAll
	n.Allow, n.Deny = p.Strings()
	return n
}

func policyOf(n store.Network) (network.Policy, error) {
	return network.ParsePolicy(n.BlockAll, n.Allow, n.Deny)
}

func bridged(sb store.Sandbox) bool { return sb.Network.Mode == string(network.ModeBridge) }

// allocateIP picks the sandbox's address; the caller holds slotMu and
// writes the record before releasing it, so the address is unique.
func (s *Service) allocateIP(ctx context.Context, sb *store.Sandbox) error {
	if !bridged(*sb) {
		return nil
	}
	used, err := s.st.UsedIPs(ctx)
	if err != nil {
		return err
	}
	addrs := make([]netip.Addr, 0, len(used))
	for _, u := range used {
		if a, err := netip.ParseAddr(u); err == nil {
			addrs = append(addrs, a)
		}
	}
	ip, err := network.Allocate(s.cfg.Network.Subnet(), addrs)
	if err != nil {
		return err
	}
	sb.Network.IP = ip.String()
	return nil
}

// setupNetwork makes (or re-checks) a bridged sandbox's network and
// writes its resolv.conf; it returns what the spec needs, or nothing for a
// sandbox without network.
func (s *Service) setupNetwork(ctx context.Context, sb store.Sandbox) (*network.Attachment, error) {
	if !bridged(sb) {
		return nil, nil
	}
	if s.cfg.Network == nil {
		return nil, errdefs.Public(errdefs.ErrUnavailable, "bridge networking is disabled on this host")
	}
	ip, err := netip.ParseAddr(sb.Network.IP)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s has no valid address %q", sb.ID, sb.Network.IP)
	}
	p, err := policyOf(sb.Network)
	if err != nil {
		return nil, err
	}
	att, err := s.cfg.Network.Setup(ctx, sb.ID, ip, p)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(s.dir(sb.ID), "resolv.conf"), att.ResolvConf, 0o644); err != nil {
		return nil, err
	}
	return &att, nil
}

// attach joins the spec to the sandbox's network namespace and mounts its
// resolv.conf. The namespace belongs to the host's user namespace, so the
// runtime cannot write its net.* sysctls from the sandbox's: they are
// written from the host instead, with the sandbox's ids translated to host
// ids.
func (s *Service) attach(ctx context.Context, spec *specs.Spec, sb store.Sandbox, att *network.Attachment) error {
	if att == nil {
		return nil
	}
	for k, v := range spec.Linux.Sysctl {
		if !strings.HasPrefix(k, "net.") {
			continue
		}
		if k == "net.ipv4.ping_group_range" {
			if m := s.idmapOf(sb); m != nil {
				v = fmt.Sprintf("%d %d", m.HostID, m.HostID+m.Size-1)
			}
		}
		if err := s.cfg.Network.SetSysctl(ctx, sb.ID, k, v); err != nil {
			return err
		}
		delete(spec.Linux.Sysctl, k)
	}
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			spec.Linux.Namespaces[i].Path = att.NetNS
		}
	}
	spec.Mounts = append(spec.Mounts, specs.Mount{
		Destination: "/etc/resolv.conf", Type: "bind", Source: filepath.Join(s.dir(sb.ID), "resolv.conf"),
		Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
	})
	return nil
}

// teardownNetwork removes a sandbox's network; idempotent.
func (s *Service) teardownNetwork(ctx context.Context, sb store.Sandbox) error {
	if !bridged(sb) || s.cfg.Network == nil {
		return nil
	}
	return s.cfg.Network.Teardown(ctx, sb.ID)
}

// Network returns a sandbox's networking.
func (s *Service) Network(ctx context.Context, tenantID, idOrName string) (store.Network, error) {
	sb, err := s.Get(ctx, tenantID, idOrName)
	return sb.Network, err
}

// SetNetworkPolicy replaces a bridged sandbox's egress policy. A started
// sandbox gets it at once (one nftables transaction, effective from the
// next packet; established flows the new policy forbids are cut); a
// stopped one at its next start. A sandbox without network is
// ErrConflict.
func (s *Service) SetNetworkPolicy(ctx context.Context, tenantID, idOrName string, blockAll bool, allow, deny []string) (store.Sandbox, error) {
	p, err := network.ParsePolicy(blockAll, allow, deny)
	if err != nil {
		return store.Sandbox{}, err
	}
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	if !bridged(sb) {
		return sb, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s has no network (mode %s)", sb.ID, orNone(sb.Network.Mode))
	}
	switch sb.State {
	case store.StateStarted:
		ip, err := netip.ParseAddr(sb.Network.IP)
		if err != nil {
			return sb, fmt.Errorf("sandbox %s has no valid address %q", sb.ID, sb.Network.IP)
		}
		if s.cfg.Network == nil {
			return sb, errdefs.Public(errdefs.ErrUnavailable, "bridge networking is disabled on this host")
		}
		if err := s.cfg.Network.SetPolicy(ctx, sb.ID, ip, p); err != nil {
			return sb, fmt.Errorf("changing the egress policy of %s: %w", sb.ID, err)
		}
	case store.StateStopped, store.StateError:
		// Applied by the next start's Setup.
	default:
		return sb, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s", sb.ID, sb.State)
	}
	sb.Network = withPolicy(sb.Network, p)
	s.setState(&sb, sb.State, "")
	s.event(sb, "network", "", "", policyText(sb.Network))
	return sb, nil
}

func orNone(m string) string {
	if m == "" {
		return string(network.ModeNone)
	}
	return m
}

func policyText(n store.Network) string {
	switch {
	case n.BlockAll:
		return "egress policy: block all"
	case len(n.Allow) == 0 && len(n.Deny) == 0:
		return "egress policy: open"
	}
	return fmt.Sprintf("egress policy: allow %v, deny %v", n.Allow, n.Deny)
}

// NetworkAudit returns a bridged sandbox's egress audit entries after
// seq and a channel closed when the next arrives. Reading it is not
// activity.
func (s *Service) NetworkAudit(ctx context.Context, tenantID, idOrName string, after int64) ([]network.AuditEntry, <-chan struct{}, error) {
	sb, err := s.Get(ctx, tenantID, idOrName)
	if err != nil {
		return nil, nil, err
	}
	if !bridged(sb) {
		return nil, nil, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s has no network (mode %s): nothing to audit", sb.ID, orNone(sb.Network.Mode))
	}
	if s.cfg.Network == nil {
		return nil, nil, errdefs.Public(errdefs.ErrUnavailable, "bridge networking is disabled on this host")
	}
	return s.cfg.Network.Audit(sb.ID, after)
}

package network

import (
	"net/netip"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Gateway is the bridge's address in subnet: its first host address (.1).
func Gateway(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr().Next()
}

// Allocate returns the lowest free sandbox address of subnet: not the
// network address, the gateway or the broadcast address, and not in used.
//
// sbx's IPAM keeps no state of its own: each live sandbox's address is in
// its store record (unique among live sandboxes), so the set in use
// survives daemon restarts and crashes exactly as the records do; the
// caller serializes Allocate with writing the record. Lowest-free reuses
// addresses soon after a delete, which is safe because teardown removes
// the address's nftables element before the record is marked destroyed.
func Allocate(subnet netip.Prefix, used []netip.Addr) (netip.Addr, error) {
	subnet = subnet.Masked()
	taken := make(map[netip.Addr]bool, len(used))
	for _, a := range used {
		taken[a] = true
	}
	gw := Gateway(subnet)
	for a := gw.Next(); subnet.Contains(a); a = a.Next() {
		if !subnet.Contains(a.Next()) {
			break // the broadcast address
		}
		if !taken[a] {
			return a, nil
		}
	}
	return netip.Addr{}, errdefs.Publicf(errdefs.ErrResourceExhausted, "no free address in the sandbox subnet %s", subnet)
}

package network

import (
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The rules are built as expressions by pure functions so that they can be
// checked without root (rules_test.go); nft.go sends them.

// alwaysDenied are rejected for every sandbox whatever its policy: the
// host's loopback and link-local (cloud metadata at 169.254.169.254).
var alwaysDenied = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
}

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

func metaIs(key expr.MetaKey, data []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

func iif(name string) []expr.Any { return metaIs(expr.MetaKeyIIFNAME, ifname(name)) }
func oif(name string) []expr.Any { return metaIs(expr.MetaKeyOIFNAME, ifname(name)) }
func ipv4() []expr.Any           { return metaIs(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4}) }

func ctReply() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ipIn matches an IPv4 source (src) or destination address in pf.
func ipIn(src bool, pf netip.Prefix) []expr.Any {
	off := uint32(16)
	if src {
		off = 12
	}
	m := prefixMask(pf.Bits())
	net := pf.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m[:], Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: net[:]},
	}
}

func prefixMask(bits int) [4]byte {
	var m [4]byte
	for i := 0; i < bits; i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

func dstPort(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }
func drop() expr.Any   { return &expr.Verdict{Kind: expr.VerdictDrop} }

// reject answers with an ICMP "administratively prohibited" (TCP gets it
// too), so that blocked connections fail at once instead of timing out.
func reject() expr.Any {
	return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}
}

func rule(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func one(e expr.Any) []expr.Any { return []expr.Any{e} }

// forwardRules are the base forward chain's rules.
func forwardRules(bridge string, egress *nftables.Set) [][]expr.Any {
	return [][]expr.Any{
		// Into sandboxes: only replies (nothing may open a connection to
		// a sandbox, including another sandbox routed through the host).
		rule(oif(bridge), ctReply(), one(accept())),
		rule(oif(bridge), one(reject())),
		// Out of sandboxes: the policy of the sending address, for every
		// packet.
		rule(iif(bridge), ipv4(),
			[]expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Lookup{SourceRegister: 1, SetName: egress.Name, SetID: egress.ID, DestRegister: 0, IsDestRegSet: true}}),
		// An address no sandbox holds (spoofed) or IPv6.
		rule(iif(bridge), one(drop())),
	}
}

// inputRules make the host unreachable from the bridge; replies to
// connections the host opened pass.
func inputRules(bridge string) [][]expr.Any {
	return [][]expr.Any{
		rule(iif(bridge), ctReply(), one(accept())),
		rule(iif(bridge), one(reject())),
	}
}

// natRules masquerade the sandboxes' traffic leaving through any other
// interface.
func natRules(bridge string, subnet netip.Prefix) [][]expr.Any {
	return [][]expr.Any{
		rule(ipv4(), ipIn(true, subnet),
			[]expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(bridge)},
				&expr.Masq{}}),
	}
}

// policyRules are a sandbox chain's rules for p.
func policyRules(subnet netip.Prefix, resolvers []netip.Addr, p Policy) [][]expr.Any {
	var out [][]expr.Any
	for _, pf := range append(append([]netip.Prefix{}, alwaysDenied...), subnet.Masked()) {
		out = append(out, rule(ipIn(false, pf), one(reject())))
	}
	if p.BlockAll {
		return append(out, one(reject()))
	}
	for _, r := range resolvers {
		if !r.Is4() {
			continue
		}
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			out = append(out, rule(ipIn(false, netip.PrefixFrom(r, 32)), dstPort(proto, 53), one(accept())))
		}
	}
	for _, pf := range p.Deny {
		out = append(out, rule(ipIn(false, pf), one(reject())))
	}
	if len(p.Allow) == 0 {
		return append(out, one(accept()))
	}
	for _, pf := range p.Allow {
		out = append(out, rule(ipIn(false, pf), one(accept())))
	}
	return append(out, one(reject()))
}

// ctNew matches the first packet of a connection.
func ctNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// withAudit puts before each rule that ends in a verdict a twin that logs
// a new connection it matches to the audit group, with the verdict and
// the sandbox in the prefix (none in the base chains: the reader finds it
// by source address), rate-limited.
func withAudit(rules [][]expr.Any, id string, group uint16, blockedOnly bool) [][]expr.Any {
	out := make([][]expr.Any, 0, 2*len(rules))
	for _, r := range rules {
		prefix := ""
		switch v := r[len(r)-1].(type) {
		case *expr.Verdict:
			switch v.Kind {
			case expr.VerdictAccept:
				if !blockedOnly {
					prefix = auditAllowed + id
				}
			case expr.VerdictDrop:
				prefix = auditBlocked + id
			}
		case *expr.Reject:
			prefix = auditBlocked + id
		}
		if prefix != "" {
			match := append([]expr.Any(nil), r[:len(r)-1]...)
			out = append(out, rule(match, ctNew(),
				one(&expr.Limit{Type: expr.LimitTypePkts, Rate: auditRate, Unit: expr.LimitTimeSecond, Burst: auditBurst}),
				one(&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(prefix)})))
		}
		out = append(out, r)
	}
	return out
}

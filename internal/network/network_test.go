package network

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

func TestAllocate(t *testing.T) {
	subnet := netip.MustParsePrefix("10.88.0.0/29") // .1 gateway, .2–.6 sandboxes, .7 broadcast
	a := func(s string) netip.Addr { return netip.MustParseAddr(s) }
	tests := []struct {
		name string
		used []netip.Addr
		want string
	}{
		{"empty", nil, "10.88.0.2"},
		{"lowest free", []netip.Addr{a("10.88.0.2"), a("10.88.0.4")}, "10.88.0.3"},
		{"last", []netip.Addr{a("10.88.0.2"), a("10.88.0.3"), a("10.88.0.4"), a("10.88.0.5")}, "10.88.0.6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Allocate(subnet, tt.used)
			if err != nil || got.String() != tt.want {
				t.Fatalf("Allocate = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
	full := []netip.Addr{a("10.88.0.2"), a("10.88.0.3"), a("10.88.0.4"), a("10.88.0.5"), a("10.88.0.6")}
	if _, err := Allocate(subnet, full); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Fatalf("full subnet: err = %v, want resource exhausted", err)
	}
	if g := Gateway(netip.MustParsePrefix("10.88.3.4/16")); g.String() != "10.88.0.1" {
		t.Fatalf("Gateway = %s", g)
	}
}

func TestParsePolicy(t *testing.T) {
	p, err := ParsePolicy(false, []string{"192.0.2.7", "198.51.100.9/24"}, []string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	allow, deny := p.Strings()
	if diff := cmp.Diff([]string{"192.0.2.7/32", "198.51.100.0/24"}, allow); diff != "" {
		t.Errorf("allow (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"10.0.0.0/8"}, deny); diff != "" {
		t.Errorf("deny (-want +got):\n%s", diff)
	}
	for _, bad := range []struct {
		block       bool
		allow, deny []string
	}{
		{false, []string{"not-a-cidr"}, nil},
		{false, nil, []string{"10.0.0.0/33"}},
		{false, []string{"2001:db8::/32"}, nil},
		{true, []string{"10.0.0.0/8"}, nil},
	} {
		if _, err := ParsePolicy(bad.block, bad.allow, bad.deny); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParsePolicy(%v, %v, %v): err = %v, want invalid argument", bad.block, bad.allow, bad.deny, err)
		}
	}
}

// verdicts summarizes a chain's rules: for each, the destination prefixes
// it matches and its verdict, which is what a policy decides.
func verdicts(rules [][]expr.Any) []string {
	var out []string
	for _, r := range rules {
		s := ""
		for i, e := range r {
			switch e := e.(type) {
			case *expr.Payload:
				if e.Base == expr.PayloadBaseNetworkHeader && e.Offset == 16 {
					m := r[i+1].(*expr.Bitwise).Mask
					n := r[i+2].(*expr.Cmp).Data
					bits := 0
					for _, b := range m {
						for ; b != 0; b <<= 1 {
							bits++
						}
					}
					s += netip.PrefixFrom(netip.AddrFrom4([4]byte(n)), bits).String() + " "
				}
				if e.Base == expr.PayloadBaseTransportHeader {
					s += "dport53 "
				}
			case *expr.Verdict:
				s += map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop"}[e.Kind]
			case *expr.Reject:
				s += "reject"
			}
		}
		out = append(out, s)
	}
	return out
}

func TestPolicyRules(t *testing.T) {
	subnet := netip.MustParsePrefix("10.88.0.0/16")
	dns := []netip.Addr{netip.MustParseAddr("10.255.255.53")}
	fixed := []string{"127.0.0.0/8 reject", "169.254.0.0/16 reject", "10.88.0.0/16 reject"}
	dnsRules := []string{"10.255.255.53/32 dport53 accept", "10.255.255.53/32 dport53 accept"}
	mustParse := func(allow, deny []string) Policy {
		p, err := ParsePolicy(false, allow, deny)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		p    Policy
		want []string
	}{
		{"block all", Policy{BlockAll: true}, append(fixed, "reject")},
		{"open", Policy{}, append(append(fixed, dnsRules...), "accept")},
		{"allow", mustParse([]string{"192.0.2.0/24"}, nil),
			append(append(fixed, dnsRules...), "192.0.2.0/24 accept", "reject")},
		{"deny", mustParse(nil, []string{"10.0.0.0/8"}),
			append(append(fixed, dnsRules...), "10.0.0.0/8 reject", "accept")},
		{"deny within allow", mustParse([]string{"0.0.0.0/0"}, []string{"192.168.0.0/16"}),
			append(append(fixed, dnsRules...), "192.168.0.0/16 reject", "0.0.0.0/0 accept", "reject")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, verdicts(policyRules(subnet, dns, tt.p))); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBaseRules(t *testing.T) {
	set := &nftables.Set{Name: "egress", ID: 7}
	fwd := forwardRules("sbx0", set)
	if len(fwd) != 4 {
		t.Fatalf("forward has %d rules, want 4", len(fwd))
	}
	// The egress lookup is a verdict-map lookup on the source address.
	var lk *expr.Lookup
	for _, e := range fwd[2] {
		if l, ok := e.(*expr.Lookup); ok {
			lk = l
		}
	}
	if lk == nil || lk.SetName != "egress" || !lk.IsDestRegSet || lk.DestRegister != 0 {
		t.Errorf("forward rule 3 is not a vmap lookup: %#v", lk)
	}
	if got := verdicts(fwd); !cmp.Equal(got, []string{"accept", "reject", "", "drop"}) {
		t.Errorf("forward verdicts = %q", got)
	}
	if got := verdicts(inputRules("sbx0")); !cmp.Equal(got, []string{"accept", "reject"}) {
		t.Errorf("input verdicts = %q", got)
	}
	if got := string(ifname("sbx0")); len(got) != 16 || got[:4] != "sbx0" {
		t.Errorf("ifname = %q", got)
	}
}

func TestResolvers(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/resolv.conf"
	writeFile(t, path, "# c\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\nnameserver 2001:db8::1\nsearch x\nnameserver 192.0.2.53\n")
	got := HostResolvers(path)
	want := []netip.Addr{netip.MustParseAddr("10.255.255.53"), netip.MustParseAddr("192.0.2.53")}
	if !cmp.Equal(got, want, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
		t.Errorf("HostResolvers = %v, want %v", got, want)
	}
	if got := string(ResolvConf(want)); got != "# written by sbx\nnameserver 10.255.255.53\nnameserver 192.0.2.53\noptions timeout:2 attempts:2\n" {
		t.Errorf("ResolvConf = %q", got)
	}
	if vethName("abcdefghijklmnop") != "vsbabcdefghijkl" || len(vethName("abcdefghijklmnop")) > 15 {
		t.Errorf("vethName = %q", vethName("abcdefghijklmnop"))
	}
}

func TestAuditLogRing(t *testing.T) {
	a := newAuditLog()
	ip := netip.MustParseAddr("10.88.0.5")
	a.own(ip, "sb1")
	pkt := func(src, dst string, proto byte, port uint16) []byte {
		b := make([]byte, 24)
		b[0], b[9] = 0x45, proto
		s4, d4 := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
		copy(b[12:], s4[:])
		copy(b[16:], d4[:])
		b[22], b[23] = byte(port>>8), byte(port)
		return b
	}
	for _, tc := range []struct {
		prefix string
		pkt    []byte
		want   string
	}{
		{"sbxAsb1", pkt("10.88.0.5", "192.0.2.1", 6, 443), "sb1 allowed tcp 192.0.2.1:443"},
		{"sbxDsb1", pkt("10.88.0.5", "192.0.2.9", 17, 53), "sb1 blocked udp 192.0.2.9:53"},
		{"sbxD", pkt("10.88.0.5", "10.88.0.1", 6, 7070), "sb1 blocked tcp 10.88.0.1:7070"}, // a base chain: by source
		{"sbxD", pkt("10.88.0.99", "10.88.0.1", 6, 7070), ""},                              // no such sandbox
		{"sbxAsb1", pkt("10.88.0.5", "192.0.2.1", 1, 0), "sb1 allowed icmp 192.0.2.1:0"},
		{"other", pkt("10.88.0.5", "192.0.2.1", 6, 1), ""},
		{"sbxAsb1", []byte{0x60, 0, 0}, ""}, // not IPv4
	} {
		id, src, e, ok := parseAudit(tc.prefix, tc.pkt)
		got := ""
		if ok {
			before, _ := a.since("sb1", 0)
			a.record(id, src, e)
			after, _ := a.since("sb1", 0)
			if len(after) > len(before) {
				l := after[len(after)-1]
				got = fmt.Sprintf("sb1 %s %s %s:%d", l.Verdict, l.Protocol, l.Dst, l.Port)
			}
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.prefix, got, tc.want)
		}
	}
	// Bounded, with increasing sequence numbers; a waiter wakes up.
	a.own(netip.MustParseAddr("10.88.0.6"), "sb2")
	_, wake := a.since("sb2", 0)
	for i := 0; i < AuditRingSize+10; i++ {
		a.add("sb2", AuditEntry{Verdict: "allowed"})
	}
	select {
	case <-wake:
	default:
		t.Error("waiter not woken")
	}
	all, _ := a.since("sb2", 0)
	if len(all) != AuditRingSize || all[0].Seq != 11 || all[len(all)-1].Seq != AuditRingSize+10 {
		t.Errorf("ring: %d entries, seq %d..%d", len(all), all[0].Seq, all[len(all)-1].Seq)
	}
	if tail, _ := a.since("sb2", AuditRingSize+8); len(tail) != 2 {
		t.Errorf("since: %d entries", len(tail))
	}
	a.forget("sb2")
	a.add("sb2", AuditEntry{Verdict: "allowed"}) // arriving late
	a.since("nosuch", 0)
	if left, _ := a.since("sb2", 0); len(left) != 0 || len(a.rings) != 1 {
		t.Errorf("forgotten ring holds %d; rings %d", len(left), len(a.rings))
	}
}

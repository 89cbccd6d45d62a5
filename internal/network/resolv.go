package network

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"strings"
)

// HostResolvers reads the nameservers of a resolv.conf (normally the
// host's /etc/resolv.conf) that a sandbox can reach through NAT: loopback
// stub resolvers (127.0.0.53 of systemd-resolved, 127.0.0.1 of dnsmasq)
// and IPv6 servers are skipped, since a sandbox reaches neither; with only
// those, sandboxes get no nameserver and the operator sets network.dns.
func HostResolvers(path string) []netip.Addr {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || f[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(f[1])
		if err != nil || !a.Is4() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
			continue
		}
		out = append(out, a)
	}
	return out
}

// ResolvConf renders a sandbox's /etc/resolv.conf.
func ResolvConf(servers []netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString("# written by sbx\n")
	for _, s := range servers {
		b.WriteString("nameserver " + s.String() + "\n")
	}
	b.WriteString("options timeout:2 attempts:2\n")
	return b.Bytes()
}

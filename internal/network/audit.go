package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// The egress audit log: every new connection a bridged sandbox opens (its
// first packet) is logged by nftables to an NFLOG group with the verdict
// and the sandbox in the prefix, and read by the daemon into a bounded
// ring per sandbox. Logging is rate-limited per rule in the kernel
// (auditRate packets per second, auditBurst burst), so a scanning sandbox
// cannot flood the daemon; the rings are in memory (lost on a daemon
// restart) and hold the last AuditRingSize entries.

// AuditEntry is one connection attempt of a sandbox.
type AuditEntry struct {
	Seq      int64      // increasing per sandbox, from 1
	Time     time.Time  // when the daemon read it
	Verdict  string     // "allowed" or "blocked"
	Protocol string     // "tcp", "udp", "icmp" or the IP protocol number
	Dst      netip.Addr // destination address
	Port     uint16     // destination port (tcp, udp); 0 otherwise
}

// AuditRingSize bounds each sandbox's audit log.
const AuditRingSize = 1024

const (
	auditRate  = 50 // log entries per second per rule, then dropped
	auditBurst = 100
	// Prefixes: "sbxA<id>" allowed, "sbxD<id>" blocked.
	auditAllowed = "sbxA"
	auditBlocked = "sbxD"
)

// auditLog holds every sandbox's ring.
type auditLog struct {
	mu    sync.Mutex
	rings map[string]*auditRing // of set-up sandboxes only
	owner map[netip.Addr]string // sandbox address → ID, for the base chains' entries
}

type auditRing struct {
	entries []AuditEntry // oldest first, at most AuditRingSize
	seq     int64
	wake    chan struct{} // closed and replaced at each append
}

func newAuditLog() *auditLog {
	return &auditLog{rings: map[string]*auditRing{}, owner: map[netip.Addr]string{}}
}

// own starts the ring of a set-up sandbox and records its address.
func (a *auditLog) own(ip netip.Addr, id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.owner[ip] = id
	if a.rings[id] == nil {
		a.rings[id] = &auditRing{wake: make(chan struct{})}
	}
}

// record adds a decoded packet: to the sandbox its prefix names, or (base
// chain entries) to the one holding its source address.
func (a *auditLog) record(id string, src netip.Addr, e AuditEntry) {
	if id == "" {
		a.mu.Lock()
		id = a.owner[src]
		a.mu.Unlock()
		if id == "" {
			return
		}
	}
	a.add(id, e)
}

func (a *auditLog) add(id string, e AuditEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rings[id]
	if r == nil {
		return // torn down (entries arrive up to 0.1 s late) or unknown
	}
	r.seq++
	e.Seq = r.seq
	if len(r.entries) == AuditRingSize {
		copy(r.entries, r.entries[1:])
		r.entries = r.entries[:AuditRingSize-1]
	}
	r.entries = append(r.entries, e)
	close(r.wake)
	r.wake = make(chan struct{})
}

// since returns the entries after seq and a channel closed at the next one.
func (a *auditLog) since(id string, after int64) ([]AuditEntry, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.rings[id]
	if r == nil {
		// Not set up (yet): nothing, and a wake-up that never comes
		// before the caller's own deadline.
		return nil, make(chan struct{})
	}
	var out []AuditEntry
	for _, e := range r.entries {
		if e.Seq > after {
			out = append(out, e)
		}
	}
	return out, r.wake
}

func (a *auditLog) forget(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.rings[id]; r != nil {
		close(r.wake)
		delete(a.rings, id)
	}
	for ip, owner := range a.owner {
		if owner == id {
			delete(a.owner, ip)
		}
	}
}

// parseAudit decodes a logged packet: its prefix and the start of its IPv4
// header. id is "" for the base chains' entries (the source tells the
// sandbox). ok is false for anything that is not sbx's.
func parseAudit(prefix string, pkt []byte) (id string, src netip.Addr, e AuditEntry, ok bool) {
	switch {
	case strings.HasPrefix(prefix, auditAllowed):
		e.Verdict, id = "allowed", prefix[len(auditAllowed):]
	case strings.HasPrefix(prefix, auditBlocked):
		e.Verdict, id = "blocked", prefix[len(auditBlocked):]
	default:
		return "", src, e, false
	}
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return "", src, e, false
	}
	ihl := int(pkt[0]&0x0f) * 4
	src = netip.AddrFrom4([4]byte(pkt[12:16]))
	e.Dst = netip.AddrFrom4([4]byte(pkt[16:20]))
	switch proto := pkt[9]; proto {
	case 6, 17:
		e.Protocol = map[byte]string{6: "tcp", 17: "udp"}[proto]
		if len(pkt) >= ihl+4 {
			e.Port = binary.BigEndian.Uint16(pkt[ihl+2 : ihl+4])
		}
	case 1:
		e.Protocol = "icmp"
	default:
		e.Protocol = fmt.Sprint(proto)
	}
	return id, src, e, true
}

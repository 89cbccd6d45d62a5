package network

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NFLOG over netlink (linux/netfilter/nfnetlink_log.h), which x/sys/unix
// does not carry.
const (
	nfnlSubsysULOG      = 4
	nfulnlMsgPacket     = 0
	nfulnlMsgConfig     = 1
	nfulaCfgCmd         = 1
	nfulaCfgMode        = 2
	nfulaCfgTimeout     = 4
	nfulaCfgQthresh     = 5
	nfulnlCfgCmdBind    = 1
	nfulnlCopyPacket    = 2
	nfulaPayload        = 9
	nfulaPrefix         = 10
	auditCopyRange      = 64 // bytes of each packet: the IPv4 and TCP/UDP headers
	auditFlushHundredth = 10 // the kernel batches log messages for up to 0.1 s
)

// nflog reads sbx's audit group.
type nflog struct {
	c *netlink.Conn
}

// openNFLOG binds the group on a netfilter netlink socket made in the
// manager's host namespace.
func (l *Linux) openNFLOG(group uint16) (*nflog, error) {
	var c *netlink.Conn
	dial := func() error {
		var err error
		c, err = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		return err
	}
	var err error
	if l.hostNS >= 0 {
		err = inNetns(l.hostNS, dial)
	} else {
		err = dial()
	}
	if err != nil {
		return nil, fmt.Errorf("netfilter netlink socket: %w", err)
	}
	c.SetReadBuffer(1 << 20)
	cfg := func(attrs []netlink.Attribute) error {
		b, err := netlink.MarshalAttributes(attrs)
		if err != nil {
			return err
		}
		hdr := []byte{unix.AF_UNSPEC, 0, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], group)
		_, err = c.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig),
				Flags: netlink.Request | netlink.Acknowledge},
			Data: append(hdr, b...),
		})
		return err
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, auditCopyRange)
	mode[4] = nfulnlCopyPacket
	be32 := func(v uint32) []byte { b := make([]byte, 4); binary.BigEndian.PutUint32(b, v); return b }
	for _, attrs := range [][]netlink.Attribute{
		{{Type: nfulaCfgCmd, Data: []byte{nfulnlCfgCmdBind}}},
		{{Type: nfulaCfgMode, Data: mode}},
		{{Type: nfulaCfgTimeout, Data: be32(auditFlushHundredth)}},
		{{Type: nfulaCfgQthresh, Data: be32(32)}},
	} {
		if err := cfg(attrs); err != nil {
			c.Close()
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) {
				return nil, fmt.Errorf("NFLOG group %d is held by another socket (two daemons on one host need different network.audit_group)", group)
			}
			return nil, fmt.Errorf("configuring NFLOG group %d: %w", group, err)
		}
	}
	return &nflog{c: c}, nil
}

// run reads logged packets into the audit log until the socket closes.
func (n *nflog) run(ctx context.Context, a *auditLog) {
	for ctx.Err() == nil {
		msgs, err := n.c.Receive()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, unix.EBADF) || strings.Contains(err.Error(), "closed") {
				return
			}
			// ENOBUFS: the kernel dropped messages; keep reading.
			continue
		}
		now := time.Now().UTC()
		for _, m := range msgs {
			if m.Header.Type != netlink.HeaderType(nfnlSubsysULOG<<8|nfulnlMsgPacket) || len(m.Data) < 4 {
				continue
			}
			ad, err := netlink.NewAttributeDecoder(m.Data[4:])
			if err != nil {
				continue
			}
			var prefix string
			var payload []byte
			for ad.Next() {
				switch ad.Type() {
				case nfulaPrefix:
					prefix = strings.TrimRight(string(ad.Bytes()), "\x00")
				case nfulaPayload:
					payload = ad.Bytes()
				}
			}
			if id, src, e, ok := parseAudit(prefix, payload); ok {
				e.Time = now
				a.record(id, src, e)
			}
		}
	}
}

func (n *nflog) close() error { return n.c.Close() }

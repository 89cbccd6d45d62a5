package agent

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// portProto is the Upgrade token of a raw stream to a port in the sandbox.
const portProto = "sbx-port"

// DialPort connects to a TCP port on the sandbox's own loopback (127.0.0.1,
// then [::1]) through the agent, so it works for sandboxes without any
// network and for servers bound to loopback only. The returned connection
// is a plain byte stream to that port; it supports half-close
// (CloseWrite) and deadlines. ctx bounds the dial only.
//
// Nothing listening on the port is errdefs.ErrUnavailable with a
// user-facing message; a port outside 1–65535 is ErrInvalidArgument.
func (c *Client) DialPort(ctx context.Context, port int) (net.Conn, error) {
	if port < 1 || port > 65535 {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "port %d is not a number from 1 to 65535", port)
	}
	conn, err := c.tr.DialContext(ctx, "unix", "agent")
	if err != nil {
		return nil, fmt.Errorf("agent port %d: %w: %w", port, errdefs.ErrUnavailable, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	fail := func(err error) (net.Conn, error) {
		stop()
		conn.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("agent port %d: %w", port, ctxErr)
		}
		return nil, err
	}
	path := "/v1/ports/" + strconv.Itoa(port) + "/connect"
	req := "POST " + path + " HTTP/1.1\r\nHost: agent\r\n" + versionHeader + ": " + c.version +
		"\r\nConnection: Upgrade\r\nUpgrade: " + portProto + "\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return fail(fmt.Errorf("agent port %d: %w: %w", port, errdefs.ErrUnavailable, err))
	}
	br := bufio.NewReaderSize(conn, 4<<10)
	hreq, _ := http.NewRequest(http.MethodPost, "http://agent"+path, nil)
	resp, err := http.ReadResponse(br, hreq)
	if err != nil {
		return fail(fmt.Errorf("agent port %d: %w: %w", port, errdefs.ErrUnavailable, err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		if resp.StatusCode == http.StatusNotFound && resp.Header.Get("Content-Type") != "application/json" {
			resp.Body.Close()
			return fail(errdefs.Public(errdefs.ErrUnavailable, "the sandbox's agent predates port connections: restart the sandbox"))
		}
		return fail(responseError(resp))
	}
	if !stop() {
		// ctx ended while the answer arrived: the deadline is poisoned.
		conn.Close()
		return nil, fmt.Errorf("agent port %d: %w", port, ctx.Err())
	}
	conn.SetDeadline(time.Time{})
	return &portConn{Conn: conn, br: br}, nil
}

// portConn is the agent connection after the 101: reads drain what the
// response parser buffered first.
type portConn struct {
	net.Conn
	br *bufio.Reader
}

func (p *portConn) Read(b []byte) (int, error) {
	if p.br != nil {
		if p.br.Buffered() > 0 {
			return p.br.Read(b)
		}
		p.br = nil
	}
	return p.Conn.Read(b)
}

// CloseWrite half-closes the stream: the server in the sandbox reads EOF.
func (p *portConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return p.Conn.Close()
}

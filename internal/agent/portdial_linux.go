package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// portDialTimeout bounds the agent's connect to a port in the sandbox. A
// loopback connect is answered at once (accepted or refused); only a full
// listen backlog makes it wait.
const portDialTimeout = 5 * time.Second

func (s *server) portRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/ports/{port}/connect", s.handlePortConnect)
}

// ParsePort parses a TCP port as it appears in a URL: decimal digits only
// (no sign, no spaces, no leading zeros), 1 to 65535.
func ParsePort(s string) (int, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errdefs.Publicf(errdefs.ErrInvalidArgument, "port %q is not a number from 1 to 65535", s)
	}
	n, _ := strconv.Atoi(s)
	if n < 1 || n > 65535 {
		return 0, errdefs.Publicf(errdefs.ErrInvalidArgument, "port %q is not a number from 1 to 65535", s)
	}
	return n, nil
}

// dialLoopback connects to port on the sandbox's own loopback, IPv4 first,
// then IPv6. The agent runs in the sandbox's network namespace, so these
// addresses are the sandbox's and nothing else's: no address from the
// caller is ever dialled.
func dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: portDialTimeout}
	p := strconv.Itoa(port)
	c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, nil
	}
	c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	return nil, errdefs.Publicf(errdefs.ErrUnavailable, "nothing is listening on port %d in the sandbox (127.0.0.1 or [::1])", port)
}

// handlePortConnect connects to a port inside the sandbox and, on success,
// upgrades the request's connection to a raw byte stream spliced to it.
// The error answers come before the upgrade, so the host can tell a
// refused port from a broken stream.
func (s *server) handlePortConnect(w http.ResponseWriter, r *http.Request) {
	port, err := ParsePort(r.PathValue("port"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), portProto) {
		writeError(w, http.StatusBadRequest, errdefs.Publicf(errdefs.ErrInvalidArgument, "port connect needs Upgrade: %s", portProto))
		return
	}
	up, err := dialLoopback(r.Context(), port)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		writeError(w, http.StatusInternalServerError, fmt.Errorf("hijacking port connection: %w", err))
		return
	}
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+portProto+"\r\n\r\n"); err != nil {
		conn.Close()
		up.Close()
		return
	}
	// The client may have sent bytes right behind its request; they are
	// in brw's buffer and go first.
	splice(up, conn, brw.Reader)
}

// splice copies both ways until both directions have ended, passing each
// end-of-stream on as a half-close so that request bodies and responses
// that end by closing work as they would on a direct connection.
func splice(up, down net.Conn, downR io.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(up, downR)
		closeWrite(up)
	}()
	go func() {
		defer wg.Done()
		io.Copy(down, up)
		closeWrite(down)
	}()
	wg.Wait()
	up.Close()
	down.Close()
}

// closeWrite half-closes c when it can (TCP and unix connections can),
// else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

package agent

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// echoListener accepts connections on the loopback and answers each with
// "hello " followed by everything it read, once the client half-closes.
func echoListener(t *testing.T, network, addr string) int {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback here: %v", network, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b, _ := io.ReadAll(c)
				c.Write(append([]byte("hello "), b...))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDialPort(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "tcp4", "127.0.0.1:0"},
		{"ipv6 only", "tcp6", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := echoListener(t, tc.network, tc.addr)
			conn, err := c.DialPort(t.Context(), port)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// Larger than any buffer on the way, so the splice really streams.
			payload := bytes.Repeat([]byte("x"), 1<<20)
			go func() {
				conn.Write(payload)
				conn.(interface{ CloseWrite() error }).CloseWrite()
			}()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(conn)
			if err != nil {
				t.Fatal(err)
			}
			if want := append([]byte("hello "), payload...); !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes back, want %d", len(got), len(want))
			}
		})
	}
}

func TestDialPortErrors(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	// A port nobody listens on: take one and close it.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, err = c.DialPort(t.Context(), free)
	if !errors.Is(err, errdefs.ErrUnavailable) || errdefs.Message(err) != "nothing is listening on port "+strconv.Itoa(free)+" in the sandbox (127.0.0.1 or [::1])" {
		t.Fatalf("closed port: %v (%q)", err, errdefs.Message(err))
	}
	for _, p := range []int{0, -1, 65536} {
		if _, err := c.DialPort(t.Context(), p); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("port %d: %v", p, err)
		}
	}
}

func TestParsePort(t *testing.T) {
	for s, want := range map[string]int{"1": 1, "80": 80, "65535": 65535} {
		if got, err := ParsePort(s); err != nil || got != want {
			t.Errorf("ParsePort(%q) = %d, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "0", "65536", "080", "+80", "-1", " 80", "8o", "99999999999", "1e3", "0x50"} {
		if _, err := ParsePort(s); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParsePort(%q) = %v, want invalid argument", s, err)
		}
	}
}

// The server side refuses what the client would never send: ports that
// are not plain numbers in range, and a connect that is not an upgrade.
func TestPortConnectRefusals(t *testing.T) {
	c, _ := startServer(t, ServerConfig{})
	for _, tc := range []struct {
		port, upgrade string
	}{
		{"abc", portProto}, {"0", portProto}, {"65536", portProto}, {"08080", portProto}, {"80", ""}, {"80", "websocket"},
	} {
		req, err := c.newRequest(t.Context(), "POST", "/v1/ports/"+tc.port+"/connect", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.upgrade != "" {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", tc.upgrade)
		}
		resp, err := c.do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("port %q, upgrade %q: %d, want 400", tc.port, tc.upgrade, resp.StatusCode)
		}
	}
}

package cli

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/httpapi/apitest"
)

// openTerminal returns a pseudo-terminal pair of the given size: the test
// types into master, the CLI sees slave as its terminal.
func openTerminal(t *testing.T, cols, rows int) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	rc, _ := master.SyscallConn()
	var n uint32
	var ierr error
	rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr != nil {
			return
		}
		if n, ierr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN); ierr != nil {
			return
		}
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: uint16(cols), Row: uint16(rows)})
	})
	if ierr != nil {
		t.Fatal(ierr)
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

func TestExecTTY(t *testing.T) {
	_, u := fakeServer(t)
	if code := Main([]string{"--url", u, "--api-key", apitest.AdminKey, "create", "--name", "tty"}); code != 0 {
		t.Fatalf("create: %d", code)
	}
	run := func(in any, args ...string) (string, error) {
		root := newRoot()
		var out bytes.Buffer
		switch in := in.(type) {
		case *os.File:
			root.SetIn(in)
		case string:
			root.SetIn(strings.NewReader(in))
		}
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--url", u, "--api-key", apitest.AdminKey}, args...))
		err := root.ExecuteContext(t.Context())
		return out.String(), err
	}

	t.Run("no terminal", func(t *testing.T) {
		if _, err := run("", "exec", "-it", "tty"); !errors.Is(err, errNoTerminal) {
			t.Fatalf("err = %v, want %v", err, errNoTerminal)
		}
	})
	t.Run("command", func(t *testing.T) {
		_, slave := openTerminal(t, 132, 50)
		out, err := run(slave, "exec", "-t", "tty", "--", "/bin/sh", "-c", "stty size; exit 5")
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 5 {
			t.Fatalf("err = %v, want exit status 5; output %q", err, out)
		}
		if !strings.Contains(out, "50 132") {
			t.Errorf("the remote terminal's size is not the local one: %q", out)
		}
	})
	t.Run("interactive shell", func(t *testing.T) {
		master, slave := openTerminal(t, 100, 40)
		// Typed ahead: the terminal's input queue holds it until the CLI
		// reads it.
		if _, err := master.WriteString("stty size; echo typed-$((2+3)); exit 4\r"); err != nil {
			t.Fatal(err)
		}
		before, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		out, err := run(slave, "exec", "-it", "tty")
		var ee exitError
		if !errors.As(err, &ee) || ee.code != 4 {
			t.Fatalf("err = %v, want exit status 4; output %q", err, out)
		}
		if !strings.Contains(out, "40 100") || !strings.Contains(out, "typed-5") {
			t.Errorf("output %q", out)
		}
		after, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		if *before != *after {
			t.Errorf("the local terminal was not restored: %+v, was %+v", after, before)
		}
	})
}

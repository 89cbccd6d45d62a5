package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
	"golang.org/x/term"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// errNoTerminal is the answer to -t without a terminal on stdin.
var errNoTerminal = errors.New("-t needs a terminal on standard input: run it from a terminal, or drop -t")

// ttyExec runs req on a new terminal in sandbox id, wired to the local
// terminal in and out: raw mode while it runs (restored on every way out),
// the local size now and on every SIGWINCH, in copied to the terminal when
// interactive. It returns the command's exit code. The terminal is deleted
// afterwards; if we leave early (ctx ends) that kills the command, as a
// client that goes away kills an exec.
func ttyExec(ctx context.Context, c *sbx.Client, id string, req sbx.CreatePTYRequest, in io.Reader, out io.Writer, interactive bool) (int, error) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, errNoTerminal
	}
	fd := int(f.Fd())
	if cols, rows, err := term.GetSize(fd); err == nil && cols > 0 && rows > 0 {
		req.Cols, req.Rows = cols, rows
	}
	p, err := c.CreatePTY(ctx, id, req)
	if err != nil {
		return 0, err
	}
	defer c.KillPTY(context.WithoutCancel(ctx), id, p.ID)
	conn, err := c.ConnectPTY(ctx, id, p.ID, -1)
	if err != nil {
		return 0, err
	}
	defer conn.Close()

	if interactive {
		old, err := term.MakeRaw(fd)
		if err != nil {
			return 0, fmt.Errorf("putting the terminal in raw mode: %w", err)
		}
		defer term.Restore(fd, old)
		// Stdin is copied until it ends; a read that blocks past the
		// command's exit ends with the process.
		go io.Copy(conn, f)
	}

	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-winch:
				if cols, rows, err := term.GetSize(fd); err == nil && cols > 0 && rows > 0 {
					conn.Resize(cols, rows)
				}
			case <-stop:
				return
			}
		}
	}()

	if _, err := io.Copy(out, conn); err != nil {
		return 0, err
	}
	st, ok := conn.Exit()
	if !ok {
		return 0, errors.New("the terminal ended without an exit status")
	}
	return st.Code, nil
}

// interactiveExec runs req with stdin copied in as it is read, and SIGINT
// and SIGTERM forwarded to the command.
func interactiveExec(ctx context.Context, c *sbx.Client, id string, req sbx.ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (sbx.ExitStatus, error) {
	x, err := c.ExecInteractive(ctx, id, req)
	if err != nil {
		return sbx.ExitStatus{}, err
	}
	defer x.Close()
	go func() {
		if _, err := io.Copy(x, stdin); err == nil {
			x.CloseStdin()
		}
	}()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			x.Signal(unix.SignalName(sig.(syscall.Signal)))
		}
	}()
	return x.Wait(stdout, stderr)
}

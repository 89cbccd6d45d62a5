// Command sbx is the sbx daemon (`sbx serve`) and its command-line client.
package main

import (
	"os"

	"github.com/sbx-sh/sbx/internal/cli"
	"github.com/sbx-sh/sbx/internal/daemon"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], daemon.Commands()...))
}

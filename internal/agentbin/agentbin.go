// Package agentbin holds the sbx-agent binary embedded into sbx at build
// time and installs it for the daemon.
package agentbin

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed bin
var files embed.FS

// Install writes the agent binary into dir under a name derived from its
// content, so a running sandbox's bind mount never sees it change, and
// returns its path. The agent comes from the first of: explicit (a path),
// the binary embedded in sbx, or sbx-agent next to the running executable.
func Install(dir, explicit string) (string, error) {
	var data []byte
	var err error
	switch {
	case explicit != "":
		data, err = os.ReadFile(explicit)
	default:
		data, err = fs.ReadFile(files, "bin/sbx-agent")
		if errors.Is(err, fs.ErrNotExist) {
			exe, eerr := os.Executable()
			if eerr != nil {
				return "", eerr
			}
			data, err = os.ReadFile(filepath.Join(filepath.Dir(exe), "sbx-agent"))
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("this sbx was built without an embedded sbx-agent and none lies next to it: build with `make build` or set agent_path")
			}
		}
	}
	if err != nil {
		return "", fmt.Errorf("reading sbx-agent: %w", err)
	}
	sum := sha256.Sum256(data)
	path := filepath.Join(dir, "sbx-agent-"+hex.EncodeToString(sum[:6]))
	if fi, err := os.Stat(path); err == nil && fi.Size() == int64(len(data)) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".sbx-agent-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return path, os.Rename(tmp.Name(), path)
}

package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// OCI drives an OCI runtime's command line. runc, crun and runsc accept the
// same commands and flags for everything used here.
type OCI struct {
	class  string   // runtime class name
	binary string   // path of the runtime binary
	root   string   // the runtime's state directory (--root)
	extra  []string // global flags before the command, e.g. runsc's --platform
}

// NewOCI returns a driver for the runtime binary, keeping its state under
// root (created if missing).
func NewOCI(class, binary, root string, globalFlags ...string) (*OCI, error) {
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("runtime %s: %w", class, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("runtime %s: %w", class, err)
	}
	return &OCI{class: class, binary: path, root: root, extra: globalFlags}, nil
}

// Name implements Runtime.
func (o *OCI) Name() string { return o.class }

// Binary is the path of the runtime binary.
func (o *OCI) Binary() string { return o.binary }

func (o *OCI) command(ctx context.Context, args ...string) *exec.Cmd {
	all := append([]string{"--root", o.root}, o.extra...)
	cmd := exec.CommandContext(ctx, o.binary, append(all, args...)...)
	cmd.WaitDelay = 0
	return cmd
}

func (o *OCI) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := o.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", o.class, args[0], err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// Run implements Runtime.
func (o *OCI) Run(ctx context.Context, id, bundle string, files []*os.File) (int, error) {
	pidFile := filepath.Join(bundle, "init.pid")
	_ = os.Remove(pidFile)
	args := []string{"run", "--detach", "--bundle", bundle, "--pid-file", pidFile}
	if len(files) > 0 {
		args = append(args, "--preserve-fds", strconv.Itoa(len(files)))
	}
	// The container's init inherits the runtime's stdio, so it must be a
	// file, not a pipe: a pipe would be held open by the sandbox and the
	// runtime call would never finish.
	logPath := filepath.Join(bundle, "runtime.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := o.command(ctx, append(args, id)...)
	cmd.ExtraFiles = files
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(logPath)
		return 0, fmt.Errorf("%s run: %w: %s", o.class, err, lastLine(msg))
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, fmt.Errorf("%s run: reading pid file: %w", o.class, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s run: bad pid file %q", o.class, b)
	}
	return pid, nil
}

type ociState struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Pid    int    `json:"pid"`
}

// State implements Runtime.
func (o *OCI) State(ctx context.Context, id string) (State, error) {
	cmd := o.command(ctx, "state", id)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.String()
		if strings.Contains(msg, "does not exist") || strings.Contains(msg, "No such file") || strings.Contains(msg, "not exist") {
			return State{}, fmt.Errorf("%s state %s: %w", o.class, id, ErrNotExist)
		}
		return State{}, fmt.Errorf("%s state: %w: %s", o.class, err, strings.TrimSpace(msg))
	}
	var st ociState
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil {
		return State{}, fmt.Errorf("%s state: %w", o.class, err)
	}
	return State{ID: st.ID, Status: Status(st.Status), Pid: st.Pid}, nil
}

// List implements Runtime.
func (o *OCI) List(ctx context.Context) ([]State, error) {
	out, err := o.run(ctx, "list", "--format", "json")
	if err != nil {
		return nil, err
	}
	var sts []ociState
	if t := bytes.TrimSpace(out); len(t) > 0 && !bytes.Equal(t, []byte("null")) {
		if err := json.Unmarshal(t, &sts); err != nil {
			return nil, fmt.Errorf("%s list: %w", o.class, err)
		}
	}
	res := make([]State, 0, len(sts))
	for _, s := range sts {
		res = append(res, State{ID: s.ID, Status: Status(s.Status), Pid: s.Pid})
	}
	return res, nil
}

// Kill implements Runtime.
func (o *OCI) Kill(ctx context.Context, id string, sig syscall.Signal) error {
	_, err := o.run(ctx, "kill", id, strconv.Itoa(int(sig)))
	return err
}

// Delete implements Runtime.
func (o *OCI) Delete(ctx context.Context, id string) error {
	if _, err := o.State(ctx, id); err != nil {
		if isNotExist(err) {
			return nil
		}
	}
	_, err := o.run(ctx, "delete", id)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return nil
	}
	return err
}

// Update implements Runtime.
func (o *OCI) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	cmd := o.command(ctx, "update", "--resources", "-", id)
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s update: %w: %s", o.class, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func isNotExist(err error) bool { return err != nil && errors.Is(err, ErrNotExist) }

// Version runs "<binary> --version" and returns the version number.
func (o *OCI) Version(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, o.binary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", o.class, err)
	}
	return parseVersion(string(out))
}

var versionRE = regexp.MustCompile(`(?i)(?:runc|crun|runsc) version (v?[0-9][0-9a-z.\-+~]*)`)

func parseVersion(out string) (string, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("cannot parse runtime version from %q", strings.SplitN(out, "\n", 2)[0])
	}
	return strings.TrimPrefix(m[1], "v"), nil
}

// lastLine returns the last non-empty line of a runtime's output, which
// holds its error message.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

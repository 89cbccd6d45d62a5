package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/runtime"
	"github.com/sbx-sh/sbx/internal/store"
)

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// spec renders a sandbox's OCI configuration.
func (s *Service) spec(sb store.Sandbox, img image.Image) (*specs.Spec, error) {
	cfg := img.Config
	// Environment: the image's, overridden by the sandbox's.
	env := map[string]string{}
	var order []string
	add := func(k, v string) {
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}
		env[k] = v
	}
	for _, kv := range cfg.Env {
		k, v, _ := strings.Cut(kv, "=")
		add(k, v)
	}
	if _, ok := env["PATH"]; !ok {
		add("PATH", defaultPath)
	}
	add("HOSTNAME", runtime.Hostname(sb.Name))
	for k, v := range sb.Env {
		add(k, v)
	}
	envList := make([]string, 0, len(order))
	for _, k := range order {
		envList = append(envList, k+"="+env[k])
	}
	// Entrypoint and cmd follow Docker: overriding the entrypoint drops the
	// image's cmd.
	entry, cmd := cfg.Entrypoint, cfg.Cmd
	if len(sb.Entrypoint) > 0 {
		entry, cmd = sb.Entrypoint, nil
	}
	if len(sb.Cmd) > 0 {
		cmd = sb.Cmd
	}
	init := []string{runtime.AgentPath, "init", "--listen-fd", "3"}
	user := sb.User
	if user == "" {
		user = cfg.User
	}
	if user != "" {
		init = append(init, "--user", user)
	}
	init = append(init, "--")
	init = append(init, entry...)
	init = append(init, cmd...)
	cwd := sb.Workdir
	if cwd == "" {
		cwd = cfg.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	var userns *runtime.IDMap
	if m := s.idmapOf(sb); m != nil {
		userns = &runtime.IDMap{HostID: m.HostID, Size: m.Size}
	}
	return runtime.Spec(runtime.SpecOptions{
		ID:          sb.ID,
		Hostname:    runtime.Hostname(sb.Name),
		Rootfs:      "rootfs",
		Init:        init,
		Env:         envList,
		Cwd:         cwd,
		AgentBinary: s.cfg.AgentBinary,
		UserNS:      userns,
		CgroupsPath: s.cgroupPath(sb.ID),
		Limits:      limitsOf(sb.Resources),
	})
}

func limitsOf(r store.Resources) runtime.Limits {
	return runtime.Limits{CPU: r.CPU, MemoryBytes: r.MemoryMB << 20, Pids: r.Pids}
}

// prepareRoot creates the working directory and the agent's mount point
// inside the sandbox's root, symlink-safely (the image and the sandbox's own
// files are untrusted), owned by the sandbox's root.
func prepareRoot(rootDir, cwd string, m *idmap.Map) error {
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return err
	}
	defer root.Close()
	uid := 0
	if m != nil {
		uid = int(m.HostID)
	}
	for _, d := range []string{cwd, runtime.AgentDir} {
		rel := strings.TrimPrefix(filepath.Clean(d), "/")
		if rel == "" {
			continue
		}
		if _, err := root.Lstat(rel); err == nil {
			continue
		}
		if err := root.MkdirAll(rel, 0o755); err != nil {
			return fmt.Errorf("preparing %s in the sandbox: %w", d, err)
		}
		if err := root.Lchown(rel, uid, uid); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// The agent's bind mount needs a file to mount onto.
	agentRel := strings.TrimPrefix(runtime.AgentPath, "/")
	if _, err := root.Lstat(agentRel); err != nil {
		f, err := root.OpenFile(agentRel, os.O_CREATE|os.O_WRONLY, 0o755)
		if err != nil {
			return fmt.Errorf("preparing the agent's mount point: %w", err)
		}
		f.Close()
	}
	return nil
}

// Package testdaemon starts the real `sbx serve` binary on a loopback port
// with its own state directory, for end-to-end tests and benchmarks. It can
// kill the daemon with SIGKILL and start it again on the same state, as a
// crash would.
package testdaemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sbx-sh/sbx/internal/image"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// Daemon is a running sbx daemon process.
type Daemon struct {
	Bin      string
	StateDir string
	RunDir   string
	Addr     string
	URL      string
	AdminKey string
	LogPath  string
	Args     []string
	// CgroupParent is unique per test daemon, so its leak check sees only
	// its own sandboxes.
	CgroupParent string
	// Bridge, Table and Subnet are the daemon's own sandbox network
	// (bridge name, nftables table, IPv4 subnet), unique per test daemon.
	Bridge, Table, Subnet string

	cmd  *exec.Cmd
	done chan error
}

// Build compiles sbx-agent and sbx (with the agent next to it) into dir and
// returns the sbx path. root is the module root.
func Build(ctx context.Context, root, dir string) (string, error) {
	for _, b := range []struct{ out, pkg string }{
		{filepath.Join(dir, "sbx-agent"), "./cmd/sbx-agent"},
		{filepath.Join(dir, "sbx"), "./cmd/sbx"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("building %s: %w\n%s", b.pkg, err, out)
		}
	}
	return filepath.Join(dir, "sbx"), nil
}

// ModuleRoot finds the directory holding go.mod above the working directory.
func ModuleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		p := filepath.Dir(d)
		if p == d {
			return "", errors.New("go.mod not found")
		}
		d = p
	}
}

// Start runs `bin serve` with state in dir/state and sockets in dir/run
// (dir should be short: unix socket paths are limited) on a free loopback
// port, and waits until it answers /healthz.
func Start(ctx context.Context, bin, dir string, args ...string) (*Daemon, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	d := &Daemon{
		Bin: bin, StateDir: filepath.Join(dir, "state"), RunDir: filepath.Join(dir, "run"),
		Addr: addr, URL: "http://" + addr, LogPath: filepath.Join(dir, "daemon.log"), Args: args,
		CgroupParent: fmt.Sprintf("/sbx-test-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6),
	}
	r := rand.Uint32()
	d.Bridge = fmt.Sprintf("sbxt%06x", r&0xffffff)
	d.Table = d.Bridge
	d.Subnet = fmt.Sprintf("10.%d.%d.0/24", 200+(r>>24)%50, (r>>8)&0xff)
	return d, d.start(ctx)
}

func (d *Daemon) start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(d.LogPath), 0o711); err != nil {
		return err
	}
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"serve", "--listen", d.Addr, "--state-dir", d.StateDir, "--run-dir", d.RunDir, "--log-level", "debug", "--cgroup-parent", d.CgroupParent,
		"--network-bridge", d.Bridge, "--network-table", d.Table, "--network-subnet", d.Subnet}, d.Args...)
	d.cmd = exec.Command(d.Bin, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group, so a test's ^C does not reach it first.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(d.cmd, d.done)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(d.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-d.done:
			return fmt.Errorf("sbx serve exited: %v\n%s", err, d.Log())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sbx serve did not answer within 60s\n%s", d.Log())
		}
	}
	key, err := os.ReadFile(filepath.Join(d.StateDir, "admin.key"))
	if err != nil {
		return err
	}
	d.AdminKey = strings.TrimSpace(string(key))
	return nil
}

// Log returns the daemon's log so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// Kill9 kills the daemon with SIGKILL, as a crash would, and waits for it.
func (d *Daemon) Kill9() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Stop asks the daemon to shut down gracefully and waits for it. Once no
// sandbox is left, the daemon's cgroup parent is removed too.
func (d *Daemon) Stop() error {
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		for _, ctrl := range []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "hugetlb", "systemd", "unified"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", ctrl, d.CgroupParent))
		}
		d.removeNetwork()
		return err
	case <-time.After(60 * time.Second):
		d.Kill9()
		return errors.New("daemon did not stop within 60s of SIGTERM")
	}
}

// removeNetwork deletes the daemon's bridge and nftables table once no
// sandbox uses them (the daemon itself keeps them: sandboxes outlive it).
func (d *Daemon) removeNetwork() {
	if ports, _ := os.ReadDir(filepath.Join("/sys/class/net", d.Bridge, "brif")); len(ports) > 0 {
		return
	}
	exec.Command("nft", "delete", "table", "inet", d.Table).Run()
	exec.Command("ip", "link", "delete", d.Bridge).Run()
}

// Restart starts the daemon again on the same state and port.
func (d *Daemon) Restart(ctx context.Context) error { return d.start(ctx) }

// Pid is the daemon's process id.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Leaks lists what exists on the host for this daemon's sandboxes: runtime
// containers, sandbox directories, agent sockets, mounts, cgroups, network
// namespaces, veths on its bridge and sandbox chains or map entries in its
// nftables table. With
// every sandbox deleted it must be empty.
func (d *Daemon) Leaks() []string {
	var leaks []string
	classes, _ := os.ReadDir(filepath.Join(d.RunDir, "runtime"))
	for _, c := range classes {
		ents, _ := os.ReadDir(filepath.Join(d.RunDir, "runtime", c.Name()))
		for _, e := range ents {
			if e.IsDir() {
				leaks = append(leaks, c.Name()+" container "+e.Name())
			}
		}
	}
	ents, _ := os.ReadDir(filepath.Join(d.StateDir, "sandboxes"))
	for _, e := range ents {
		leaks = append(leaks, "directory "+e.Name())
	}
	socks, _ := os.ReadDir(filepath.Join(d.RunDir, "agents"))
	for _, e := range socks {
		leaks = append(leaks, "socket "+e.Name())
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		prefix := filepath.Join(d.StateDir, "sandboxes") + "/"
		for _, line := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], prefix) {
				leaks = append(leaks, "mount "+f[4])
			}
		}
	}
	netns, _ := os.ReadDir(filepath.Join(d.RunDir, "netns"))
	for _, e := range netns {
		leaks = append(leaks, "netns "+e.Name())
	}
	ports, _ := os.ReadDir(filepath.Join("/sys/class/net", d.Bridge, "brif"))
	for _, e := range ports {
		leaks = append(leaks, "veth "+e.Name())
	}
	if out, err := exec.Command("nft", "list", "table", "inet", d.Table).CombinedOutput(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if l := strings.TrimSpace(line); strings.HasPrefix(l, "chain sb-") || strings.Contains(l, "jump sb-") {
				leaks = append(leaks, "nft "+strings.TrimSuffix(l, " {"))
			}
		}
	}
	for _, ctrl := range []string{"memory", "pids", "cpu", "unified"} {
		cg, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", ctrl, d.CgroupParent))
		for _, e := range cg {
			if e.IsDir() {
				leaks = append(leaks, "cgroup "+ctrl+"/"+e.Name())
			}
		}
	}
	return leaks
}

// ImportRootfs imports a root filesystem directory into the daemon as a
// single-layer image of the admin tenant (seen by every tenant), through the
// public API. work holds the temporary archive.
func (d *Daemon) ImportRootfs(ctx context.Context, rootfs, ref, work string, cfg ispec.ImageConfig) error {
	tarPath := filepath.Join(work, "image.tar")
	if err := image.WriteRootfsArchive(rootfs, ref, tarPath, cfg); err != nil {
		return err
	}
	defer os.Remove(tarPath)
	f, err := os.Open(tarPath)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = sbx.New(d.URL, d.AdminKey).ImportImage(ctx, f, ref)
	return err
}

// ImportBusybox builds the busybox test image and imports it as ref.
func (d *Daemon) ImportBusybox(ctx context.Context, ref, work string) error {
	rootfs := filepath.Join(work, "busybox-rootfs")
	if err := image.BuildBusyboxRootfs(ctx, rootfs); err != nil {
		return err
	}
	defer os.RemoveAll(rootfs)
	return d.ImportRootfs(ctx, rootfs, ref, work, image.BusyboxConfig)
}

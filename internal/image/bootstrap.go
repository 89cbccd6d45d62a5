package image

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	ispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// DefaultPackages make the default image: Python with the data stack,
// Node.js with npm, git, curl and the usual tools.
var DefaultPackages = []string{
	"python3", "python3-pip", "python3-numpy", "python3-matplotlib", "nodejs", "npm",
	"git", "curl", "ca-certificates", "procps", "iproute2",
}

// DefaultConfig is the image config of the default image.
var DefaultConfig = ispec.ImageConfig{
	Env: []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "MPLBACKEND=Agg", "PIP_BREAK_SYSTEM_PACKAGES=1",
	},
	WorkingDir: "/root",
	Cmd:        []string{"/bin/sh", "-c", "exec sleep infinity"},
}

// BootstrapOptions describe a Debian rootfs built with debootstrap.
type BootstrapOptions struct {
	Suite    string   // default "bookworm"
	Mirror   string   // default: the host's own Debian mirror from its apt sources
	Packages []string // default DefaultPackages
	// NPM lists npm packages installed globally (e.g. a TypeScript runner);
	// skipped with a log line when the npm registry cannot be reached.
	NPM      []string
	CacheDir string    // finished rootfs tarballs, keyed by the options
	Log      io.Writer // progress of the build
}

// BuildDebian builds a Debian rootfs in dir with debootstrap, or unpacks
// the cached result of an identical earlier build.
func BuildDebian(ctx context.Context, dir string, o BootstrapOptions) error {
	if o.Suite == "" {
		o.Suite = "bookworm"
	}
	if o.Packages == nil {
		o.Packages = DefaultPackages
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Mirror == "" {
		m, err := HostMirror()
		if err != nil {
			return err
		}
		o.Mirror = m
	}
	key := sha256.Sum256([]byte(strings.Join([]string{o.Suite, o.Mirror, strings.Join(o.Packages, ","), strings.Join(o.NPM, ",")}, "|")))
	cached := filepath.Join(o.CacheDir, "rootfs-"+hex.EncodeToString(key[:8])+".tar")
	if f, err := os.Open(cached); err == nil && o.CacheDir != "" {
		defer f.Close()
		fmt.Fprintf(o.Log, "using the cached rootfs %s\n", cached)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return Unpack(f, dir)
	}
	npmFailed, err := debootstrap(ctx, dir, o)
	if err != nil {
		return err
	}
	if o.CacheDir != "" && !npmFailed {
		if err := writeCache(dir, cached); err != nil {
			fmt.Fprintf(o.Log, "not caching the rootfs: %v\n", err)
		}
	}
	return nil
}

// debootstrap builds the tree; npmFailed reports that the npm packages
// were skipped (such a tree is not cached).
func debootstrap(ctx context.Context, rootfs string, o BootstrapOptions) (npmFailed bool, err error) {
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return false, fmt.Errorf("debootstrap not found: install the debootstrap package")
	}
	run := func(name string, args ...string) error {
		fmt.Fprintf(o.Log, "+ %s %s\n", name, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Stdout, cmd.Stderr = o.Log, o.Log
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LANG=C.UTF-8")
		return cmd.Run()
	}
	// debootstrap's own resolver cannot configure large dependency trees
	// (npm's): make a minimal system, then let apt inside it install.
	if err := run("debootstrap", "--variant=minbase", o.Suite, rootfs, o.Mirror); err != nil {
		return false, fmt.Errorf("debootstrap: %w", err)
	}
	sources := fmt.Sprintf("deb %s %s main\ndeb %s %s-updates main\n", o.Mirror, o.Suite, o.Mirror, o.Suite)
	if err := os.WriteFile(filepath.Join(rootfs, "etc/apt/sources.list"), []byte(sources), 0o644); err != nil {
		return false, err
	}
	os.WriteFile(filepath.Join(rootfs, "etc/resolv.conf"), mustRead("/etc/resolv.conf"), 0o644)
	proc := filepath.Join(rootfs, "proc")
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return false, fmt.Errorf("mounting /proc in the build root: %w", err)
	}
	defer unix.Unmount(proc, unix.MNT_DETACH)
	if err := run("chroot", rootfs, "apt-get", "update", "-qq"); err != nil {
		return false, fmt.Errorf("apt-get update in the build root: %w", err)
	}
	install := append([]string{rootfs, "apt-get", "install", "-y", "-qq", "--no-install-recommends"}, o.Packages...)
	if err := run("chroot", install...); err != nil {
		return false, fmt.Errorf("installing packages in the build root: %w", err)
	}
	run("chroot", rootfs, "apt-get", "clean")
	if len(o.NPM) > 0 {
		// The host's npm (configured for this machine's network) installs
		// into the tree's /usr/local; the tree's own npm is the fallback.
		var err error
		if host, lerr := exec.LookPath("npm"); lerr == nil {
			err = run(host, append([]string{"install", "-g", "--no-audit", "--no-fund", "--prefix", filepath.Join(rootfs, "usr/local")}, o.NPM...)...)
		} else {
			err = run("chroot", append([]string{rootfs, "npm", "install", "-g", "--no-audit", "--no-fund"}, o.NPM...)...)
		}
		if err != nil {
			fmt.Fprintf(o.Log, "skipping npm packages %v: %v\n", o.NPM, err)
			npmFailed = true
		}
		os.RemoveAll(filepath.Join(rootfs, "root/.npm"))
	}
	// Slim: package lists, caches, docs, man pages, locales but C.
	for _, p := range []string{"var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info", "var/log", "tmp"} {
		os.RemoveAll(filepath.Join(rootfs, p))
		os.MkdirAll(filepath.Join(rootfs, p), 0o755)
	}
	os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777|os.ModeSticky)
	if ents, err := os.ReadDir(filepath.Join(rootfs, "usr/share/locale")); err == nil {
		for _, e := range ents {
			if e.Name() != "locale.alias" && !strings.HasPrefix(e.Name(), "C") {
				os.RemoveAll(filepath.Join(rootfs, "usr/share/locale", e.Name()))
			}
		}
	}
	os.WriteFile(filepath.Join(rootfs, "etc/resolv.conf"), nil, 0o644)
	return npmFailed, nil
}

func mustRead(p string) []byte { b, _ := os.ReadFile(p); return b }

func writeCache(rootfs, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	err = TarDir(rootfs, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

// HostMirror returns the Debian mirror the host's apt uses (its first
// "deb" source of the main archive), so that bootstrapping needs no
// configuration and names no host of its own.
func HostMirror() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if u := firstURI(f, true); u != "" {
			return u, nil
		}
	}
	if u := firstURI("/etc/apt/sources.list", false); u != "" {
		return u, nil
	}
	return "", fmt.Errorf("no Debian mirror found in the host's apt sources: pass one explicitly")
}

func firstURI(path string, deb822 bool) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if deb822 {
			if v, ok := strings.CutPrefix(line, "URIs:"); ok {
				for _, u := range strings.Fields(v) {
					if strings.HasSuffix(strings.TrimSuffix(u, "/"), "/debian") {
						return u
					}
				}
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "deb" {
			for _, u := range f[1:] {
				if strings.HasPrefix(u, "http") && strings.HasSuffix(strings.TrimSuffix(u, "/"), "/debian") {
					return u
				}
			}
		}
	}
	return ""
}

// Package config is the daemon's configuration: one typed, versioned
// struct, read from a TOML file (unknown keys are an error) and overridden
// by flags. `sbx config default` prints Default() as TOML.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is the daemon's configuration, version 1.
type Config struct {
	Version  int    `toml:"version" comment:"configuration format version"`
	Listen   string `toml:"listen" comment:"address of the HTTP API"`
	StateDir string `toml:"state_dir" comment:"images, sandboxes and the database live here"`
	// RunDir holds sockets and the runtimes' state; it must be short (unix
	// socket paths are limited to 107 bytes) and is best on a tmpfs.
	RunDir   string `toml:"run_dir" comment:"agent sockets and runtime state (keep the path short)"`
	LogLevel string `toml:"log_level" comment:"debug, info, warn or error"`

	DefaultImage   string `toml:"default_image" comment:"image of a sandbox created without one"`
	DefaultRuntime string `toml:"default_runtime" comment:"runtime class of a sandbox created without one"`
	// AllowVulnerableRuntime lets the daemon start with a runtime version
	// that has known container escapes.
	AllowVulnerableRuntime bool                     `toml:"allow_vulnerable_runtime"`
	Runtimes               map[string]RuntimeConfig `toml:"runtimes" comment:"runtime classes a sandbox can choose"`

	Defaults Resources `toml:"defaults" comment:"resources of a sandbox that asks for none"`
	Maximums Resources `toml:"maximums" comment:"the most a sandbox may ask for (tenants' own limits may be lower)"`

	StopGrace Duration `toml:"stop_grace" comment:"time between SIGTERM and SIGKILL on stop"`
	// CgroupParent is the cgroup under which sandboxes' cgroups are made;
	// two daemons on one host need different ones.
	CgroupParent string `toml:"cgroup_parent" comment:"parent cgroup of all sandboxes (unique per daemon)"`
	// AgentPath uses this sbx-agent binary instead of the one embedded in sbx.
	AgentPath string `toml:"agent_path,omitempty"`

	Toolbox Toolbox `toml:"toolbox" comment:"limits of exec, code runs, files and sessions"`
	Pools   Pools   `toml:"pools" comment:"work done ahead of creates"`

	Network Network `toml:"network" comment:"sandbox networking: bridge, NAT and the egress policy in nftables"`

	Lifecycle Lifecycle `toml:"lifecycle" comment:"automatic stop, archive and delete of sandboxes (durations in seconds)"`
	Archive   Archive   `toml:"archive" comment:"where archived sandboxes' writable layers are kept"`
	Volumes   Volumes   `toml:"volumes" comment:"named persistent volumes (ext4 images under state_dir/volumes)"`
	Preview   Preview   `toml:"preview" comment:"preview URLs: sandbox ports served over HTTP and WebSocket by the daemon"`
}

// Lifecycle is the operator's auto-stop/archive/delete policy: defaults
// for sandboxes that set none, and caps (0 = no cap; with a cap, "never"
// is refused).
type Lifecycle struct {
	AutoStopSeconds       int64    `toml:"auto_stop_seconds" comment:"stop a started sandbox after this long without activity (0 = never)"`
	AutoArchiveSeconds    int64    `toml:"auto_archive_seconds" comment:"archive a stopped sandbox after this long (0 = never)"`
	AutoDeleteSeconds     int64    `toml:"auto_delete_seconds" comment:"delete a stopped sandbox after this long (0 = as soon as it stops, -1 = never)"`
	MaxAutoStopSeconds    int64    `toml:"max_auto_stop_seconds" comment:"cap on auto_stop_seconds (0 = none)"`
	MaxAutoArchiveSeconds int64    `toml:"max_auto_archive_seconds" comment:"cap on auto_archive_seconds (0 = none)"`
	MaxAutoDeleteSeconds  int64    `toml:"max_auto_delete_seconds" comment:"cap on auto_delete_seconds (0 = none)"`
	MaxKeepalive          Duration `toml:"max_keepalive" comment:"longest keep-alive lease one call may take"`
	Interval              Duration `toml:"interval" comment:"how often the timers are checked"`
}

// Archive configures the archive store.
type Archive struct {
	Dir string `toml:"dir" comment:"local directory of the archive store (empty: <state_dir>/archive)"`
}

// Volumes limits named volumes.
type Volumes struct {
	MaxSizeMB        int64 `toml:"max_size_mb" comment:"largest volume"`
	MaxPerTenant     int   `toml:"max_per_tenant" comment:"volumes one tenant may have"`
	MaxTotalMBTenant int64 `toml:"max_total_mb_per_tenant" comment:"sum of one tenant's volume sizes (0 = no cap beyond the two above)"`
}

// Preview configures preview URLs.
type Preview struct {
	// Domain is the host (and port, if clients use one) of the host
	// form; wildcard DNS *.Domain must lead to the daemon.
	Domain string `toml:"domain" comment:"host form {port}-{id}.DOMAIN (wildcard DNS to the daemon), with :port if clients use one; empty: preview.localhost:<listen port>"`
	Scheme string `toml:"scheme" comment:"http or https: the scheme of the URLs handed out (https when TLS is terminated in front of sbx)"`
	// BaseURL is the daemon's address in path-form links.
	BaseURL string `toml:"base_url" comment:"the daemon's address in path-form links /preview/{id}/{port}/ (empty: the address each API request came to)"`
}

// Pools size what is prepared ahead of requests.
type Pools struct {
	DiskImages int `toml:"disk_images" comment:"ready-made writable-layer images of the default disk size (0 = mkfs at each create)"`
}

// Network configures sandbox networking.
type Network struct {
	// Enabled sets up the bridge, forwarding and the nftables table at
	// start and offers mode bridge; off, every sandbox is mode none.
	Enabled     bool   `toml:"enabled" comment:"offer mode bridge (needs nftables and a bridge on this host)"`
	DefaultMode string `toml:"default_mode" comment:"none (loopback only, fastest) or bridge: the mode of a sandbox that asks for none"`
	Bridge      string `toml:"bridge" comment:"bridge name (unique per daemon)"`
	Table       string `toml:"table" comment:"nftables table (family inet) of sbx's rules (unique per daemon)"`
	Subnet      string `toml:"subnet" comment:"IPv4 subnet of the sandboxes; the bridge takes its first address"`
	// DNS are the nameservers sandboxes use; empty takes the host's
	// (loopback stub resolvers skipped).
	DNS           []string `toml:"dns" comment:"nameservers for sandboxes; empty: the host's /etc/resolv.conf, loopback ones skipped"`
	DefaultPolicy Policy   `toml:"default_policy" comment:"egress policy of a bridged sandbox that asks for none"`
}

// Policy is an egress policy: block_all, or deny then allow lists of CIDRs.
type Policy struct {
	BlockAll bool     `toml:"block_all"`
	Allow    []string `toml:"allow" comment:"only these CIDRs (empty: all not denied)"`
	Deny     []string `toml:"deny" comment:"never these CIDRs (checked first)"`
}

// Toolbox limits what one request or one sandbox may use of the toolbox.
type Toolbox struct {
	MaxUploadMB        int64 `toml:"max_upload_mb" comment:"largest file or archive upload (the sandbox's disk quota applies too)"`
	MaxExecOutputMB    int   `toml:"max_exec_output_mb" comment:"output kept per stream of a buffered (non-streaming) exec; more is cut with a marker"`
	MaxConcurrentExecs int   `toml:"max_concurrent_execs" comment:"commands and code runs running at once in one sandbox"`
}

// RuntimeConfig is one runtime class.
type RuntimeConfig struct {
	Path string `toml:"path" comment:"runtime binary (looked up in PATH)"`
	// UserNS runs each sandbox in its own user namespace with a unique
	// unprivileged id range.
	UserNS bool     `toml:"userns"`
	Flags  []string `toml:"flags,omitempty" comment:"global flags passed before every runtime command"`
}

// Resources are per-sandbox resources.
type Resources struct {
	CPU      float64 `toml:"cpu" comment:"cores"`
	MemoryMB int64   `toml:"memory_mb"`
	DiskMB   int64   `toml:"disk_mb"`
	Pids     int64   `toml:"pids"`
}

// Duration is a time.Duration written as "10s" in TOML.
type Duration struct{ time.Duration }

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Default returns the default configuration.
func Default() Config {
	return Config{
		Version:        1,
		Listen:         "127.0.0.1:7070",
		StateDir:       "/var/lib/sbx",
		RunDir:         "/run/sbx",
		LogLevel:       "info",
		DefaultImage:   "sbx/default:latest",
		DefaultRuntime: "crun",
		Runtimes: map[string]RuntimeConfig{
			"crun": {Path: "crun", UserNS: true},
			"runc": {Path: "runc", UserNS: true},
			// gVisor (runsc) is not offered yet: it cannot inherit the
			// agent's listening socket (no --preserve-fds).
		},
		Defaults:     Resources{CPU: 1, MemoryMB: 1024, DiskMB: 10240, Pids: 1024},
		Maximums:     Resources{CPU: 8, MemoryMB: 16384, DiskMB: 102400, Pids: 32768},
		StopGrace:    Duration{10 * time.Second},
		CgroupParent: "/sbx",
		Toolbox:      Toolbox{MaxUploadMB: 20480, MaxExecOutputMB: 10, MaxConcurrentExecs: 64},
		Pools:        Pools{DiskImages: 8},
		Lifecycle: Lifecycle{AutoDeleteSeconds: -1, MaxKeepalive: Duration{24 * time.Hour},
			Interval: Duration{10 * time.Second}},
		Volumes: Volumes{MaxSizeMB: 100 << 10, MaxPerTenant: 100},
		Network: Network{
			Enabled: true, DefaultMode: "none", Bridge: "sbx0", Table: "sbx", Subnet: "10.88.0.0/16",
			DNS: []string{},
			// Private and shared address space is the operator's
			// network: closed unless a sandbox's policy says otherwise.
			DefaultPolicy: Policy{Allow: []string{}, Deny: []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"}},
		},
		Preview: Preview{Scheme: "http"},
	}
}

// Load reads a TOML file over the defaults.
func Load(path string) (Config, error) {
	c := Default()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("reading config: %w", err)
	}
	dec := toml.NewDecoder(bytes.NewReader(b)).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		var sme *toml.StrictMissingError
		if errors.As(err, &sme) {
			return c, fmt.Errorf("config %s: %s", path, sme.String())
		}
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, c.Validate()
}

// Validate checks the configuration for mistakes.
func (c Config) Validate() error {
	if c.Version != 1 {
		return fmt.Errorf("config: unsupported version %d (want 1)", c.Version)
	}
	if _, ok := c.Runtimes[c.DefaultRuntime]; !ok {
		return fmt.Errorf("config: default_runtime %q is not in [runtimes]", c.DefaultRuntime)
	}
	d, m := c.Defaults, c.Maximums
	if d.CPU <= 0 || d.MemoryMB <= 0 || d.DiskMB <= 0 || d.Pids <= 0 {
		return fmt.Errorf("config: every [defaults] resource must be positive")
	}
	if d.CPU > m.CPU || d.MemoryMB > m.MemoryMB || d.DiskMB > m.DiskMB || d.Pids > m.Pids {
		return fmt.Errorf("config: [defaults] exceed [maximums]")
	}
	if !strings.HasPrefix(c.CgroupParent, "/") || strings.Contains(c.CgroupParent, "..") {
		return fmt.Errorf("config: cgroup_parent %q must be an absolute cgroup path", c.CgroupParent)
	}
	if t := c.Toolbox; t.MaxUploadMB <= 0 || t.MaxExecOutputMB <= 0 || t.MaxConcurrentExecs <= 0 {
		return fmt.Errorf("config: every [toolbox] limit must be positive")
	}
	if l := c.Lifecycle; l.AutoStopSeconds < 0 || l.AutoArchiveSeconds < 0 || l.AutoDeleteSeconds < -1 ||
		l.MaxAutoStopSeconds < 0 || l.MaxAutoArchiveSeconds < 0 || l.MaxAutoDeleteSeconds < 0 {
		return fmt.Errorf("config: [lifecycle] durations must be >= 0 (auto_delete_seconds >= -1)")
	}
	if l := c.Lifecycle; l.Interval.Duration < 100*time.Millisecond || l.MaxKeepalive.Duration <= 0 {
		return fmt.Errorf("config: lifecycle.interval must be at least 100ms and lifecycle.max_keepalive positive")
	}
	if v := c.Volumes; v.MaxSizeMB < 16 || v.MaxPerTenant < 0 || v.MaxTotalMBTenant < 0 {
		return fmt.Errorf("config: volumes: max_size_mb must be at least 16, and the other limits not negative")
	}
	if c.Pools.DiskImages < 0 || c.Pools.DiskImages > 10000 {
		return fmt.Errorf("config: pools.disk_images must be between 0 and 10000")
	}
	if n := c.Network; n.Enabled || n.DefaultMode == "bridge" {
		if !n.Enabled {
			return fmt.Errorf("config: network.default_mode bridge needs network.enabled")
		}
		if pf, err := netip.ParsePrefix(n.Subnet); err != nil || !pf.Addr().Is4() || pf.Bits() > 30 {
			return fmt.Errorf("config: network.subnet %q must be an IPv4 CIDR of at most /30", n.Subnet)
		}
		if n.Bridge == "" || len(n.Bridge) > 15 || n.Table == "" {
			return fmt.Errorf("config: network.bridge (1 to 15 bytes) and network.table must be set")
		}
		for _, d := range n.DNS {
			if a, err := netip.ParseAddr(d); err != nil || !a.Is4() {
				return fmt.Errorf("config: network.dns %q must be an IPv4 address", d)
			}
		}
	}
	if m := c.Network.DefaultMode; m != "none" && m != "bridge" {
		return fmt.Errorf("config: network.default_mode must be none or bridge, not %q", m)
	}
	if err := c.Preview.validate(); err != nil {
		return err
	}
	if len(c.RunDir) > 60 {
		return fmt.Errorf("config: run_dir %q is too long for unix socket paths (max 60 bytes)", c.RunDir)
	}
	return nil
}

func (p Preview) validate() error {
	if p.Scheme != "http" && p.Scheme != "https" {
		return fmt.Errorf("config: preview.scheme must be http or https, not %q", p.Scheme)
	}
	if d := p.Domain; d != "" {
		host := d
		if h, port, err := net.SplitHostPort(d); err == nil {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("config: preview.domain %q has a bad port", d)
			}
			host = h
		}
		if !validDomain(host) {
			return fmt.Errorf("config: preview.domain %q must be a DNS name such as preview.example.com (no scheme, no path)", d)
		}
	}
	if b := p.BaseURL; b != "" {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			return fmt.Errorf("config: preview.base_url %q must be like http://host:port", b)
		}
	}
	return nil
}

// validDomain accepts lowercase DNS names of at least two labels.
func validDomain(d string) bool {
	labels := strings.Split(d, ".")
	if len(d) > 200 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, c := range l {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// Encode renders c as TOML.
func (c Config) Encode() ([]byte, error) { return toml.Marshal(c) }

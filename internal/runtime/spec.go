package runtime

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SpecVersion is the runtime-spec version written into configurations:
// the newest that every supported runtime accepts (crun 1.8 rejects 1.1+).
const SpecVersion = "1.0.2"

// AgentDir is where the agent binary appears inside every sandbox.
const AgentDir = "/.sbx"

// AgentPath is the agent binary's path inside every sandbox.
const AgentPath = AgentDir + "/sbx-agent"

// IDMap maps a sandbox's ids 0..Size-1 onto host ids HostID..HostID+Size-1.
type IDMap struct {
	HostID uint32
	Size   uint32
}

// Limits are the cgroup limits of a sandbox.
type Limits struct {
	CPU         float64 // cores; 0 = unlimited
	MemoryBytes int64   // 0 = unlimited
	Pids        int64   // 0 = unlimited
}

// SpecOptions describe the container of one sandbox.
type SpecOptions struct {
	ID       string
	Hostname string
	// Rootfs is the mounted root filesystem, absolute or relative to the bundle.
	Rootfs string
	// Init is the argv of the sandbox's init as seen inside it; normally the
	// agent with its arguments.
	Init []string
	Env  []string
	Cwd  string
	// AgentBinary is the host path of sbx-agent, bind-mounted read-only at
	// AgentPath.
	AgentBinary string
	// UserNS runs the sandbox in its own user namespace with this mapping;
	// nil shares the host's (root in the sandbox is then root on the host).
	UserNS *IDMap
	// NetNS joins an existing network namespace; "" creates an empty one
	// (loopback only).
	NetNS       string
	CgroupsPath string
	Limits      Limits
	Annotations map[string]string
}

// DefaultCapabilities is the capability set of a sandbox's processes:
// Docker's default set without NET_RAW, MKNOD and AUDIT_WRITE, which
// untrusted code does not need (ping works through ping_group_range).
var DefaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
}

// MaskedPaths are hidden from sandboxes (moby's list).
var MaskedPaths = []string{
	"/proc/asound",
	"/proc/acpi",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/sys/firmware",
	"/sys/devices/virtual/powercap",
}

// ReadonlyPaths are read-only in sandboxes (moby's list).
var ReadonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// Spec builds the OCI runtime configuration of a sandbox with sbx's secure
// defaults: its own mount, pid, ipc, uts, network and cgroup namespaces (and
// user namespace when opts.UserNS is set), Docker's default seccomp profile,
// a reduced capability set, no_new_privs, masked and read-only /proc paths, a
// read-only /sys, a deny-all device cgroup with the standard devices allowed,
// and memory, pids and CPU limits.
func Spec(opts SpecOptions) (*specs.Spec, error) {
	if opts.ID == "" || opts.Rootfs == "" || len(opts.Init) == 0 {
		return nil, fmt.Errorf("spec: ID, Rootfs and Init are required")
	}
	if opts.AgentBinary == "" || !filepath.IsAbs(opts.AgentBinary) {
		return nil, fmt.Errorf("spec: AgentBinary must be an absolute path")
	}
	cwd := opts.Cwd
	if cwd == "" {
		cwd = "/"
	}
	caps := append([]string(nil), DefaultCapabilities...)
	s := &specs.Spec{
		Version:  SpecVersion,
		Hostname: opts.Hostname,
		Root:     &specs.Root{Path: opts.Rootfs},
		Process: &specs.Process{
			Args: opts.Init,
			Env:  opts.Env,
			Cwd:  cwd,
			User: specs.User{UID: 0, GID: 0},
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Mounts:      defaultMounts(opts.AgentBinary),
		Annotations: opts.Annotations,
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace, Path: opts.NetNS},
				{Type: specs.CgroupNamespace},
			},
			CgroupsPath:   opts.CgroupsPath,
			MaskedPaths:   append([]string(nil), MaskedPaths...),
			ReadonlyPaths: append([]string(nil), ReadonlyPaths...),
			Sysctl: map[string]string{
				// Unprivileged ICMP sockets, so ping works without CAP_NET_RAW.
				"net.ipv4.ping_group_range": "0 2147483647",
			},
			Resources: resources(opts.Limits),
		},
	}
	if m := opts.UserNS; m != nil {
		if m.HostID == 0 || m.Size == 0 {
			return nil, fmt.Errorf("spec: user namespace mapping must not be the identity")
		}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostID, Size: m.Size}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: m.HostID, Size: m.Size}}
		// The ping range must lie within the namespace's groups.
		s.Linux.Sysctl["net.ipv4.ping_group_range"] = fmt.Sprintf("0 %d", m.Size-1)
	}
	sc, err := seccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("spec: seccomp profile: %w", err)
	}
	s.Linux.Seccomp = sc
	return s, nil
}

func defaultMounts(agentBinary string) []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		{Destination: AgentPath, Type: "bind", Source: agentBinary, Options: []string{"bind", "ro", "nosuid", "nodev"}},
	}
}

func resources(l Limits) *specs.LinuxResources {
	r := LimitResources(l)
	r.Devices = defaultDevices()
	return r
}

// LimitResources renders limits as OCI resources, for a live update.
func LimitResources(l Limits) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if l.MemoryBytes > 0 {
		m := l.MemoryBytes
		r.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if l.Pids > 0 {
		p := l.Pids
		r.Pids = &specs.LinuxPids{Limit: &p}
	}
	if l.CPU > 0 {
		period := uint64(100000)
		quota := int64(l.CPU * float64(period))
		r.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	return r
}

// defaultDevices denies every device and allows only the ones a sandbox's
// /dev holds: null, zero, full, random, urandom, tty, console, ptmx and pts.
func defaultDevices() []specs.LinuxDeviceCgroup {
	allow := func(major, minor int64) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: &major, Minor: &minor, Access: "rwm"}
	}
	pts := int64(136)
	return []specs.LinuxDeviceCgroup{
		{Allow: false, Type: "a", Access: "rwm"},
		allow(1, 3), allow(1, 5), allow(1, 7), allow(1, 8), allow(1, 9),
		allow(5, 0), allow(5, 1), allow(5, 2),
		{Allow: true, Type: "c", Major: &pts, Access: "rwm"}, // any minor
	}
}

// Hostname makes a valid hostname from a sandbox name.
func Hostname(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() == 63 {
			break
		}
	}
	h := strings.Trim(b.String(), "-")
	if h == "" {
		return "sandbox"
	}
	return h
}

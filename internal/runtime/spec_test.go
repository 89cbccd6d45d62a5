package runtime

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// dockerDefaultCaps is Docker's default capability set; a sandbox must never
// get more.
var dockerDefaultCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
	"CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

func testSpec(t *testing.T, mod func(*SpecOptions)) *specs.Spec {
	t.Helper()
	o := SpecOptions{
		ID: "abc", Hostname: "abc", Rootfs: "rootfs", Init: []string{AgentPath, "init"},
		AgentBinary: "/var/lib/sbx/bin/sbx-agent-0123", CgroupsPath: "/sbx/abc",
		UserNS: &IDMap{HostID: 1 << 20, Size: 65536},
		Limits: Limits{CPU: 1.5, MemoryBytes: 512 << 20, Pids: 256},
	}
	if mod != nil {
		mod(&o)
	}
	s, err := Spec(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSpecHardened(t *testing.T) {
	s := testSpec(t, nil)
	p := s.Process
	if !p.NoNewPrivileges {
		t.Error("no_new_privs is off")
	}
	for name, set := range map[string][]string{"bounding": p.Capabilities.Bounding, "effective": p.Capabilities.Effective,
		"permitted": p.Capabilities.Permitted, "inheritable": p.Capabilities.Inheritable, "ambient": p.Capabilities.Ambient} {
		for _, c := range set {
			if !slices.Contains(dockerDefaultCaps, c) {
				t.Errorf("%s capability %s is outside Docker's default set", name, c)
			}
		}
		for _, c := range []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_SYS_MODULE", "CAP_MKNOD", "CAP_NET_RAW"} {
			if slices.Contains(set, c) {
				t.Errorf("%s capabilities contain %s", name, c)
			}
		}
	}
	if len(p.Capabilities.Inheritable) != 0 || len(p.Capabilities.Ambient) != 0 {
		t.Error("inheritable or ambient capabilities are set (CVE-2022-27650 class)")
	}
	// Seccomp: the moby default profile, default action an error, and the
	// escape-relevant syscalls not allowed unconditionally.
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActErrno {
		t.Fatalf("seccomp missing or not deny-by-default: %+v", sc)
	}
	for _, sys := range []string{"keyctl", "add_key", "request_key", "bpf", "mount", "unshare", "setns", "kexec_load",
		"init_module", "open_by_handle_at", "userfaultfd", "io_uring_setup", "perf_event_open"} {
		for _, r := range sc.Syscalls {
			if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, sys) {
				t.Errorf("seccomp allows %s unconditionally", sys)
			}
		}
	}
	// Namespaces: all of them private, none joined from the host.
	want := []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace,
		specs.NetworkNamespace, specs.CgroupNamespace, specs.UserNamespace}
	for _, w := range want {
		i := slices.IndexFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == w })
		if i < 0 {
			t.Errorf("namespace %s missing", w)
		} else if s.Linux.Namespaces[i].Path != "" {
			t.Errorf("namespace %s joins %s", w, s.Linux.Namespaces[i].Path)
		}
	}
	if m := s.Linux.UIDMappings; len(m) != 1 || m[0].HostID == 0 || m[0].ContainerID != 0 {
		t.Errorf("uid mapping is the identity or missing: %+v", m)
	}
	for _, mp := range MaskedPaths {
		if !slices.Contains(s.Linux.MaskedPaths, mp) {
			t.Errorf("%s not masked", mp)
		}
	}
	for _, rp := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"} {
		if !slices.Contains(s.Linux.ReadonlyPaths, rp) {
			t.Errorf("%s not read-only", rp)
		}
	}
	// Mounts: /sys read-only; no bind source outside the agent binary.
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && !slices.Contains(m.Options, "ro") {
			t.Error("/sys is writable")
		}
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			if m.Source != "/var/lib/sbx/bin/sbx-agent-0123" || m.Destination != AgentPath || !slices.Contains(m.Options, "ro") {
				t.Errorf("unexpected bind mount %+v", m)
			}
		}
	}
	// Devices: deny all first, then only character devices.
	d := s.Linux.Resources.Devices
	if len(d) == 0 || d[0].Allow || d[0].Access != "rwm" || d[0].Type != "a" {
		t.Errorf("device cgroup does not start with deny-all: %+v", d)
	}
	for _, r := range d[1:] {
		if r.Type != "c" || r.Major == nil || *r.Major < 0 {
			t.Errorf("device rule allows too much: %+v", r)
		}
	}
	// Limits.
	r := s.Linux.Resources
	if r.Memory == nil || *r.Memory.Limit != 512<<20 {
		t.Error("memory limit not set")
	}
	if r.Pids == nil || *r.Pids.Limit != 256 {
		t.Error("pids limit not set")
	}
	if r.CPU == nil || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 {
		t.Error("cpu quota not set")
	}
	if s.Linux.CgroupsPath != "/sbx/abc" {
		t.Error("cgroups path not set")
	}
}

func TestSpecRejects(t *testing.T) {
	for name, mod := range map[string]func(*SpecOptions){
		"identity userns": func(o *SpecOptions) { o.UserNS = &IDMap{HostID: 0, Size: 65536} },
		"relative agent":  func(o *SpecOptions) { o.AgentBinary = "sbx-agent" },
		"no init":         func(o *SpecOptions) { o.Init = nil },
	} {
		t.Run(name, func(t *testing.T) {
			o := SpecOptions{ID: "a", Rootfs: "r", Init: []string{"x"}, AgentBinary: "/a"}
			mod(&o)
			if _, err := Spec(o); err == nil {
				t.Error("accepted")
			}
		})
	}
}

func TestHostname(t *testing.T) {
	for in, want := range map[string]string{"My_Box.1": "my-box-1", "--": "sandbox", strings.Repeat("a", 80): strings.Repeat("a", 63)} {
		if got := Hostname(in); got != want {
			t.Errorf("Hostname(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	for _, tc := range []struct {
		class, v string
		ok       bool
	}{
		{"runc", "1.1.5", false}, {"runc", "1.1.12", false}, {"runc", "1.2.7", false}, {"runc", "1.2.8", true},
		{"runc", "1.3.2", false}, {"runc", "1.3.3", true}, {"runc", "1.4.0-rc.2", false}, {"runc", "1.4.0-rc.3", true},
		{"runc", "1.4.0", true}, {"runc", "1.5.2", true}, {"crun", "1.4.3", false}, {"crun", "1.8.1", true},
		{"runsc", "0.0.0", true},
	} {
		err := CheckVersion(tc.class, tc.v)
		if (err == nil) != tc.ok {
			t.Errorf("CheckVersion(%s, %s) = %v, want ok=%v", tc.class, tc.v, err, tc.ok)
		}
	}
	if v, err := parseVersion("crun version 1.8.1\ncommit: f8a0\n"); err != nil || v != "1.8.1" {
		t.Errorf("parseVersion = %q, %v", v, err)
	}
	if v, err := parseVersion("runc version 1.5.2\nspec: 1.3.0\n"); err != nil || v != "1.5.2" {
		t.Errorf("parseVersion = %q, %v", v, err)
	}
}

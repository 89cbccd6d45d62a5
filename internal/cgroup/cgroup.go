// Package cgroup reads sandboxes' cgroup statistics (OOM kills, memory,
// pids, CPU) and cleans up cgroups left behind. Limits themselves are set by
// the OCI runtime from the runtime configuration; this package only looks.
//
// Both layouts are supported: v1 (one hierarchy per controller, as on sbx's
// current machines) and v2 (unified). The v2 path is tested against a fake
// cgroupfs made of plain files; the v1 path against the real kernel.
package cgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Stats are a cgroup's counters.
type Stats struct {
	OOMKills      int64
	MemoryBytes   int64 // current usage
	Pids          int64 // current tasks
	CPUUsageNanos int64 // total CPU time
}

// FS reads cgroups mounted at a root (normally /sys/fs/cgroup).
type FS struct {
	Root string
	V2   bool
}

// Detect inspects root and returns the FS for its layout.
func Detect(root string) (FS, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return FS{}, fmt.Errorf("cgroup: %w", err)
	}
	return FS{Root: root, V2: st.Type == unix.CGROUP2_SUPER_MAGIC}, nil
}

// v1Controllers are the hierarchies a sandbox's cgroup appears in under v1.
var v1Controllers = []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc", "systemd"}

// Stats reads the counters of the cgroup at path (the OCI cgroupsPath).
func (fs FS) Stats(path string) (Stats, error) {
	var s Stats
	var err error
	if fs.V2 {
		dir := filepath.Join(fs.Root, path)
		if s.OOMKills, err = keyed(filepath.Join(dir, "memory.events"), "oom_kill"); err != nil {
			return s, err
		}
		s.MemoryBytes, _ = single(filepath.Join(dir, "memory.current"))
		s.Pids, _ = single(filepath.Join(dir, "pids.current"))
		usec, _ := keyed(filepath.Join(dir, "cpu.stat"), "usage_usec")
		s.CPUUsageNanos = usec * 1000
		return s, nil
	}
	mem := filepath.Join(fs.Root, "memory", path)
	if s.OOMKills, err = keyed(filepath.Join(mem, "memory.oom_control"), "oom_kill"); err != nil {
		return s, err
	}
	s.MemoryBytes, _ = single(filepath.Join(mem, "memory.usage_in_bytes"))
	s.Pids, _ = single(filepath.Join(fs.Root, "pids", path, "pids.current"))
	s.CPUUsageNanos, _ = single(filepath.Join(fs.Root, "cpuacct", path, "cpuacct.usage"))
	return s, nil
}

// Exists reports whether the cgroup at path exists.
func (fs FS) Exists(path string) bool {
	p := filepath.Join(fs.Root, path)
	if !fs.V2 {
		p = filepath.Join(fs.Root, "memory", path)
	}
	_, err := os.Stat(p)
	return err == nil
}

// Remove deletes the (empty) cgroup at path in every hierarchy. Missing
// directories are not an error.
func (fs FS) Remove(path string) error {
	dirs := []string{filepath.Join(fs.Root, path)}
	if !fs.V2 {
		dirs = dirs[:0]
		for _, c := range v1Controllers {
			dirs = append(dirs, filepath.Join(fs.Root, c, path))
		}
	}
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// List returns the names of the child cgroups of parent (in the memory
// hierarchy under v1), used to find leftovers.
func (fs FS) List(parent string) ([]string, error) {
	dir := filepath.Join(fs.Root, parent)
	if !fs.V2 {
		dir = filepath.Join(fs.Root, "memory", parent)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// PrepareHybrid mounts the v1 hugetlb hierarchy when the host runs v1
// controllers but left hugetlb to the (otherwise empty) v2 mount: crun
// refuses such a hybrid layout. Harmless otherwise.
func PrepareHybrid(root string) (mounted bool, err error) {
	fs, err := Detect(root)
	if err != nil || fs.V2 {
		return false, err
	}
	if _, err := os.Stat(filepath.Join(root, "memory")); err != nil {
		return false, nil
	}
	d := filepath.Join(root, "hugetlb")
	if _, err := os.Stat(filepath.Join(d, "tasks")); err == nil {
		return false, nil
	}
	b, err := os.ReadFile("/proc/cgroups")
	if err != nil || !bytes.Contains(b, []byte("hugetlb")) {
		return false, nil
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return false, err
	}
	if err := unix.Mount("cgroup", d, "cgroup", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "hugetlb"); err != nil {
		return false, fmt.Errorf("mounting the hugetlb cgroup hierarchy: %w", err)
	}
	return true, nil
}

func single(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// keyed reads "key value" lines and returns key's value (0 if absent).
func keyed(p, key string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, sc.Err()
}

package agent

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one process as /proc/<pid>/stat describes it.
type proc struct{ pid, ppid, pgid, sid int }

// procTable reads every process of the sandbox (the agent's pid namespace).
func procTable() []proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	out := make([]proc, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...: comm may hold spaces
		// and parentheses, so fields count from the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 4 || f[0] == "Z" {
			continue // zombies are dead already; the reaper collects them
		}
		ppid, _ := strconv.Atoi(f[1])
		pgid, _ := strconv.Atoi(f[2])
		sid, _ := strconv.Atoi(f[3])
		out = append(out, proc{pid, ppid, pgid, sid})
	}
	return out
}

// descendants lists the processes below root.
func descendants(table []proc, root int) []int {
	parent := make(map[int]int, len(table))
	for _, p := range table {
		parent[p.pid] = p.ppid
	}
	var out []int
	for _, p := range table {
		q := p.pid
		for i := 0; i < 128 && q > 1; i++ {
			q = parent[q]
			if q == root {
				out = append(out, p.pid)
				break
			}
		}
	}
	return out
}

// hasEnv reports whether process pid's environment holds the entry kv
// ("K=V").
func hasEnv(pid int, kv string) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	return bytes.Contains(append([]byte{0}, env...), []byte("\x00"+kv+"\x00"))
}

// holdsFile reports whether process pid has one of the files at paths
// open (as /proc/<pid>/fd shows their names).
func holdsFile(pid int, paths []string) bool {
	if len(paths) == 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		target, err := os.Readlink(dir + e.Name())
		if err != nil {
			continue
		}
		for _, p := range paths {
			if target == p {
				return true
			}
		}
	}
	return false
}

// killOwned SIGKILLs, until none is left (or a few seconds have passed),
// every process that owns reports as belonging to the thing being ended.
// Rescanning catches children forked while the first ones died, and
// orphans re-parented to the agent, whose parent links are gone.
func killOwned(owns func(p proc) bool) {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, p := range procTable() {
			if p.pid != os.Getpid() && owns(p) {
				syscall.Kill(p.pid, syscall.SIGKILL)
				n++
			}
		}
		if n == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

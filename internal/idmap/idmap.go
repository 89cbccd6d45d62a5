// Package idmap allocates host uid/gid ranges to sandboxes and creates user
// namespaces for them.
//
// Every user-namespaced sandbox owns one slot: host ids
// Base+slot*Size ... Base+(slot+1)*Size-1, mapped to 0...Size-1 inside, so
// root in a sandbox is an unprivileged, unique uid on the host. Image layers
// stay owned by 0:0 on disk and are shown to each sandbox through idmapped
// mounts (see internal/rootfs), which need a user-namespace file descriptor:
// NamespaceFD makes one by starting a short-lived helper process in a new
// user namespace with the mapping and opening its /proc/PID/ns/user.
package idmap

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// Map maps ids 0..Size-1 of a sandbox onto HostID..HostID+Size-1.
type Map struct {
	HostID uint32
	Size   uint32
}

// Ranges defines the slots: slot n is [Base+n*Size, Base+(n+1)*Size).
type Ranges struct {
	Base uint32 // first host id of slot 0
	Size uint32 // ids per sandbox
}

// DefaultRanges starts above the ids of ordinary host users and gives each
// sandbox the 65536 ids images expect (nobody is 65534).
var DefaultRanges = Ranges{Base: 1 << 20, Size: 65536}

// MaxSlot is the largest slot that keeps host ids below 2^32-1.
func (r Ranges) MaxSlot() int { return int((uint64(1<<32-2) - uint64(r.Base)) / uint64(r.Size)) }

// Slot returns the mapping of slot n.
func (r Ranges) Slot(n int) Map {
	return Map{HostID: r.Base + uint32(n)*r.Size, Size: r.Size}
}

// FirstFree returns the lowest slot not in used (ascending).
func FirstFree(used []int) int {
	next := 0
	for _, u := range used {
		if u == next {
			next++
		} else if u > next {
			break
		}
	}
	return next
}

// holdArg0 is the argv[0] under which the sbx binary (or a test binary)
// acts as the namespace-holding helper; see init.
const holdArg0 = "sbx-userns-hold"

func init() {
	if len(os.Args) > 0 && os.Args[0] == holdArg0 {
		// Hold the user namespace until the parent closes our stdin.
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
}

// NamespaceFD returns an open file for a new user namespace with mapping m
// for both uids and gids. The namespace lives as long as the file is open.
func NamespaceFD(m Map) (*os.File, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	cmd := &exec.Cmd{
		Path: self,
		Args: []string{holdArg0},
		Env:  []string{},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostID), Size: int(m.Size)}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(m.HostID), Size: int(m.Size)}},
			Pdeathsig:   syscall.SIGKILL,
		},
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("user namespace: starting helper: %w", err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	stdin.Close()
	werr := cmd.Wait()
	if err != nil {
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	if werr != nil {
		f.Close()
		return nil, fmt.Errorf("user namespace: helper: %w", werr)
	}
	return f, nil
}

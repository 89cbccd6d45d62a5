// Package runtime runs sandboxes through an OCI runtime: it writes the
// runtime configuration (Spec) and drives the runtime's command line
// (crun, runc and runsc share one driver, OCI).
//
// The daemon is a child subreaper (see SetSubreaper): a container's init is
// forked by the runtime, which then exits, so the init is re-parented to the
// daemon, which reaps it itself (the host's init reaps slowly). Exits are
// observed through pidfds, which also work for an init that is no longer the
// daemon's child after a daemon restart.
//
// Runtime is the narrow interface the sandbox service uses; Fake implements
// it without a kernel for tests of the layers above.
package runtime

import (
	"context"
	"errors"
	"os"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Status is a container's status as the runtime reports it.
type Status string

// Container statuses.
const (
	StatusCreated Status = "created"
	StatusRunning Status = "running"
	StatusStopped Status = "stopped"
	StatusPaused  Status = "paused"
)

// State is a container's state.
type State struct {
	ID     string
	Status Status
	Pid    int
}

// ErrNotExist is returned for a container the runtime does not know.
var ErrNotExist = errors.New("container does not exist")

// Runtime runs containers from bundles.
type Runtime interface {
	// Name is the runtime class, e.g. "crun".
	Name() string
	// Run creates and starts the container in bundle; files are passed to
	// its init as fds 3, 4, ... It returns the init's host pid.
	Run(ctx context.Context, id, bundle string, files []*os.File) (pid int, err error)
	// State reports a container's state; ErrNotExist if unknown.
	State(ctx context.Context, id string) (State, error)
	// List lists the runtime's containers.
	List(ctx context.Context) ([]State, error)
	// Kill sends sig to the container's init.
	Kill(ctx context.Context, id string, sig syscall.Signal) error
	// Delete removes a stopped container; deleting an unknown one is not an error.
	Delete(ctx context.Context, id string) error
	// Update changes a running container's cgroup limits.
	Update(ctx context.Context, id string, r *specs.LinuxResources) error
}

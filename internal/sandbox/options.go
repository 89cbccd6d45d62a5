package sandbox

import (
	"github.com/sbx-sh/sbx/internal/store"
)

// CreateOptions describe a new sandbox.
type CreateOptions struct {
	TenantID string
	Name     string // optional; unique per tenant among live sandboxes; default: the ID
	Image    string // reference or digest; default: the operator's default image
	// Template names one of the tenant's templates to create from instead
	// of an image (exclusive with Image); see SetTemplates.
	Template string
	Runtime  string // runtime class; default: the operator's default
	Env      map[string]string
	Labels   map[string]string
	// Resources: zero fields take the operator's defaults.
	Resources  store.Resources
	User       string
	Workdir    string
	Entrypoint []string // overrides the image's entrypoint
	Cmd        []string // overrides the image's cmd
	// Network: nil takes the operator's default mode and policy.
	Network *NetworkOptions
	// Lifecycle: nil fields take the operator's defaults.
	Lifecycle *LifecycleOptions
	// Volumes are mounted at every start, in this order.
	Volumes []VolumeOptions
	// Public serves the sandbox's preview URLs without a token.
	Public bool
}

// ResizeOptions change a sandbox's limits; zero fields stay as they are.
// CPU and memory change live; disk may only grow, and only while stopped.
type ResizeOptions struct {
	CPU      float64
	MemoryMB int64
	DiskMB   int64
	Pids     int64
}

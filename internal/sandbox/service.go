package sandbox

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/store"
)

var errTODO = errors.New("not implemented yet")

// Service is the sandbox lifecycle service. TEMPORARY SKELETON: the method
// set is the contract; bodies are being written.
type Service struct{}

// Create makes a sandbox and returns once it is started (its agent answers).
func (s *Service) Create(ctx context.Context, opts CreateOptions) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// Get returns a sandbox of the tenant by ID or name.
func (s *Service) Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// List lists sandboxes.
func (s *Service) List(ctx context.Context, f store.SandboxFilter) ([]store.Sandbox, string, error) {
	return nil, "", errTODO
}

// Start starts a stopped sandbox.
func (s *Service) Start(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// Stop stops a sandbox: SIGTERM, then SIGKILL after grace (0 = default).
func (s *Service) Stop(ctx context.Context, tenantID, idOrName string, grace time.Duration) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// Restart stops and starts a sandbox.
func (s *Service) Restart(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// Delete destroys a sandbox and everything it holds.
func (s *Service) Delete(ctx context.Context, tenantID, idOrName string) error { return errTODO }

// Resize changes a sandbox's limits.
func (s *Service) Resize(ctx context.Context, tenantID, idOrName string, r ResizeOptions) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// SetLabels replaces a sandbox's labels.
func (s *Service) SetLabels(ctx context.Context, tenantID, idOrName string, labels map[string]string) (store.Sandbox, error) {
	return store.Sandbox{}, errTODO
}

// Exec starts a command in a started sandbox and streams it.
func (s *Service) Exec(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (*agent.Process, error) {
	return nil, errTODO
}

// Logs returns the entrypoint's output; with follow it stays open.
func (s *Service) Logs(ctx context.Context, tenantID, idOrName string, follow bool) (io.ReadCloser, error) {
	return nil, errTODO
}

// Events lists a sandbox's events after a sequence number.
func (s *Service) Events(ctx context.Context, tenantID, idOrName string, afterSeq int64) ([]store.Event, error) {
	return nil, errTODO
}

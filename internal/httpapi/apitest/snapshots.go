package apitest

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/httpapi"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

var _ httpapi.Snapshots = (*Fake)(nil)

func (f *Fake) snapshotEvent(sb store.Sandbox, msg string) {
	f.events = append(f.events, store.Event{Seq: int64(len(f.events) + 1), SandboxID: sb.ID, TenantID: sb.TenantID,
		Type: "snapshot", Message: msg, Time: f.now})
}

func (f *Fake) findSnapshot(sb store.Sandbox, key string) (int, store.Snapshot, error) {
	for i, sn := range f.snapshots[sb.ID] {
		if sn.ID == key || sn.Name == key {
			return i, sn, nil
		}
	}
	return -1, store.Snapshot{}, errdefs.Publicf(errdefs.ErrNotFound, "snapshot %q not found", key)
}

// CreateSnapshot implements httpapi.Snapshots: the copy is instant and its
// checksum made up.
func (f *Fake) CreateSnapshot(ctx context.Context, tenantID, idOrName, name string) (store.Snapshot, sandbox.CopyStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("CreateSnapshot"); err != nil {
		return store.Snapshot{}, sandbox.CopyStats{}, err
	}
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return store.Snapshot{}, sandbox.CopyStats{}, err
	}
	if sb.State != store.StateStarted && sb.State != store.StateStopped {
		return store.Snapshot{}, sandbox.CopyStats{}, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s", sb.ID, sb.State)
	}
	id := f.nextID("snap-")
	if name == "" {
		name = id
	}
	if _, _, err := f.findSnapshot(sb, name); err == nil {
		f.snapshotEvent(sb, "create snapshot failed: name taken")
		return store.Snapshot{}, sandbox.CopyStats{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "sandbox %s already has a snapshot named %q", sb.ID, name)
	}
	if f.snapshots == nil {
		f.snapshots = map[string][]store.Snapshot{}
	}
	sn := store.Snapshot{ID: id, SandboxID: sb.ID, TenantID: sb.TenantID, Name: name, Size: 4096,
		Checksum: fmt.Sprintf("sha256:%064d", f.seq), CreatedAt: f.tick()}
	f.snapshots[sb.ID] = append(f.snapshots[sb.ID], sn)
	f.snapshotEvent(sb, "create snapshot "+sn.ID)
	var st sandbox.CopyStats
	if sb.State == store.StateStarted {
		st.Pause = 1500 * time.Microsecond
	}
	st.Took = 2 * time.Millisecond
	return sn, st, nil
}

// ListSnapshots implements httpapi.Snapshots.
func (f *Fake) ListSnapshots(ctx context.Context, tenantID, idOrName string) ([]store.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	return append([]store.Snapshot(nil), f.snapshots[sb.ID]...), nil
}

// GetSnapshot implements httpapi.Snapshots.
func (f *Fake) GetSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) (store.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return store.Snapshot{}, err
	}
	_, sn, err := f.findSnapshot(sb, snapshot)
	return sn, err
}

// RestoreSnapshot implements httpapi.Snapshots; SetError("RestoreSnapshot")
// stands in for a corrupt snapshot.
func (f *Fake) RestoreSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) (store.Sandbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return store.Sandbox{}, err
	}
	_, sn, err := f.findSnapshot(sb, snapshot)
	if err != nil {
		return store.Sandbox{}, err
	}
	if err := f.fail("RestoreSnapshot"); err != nil {
		f.snapshotEvent(sb, "restore snapshot "+sn.ID+" failed: "+errdefs.Message(err))
		return store.Sandbox{}, err
	}
	f.snapshotEvent(sb, "restore snapshot "+sn.ID)
	return sb, nil
}

// DeleteSnapshot implements httpapi.Snapshots.
func (f *Fake) DeleteSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb, err := f.get(tenantID, idOrName)
	if err != nil {
		return err
	}
	i, sn, err := f.findSnapshot(sb, snapshot)
	if err != nil {
		return err
	}
	f.snapshots[sb.ID] = append(f.snapshots[sb.ID][:i:i], f.snapshots[sb.ID][i+1:]...)
	f.snapshotEvent(sb, "delete snapshot "+sn.ID)
	return nil
}

// Clone implements httpapi.Snapshots.
func (f *Fake) Clone(ctx context.Context, tenantID, idOrName string, o sandbox.CloneOptions) (store.Sandbox, sandbox.CopyStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail("Clone"); err != nil {
		return store.Sandbox{}, sandbox.CopyStats{}, err
	}
	src, err := f.get(tenantID, idOrName)
	if err != nil {
		return store.Sandbox{}, sandbox.CopyStats{}, err
	}
	if o.Name != "" {
		if _, err := f.get(tenantID, o.Name); err == nil {
			return store.Sandbox{}, sandbox.CopyStats{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "a sandbox named %q already exists", o.Name)
		}
	}
	if o.Resources.DiskMB != 0 && o.Resources.DiskMB < src.Resources.DiskMB {
		return store.Sandbox{}, sandbox.CopyStats{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "a clone's disk cannot be smaller than its source's")
	}
	cl := src
	cl.ID = f.nextID("sb-")
	cl.Name = o.Name
	if cl.Name == "" {
		cl.Name = cl.ID
	}
	cl.Env = maps.Clone(src.Env)
	if len(o.Env) > 0 {
		if cl.Env == nil {
			cl.Env = map[string]string{}
		}
		maps.Copy(cl.Env, o.Env)
	}
	if o.Labels != nil {
		cl.Labels = o.Labels
	}
	if o.Runtime != "" {
		cl.Runtime = o.Runtime
	}
	cl.Resources = cl.Resources.With(o.Resources)
	now := f.tick()
	cl.State, cl.Desired, cl.CreatedAt, cl.UpdatedAt, cl.StartedAt = store.StateStarted, store.StateStarted, now, now, &now
	cl.UIDSlot = f.seq
	f.sandboxes[cl.ID] = cl
	f.event(cl, store.StateCreating, store.StateStarted, "")
	return cl, sandbox.CopyStats{Took: time.Millisecond}, nil
}

// Reset implements httpapi.Snapshots.
func (f *Fake) Reset(ctx context.Context, tenantID, idOrName string, mode sandbox.ResetMode) (store.Sandbox, error) {
	if mode != "" && mode != sandbox.ResetSoft && mode != sandbox.ResetHard {
		return store.Sandbox{}, errdefs.Publicf(errdefs.ErrInvalidArgument, "reset mode %q: want soft or hard", mode)
	}
	return f.transition(tenantID, idOrName, "Reset", func(sb *store.Sandbox) error {
		sb.State, sb.Desired = store.StateStarted, store.StateStarted
		return nil
	})
}

// RestartWith implements httpapi.Snapshots.
func (f *Fake) RestartWith(ctx context.Context, tenantID, idOrName string, o sandbox.RestartOptions) (store.Sandbox, error) {
	return f.transition(tenantID, idOrName, "Restart", func(sb *store.Sandbox) error {
		if o.Resources.DiskMB != 0 && o.Resources.DiskMB < sb.Resources.DiskMB {
			return errdefs.Publicf(errdefs.ErrInvalidArgument, "the disk cannot shrink")
		}
		if len(o.Env) > 0 {
			env := maps.Clone(sb.Env)
			if env == nil {
				env = map[string]string{}
			}
			maps.Copy(env, o.Env)
			sb.Env = env
		}
		sb.Resources = sb.Resources.With(o.Resources)
		sb.State, sb.Desired = store.StateStarted, store.StateStarted
		return nil
	})
}

package httpapi

import (
	"time"

	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// The wire shapes are the SDK's. Absent maps and lists go out as {} and []
// so that clients never have to tell null from empty; times are UTC.

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func orEmptyList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil || t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func toSandbox(s store.Sandbox) sbx.Sandbox {
	desired := s.Desired
	if desired == "" {
		desired = s.State
	}
	// UIDSlot is deliberately not copied: host uid layout is the
	// operator's business.
	return sbx.Sandbox{
		ID: s.ID, Name: s.Name, TenantID: s.TenantID,
		Image: s.Image, ImageDigest: s.ImageDigest, Runtime: s.Runtime,
		State: string(s.State), DesiredState: string(desired),
		Env: orEmptyMap(s.Env), Labels: orEmptyMap(s.Labels),
		Resources:  sbx.Resources{CPU: s.Resources.CPU, MemoryMB: s.Resources.MemoryMB, DiskMB: s.Resources.DiskMB, Pids: s.Resources.Pids},
		User:       s.User,
		Workdir:    s.Workdir,
		Entrypoint: orEmptyList(s.Entrypoint), Cmd: orEmptyList(s.Cmd),
		ErrorReason: s.ErrorReason, ExitCode: s.ExitCode, OOMKills: s.OOMKills,
		Network:   toNetwork(s.Network),
		Lifecycle: toLifecycle(s.Lifecycle),
		Volumes:   toVolumeMounts(s.Volumes),
		Public:    s.Public,
		CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC(), StartedAt: utcPtr(s.StartedAt),
	}
}

func toMetrics(m sandbox.Metrics) sbx.Metrics {
	out := sbx.Metrics{
		Time: m.Time.UTC(), CPUSeconds: m.CPUSeconds, MemoryBytes: m.MemoryBytes, MemoryLimitBytes: m.MemoryLimitBytes,
		Pids: m.Pids, PidsLimit: m.PidsLimit, OOMKills: m.OOMKills, DiskUsedBytes: m.DiskUsedBytes, DiskLimitBytes: m.DiskLimitBytes,
	}
	if n := m.Network; n != nil {
		out.Network = &sbx.NetworkCounters{RxBytes: n.RxBytes, RxPackets: n.RxPackets, TxBytes: n.TxBytes, TxPackets: n.TxPackets}
	}
	return out
}

func toLifecycle(l store.Lifecycle) sbx.Lifecycle {
	out := sbx.Lifecycle{
		AutoStopSeconds: l.AutoStop, AutoArchiveSeconds: l.AutoArchive, AutoDeleteSeconds: l.AutoDelete,
		LastActivityAt: l.LastActivity.UTC(), KeepaliveUntil: utcPtr(l.KeepaliveUntil), StoppedAt: utcPtr(l.StoppedAt),
	}
	if a := l.Archive; a != nil {
		out.Archive = &sbx.ArchiveInfo{StoredBytes: a.Size, DataBytes: a.Data, DiskBytes: a.DiskSize, SHA256: a.SHA256,
			CreatedAt: a.CreatedAt.UTC()}
	}
	return out
}

func toNetwork(n store.Network) sbx.Network {
	mode := n.Mode
	if mode == "" {
		mode = sbx.NetworkNone
	}
	return sbx.Network{Mode: mode, IP: n.IP,
		NetworkPolicy: sbx.NetworkPolicy{BlockAll: n.BlockAll, Allow: orEmptyList(n.Allow), Deny: orEmptyList(n.Deny)}}
}

func toEvent(e store.Event) sbx.Event {
	return sbx.Event{
		Seq: e.Seq, SandboxID: e.SandboxID, Type: e.Type, From: string(e.From), To: string(e.To),
		Message: e.Message, Time: e.Time.UTC(),
	}
}

func toImage(i image.Image) sbx.Image {
	return sbx.Image{
		Ref: i.Ref, Digest: i.Digest, Size: i.Size, CreatedAt: i.CreatedAt.UTC(), Shared: i.Shared,
		Config: sbx.ImageConfig{
			Entrypoint: orEmptyList(i.Config.Entrypoint), Cmd: orEmptyList(i.Config.Cmd), Env: orEmptyList(i.Config.Env),
			WorkingDir: i.Config.WorkingDir, User: i.Config.User,
		},
	}
}

func toImages(l []image.Image) []sbx.Image {
	out := make([]sbx.Image, 0, len(l))
	for _, i := range l {
		out = append(out, toImage(i))
	}
	return out
}

func toLimits(l store.Limits) sbx.Limits {
	return sbx.Limits{MaxSandboxes: l.MaxSandboxes, MaxCPU: l.MaxCPU, MaxMemoryMB: l.MaxMemoryMB, MaxDiskMB: l.MaxDiskMB, MaxPids: l.MaxPids}
}

func toTenant(t store.Tenant) sbx.Tenant {
	return sbx.Tenant{ID: t.ID, Name: t.Name, Admin: t.Admin, Limits: toLimits(t.Limits), CreatedAt: t.CreatedAt.UTC()}
}

func toKey(k store.APIKey) sbx.APIKey {
	return sbx.APIKey{ID: k.ID, TenantID: k.TenantID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt.UTC()}
}

package sandbox

import (
	"context"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/network"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Metrics is a started sandbox's resource use at one moment.
type Metrics struct {
	Time             time.Time
	CPUSeconds       float64 // CPU time used since the start
	MemoryBytes      int64
	MemoryLimitBytes int64
	Pids, PidsLimit  int64
	OOMKills         int64
	DiskUsedBytes    int64 // on the writable layer
	DiskLimitBytes   int64
	// Network is nil for a sandbox without network.
	Network *network.Counters
}

// Metrics reads a started sandbox's resource use from its cgroup, its
// writable layer and its veth. Reading them is not activity.
func (s *Service) Metrics(ctx context.Context, tenantID, idOrName string) (Metrics, error) {
	sb, err := s.Get(ctx, tenantID, idOrName)
	if err != nil {
		return Metrics{}, err
	}
	if sb.State != store.StateStarted || s.instance(sb.ID) == nil {
		return Metrics{}, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s, not started", sb.ID, sb.State)
	}
	st, err := s.cfg.Cgroups.Stats(s.cgroupPath(sb.ID))
	if err != nil {
		return Metrics{}, err
	}
	m := Metrics{
		Time:       s.now(),
		CPUSeconds: float64(st.CPUUsageNanos) / 1e9, MemoryBytes: st.MemoryBytes, MemoryLimitBytes: sb.Resources.MemoryMB << 20,
		Pids: st.Pids, PidsLimit: sb.Resources.Pids, OOMKills: st.OOMKills,
	}
	if m.DiskUsedBytes, m.DiskLimitBytes, err = rootfs.DiskUsage(s.dir(sb.ID)); err != nil {
		return Metrics{}, err
	}
	if bridged(sb) && s.cfg.Network != nil {
		c, err := s.cfg.Network.Counters(ctx, sb.ID)
		if err != nil {
			return Metrics{}, err
		}
		m.Network = &c
	}
	return m, nil
}

package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/runtime"
	"github.com/sbx-sh/sbx/internal/store"
)

// Recover reconciles the records with what the runtimes, the mount table and
// the state directory hold, once at start-up, before serving:
//
//   - a sandbox recorded as running whose container runs is re-adopted (its
//     agent must answer);
//   - one whose container is gone or dead is released and marked error;
//   - an operation cut short is finished: creating rolls back (the create
//     never answered), starting/stopping/destroying complete;
//   - runtime containers, sandbox directories, cgroups and networks
//     (namespaces, veths, nftables chains) that belong to no live record are
//     removed; stopped sandboxes keep their network (and address).
func (s *Service) Recover(ctx context.Context) error {
	var all []store.Sandbox
	cursor := ""
	for {
		items, next, err := s.st.ListSandboxes(ctx, store.SandboxFilter{
			States: liveStates, Limit: 1000, Cursor: cursor,
		})
		if err != nil {
			return fmt.Errorf("recovering: %w", err)
		}
		all = append(all, items...)
		if next == "" {
			break
		}
		cursor = next
	}
	containers := map[string]runtime.State{}
	for name, rc := range s.cfg.Runtimes {
		list, err := rc.Runtime.List(ctx)
		if err != nil {
			s.log.Warn("listing runtime containers", "runtime", name, "err", err)
			continue
		}
		for _, c := range list {
			containers[c.ID] = c
		}
	}
	known := map[string]bool{}
	for _, sb := range all {
		known[sb.ID] = true
		c, hasContainer := containers[sb.ID]
		if err := s.recoverOne(ctx, sb, c, hasContainer); err != nil {
			s.log.Error("recovering sandbox", "sandbox", sb.ID, "err", err)
		}
	}
	s.sweep(ctx, known, containers)
	s.recoverVolumes(ctx)
	if s.cfg.Network != nil {
		live := map[string]bool{}
		for _, sb := range all {
			if got, err := s.st.GetSandbox(ctx, "", sb.ID); err == nil && got.State != store.StateDestroyed && bridged(got) {
				live[sb.ID] = true
			}
		}
		if err := s.cfg.Network.Sweep(ctx, func(id string) bool { return live[id] }); err != nil {
			s.log.Warn("removing leftover sandbox networks", "err", err)
		}
	}
	s.timers.Do(func() {
		s.wg.Add(1)
		go s.runLifecycle()
	})
	return nil
}

func (s *Service) recoverOne(ctx context.Context, sb store.Sandbox, c runtime.State, hasContainer bool) error {
	unlock := s.lock(sb.ID)
	defer unlock()
	log := s.log.With("sandbox", sb.ID)
	running := hasContainer && c.Status == runtime.StatusRunning
	switch sb.State {
	case store.StateCreating:
		// The create never answered its caller: roll it back.
		log.Info("rolling back an interrupted create")
		sb.Desired = store.StateDestroyed
		return s.destroyAdopted(ctx, &sb, c, running)
	case store.StateDestroying:
		log.Info("finishing an interrupted delete")
		return s.destroyAdopted(ctx, &sb, c, running)
	case store.StateStarted, store.StateStarting, store.StateStopping:
		if running {
			in, err := s.adopt(ctx, sb, c.Pid)
			if err == nil {
				// Re-check the network (and re-apply its policy): a
				// crash may have cut a policy change short.
				if _, err := s.setupNetwork(ctx, sb); err != nil {
					log.Error("re-adopting the sandbox's network", "err", err)
				}
				s.readoptVolumes(ctx, sb)
				s.watch(sb, in)
				if sb.State == store.StateStopping {
					log.Info("finishing an interrupted stop")
					return s.stop(ctx, &sb, s.cfg.StopGrace)
				}
				if sb.State != store.StateStarted {
					s.setState(&sb, store.StateStarted, "")
				}
				log.Info("re-adopted sandbox", "pid", c.Pid)
				return nil
			}
			log.Warn("re-adopting: the agent does not answer; killing the sandbox", "err", err)
			s.killContainer(ctx, sb, c.Pid)
		}
		if err := s.release(ctx, sb); err != nil {
			return err
		}
		if sb.State == store.StateStopping {
			s.setState(&sb, store.StateStopped, "")
			return nil
		}
		s.setState(&sb, store.StateError, "the sandbox stopped while the daemon was down")
		return nil
	case store.StateArchiving, store.StateRestoring, store.StateArchived:
		return s.recoverArchive(ctx, sb)
	case store.StateStopped, store.StateError, store.StateUnknown:
		// Nothing should run; release whatever is left.
		if running {
			s.killContainer(ctx, sb, c.Pid)
		}
		return s.release(ctx, sb)
	}
	return nil
}

func (s *Service) destroyAdopted(ctx context.Context, sb *store.Sandbox, c runtime.State, running bool) error {
	if running {
		s.killContainer(ctx, *sb, c.Pid)
	}
	if err := s.teardown(ctx, *sb); err != nil {
		return err
	}
	if sb.State == store.StateCreating {
		return s.st.DeleteSandbox(ctx, sb.ID)
	}
	s.setState(sb, store.StateDestroyed, "")
	return nil
}

// sweep removes what belongs to no live sandbox.
func (s *Service) sweep(ctx context.Context, known map[string]bool, containers map[string]runtime.State) {
	for id, c := range containers {
		if known[id] {
			continue
		}
		for name, rc := range s.cfg.Runtimes {
			if _, err := rc.Runtime.State(ctx, id); err != nil {
				continue
			}
			s.log.Info("removing a container of no sandbox", "container", id, "runtime", name)
			if c.Status == runtime.StatusRunning {
				rc.Runtime.Kill(ctx, id, syscall.SIGKILL)
				if p, err := runtime.OpenProcess(c.Pid); err == nil {
					p.Wait(ctx)
					p.Close()
				}
			}
			if err := rc.Runtime.Delete(ctx, id); err != nil {
				s.log.Warn("removing container", "container", id, "err", err)
			}
		}
	}
	dir := filepath.Join(s.cfg.StateDir, "sandboxes")
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if known[e.Name()] {
			continue
		}
		s.log.Info("removing files of no sandbox", "dir", e.Name())
		if err := rootfs.Remove(filepath.Join(dir, e.Name())); err != nil {
			s.log.Warn("removing leftover sandbox files", "dir", e.Name(), "err", err)
		}
	}
	socks, _ := os.ReadDir(filepath.Join(s.cfg.RunDir, "agents"))
	for _, e := range socks {
		if id, ok := strings.CutSuffix(e.Name(), ".sock"); ok && !known[id] {
			os.Remove(filepath.Join(s.cfg.RunDir, "agents", e.Name()))
		}
	}
	groups, _ := s.cfg.Cgroups.List(s.cfg.CgroupParent)
	for _, g := range groups {
		if !known[g] {
			if err := s.cfg.Cgroups.Remove(s.cfg.CgroupParent + "/" + g); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("removing leftover cgroup", "cgroup", g, "err", err)
			}
		}
	}
}

package sandbox

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
)

// ResetMode is how much a reset discards.
type ResetMode string

// Reset modes.
const (
	// ResetSoft kills every process (SIGKILL, no grace) and starts the
	// entrypoint again; the files are kept.
	ResetSoft ResetMode = "soft"
	// ResetHard also discards the writable layer: the sandbox starts again
	// on a fresh one, with the image's pristine tree. Its configuration
	// (env, resources, network, labels) and its snapshots are kept.
	ResetHard ResetMode = "hard"
)

// Reset resets a started, stopped or failed sandbox and leaves it started.
//
// Crash safety: a hard reset makes the fresh layer beside the old one
// (disk.img.fresh) and renames it over disk.img while the layer is
// unmounted, so the sandbox has one whole layer or the other; Recover
// removes a leftover fresh image and finishes the stop or start that was
// cut short as for any stop or start.
func (s *Service) Reset(ctx context.Context, tenantID, idOrName string, mode ResetMode) (store.Sandbox, error) {
	switch mode {
	case ResetSoft, ResetHard:
	case "":
		mode = ResetSoft
	default:
		return store.Sandbox{}, invalid("reset mode %q: want soft or hard", mode)
	}
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	s.Touch(sb.ID)
	err = s.reset(ctx, &sb, mode)
	msg := string(mode) + " reset"
	if err != nil {
		msg += " failed: " + errdefs.Message(err)
	}
	s.event(sb, "reset", "", "", msg)
	if err != nil {
		return sb, fmt.Errorf("resetting sandbox: %w", err)
	}
	s.log.Info("sandbox reset", "sandbox", sb.ID, "mode", mode)
	return sb, nil
}

func (s *Service) reset(ctx context.Context, sb *store.Sandbox, mode ResetMode) error {
	switch sb.State {
	case store.StateStarted, store.StateStopped, store.StateError:
	default:
		return errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s", sb.ID, sb.State)
	}
	if err := s.stopNow(ctx, sb); err != nil {
		return err
	}
	s.markResuming(sb)
	if mode == ResetHard {
		o := rootfs.Options{Dir: s.dir(sb.ID), IDMap: s.idmapOf(*sb), DiskBytes: sb.Resources.DiskMB << 20}
		if err := rootfs.Recreate(ctx, o); err != nil {
			return fmt.Errorf("making a fresh writable layer: %w", err)
		}
	}
	return s.startLocked(ctx, sb)
}

// stopNow kills a sandbox at once (SIGKILL to its init, which takes every
// process of the sandbox with it) and releases its mounts.
func (s *Service) stopNow(ctx context.Context, sb *store.Sandbox) error {
	if sb.State == store.StateStopped {
		return nil
	}
	sb.Desired = store.StateStopped
	s.setState(sb, store.StateStopping, "")
	if err := s.kill(ctx, *sb, 0); err != nil {
		return err
	}
	if err := s.release(context.WithoutCancel(ctx), *sb); err != nil {
		s.setState(sb, store.StateError, "stop failed: "+errdefs.Message(err))
		return fmt.Errorf("stopping sandbox: %w", err)
	}
	s.setState(sb, store.StateStopped, "")
	return nil
}

// markResuming records, on a sandbox stopped in the middle of an
// operation that ends by starting it (a restore or a reset), that it is to
// be started: Desired started while stopped. Recover then finishes the
// operation (recoverResume) if the daemon dies before the start.
func (s *Service) markResuming(sb *store.Sandbox) {
	sb.Desired = store.StateStarted
	s.setState(sb, sb.State, "")
}

// recoverResume finishes a restore or reset cut short after its stop (see
// markResuming): a staged layer left whole (a restore's verified copy or a
// hard reset's fresh image) is put in place, and the sandbox is started.
// It reports whether it handled the sandbox.
func (s *Service) recoverResume(ctx context.Context, sb *store.Sandbox) (bool, error) {
	if sb.State != store.StateStopped || sb.Desired != store.StateStarted {
		return false, nil
	}
	dir := s.dir(sb.ID)
	for _, staged := range []string{rootfs.DiskImage(dir) + ".rollback", rootfs.DiskImage(dir) + ".fresh"} {
		if _, err := os.Stat(staged); err != nil {
			continue
		}
		s.log.Info("finishing an interrupted restore or reset", "sandbox", sb.ID, "layer", filepath.Base(staged))
		if err := rootfs.Replace(ctx, dir, staged); err != nil {
			return true, err
		}
		break
	}
	s.recoverSnapshots(ctx, *sb) // what else was left half-made
	s.log.Info("starting a sandbox whose restore or reset was cut short", "sandbox", sb.ID)
	return true, s.startLocked(ctx, sb)
}

// startLocked starts a stopped sandbox; the caller holds its lock.
func (s *Service) startLocked(ctx context.Context, sb *store.Sandbox) error {
	img, err := s.images.Resolve(ctx, sb.TenantID, sb.ImageDigest)
	if err != nil {
		return fmt.Errorf("image %s: %w", sb.Image, err)
	}
	sb.Desired = store.StateStarted
	s.setState(sb, store.StateStarting, "")
	ph := newPhases()
	if err := s.start(ctx, sb, img, ph); err != nil {
		s.release(context.WithoutCancel(ctx), *sb)
		s.setState(sb, store.StateError, "start failed: "+errdefs.Message(err))
		return fmt.Errorf("starting sandbox: %w", err)
	}
	s.log.Info("sandbox started", "sandbox", sb.ID, ph.group())
	return nil
}

// mergeEnv returns a copy of env with over's variables set over it (nil
// when both are empty).
func mergeEnv(env, over map[string]string) map[string]string {
	out := maps.Clone(env)
	if len(over) > 0 {
		if out == nil {
			out = map[string]string{}
		}
		maps.Copy(out, over)
	}
	return out
}

// RestartOptions change a sandbox's configuration at a restart.
type RestartOptions struct {
	// Env is merged over the sandbox's environment.
	Env map[string]string
	// Resources: zero fields stay as they are; the disk may only grow.
	Resources store.Resources
}

// RestartWith stops a sandbox, applies o and starts it again. The new
// resources are checked against the maximums as at create.
func (s *Service) RestartWith(ctx context.Context, tenantID, idOrName string, o RestartOptions) (store.Sandbox, error) {
	if err := validateEnv(o.Env); err != nil {
		return store.Sandbox{}, err
	}
	r := o.Resources
	if r.CPU < 0 || r.MemoryMB < 0 || r.DiskMB < 0 || r.Pids < 0 {
		return store.Sandbox{}, invalid("resources must not be negative")
	}
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	s.Touch(sb.ID)
	if r.DiskMB > 0 && r.DiskMB < sb.Resources.DiskMB {
		return sb, invalid("the disk cannot shrink (%d MiB now)", sb.Resources.DiskMB)
	}
	next, err := s.nextResources(ctx, sb, r)
	if err != nil {
		return sb, err
	}
	if err := s.stop(ctx, &sb, 0); err != nil {
		return sb, err
	}
	changed := len(o.Env) > 0 || next != sb.Resources
	if next.DiskMB > sb.Resources.DiskMB {
		if err := rootfs.Grow(ctx, s.dir(sb.ID), next.DiskMB<<20); err != nil {
			return sb, fmt.Errorf("growing disk: %w", err)
		}
	}
	if len(o.Env) > 0 {
		sb.Env = mergeEnv(sb.Env, o.Env)
	}
	old := sb.Resources
	sb.Resources = next
	if changed {
		s.setState(&sb, sb.State, "")
		s.event(sb, "restart", "", "", fmt.Sprintf("restart with %d env changes, cpu %g→%g, memory %d→%d MiB, disk %d→%d MiB, pids %d→%d",
			len(o.Env), old.CPU, next.CPU, old.MemoryMB, next.MemoryMB, old.DiskMB, next.DiskMB, old.Pids, next.Pids))
	}
	if err := s.startLocked(ctx, &sb); err != nil {
		return sb, err
	}
	return sb, nil
}

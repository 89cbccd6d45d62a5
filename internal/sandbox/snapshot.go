package sandbox

// State snapshots: point-in-time copies of a sandbox's writable layer.
//
// Layout, inside the sandbox's directory (so a deleted sandbox takes its
// snapshots along):
//
//	dir/snapshots/<sid>.img      a finished snapshot (sparse copy of disk.img)
//	dir/snapshots/<sid>.img.tmp  a copy being made
//	dir/disk.img.rollback(.tmp)  a restore's verified copy, renamed over disk.img
//	dir/freeze                   present while the sandbox's cgroup is frozen
//
// Taking a snapshot of a started sandbox: fstrim the mounted layer (deleted
// blocks become holes), read the image's data once into the page cache,
// write dir/freeze, freeze the cgroup, syncfs the layer, copy disk.img's
// non-zero blocks (from memory, mostly), thaw, remove dir/freeze; then
// checksum the copy, fsync it and rename it into place. The copy is therefore of a
// filesystem whose writers are all stopped and whose dirty data is on the
// image: what a power cut at that instant would leave, which ext4's journal
// makes whole again at the next mount. A stopped sandbox's image is copied
// as it is (once the kernel has released it).
//
// The snapshot's record is written after its file is renamed into place,
// so a record always has a whole file; a file without a record (a crash
// between the two) is removed by Recover, as are the temporary files.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
)

// freezeTimeout bounds the wait for a sandbox's tasks to freeze (a task in
// an uninterruptible sleep delays it) and to thaw.
const freezeTimeout = 5 * time.Second

// DefaultMaxSnapshots is the default of Config.MaxSnapshots.
const DefaultMaxSnapshots = 16

var snapshotName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

func (s *Service) snapshotDir(id string) string { return filepath.Join(s.dir(id), "snapshots") }
func (s *Service) snapshotFile(id, sid string) string {
	return filepath.Join(s.snapshotDir(id), sid+".img")
}
func (s *Service) freezeMarker(id string) string { return filepath.Join(s.dir(id), "freeze") }

// CopyStats describe how a sandbox's layer was copied.
type CopyStats struct {
	Pause     time.Duration // how long the sandbox was frozen (0 when stopped)
	Took      time.Duration // the whole copy
	Bytes     int64         // allocated bytes of the copy
	Reflinked bool
}

// copyLayer copies sb's writable layer to dst (crash-consistently when it
// is started, see the file doc). The caller holds the sandbox's lock.
func (s *Service) copyLayer(ctx context.Context, sb store.Sandbox, dst string) (rootfs.CopyResult, CopyStats, error) {
	t0 := time.Now()
	dir := s.dir(sb.ID)
	mounted, err := rootfs.Mounted(dir)
	if err != nil {
		return rootfs.CopyResult{}, CopyStats{}, err
	}
	var st CopyStats
	if !mounted {
		if err := rootfs.Settle(ctx, dir); err != nil {
			return rootfs.CopyResult{}, st, err
		}
		res, err := rootfs.CopyImage(ctx, dst, rootfs.DiskImage(dir), "")
		st.Took, st.Bytes, st.Reflinked = time.Since(t0), res.Allocated, res.Reflinked
		return res, st, err
	}
	if err := rootfs.TrimMounted(dir); err != nil {
		// Only makes the copy bigger.
		s.log.Debug("trimming the writable layer before a copy", "sandbox", sb.ID, "err", err)
	}
	if err := rootfs.Prefetch(ctx, rootfs.DiskImage(dir)); err != nil {
		return rootfs.CopyResult{}, st, err
	}
	cg := s.cgroupPath(sb.ID)
	frozen := false
	if sb.State == store.StateStarted {
		if err := os.WriteFile(s.freezeMarker(sb.ID), nil, 0o600); err != nil {
			return rootfs.CopyResult{}, st, err
		}
		fctx, cancel := context.WithTimeout(ctx, freezeTimeout)
		err := s.cfg.Cgroups.Freeze(fctx, cg)
		cancel()
		if err != nil {
			s.thaw(sb.ID)
			if fctx.Err() != nil && ctx.Err() == nil {
				return rootfs.CopyResult{}, st, errdefs.Publicf(errdefs.ErrUnavailable, "the sandbox could not be frozen within %s for a consistent copy: try again", freezeTimeout)
			}
			return rootfs.CopyResult{}, st, fmt.Errorf("freezing the sandbox: %w", err)
		}
		frozen = true
	}
	tf := time.Now()
	c, err := func() (*rootfs.Copy, error) {
		if err := rootfs.SyncLayer(dir); err != nil {
			return nil, err
		}
		return rootfs.BeginCopy(ctx, dst, rootfs.DiskImage(dir))
	}()
	if frozen {
		// The copy is complete; making it durable need not keep the
		// sandbox waiting.
		s.thaw(sb.ID)
		st.Pause = time.Since(tf)
	}
	if err != nil {
		return rootfs.CopyResult{}, st, err
	}
	res, err := c.Commit("")
	st.Took, st.Bytes, st.Reflinked = time.Since(t0), res.Allocated, res.Reflinked
	return res, st, err
}

// thaw lets a sandbox frozen for a copy run again and removes the marker
// that tells Recover to do so.
func (s *Service) thaw(id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), freezeTimeout)
	defer cancel()
	if err := s.cfg.Cgroups.Thaw(ctx, s.cgroupPath(id)); err != nil {
		s.log.Error("thawing the sandbox", "sandbox", id, "err", err)
		return
	}
	os.Remove(s.freezeMarker(id))
}

func (s *Service) maxSnapshots() int {
	if s.cfg.MaxSnapshots > 0 {
		return s.cfg.MaxSnapshots
	}
	return DefaultMaxSnapshots
}

// snapshotEvent records the outcome of a snapshot operation.
func (s *Service) snapshotEvent(sb store.Sandbox, msg string, err error) {
	if err != nil {
		msg += " failed: " + errdefs.Message(err)
	}
	s.event(sb, "snapshot", "", "", msg)
}

// CreateSnapshot takes a state snapshot of a started or stopped sandbox.
// name is optional (default: the snapshot's ID).
func (s *Service) CreateSnapshot(ctx context.Context, tenantID, idOrName, name string) (store.Snapshot, CopyStats, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return store.Snapshot{}, CopyStats{}, err
	}
	defer unlock()
	s.Touch(sb.ID)
	sn, st, err := s.createSnapshot(ctx, sb, name)
	what := fmt.Sprintf("snapshot %q", name)
	if err == nil {
		what = fmt.Sprintf("snapshot %s (%s, %d MiB, paused %s)", sn.ID, sn.Name, sn.Size>>20, st.Pause.Round(time.Millisecond))
	}
	s.snapshotEvent(sb, "create "+what, err)
	if err != nil {
		return store.Snapshot{}, st, fmt.Errorf("creating snapshot: %w", err)
	}
	s.log.Info("snapshot created", "sandbox", sb.ID, "snapshot", sn.ID, "bytes", st.Bytes,
		"pause", st.Pause, "took", st.Took, "reflink", st.Reflinked)
	return sn, st, nil
}

func (s *Service) createSnapshot(ctx context.Context, sb store.Sandbox, name string) (store.Snapshot, CopyStats, error) {
	if name != "" && !snapshotName.MatchString(name) {
		return store.Snapshot{}, CopyStats{}, invalid("snapshot name %q: use up to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	switch sb.State {
	case store.StateStarted, store.StateStopped:
	default:
		return store.Snapshot{}, CopyStats{}, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s: snapshots are taken of started or stopped sandboxes", sb.ID, sb.State)
	}
	list, err := s.st.ListSnapshots(ctx, sb.TenantID, sb.ID)
	if err != nil {
		return store.Snapshot{}, CopyStats{}, err
	}
	if len(list) >= s.maxSnapshots() {
		return store.Snapshot{}, CopyStats{}, errdefs.Publicf(errdefs.ErrResourceExhausted,
			"sandbox %s has %d snapshots, the limit: delete one first", sb.ID, len(list))
	}
	sid := "snap-" + newID()
	if name == "" {
		name = sid
	}
	for _, o := range list {
		if o.Name == name {
			return store.Snapshot{}, CopyStats{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "sandbox %s already has a snapshot named %q", sb.ID, name)
		}
	}
	if err := os.MkdirAll(s.snapshotDir(sb.ID), 0o700); err != nil {
		return store.Snapshot{}, CopyStats{}, err
	}
	file := s.snapshotFile(sb.ID, sid)
	res, st, err := s.copyLayer(ctx, sb, file)
	if err != nil {
		return store.Snapshot{}, st, err
	}
	sn := store.Snapshot{ID: sid, SandboxID: sb.ID, TenantID: sb.TenantID, Name: name,
		Size: res.Allocated, Checksum: res.Checksum, CreatedAt: time.Now().UTC()}
	if err := s.st.CreateSnapshot(context.WithoutCancel(ctx), sn); err != nil {
		os.Remove(file)
		return store.Snapshot{}, st, err
	}
	return sn, st, nil
}

// ListSnapshots lists a sandbox's snapshots, oldest first.
func (s *Service) ListSnapshots(ctx context.Context, tenantID, idOrName string) ([]store.Snapshot, error) {
	sb, err := s.Get(ctx, tenantID, idOrName)
	if err != nil {
		return nil, err
	}
	return s.st.ListSnapshots(ctx, sb.TenantID, sb.ID)
}

// GetSnapshot returns one snapshot of a sandbox, by ID or name.
func (s *Service) GetSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) (store.Snapshot, error) {
	sb, err := s.Get(ctx, tenantID, idOrName)
	if err != nil {
		return store.Snapshot{}, err
	}
	return s.st.GetSnapshot(ctx, sb.TenantID, sb.ID, snapshot)
}

// DeleteSnapshot deletes a snapshot and its file.
func (s *Service) DeleteSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) error {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return err
	}
	defer unlock()
	sn, err := s.st.GetSnapshot(ctx, sb.TenantID, sb.ID, snapshot)
	if err != nil {
		return err
	}
	// The record goes first: a crash after it leaves a file without a
	// record, which Recover removes.
	err = s.st.DeleteSnapshot(ctx, sb.TenantID, sb.ID, sn.ID)
	if err == nil {
		if rerr := os.Remove(s.snapshotFile(sb.ID, sn.ID)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			s.log.Warn("removing a snapshot's file", "sandbox", sb.ID, "snapshot", sn.ID, "err", rerr)
		}
	}
	s.snapshotEvent(sb, fmt.Sprintf("delete snapshot %s (%s)", sn.ID, sn.Name), err)
	return err
}

// RestoreSnapshot rolls a sandbox's files back to a snapshot. The
// snapshot is copied and verified against its checksum before anything is
// touched; a started sandbox is then stopped, its layer replaced, and
// started again. A stopped one stays stopped.
func (s *Service) RestoreSnapshot(ctx context.Context, tenantID, idOrName, snapshot string) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	s.Touch(sb.ID)
	sn, err := s.st.GetSnapshot(ctx, sb.TenantID, sb.ID, snapshot)
	if err != nil {
		return sb, err
	}
	t0 := time.Now()
	err = s.rollBack(ctx, &sb, sn)
	s.snapshotEvent(sb, fmt.Sprintf("restore snapshot %s (%s)", sn.ID, sn.Name), err)
	if err != nil {
		return sb, fmt.Errorf("restoring snapshot %s: %w", sn.ID, err)
	}
	s.log.Info("snapshot restored", "sandbox", sb.ID, "snapshot", sn.ID, "took", time.Since(t0))
	return sb, nil
}

// rollBack puts snapshot sn's layer in place of sb's.
func (s *Service) rollBack(ctx context.Context, sb *store.Sandbox, sn store.Snapshot) error {
	wasStarted := false
	switch sb.State {
	case store.StateStarted:
		wasStarted = true
	case store.StateStopped, store.StateError:
	default:
		return errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s", sb.ID, sb.State)
	}
	dir := s.dir(sb.ID)
	staged := rootfs.DiskImage(dir) + ".rollback"
	if _, err := rootfs.CopyImage(ctx, staged, s.snapshotFile(sb.ID, sn.ID), sn.Checksum); err != nil {
		switch {
		case errors.Is(err, os.ErrNotExist):
			return errdefs.Publicf(errdefs.ErrConflict, "snapshot %s has lost its file; the sandbox was not changed", sn.ID)
		case errors.Is(err, errdefs.ErrConflict):
			return errdefs.Publicf(errdefs.ErrConflict, "snapshot %s is corrupt (%s); the sandbox was not changed", sn.ID, errdefs.Message(err))
		}
		return err
	}
	defer os.Remove(staged) // gone after the rename; left over on failure
	// The files are about to be replaced: no grace period to flush them.
	if wasStarted {
		if err := s.stopNow(ctx, sb); err != nil {
			return err
		}
		s.markResuming(sb)
	} else if err := s.release(ctx, *sb); err != nil {
		return err
	}
	if err := rootfs.Replace(ctx, dir, staged); err != nil {
		return err
	}
	if size, err := rootfs.DiskSize(dir); err == nil && size>>20 != sb.Resources.DiskMB {
		sb.Resources.DiskMB = size >> 20 // a disk grown after the snapshot is back to its size then
		s.setState(sb, sb.State, "")
	}
	if !wasStarted {
		return nil
	}
	img, err := s.images.Resolve(ctx, sb.TenantID, sb.ImageDigest)
	if err != nil {
		return fmt.Errorf("image %s: %w", sb.Image, err)
	}
	sb.Desired = store.StateStarted
	s.setState(sb, store.StateStarting, "")
	if err := s.start(ctx, sb, img, newPhases()); err != nil {
		s.release(context.WithoutCancel(ctx), *sb)
		s.setState(sb, store.StateError, "start after a restore failed: "+errdefs.Message(err))
		return err
	}
	return nil
}

// removeSnapshots deletes a sandbox's snapshot records (its files go with
// its directory).
func (s *Service) removeSnapshots(ctx context.Context, sb store.Sandbox) {
	if err := s.st.DeleteSandboxSnapshots(ctx, sb.ID); err != nil {
		s.log.Error("deleting the snapshots of a destroyed sandbox", "sandbox", sb.ID, "err", err)
	}
}

// thawInterrupted thaws a sandbox left frozen by a copy cut short. It
// runs before Recover asks the runtimes for their containers: a frozen
// container reports itself paused, not running.
func (s *Service) thawInterrupted(sb store.Sandbox) {
	if _, err := os.Stat(s.freezeMarker(sb.ID)); err == nil {
		s.log.Info("thawing a sandbox frozen by an interrupted snapshot", "sandbox", sb.ID)
		s.thaw(sb.ID)
	}
}

// recoverSnapshots finishes or undoes snapshot work cut short in a
// sandbox's directory: temporary copies are removed, and so are snapshot
// files without a record.
func (s *Service) recoverSnapshots(ctx context.Context, sb store.Sandbox) {
	dir := s.dir(sb.ID)
	var swept []string
	switch sb.State {
	case store.StateArchiving, store.StateRestoring, store.StateArchived:
		// The directory's temporary files are the archive's (archive.go).
	default:
		swept = rootfs.SweepTemps(dir)
	}
	for _, p := range append(swept, rootfs.SweepTemps(s.snapshotDir(sb.ID))...) {
		s.log.Info("removed the temporary file of an interrupted copy", "sandbox", sb.ID, "file", filepath.Base(p))
	}
	ents, err := os.ReadDir(s.snapshotDir(sb.ID))
	if err != nil {
		return
	}
	list, err := s.st.ListSnapshots(ctx, "", sb.ID)
	if err != nil {
		return
	}
	have := map[string]bool{}
	for _, sn := range list {
		have[sn.ID+".img"] = true
	}
	for _, e := range ents {
		if !have[e.Name()] {
			s.log.Info("removing a snapshot file without a record", "sandbox", sb.ID, "file", e.Name())
			os.Remove(filepath.Join(s.snapshotDir(sb.ID), e.Name()))
		}
	}
	for _, sn := range list {
		if _, err := os.Stat(s.snapshotFile(sb.ID, sn.ID)); errors.Is(err, os.ErrNotExist) {
			s.log.Warn("a snapshot has lost its file: removing its record", "sandbox", sb.ID, "snapshot", sn.ID)
			s.st.DeleteSnapshot(ctx, "", sb.ID, sn.ID)
		}
	}
}

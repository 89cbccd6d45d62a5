package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/sbx-sh/sbx/internal/archive"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/rootfs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Archiving moves a stopped sandbox's writable layer (its disk image,
// trimmed, packed and compressed by package archive) into the archive
// store and frees the local disk; starting the sandbox restores it.
//
//	stopped  → archiving → archived      Archive
//	archived → restoring → starting → started   Start
//
// Crash safety. The record is the commit point of each direction:
//   - archiving: the object is written whole (archive.Store.Put) before the
//     record says archived with the object's checksum; only then is the
//     local image removed. A crash before that record leaves the sandbox
//     stopped with its image (Recover moves archiving back to stopped); a
//     crash after it leaves a stale local image that Recover removes.
//   - restoring: the image is unpacked into a temporary file that is
//     renamed over disk.img only once it is whole and its object's checksum
//     verified; the record then drops the archive, and only after that is
//     the object deleted. Recover sends restoring back to archived while
//     no disk.img exists, and forward to stopped once it does.

func archiveKey(id string) string { return "sandboxes/" + id + ".sbxa" }

func restoreTemp(dir string) string { return rootfs.DiskImage(dir) + ".restore" }

// Archive archives a stopped sandbox. Archiving an archived one is a no-op.
func (s *Service) Archive(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	return sb, s.archive(ctx, &sb)
}

func (s *Service) archive(ctx context.Context, sb *store.Sandbox) error {
	switch sb.State {
	case store.StateArchived:
		return nil
	case store.StateStopped:
	default:
		return errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s: only a stopped sandbox can be archived", sb.ID, sb.State)
	}
	if s.cfg.Archive == nil {
		return errdefs.Public(errdefs.ErrUnavailable, "this server has no archive store")
	}
	start := time.Now()
	s.setState(sb, store.StateArchiving, "")
	info, err := s.pack(ctx, *sb)
	if err != nil {
		s.setState(sb, store.StateStopped, "")
		s.event(*sb, "archive", "", "", "archive failed: "+errdefs.Message(err))
		return fmt.Errorf("archiving sandbox: %w", err)
	}
	sb.Lifecycle.Archive = &info
	s.setState(sb, store.StateArchived, "")
	if err := removeLocalDisk(s.dir(sb.ID)); err != nil {
		s.log.Warn("removing the archived sandbox's local disk", "sandbox", sb.ID, "err", err)
	}
	d := time.Since(start)
	s.event(*sb, "archive", "", "", fmt.Sprintf("archived %d MiB of data into %d MiB in %v",
		info.Data>>20, info.Size>>20, d.Round(time.Millisecond)))
	s.log.Info("sandbox archived", "sandbox", sb.ID, "data", info.Data, "stored", info.Size, "took", d)
	return nil
}

// pack trims the stopped sandbox's layer and stores it.
func (s *Service) pack(ctx context.Context, sb store.Sandbox) (store.ArchiveInfo, error) {
	dir := s.dir(sb.ID)
	if err := rootfs.Trim(ctx, dir); err != nil {
		return store.ArchiveInfo{}, err
	}
	f, err := os.Open(rootfs.DiskImage(dir))
	if err != nil {
		return store.ArchiveInfo{}, err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	var stats archive.PackStats
	go func() {
		var err error
		stats, err = archive.Pack(ctx, pw, f)
		pw.CloseWithError(err)
	}()
	obj, err := s.cfg.Archive.Put(ctx, archiveKey(sb.ID), pr)
	pr.CloseWithError(errors.New("archive: put ended"))
	if err != nil {
		return store.ArchiveInfo{}, err
	}
	return store.ArchiveInfo{Key: obj.Key, Size: obj.Size, SHA256: obj.SHA256, DiskSize: stats.Size,
		Data: stats.Data, CreatedAt: time.Now().UTC()}, nil
}

// removeLocalDisk deletes an archived sandbox's image (and what refers to
// its loop device), keeping the sandbox directory.
func removeLocalDisk(dir string) error {
	for _, p := range []string{rootfs.DiskImage(dir) + ".loop", restoreTemp(dir)} {
		os.Remove(p)
	}
	if err := os.Remove(rootfs.DiskImage(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// restore brings an archived sandbox's layer back; the sandbox is then
// stopped (the caller starts it). The caller holds the lock.
func (s *Service) restore(ctx context.Context, sb *store.Sandbox) error {
	info := sb.Lifecycle.Archive
	if info == nil {
		return errdefs.Publicf(errdefs.ErrDataLoss, "sandbox %s is archived but its archive is not recorded", sb.ID)
	}
	if s.cfg.Archive == nil {
		return errdefs.Public(errdefs.ErrUnavailable, "this server has no archive store")
	}
	start := time.Now()
	s.setState(sb, store.StateRestoring, "")
	fail := func(err error) error {
		os.Remove(restoreTemp(s.dir(sb.ID)))
		s.setState(sb, store.StateArchived, "")
		s.event(*sb, "restore", "", "", "restore failed: "+errdefs.Message(err))
		return fmt.Errorf("restoring sandbox: %w", err)
	}
	dir := s.dir(sb.ID)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return fail(err)
	}
	rc, err := s.cfg.Archive.Open(ctx, archive.Object{Key: info.Key, Size: info.Size, SHA256: info.SHA256})
	if err != nil {
		return fail(err)
	}
	defer rc.Close()
	tmp := restoreTemp(dir)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return fail(err)
	}
	_, err = archive.Unpack(ctx, f, rc)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, rootfs.DiskImage(dir)); err != nil {
		return fail(err)
	}
	syncDir(dir)
	sb.Lifecycle.Archive = nil
	s.setState(sb, store.StateStopped, "")
	if err := s.cfg.Archive.Delete(context.WithoutCancel(ctx), info.Key); err != nil {
		s.log.Warn("deleting a restored sandbox's archive", "sandbox", sb.ID, "err", err)
	}
	d := time.Since(start)
	s.event(*sb, "restore", "", "", fmt.Sprintf("restored %d MiB of data in %v", info.Data>>20, d.Round(time.Millisecond)))
	s.log.Info("sandbox restored", "sandbox", sb.ID, "data", info.Data, "took", d)
	return nil
}

// recoverArchive settles a sandbox a crash caught archiving or restoring.
func (s *Service) recoverArchive(ctx context.Context, sb store.Sandbox) error {
	dir := s.dir(sb.ID)
	switch sb.State {
	case store.StateArchiving:
		// The record never said archived: the local image is the truth.
		s.log.Info("an archive was cut short; the sandbox stays stopped", "sandbox", sb.ID)
		sb.Lifecycle.Archive = nil
		s.setState(&sb, store.StateStopped, "")
		s.event(sb, "archive", "", "", "archive failed: the daemon stopped during it")
	case store.StateRestoring:
		os.Remove(restoreTemp(dir))
		if _, err := os.Stat(rootfs.DiskImage(dir)); err == nil {
			info := sb.Lifecycle.Archive
			sb.Lifecycle.Archive = nil
			s.setState(&sb, store.StateStopped, "")
			if info != nil && s.cfg.Archive != nil {
				s.cfg.Archive.Delete(ctx, info.Key)
			}
			return nil
		}
		s.log.Info("a restore was cut short; the sandbox stays archived", "sandbox", sb.ID)
		s.setState(&sb, store.StateArchived, "")
		s.event(sb, "restore", "", "", "restore failed: the daemon stopped during it")
	case store.StateArchived:
		// A crash between the record and the removal of the local image.
		return removeLocalDisk(dir)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

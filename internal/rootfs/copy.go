package rootfs

// Copies of a writable layer (state snapshots, clones, restores) and the
// owner shift a copied layer needs when it moves to another uid range.
//
// A copy is sparse: only the image's data extents (found with
// SEEK_DATA/SEEK_HOLE) are read, and of those only the 4 KiB blocks that
// are not all zero are written, so the copy holds no more than the source
// and usually less (after an fstrim of the mounted layer, deleted files'
// blocks are holes already). A reflink (FICLONE) is tried first; on a host
// filesystem without reflinks (ext4, as /var/lib/sbx is on our machines)
// it fails at once and the block copy runs.
//
// The checksum of an image is the SHA-256 of its non-zero blocks, each
// preceded by its block number (8 bytes, big endian), then the image's
// length. It depends only on the image's logical contents (a hole and a
// block of zeros are the same), so a copy, however its extents came out,
// has the checksum of its source, and verifying a copy costs a read of its
// data only.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/idmap"
	"github.com/sbx-sh/sbx/internal/sparse"
)

// blockSize is the unit of the checksum and of the zero-block skipping.
const blockSize = 4096

// CopyResult describes a finished copy.
type CopyResult struct {
	Size      int64  // logical size of the image
	Allocated int64  // bytes the copy occupies (st_blocks*512)
	Checksum  string // "sha256:<hex>" of the image's data, see the file doc
	Reflinked bool   // made by FICLONE
}

// checksummer hashes an image's non-zero blocks as they go by.
type checksummer struct {
	h   hash.Hash
	hdr [8]byte
}

func newChecksummer() *checksummer { return &checksummer{h: sha256.New()} }

func (c *checksummer) block(n int64, b []byte) {
	binary.BigEndian.PutUint64(c.hdr[:], uint64(n))
	c.h.Write(c.hdr[:])
	c.h.Write(b)
}

func (c *checksummer) sum(size int64) string {
	binary.BigEndian.PutUint64(c.hdr[:], uint64(size))
	c.h.Write(c.hdr[:])
	return "sha256:" + hex.EncodeToString(c.h.Sum(nil))
}

// scan calls fn for each run of f's non-zero blocks (see sparse.NonZero),
// hashing every non-zero block into sum (when not nil) first.
func scan(ctx context.Context, f *os.File, size int64, sum *checksummer, fn func(off int64, b []byte) error) error {
	return sparse.NonZero(ctx, f, size, blockSize, blockSize, func(off int64, b []byte) error {
		if sum != nil {
			for i := 0; i < len(b); i += blockSize {
				sum.block((off+int64(i))/blockSize, b[i:min(i+blockSize, len(b))])
			}
		}
		return fn(off, b)
	})
}

// Prefetch reads the data of the image at path into the page cache (and
// drops it), so that a copy made just after, while its sandbox is frozen,
// reads from memory instead of the disk.
func Prefetch(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, sparse.ChunkSize)
	return sparse.Extents(f, fi.Size(), func(off, end int64) error {
		for off < end {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
			if n == 0 || (err != nil && !errors.Is(err, io.EOF)) {
				return err
			}
			off += int64(n)
		}
		return nil
	})
}

// Checksum computes the checksum of the image at path.
func Checksum(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	sum := newChecksummer()
	if err := scan(ctx, f, fi.Size(), sum, func(int64, []byte) error { return nil }); err != nil {
		return "", 0, err
	}
	return sum.sum(fi.Size()), fi.Size(), nil
}

// CopyImage copies the image src to dst sparsely, through dst+".tmp" and a
// rename, so that dst is either absent or whole; dst is fsynced. The
// checksum is computed from what was copied. If want is not empty it is
// checked before dst appears: a mismatch leaves dst untouched and answers
// ErrConflict.
func CopyImage(ctx context.Context, dst, src, want string) (CopyResult, error) {
	c, err := BeginCopy(ctx, dst, src)
	if err != nil {
		return CopyResult{}, err
	}
	return c.Commit(want)
}

// Copy is a copy of an image written to its temporary file: complete, but
// neither durable nor in place until Commit. Splitting the two lets a
// caller that froze the source for the copy thaw it before the fsync.
type Copy struct {
	dst, tmp string
	out      *os.File
	res      CopyResult
}

// BeginCopy copies src into dst+".tmp" (see CopyImage).
func BeginCopy(ctx context.Context, dst, src string) (*Copy, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", filepath.Base(src), err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, err
	}
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating copy: %w", diskErr(err))
	}
	res, err := copyInto(ctx, out, in, fi.Size())
	if err != nil {
		out.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &Copy{dst: dst, tmp: tmp, out: out, res: res}, nil
}

// Abort removes an uncommitted copy.
func (c *Copy) Abort() {
	c.out.Close()
	os.Remove(c.tmp)
}

// Commit makes the copy durable, checks its checksum against want (when
// not empty) and renames it into place.
func (c *Copy) Commit(want string) (CopyResult, error) {
	res := c.res
	sum := newChecksummer()
	err := scan(context.Background(), c.out, res.Size, sum, func(int64, []byte) error { return nil })
	res.Checksum = sum.sum(res.Size)
	if err == nil {
		err = c.out.Sync()
	}
	if err == nil {
		var st unix.Stat_t
		if err = unix.Fstat(int(c.out.Fd()), &st); err == nil {
			res.Allocated = st.Blocks * 512
		}
	}
	if cerr := c.out.Close(); err == nil {
		err = cerr
	}
	if err == nil && want != "" && res.Checksum != want {
		err = errdefs.Publicf(errdefs.ErrConflict, "the copy's checksum %s does not match the recorded %s: the image is corrupt", short(res.Checksum), short(want))
	}
	if err != nil {
		os.Remove(c.tmp)
		return CopyResult{}, err
	}
	if err := os.Rename(c.tmp, c.dst); err != nil {
		os.Remove(c.tmp)
		return CopyResult{}, err
	}
	syncDir(filepath.Dir(c.dst))
	return res, nil
}

func short(sum string) string {
	if len(sum) > 19 {
		return sum[:19]
	}
	return sum
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// copyInto fills out (empty) with in's contents of size bytes: a reflink
// when the filesystem can, else the non-zero blocks of in's data extents.
// The checksum is left to Commit, which computes it from the copy itself
// (in the page cache by then), so a source frozen for the copy waits only
// for the copy.
func copyInto(ctx context.Context, out, in *os.File, size int64) (CopyResult, error) {
	res := CopyResult{Size: size}
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		res.Reflinked = true // shares the blocks
		return res, nil
	}
	if err := out.Truncate(size); err != nil {
		return res, fmt.Errorf("sizing copy: %w", diskErr(err))
	}
	err := scan(ctx, in, size, nil, func(off int64, b []byte) error {
		if _, err := out.WriteAt(b, off); err != nil {
			return fmt.Errorf("writing copy: %w", diskErr(err))
		}
		return nil
	})
	return res, err
}

// LayerMount is where a sandbox's writable layer is mounted (while it is).
func LayerMount(dir string) string { return diskMount(dir) }

// Mounted reports whether dir's writable layer is mounted.
func Mounted(dir string) (bool, error) { return isMountPoint(diskMount(dir)) }

// TrimMounted discards the free blocks of a started sandbox's mounted
// layer (FITRIM), which the loop device turns into holes in the image, so
// copies skip deleted data. (Trim does the same for a stopped sandbox.)
func TrimMounted(dir string) error { return fitrim(diskMount(dir)) }

// SyncLayer flushes the mounted layer (syncfs), so that its image holds
// everything written so far.
func SyncLayer(dir string) error {
	f, err := os.Open(diskMount(dir))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("syncfs: %w", err)
	}
	return nil
}

// Replace puts the image src (a finished, verified copy on the same
// filesystem) in place of dir's writable layer, atomically. The layer must
// be unmounted and released.
func Replace(ctx context.Context, dir, src string) error {
	if err := Settle(ctx, dir); err != nil {
		return err
	}
	if err := os.Rename(src, diskImage(dir)); err != nil {
		return fmt.Errorf("replacing the writable layer: %w", err)
	}
	os.Remove(loopRecord(dir)) // describes the old file
	syncDir(dir)
	return nil
}

// Recreate replaces dir's writable layer by a fresh, empty one of bytes
// (the layer unmounted and released); the new image is made beside the old
// one and renamed over it.
func Recreate(ctx context.Context, o Options) error {
	if m, err := Mounted(o.Dir); err != nil {
		return err
	} else if m {
		return errdefs.Public(errdefs.ErrConflict, "the writable layer is mounted")
	}
	owner := "0:0"
	if o.IDMap != nil {
		owner = fmt.Sprintf("%d:%d", o.IDMap.HostID, o.IDMap.HostID)
	}
	fresh := diskImage(o.Dir) + ".fresh"
	os.Remove(fresh)
	os.Remove(fresh + ".tmp")
	if err := makeDisk(ctx, fresh, o.DiskBytes, owner); err != nil {
		return err
	}
	if err := Replace(ctx, o.Dir, fresh); err != nil {
		os.Remove(fresh)
		return err
	}
	return nil
}

// SweepTemps removes the temporary files of copies, restores and resets
// cut short (by a crash) in dir.
func SweepTemps(dir string) []string {
	var removed []string
	for _, pat := range []string{"*.tmp", "disk.img.rollback", "disk.img.fresh"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		for _, p := range m {
			if os.Remove(p) == nil {
				removed = append(removed, p)
			}
		}
	}
	return removed
}

// MountLayer mounts dir's writable layer alone (without the overlay), as a
// clone's owner shift needs; Mount later finds it mounted.
func MountLayer(dir string) error { return mountDisk(dir) }

// ShiftOwners moves every file of dir's writable layer (mounted: the
// layer's root, the overlay's upper and work dirs) from the
// id range from to the range to (nil: no user namespace, ids from 0):
// owners and groups in the source range are shifted by the difference,
// setuid/setgid bits (cleared by chown) are put back, file capabilities
// are kept with the rootid of v3 ones shifted, and the ids in POSIX ACLs
// are shifted too. Ids outside the range are left alone. Symlinks are
// not followed; hardlinked inodes are shifted once.
func ShiftOwners(ctx context.Context, dir string, from, to *idmap.Map) (int, error) {
	sh, ok := newShift(from, to)
	if !ok {
		return 0, nil
	}
	n, err := sh.tree(ctx, diskMount(dir))
	if err != nil {
		return n, fmt.Errorf("shifting owners: %w", err)
	}
	return n, nil
}

// ShiftTree is ShiftOwners over any directory tree (tests use it on a
// plain directory).
func ShiftTree(ctx context.Context, root string, from, to *idmap.Map) (int, error) {
	sh, ok := newShift(from, to)
	if !ok {
		return 0, nil
	}
	return sh.tree(ctx, root)
}

func (sh shift) tree(ctx context.Context, root string) (int, error) {
	n := 0
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		changed, err := sh.file(p, seen)
		if changed {
			n++
		}
		return err
	})
	return n, err
}

type shift struct {
	fromBase, toBase, size uint32
}

func newShift(from, to *idmap.Map) (shift, bool) {
	var sh shift
	switch {
	case from == nil && to == nil:
		return sh, false
	case from == nil:
		sh = shift{0, to.HostID, to.Size}
	case to == nil:
		sh = shift{from.HostID, 0, from.Size}
	default:
		sh = shift{from.HostID, to.HostID, min(from.Size, to.Size)}
	}
	return sh, sh.fromBase != sh.toBase
}

func (sh shift) id(v uint32) (uint32, bool) {
	if v >= sh.fromBase && v-sh.fromBase < sh.size {
		return v - sh.fromBase + sh.toBase, true
	}
	return v, false
}

const (
	xattrCaps      = "security.capability"
	xattrACLAccess = "system.posix_acl_access"
	xattrACLDef    = "system.posix_acl_default"
	capRevision3   = 0x03000000
	capRevMask     = 0xFF000000
	capV3Size      = 24
	aclUser        = 0x02
	aclGroup       = 0x08
)

func (sh shift) file(p string, seen map[uint64]bool) (bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return false, err
	}
	if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if seen[st.Ino] {
			return false, nil
		}
		seen[st.Ino] = true
	}
	uid, okU := sh.id(st.Uid)
	gid, okG := sh.id(st.Gid)
	isLink := st.Mode&unix.S_IFMT == unix.S_IFLNK
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	// Capabilities are cleared by chown: read them first. (Symlinks have
	// neither capabilities nor ACLs.)
	var caps []byte
	if !isLink && st.Mode&unix.S_IFMT == unix.S_IFREG {
		caps = getxattr(p, xattrCaps)
	}
	if okU || okG {
		if err := unix.Lchown(p, int(uid), int(gid)); err != nil {
			return false, fmt.Errorf("chown %s: %w", p, err)
		}
		// chown clears setuid (and setgid with group execute) on files.
		if !isLink && !isDir && st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
			if err := unix.Chmod(p, st.Mode&0o7777); err != nil {
				return false, fmt.Errorf("chmod %s: %w", p, err)
			}
		}
	}
	if caps != nil {
		if len(caps) == capV3Size && binary.LittleEndian.Uint32(caps)&capRevMask == capRevision3 {
			if r, ok := sh.id(binary.LittleEndian.Uint32(caps[20:])); ok {
				binary.LittleEndian.PutUint32(caps[20:], r)
			}
		}
		if err := unix.Lsetxattr(p, xattrCaps, caps, 0); err != nil {
			return false, fmt.Errorf("restoring capabilities of %s: %w", p, err)
		}
	}
	if !isLink {
		for _, name := range []string{xattrACLAccess, xattrACLDef} {
			if err := sh.acl(p, name); err != nil {
				return false, err
			}
		}
	}
	return okU || okG, nil
}

// acl shifts the user and group ids of a POSIX ACL xattr (version 2: a
// 4-byte header, then 8-byte entries: tag u16, perm u16, id u32).
func (sh shift) acl(p, name string) error {
	b := getxattr(p, name)
	if len(b) < 4 || (len(b)-4)%8 != 0 {
		return nil
	}
	changed := false
	for off := 4; off+8 <= len(b); off += 8 {
		tag := binary.LittleEndian.Uint16(b[off:])
		if tag != aclUser && tag != aclGroup {
			continue
		}
		if v, ok := sh.id(binary.LittleEndian.Uint32(b[off+4:])); ok {
			binary.LittleEndian.PutUint32(b[off+4:], v)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := unix.Lsetxattr(p, name, b, 0); err != nil {
		return fmt.Errorf("shifting the ACL of %s: %w", p, err)
	}
	return nil
}

func getxattr(p, name string) []byte {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil
		}
		return buf[:n]
	}
}

package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/idmap"
)

// Overlay markers in an upper dir and their OCI layer equivalents.
const (
	opaqueXattr   = "trusted.overlay.opaque"
	overlayPrefix = "trusted.overlay."
	whiteoutPre   = ".wh."
	opaqueMarker  = ".wh..wh..opq"
	overflowID    = 65534 // nobody: an owner outside the sandbox's range
)

// MountWritable mounts a stopped sandbox's writable layer (and only that,
// no overlay) so that its upper dir can be read, and returns the upper
// dir's path and a function that unmounts it again. The sandbox must not be
// running: its overlay would be writing to the same disk. Nothing is
// written to the layer.
func MountWritable(dir string) (upper string, unmountFn func() error, err error) {
	if mounted, err := isMountPoint(RootfsDir(dir)); err != nil {
		return "", nil, err
	} else if mounted {
		return "", nil, fmt.Errorf("rootfs: %s is mounted: the sandbox is running", RootfsDir(dir))
	}
	if err := mountDisk(dir); err != nil {
		return "", nil, err
	}
	upper = UpperDir(dir)
	if _, err := os.Lstat(upper); errors.Is(err, os.ErrNotExist) {
		// Never started: an empty layer.
		if err := os.Mkdir(upper, 0o755); err != nil {
			unmount(diskMount(dir))
			return "", nil, err
		}
	}
	return upper, func() error { return unmount(diskMount(dir)) }, nil
}

// CommitLayer writes the overlay upper dir upper as an uncompressed OCI
// layer tar to w, so that the layer applied on top of the sandbox's image
// layers gives the sandbox's filesystem:
//
//   - owners are shifted back from the sandbox's host id range (ids, nil
//     without a user namespace) to in-sandbox ids; an id outside the range
//     becomes 65534 (nobody);
//   - an overlay whiteout (a 0/0 character device) becomes ".wh.NAME";
//   - an opaque directory (xattr trusted.overlay.opaque=y) is written with a
//     ".wh..wh..opq" entry inside it, so that nothing of the lower layers
//     shows through;
//   - xattrs are kept as PAX records (SCHILY.xattr.*), except the overlay's
//     own trusted.overlay.*; modes (setuid, setgid, sticky), mtimes,
//     symlinks, device nodes and fifos are kept; the second and later names
//     of a hard-linked file are hard links to the first.
//
// Entries come in lexical order (a directory before its contents), so the
// same tree always gives the same tar. Overlay features that the daemon does
// not enable (redirect_dir, metacopy) are refused rather than mistranslated.
// Export/import, clone and templates share this function.
func CommitLayer(ctx context.Context, upper string, ids *idmap.Map, w io.Writer) error {
	tw := tar.NewWriter(w)
	c := &committer{ctx: ctx, root: upper, ids: ids, tw: tw, links: map[[2]uint64]string{}}
	if err := c.walk("", true); err != nil {
		return err
	}
	return tw.Close()
}

type committer struct {
	ctx   context.Context
	root  string
	ids   *idmap.Map
	tw    *tar.Writer
	links map[[2]uint64]string // (dev, inode) → first name, for hard links
	n     int
}

func (c *committer) shift(id uint32) int {
	if c.ids == nil {
		return int(id)
	}
	if id >= c.ids.HostID && id-c.ids.HostID < c.ids.Size {
		return int(id - c.ids.HostID)
	}
	return overflowID
}

// walk writes the entries below the directory rel ("" is the root).
func (c *committer) walk(rel string, isRoot bool) error {
	d, err := os.Open(filepath.Join(c.root, rel))
	if err != nil {
		return err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if c.n++; c.n%256 == 0 {
			if err := c.ctx.Err(); err != nil {
				return err
			}
		}
		p := name
		if !isRoot {
			p = rel + "/" + name
		}
		if err := c.entry(p); err != nil {
			return fmt.Errorf("committing %q: %w", "/"+p, err)
		}
	}
	return nil
}

func (c *committer) entry(rel string) error {
	full := filepath.Join(c.root, rel)
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return err
	}
	typ := st.Mode & unix.S_IFMT
	dir, base := filepath.Dir(rel), filepath.Base(rel)
	if typ == unix.S_IFCHR && st.Rdev == 0 {
		return c.tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeReg, Name: join(dir, whiteoutPre+base), Mode: 0o644,
			ModTime: mtime(st), Format: tar.FormatPAX,
		})
	}
	xattrs, opaque, err := readXattrs(full, typ)
	if err != nil {
		return err
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     c.shift(st.Uid),
		Gid:     c.shift(st.Gid),
		ModTime: mtime(st),
		Format:  tar.FormatPAX,
	}
	if len(xattrs) > 0 {
		hdr.PAXRecords = map[string]string{}
		for k, v := range xattrs {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}
	switch typ {
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if st.Nlink > 1 {
			key := [2]uint64{st.Dev, st.Ino}
			if first, ok := c.links[key]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				c.links[key] = rel
			}
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(full)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if typ == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		return nil // sockets cannot be archived, and mean nothing once the process is gone
	default:
		return fmt.Errorf("unexpected file type %o", typ)
	}
	if err := c.tw.WriteHeader(hdr); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg:
		f, err := os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return err
		}
		n, err := io.Copy(c.tw, f)
		f.Close()
		if err != nil {
			return err
		}
		if n != hdr.Size {
			return fmt.Errorf("file changed size while being read")
		}
	case tar.TypeDir:
		if opaque {
			if err := c.tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeReg, Name: rel + "/" + opaqueMarker, Mode: 0o644,
				ModTime: hdr.ModTime, Format: tar.FormatPAX,
			}); err != nil {
				return err
			}
		}
		return c.walk(rel, false)
	}
	return nil
}

func join(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}

func mtime(st unix.Stat_t) time.Time {
	return time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC()
}

// readXattrs returns a file's xattrs without the overlay's own, and
// whether it is an opaque directory.
func readXattrs(p string, typ uint32) (map[string]string, bool, error) {
	names, err := listXattrs(p)
	if err != nil {
		return nil, false, err
	}
	out := map[string]string{}
	opaque := false
	for _, n := range names {
		v, err := getXattr(p, n)
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue
			}
			return nil, false, fmt.Errorf("xattr %s: %w", n, err)
		}
		if strings.HasPrefix(n, overlayPrefix) {
			switch n {
			case opaqueXattr:
				opaque = typ == unix.S_IFDIR && string(v) == "y"
			case overlayPrefix + "redirect", overlayPrefix + "metacopy":
				return nil, false, fmt.Errorf("overlay feature %s is not supported", n)
			}
			continue
		}
		out[n] = string(v)
	}
	return out, opaque, nil
}

func listXattrs(p string) ([]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range strings.Split(string(buf[:sz]), "\x00") {
		if n != "" {
			out = append(out, n)
		}
	}
	return out, nil
}

func getXattr(p, name string) ([]byte, error) {
	sz, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:sz], nil
}

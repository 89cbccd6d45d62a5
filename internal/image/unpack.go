package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Limits of one layer; a layer beyond them fails to unpack.
const (
	maxLayerBytes   = 64 << 30
	maxLayerEntries = 10_000_000
)

// Unpack extracts an uncompressed layer tar into dir, converting OCI
// whiteouts to overlayfs ones: ".wh.NAME" becomes a 0/0 character device
// NAME, ".wh..wh..opq" the xattr trusted.overlay.opaque=y on its directory.
//
// Every path is resolved inside dir through an os.Root, so no entry can
// create or write anything outside it: not "../x", not an absolute path,
// not a write through a symlink the layer itself planted, not a hardlink to
// a file outside. Symlink targets are stored verbatim and never followed.
// Device nodes, modes (setuid included), numeric owners, xattrs and
// modification times are kept.
func Unpack(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		if n >= maxLayerEntries {
			return fmt.Errorf("layer has more than %d entries", maxLayerEntries)
		}
		total += hdr.Size
		if total > maxLayerBytes {
			return fmt.Errorf("layer is larger than %d bytes", int64(maxLayerBytes))
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		if name == "" {
			continue // the root itself
		}
		if err := unpackEntry(root, tr, hdr, name); err != nil {
			return fmt.Errorf("unpacking %q: %w", hdr.Name, err)
		}
	}
}

func unpackEntry(root *os.Root, tr *tar.Reader, hdr *tar.Header, name string) error {
	parent, base := path.Dir(name), path.Base(name)
	if parent != "." {
		if err := root.MkdirAll(parent, 0o755); err != nil {
			return err
		}
	}
	if base == ".wh..wh..opq" {
		return withFD(root, parent, func(fd int) error {
			return unix.Fsetxattr(fd, "trusted.overlay.opaque", []byte("y"), 0)
		})
	}
	if strings.HasPrefix(base, ".wh.") {
		target := path.Join(parent, strings.TrimPrefix(base, ".wh."))
		if err := root.RemoveAll(target); err != nil {
			return err
		}
		return withFD(root, parent, func(fd int) error {
			return unix.Mknodat(fd, path.Base(target), unix.S_IFCHR, 0)
		})
	}
	// Replace whatever is there, except a directory by a directory.
	if fi, err := root.Lstat(name); err == nil && !(fi.IsDir() && hdr.Typeflag == tar.TypeDir) {
		if err := root.RemoveAll(name); err != nil {
			return err
		}
	}
	mode := os.FileMode(hdr.Mode & 0o777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return root.Lchown(name, hdr.Uid, hdr.Gid)
	case tar.TypeLink:
		target := strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")
		return root.Link(target, name)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := withFD(root, parent, func(fd int) error {
			return unix.Mknodat(fd, base, typ|uint32(mode), int(dev))
		}); err != nil {
			return err
		}
	default:
		return nil // other types (e.g. PAX globals) carry no file
	}
	if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	// After chown, which clears setuid/setgid.
	if err := root.Chmod(name, mode|specialBits(hdr.Mode)); err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && hdr.Typeflag != tar.TypeFifo {
			if err := withFD(root, name, func(fd int) error { return unix.Fsetxattr(fd, x, []byte(v), 0) }); err != nil {
				return fmt.Errorf("xattr %s: %w", x, err)
			}
		}
	}
	if hdr.Typeflag == tar.TypeReg {
		return root.Chtimes(name, hdr.ModTime, hdr.ModTime)
	}
	return nil
}

func specialBits(mode int64) os.FileMode {
	var m os.FileMode
	if mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

// withFD opens name (a directory or file inside root, never following a
// final symlink) and calls fn with its descriptor.
func withFD(root *os.Root, name string, fn func(fd int) error) error {
	f, err := root.OpenFile(name, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return fn(int(f.Fd()))
}

package image

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	ispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TarDir writes dir as an uncompressed tar to w: numeric owners, modes,
// symlinks, hardlinks (as links), device nodes, in lexical order.
func TarDir(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	inodes := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		hdr.Uname, hdr.Gname = "", ""
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
			if fi.Mode().IsRegular() && st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					inodes[st.Ino] = hdr.Name
				}
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// RootfsImage makes a single-layer image of dir with the given config.
func RootfsImage(dir string, cfg ispec.ImageConfig) (v1.Image, error) {
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(TarDir(dir, pw)) }()
		return pr, nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{User: cfg.User, Env: cfg.Env, Entrypoint: cfg.Entrypoint, Cmd: cfg.Cmd, WorkingDir: cfg.WorkingDir}
	return mutate.ConfigFile(img, cf)
}

// ImportRootfs turns a directory into a single-layer image named ref.
func (s *Store) ImportRootfs(ctx context.Context, tenantID, dir, ref string, cfg ispec.ImageConfig) (Image, error) {
	vimg, err := RootfsImage(dir, cfg)
	if err != nil {
		return Image{}, err
	}
	return s.ingest(ctx, tenantID, ref, vimg)
}

// WriteRootfsArchive writes dir as a docker-archive tarball of a
// single-layer image named ref (for `sbx image import`).
func WriteRootfsArchive(dir, ref, out string, cfg ispec.ImageConfig) error {
	vimg, err := RootfsImage(dir, cfg)
	if err != nil {
		return err
	}
	tag, err := name.NewTag(ref, name.WeakValidation)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(out, tag, vimg)
}

// BusyboxConfig is the image config of the busybox test image.
var BusyboxConfig = ispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}, WorkingDir: "/root"}

// BuildBusyboxRootfs makes a tiny rootfs from Debian's busybox-static: the
// binary, a link per applet, /etc/passwd and /etc/group (root, nobody and
// sbx with uid 1000), and the usual directories. It is the image of tests.
func BuildBusyboxRootfs(ctx context.Context, dir string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox not found: install the busybox-static package")
	}
	out, err := exec.CommandContext(ctx, bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w (is it busybox-static?)", err)
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "root", "home/sbx", "tmp", "var/tmp", "mnt"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777|fs.ModeSticky)
	os.Chmod(filepath.Join(dir, "root"), 0o700)
	os.Chown(filepath.Join(dir, "home/sbx"), 1000, 1000)
	b, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), b, 0o755); err != nil {
		return err
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd":   "root:x:0:0:root:/root:/bin/sh\nsbx:x:1000:1000:sbx:/home/sbx:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":    "root:x:0:\nsbx:x:1000:\nnogroup:x:65534:\n",
		"etc/hostname": "sandbox\n",
	}
	for p, c := range files {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644); err != nil {
			return err
		}
	}
	return nil
}

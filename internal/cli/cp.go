package cli

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// cpCommand copies files and directories between the host and a sandbox,
// like `docker cp`: SRC and DST are a local path or ID:PATH, and "-" is a
// tar stream on stdin or stdout.
func cpCommand(g *globals) *cobra.Command {
	var owner string
	var preserve bool
	cmd := &cobra.Command{
		Use:   "cp [flags] SRC DST",
		Short: "Copy files between the host and a sandbox (ID:PATH)",
		Long: `Copy files between the host and a sandbox.

  sbx cp ./data demo:/root/data      a local file or directory into a sandbox
  sbx cp demo:/root/out.csv .        a sandbox file or directory to the host
  sbx cp - demo:/root < tree.tar     a tar stream from stdin, extracted into a directory
  sbx cp demo:/root/project - > p.tar  a tar stream to stdout

A directory destination that exists receives the source under its own name;
one that does not exist becomes the copy. Archives from a sandbox are
extracted on the host without following symlinks or leaving the destination.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			srcID, srcPath, srcRemote := splitRemote(args[0])
			dstID, dstPath, dstRemote := splitRemote(args[1])
			c := g.client()
			switch {
			case srcRemote && dstRemote:
				return errors.New("copying between two sandboxes is not supported: copy through the host")
			case !srcRemote && !dstRemote:
				return errors.New("one of SRC and DST must be ID:PATH")
			case dstRemote:
				return upload(cmd, c, args[0], dstID, dstPath, sbx.UploadOptions{Owner: owner, PreserveOwner: preserve})
			default:
				return download(cmd, c, srcID, srcPath, dstPath)
			}
		},
	}
	cmd.Flags().StringVar(&owner, "owner", "", "owner of the copied files in the sandbox (user, uid or uid:gid; default the sandbox's user)")
	cmd.Flags().BoolVarP(&preserve, "archive", "a", false, "keep the uid/gid of the copied files")
	return cmd
}

// splitRemote splits "ID:PATH"; a local path with a colon can be written
// ./a:b.
func splitRemote(arg string) (id, p string, remote bool) {
	if arg == "-" || strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") {
		return "", arg, false
	}
	id, p, ok := strings.Cut(arg, ":")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", arg, false
	}
	if p == "" {
		p = "."
	}
	return id, p, true
}

func upload(cmd *cobra.Command, c *sbx.Client, local, id, remote string, o sbx.UploadOptions) error {
	ctx := cmd.Context()
	if local == "-" {
		_, err := c.UploadArchive(ctx, id, remote, cmd.InOrStdin(), o)
		return err
	}
	fi, err := os.Lstat(local)
	if err != nil {
		return err
	}
	// Where does it go? Into an existing remote directory under its own
	// name, or to the remote path itself.
	destDir, name := remote, filepath.Base(filepath.Clean(local))
	if st, err := c.StatFile(ctx, id, remote, false); err != nil || st.Type != "dir" {
		if err != nil && !sbx.IsNotFound(err) {
			return err
		}
		destDir, name = path.Dir(remote), path.Base(remote)
	}
	if fi.Mode().IsRegular() {
		f, err := os.Open(local)
		if err != nil {
			return err
		}
		defer f.Close()
		o.Mode = uint32(fi.Mode().Perm())
		_, err = c.Upload(ctx, id, path.Join(destDir, name), f, o)
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeTar(pw, local, name)) }()
	_, err = c.UploadArchive(ctx, id, destDir, pr, o)
	pr.CloseWithError(err)
	return err
}

// writeTar writes the tree at local to w with its top renamed to name.
func writeTar(w io.Writer, local, name string) error {
	tw := tar.NewWriter(w)
	links := map[uint64]string{}
	err := filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(local, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return nil // sockets and the like are skipped
		}
		hdr.Name = filepath.ToSlash(filepath.Join(name, rel))
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uname, hdr.Gname = "", ""
		if ino, nlink := inode(fi); nlink > 1 && fi.Mode().IsRegular() {
			if first, ok := links[ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				return tw.WriteHeader(hdr)
			}
			links[ino] = hdr.Name
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.CopyN(tw, f, hdr.Size)
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

func download(cmd *cobra.Command, c *sbx.Client, id, remote, local string) error {
	ctx := cmd.Context()
	if local == "-" {
		rc, err := c.DownloadArchive(ctx, id, remote)
		if err != nil {
			return err
		}
		defer rc.Close()
		_, err = io.Copy(cmd.OutOrStdout(), rc)
		return err
	}
	st, err := c.StatFile(ctx, id, remote, false)
	if err != nil {
		return err
	}
	// Into an existing local directory under the source's name, or to the
	// local path itself.
	dest := local
	if fi, err := os.Stat(local); err == nil && fi.IsDir() {
		dest = filepath.Join(local, path.Base(path.Clean("/"+st.Path)))
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if st.Type != "dir" {
		return downloadFile(cmd, c, id, remote, dest)
	}
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return err
	}
	// The directory's contents, extracted with dest as the root.
	rc, err := c.DownloadArchive(ctx, id, strings.TrimSuffix(st.Path, "/")+"/.")
	if err != nil {
		return err
	}
	defer rc.Close()
	return extractTar(rc, dest)
}

func downloadFile(cmd *cobra.Command, c *sbx.Client, id, remote, dest string) error {
	rc, fi, err := c.Download(cmd.Context(), id, remote)
	if err != nil {
		return err
	}
	defer rc.Close()
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fs.FileMode(fi.Mode).Perm()|0o200)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// extractTar extracts r, an archive from an untrusted sandbox, into dir
// and nowhere else: entries are opened through os.Root at dir (no name and
// no symlink resolves outside it), hard links may only point at files this
// archive created, modes are set through the opened file, and device files
// are not recreated.
func extractTar(r io.Reader, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	created := map[string]bool{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}
		name := path.Clean(hdr.Name)
		if name == "." {
			continue
		}
		if name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
			return fmt.Errorf("archive entry %q points outside the destination", hdr.Name)
		}
		if err := extractEntry(root, name, hdr, tr, created); err != nil {
			return fmt.Errorf("extracting %s: %w", name, err)
		}
		created[name] = true
	}
}

func extractEntry(root *os.Root, name string, hdr *tar.Header, r io.Reader, created map[string]bool) error {
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	mode := fs.FileMode(hdr.Mode).Perm()
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Through the opened directory, never a path that a symlink in
		// the archive could redirect.
		fi, err := root.Lstat(name)
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("not a directory in the destination")
		}
		d, err := root.Open(name)
		if err != nil {
			return err
		}
		defer d.Close()
		return d.Chmod(mode | 0o700)
	case tar.TypeReg, tar.TypeRegA:
		root.Remove(name) // never write through an existing symlink
		f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, r); err != nil {
			f.Close()
			return err
		}
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case tar.TypeSymlink:
		root.Remove(name)
		return root.Symlink(hdr.Linkname, name)
	case tar.TypeLink:
		target := path.Clean(hdr.Linkname)
		if !created[target] {
			return fmt.Errorf("hard link to %q, which this archive did not create", hdr.Linkname)
		}
		root.Remove(name)
		return root.Link(target, name)
	}
	return nil // fifos and devices are not recreated on the host
}

// inode returns a file's inode number and link count.
func inode(fi fs.FileInfo) (uint64, uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino, uint64(st.Nlink)
	}
	return 0, 1
}

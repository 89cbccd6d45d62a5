package agent

// The file API of the toolbox (protocol version 1):
//
//	GET    /v1/files/stat?path=P[&nofollow=1]   -> FileInfo
//	GET    /v1/files/list?path=DIR              -> []FileInfo, sorted by name
//	GET    /v1/files/content?path=P             -> the file's bytes (Sbx-File-Info header: FileInfo)
//	PUT    /v1/files/content?path=P&mode=&owner=&parents=1&overwrite=0   body: the bytes -> FileInfo
//	GET    /v1/files/archive?path=P[&path=Q…]   -> tar of each path under its base name
//	PUT    /v1/files/archive?path=DIR&owner=&parents=1&preserve_owner=1  body: tar -> TreeResult
//	POST   /v1/files/mkdir    MkdirRequest      -> FileInfo
//	POST   /v1/files/move     MoveRequest       -> FileInfo of the destination
//	POST   /v1/files/chmod    ChmodRequest      -> FileInfo
//	DELETE /v1/files?path=P[&recursive=1]       -> 204
//	POST   /v1/files/find     FindRequest       -> FindResult (files)
//	POST   /v1/files/search   SearchRequest     -> FindResult (matches)
//	POST   /v1/files/replace  ReplaceRequest    -> []ReplaceResult
//
// Relative paths are taken from the sandbox's working directory. Every
// path is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
// under the file root (ServerConfig.FilesRoot, "/" in a sandbox): "..",
// absolute symlinks and symlinks swapped in mid-operation all stay inside
// it, as in a chroot, and /proc magic links are refused. Operations on the
// last component (create, rename, unlink, chown) go through the parent's
// directory fd, never through a path that could be re-resolved. Inside a
// sandbox the root is the container's own root, so the kernel is a second
// wall: the agent cannot name a host file at all.
//
// Writes are atomic (a temporary file in the same directory, renamed into
// place); a full disk (ENOSPC) is ErrResourceExhausted and leaves the old
// file whole.

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

const (
	defaultFindLimit = 1000
	maxFindLimit     = 100000
	// searchMaxFile: larger files are skipped by content search.
	searchMaxFile = 16 << 20
	// replaceMaxFile: larger files are refused by replace.
	replaceMaxFile = 64 << 20
	maxLineContent = 1000
)

func (s *server) fileRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/files/stat", s.fileHandler(s.handleStat))
	mux.HandleFunc("GET /v1/files/list", s.fileHandler(s.handleList))
	mux.HandleFunc("GET /v1/files/content", s.fileHandler(s.handleReadFile))
	mux.HandleFunc("PUT /v1/files/content", s.fileHandler(s.handleWriteFile))
	mux.HandleFunc("GET /v1/files/archive", s.fileHandler(s.handleReadTree))
	mux.HandleFunc("PUT /v1/files/archive", s.fileHandler(s.handleWriteTree))
	mux.HandleFunc("POST /v1/files/mkdir", s.fileHandler(s.handleMkdir))
	mux.HandleFunc("POST /v1/files/move", s.fileHandler(s.handleMove))
	mux.HandleFunc("POST /v1/files/chmod", s.fileHandler(s.handleChmod))
	mux.HandleFunc("DELETE /v1/files", s.fileHandler(s.handleRemove))
	mux.HandleFunc("POST /v1/files/find", s.fileHandler(s.handleFind))
	mux.HandleFunc("POST /v1/files/search", s.fileHandler(s.handleSearch))
	mux.HandleFunc("POST /v1/files/replace", s.fileHandler(s.handleReplace))
}

// fileHandler opens the file root for one request and turns a returned
// error into the wire error with the status of its kind.
func (s *server) fileHandler(fn func(w http.ResponseWriter, r *http.Request, fr *froot) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		fr, err := openRoot(s.filesRoot, s.filesCwd())
		if err == nil {
			defer fr.Close()
			err = fn(w, r, fr)
		}
		if err != nil {
			writeError(w, statusOfKind(err), err)
		}
	}
}

// statusOfKind is the agent's status for an error; the daemon reads the
// kind from the body, the status only helps people with curl.
func statusOfKind(err error) int {
	switch errdefs.Kind(err) {
	case errdefs.ErrNotFound:
		return http.StatusNotFound
	case errdefs.ErrAlreadyExists, errdefs.ErrConflict:
		return http.StatusConflict
	case errdefs.ErrInvalidArgument:
		return http.StatusBadRequest
	case errdefs.ErrPermissionDenied:
		return http.StatusForbidden
	case errdefs.ErrResourceExhausted:
		return http.StatusInsufficientStorage
	case errdefs.ErrTooLarge:
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

// filesCwd is the working directory as a path inside the file root.
func (s *server) filesCwd() string {
	if s.filesRoot == "/" {
		return s.dir
	}
	rel, err := filepath.Rel(s.filesRoot, s.dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "/"
	}
	return filepath.Join("/", rel)
}

// froot resolves sandbox paths under one directory.
type froot struct {
	fd  int
	cwd string
}

func openRoot(dir, cwd string) (*froot, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the file root %s: %w", dir, err)
	}
	return &froot{fd: fd, cwd: cwd}, nil
}

func (fr *froot) Close() error { return unix.Close(fr.fd) }

// abs makes p an absolute, clean sandbox path.
func (fr *froot) abs(p string) (string, error) {
	if p == "" {
		return "", errdefs.Public(errdefs.ErrInvalidArgument, "a path is required")
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", errdefs.Public(errdefs.ErrInvalidArgument, "path contains a NUL byte")
	}
	if !strings.HasPrefix(p, "/") {
		p = fr.cwd + "/" + p
	}
	return path.Clean(p), nil
}

// open opens sandbox path p (already absolute) inside the root.
func (fr *froot) openAbs(p string, flags int, mode uint32) (*os.File, error) {
	rel := strings.TrimPrefix(p, "/")
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(fr.fd, rel, &how)
		if err == unix.EAGAIN && i < 16 { // a concurrent rename: resolve again
			continue
		}
		if err != nil {
			return nil, pathError(p, err)
		}
		return os.NewFile(uintptr(fd), p), nil
	}
}

func (fr *froot) open(p string, flags int, mode uint32) (*os.File, string, error) {
	p, err := fr.abs(p)
	if err != nil {
		return nil, "", err
	}
	f, err := fr.openAbs(p, flags, mode)
	return f, p, err
}

// parent opens the directory holding p's last component.
func (fr *froot) parent(p string) (dir *os.File, base, abs string, err error) {
	abs, err = fr.abs(p)
	if err != nil {
		return nil, "", "", err
	}
	if abs == "/" {
		return nil, "", "", errdefs.Public(errdefs.ErrInvalidArgument, "not allowed on the root directory")
	}
	dir, err = fr.openAbs(path.Dir(abs), unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, "", "", err
	}
	return dir, path.Base(abs), abs, nil
}

// mkdirAll creates p and its missing parents with mode.
func (fr *froot) mkdirAll(p string, mode uint32, own *owner) error {
	p, err := fr.abs(p)
	if err != nil {
		return err
	}
	cur := "/"
	for _, comp := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		if comp == "" {
			continue
		}
		d, err := fr.openAbs(cur, unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(int(d.Fd()), comp, mode)
		if err == nil && own != nil {
			unix.Fchownat(int(d.Fd()), comp, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW)
		}
		d.Close()
		cur = path.Join(cur, comp)
		if err != nil && err != unix.EEXIST {
			return pathError(cur, err)
		}
	}
	// The last component may exist as a file, or as a symlink to one.
	f, err := fr.openAbs(p, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	return f.Close()
}

// pathError gives an errno a kind and a message naming the sandbox path.
func pathError(p string, err error) error {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s: %w", p, err)
	}
	switch errno {
	case unix.ENOENT:
		return errdefs.Publicf(errdefs.ErrNotFound, "%s: no such file or directory", p)
	case unix.EEXIST:
		return errdefs.Publicf(errdefs.ErrAlreadyExists, "%s: already exists", p)
	case unix.ENOTDIR:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: not a directory", p)
	case unix.EISDIR:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: is a directory", p)
	case unix.ENOTEMPTY:
		return errdefs.Publicf(errdefs.ErrConflict, "%s: directory not empty", p)
	case unix.EACCES, unix.EPERM:
		return errdefs.Publicf(errdefs.ErrPermissionDenied, "%s: permission denied", p)
	case unix.EROFS:
		return errdefs.Publicf(errdefs.ErrPermissionDenied, "%s: read-only file system", p)
	case unix.ENOSPC, unix.EDQUOT:
		return errdefs.Publicf(errdefs.ErrResourceExhausted, "%s: no space left on the sandbox's disk", p)
	case unix.ELOOP:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: too many levels of symbolic links, or a symlink where none may be", p)
	case unix.EXDEV:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: crosses a mount point", p)
	case unix.ENAMETOOLONG:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: name too long", p)
	case unix.EINVAL:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: invalid argument", p)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// ---- file information

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	}
	return "unknown"
}

// names maps ids to names from the sandbox's /etc/passwd and /etc/group,
// read once per request.
type names struct {
	fr     *froot
	loaded bool
	users  map[int]string
	groups map[int]string
}

func (n *names) load() {
	if n.loaded {
		return
	}
	n.loaded = true
	n.users, n.groups = map[int]string{}, map[int]string{}
	for file, m := range map[string]map[int]string{"/etc/passwd": n.users, "/etc/group": n.groups} {
		f, err := n.fr.openAbs(file, unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
			f.Close()
			continue
		}
		sc := bufio.NewScanner(io.LimitReader(f, 4<<20))
		for sc.Scan() {
			fields := strings.Split(sc.Text(), ":")
			if len(fields) >= 3 {
				if id, err := strconv.Atoi(fields[2]); err == nil {
					if _, dup := m[id]; !dup {
						m[id] = fields[0]
					}
				}
			}
		}
		f.Close()
	}
}

func (n *names) info(p string, st *unix.Stat_t, target string) FileInfo {
	n.load()
	name := path.Base(p)
	return FileInfo{
		Path: p, Name: name, Size: st.Size, Mode: st.Mode & 0o7777, Type: fileType(st.Mode),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec).UTC(),
		UID:     int(st.Uid), GID: int(st.Gid), Owner: n.users[int(st.Uid)], Group: n.groups[int(st.Gid)],
		Target: target, Nlink: uint64(st.Nlink),
	}
}

// statAt describes name in dirfd without following a final symlink.
func (n *names) statAt(dirfd int, name, p string) (FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return FileInfo{}, pathError(p, err)
	}
	target := ""
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		target, _ = readlinkAt(dirfd, name)
	}
	return n.info(p, &st, target), nil
}

// statPath describes p, following a final symlink unless nofollow.
func (fr *froot) stat(p string, nofollow bool) (FileInfo, error) {
	n := &names{fr: fr}
	if nofollow {
		dir, base, abs, err := fr.parent(p)
		if err != nil {
			if abs, aerr := fr.abs(p); aerr == nil && abs == "/" {
				return fr.stat("/", false)
			}
			return FileInfo{}, err
		}
		defer dir.Close()
		return n.statAt(int(dir.Fd()), base, abs)
	}
	f, abs, err := fr.open(p, unix.O_PATH, 0)
	if err != nil {
		return FileInfo{}, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return FileInfo{}, pathError(abs, err)
	}
	return n.info(abs, &st, ""), nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// readDirNames lists a directory fd's entries, sorted.
func readDirNames(dirfd int) ([]string, error) {
	fd, err := unix.Openat(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// ---- handlers: reading

func (s *server) handleStat(w http.ResponseWriter, r *http.Request, fr *froot) error {
	fi, err := fr.stat(r.URL.Query().Get("path"), r.URL.Query().Get("nofollow") == "1")
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fi)
	return nil
}

func (s *server) handleList(w http.ResponseWriter, r *http.Request, fr *froot) error {
	d, abs, err := fr.open(r.URL.Query().Get("path"), unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	entries, err := readDirNames(int(d.Fd()))
	if err != nil {
		return pathError(abs, err)
	}
	n := &names{fr: fr}
	out := make([]FileInfo, 0, len(entries))
	for _, e := range entries {
		fi, err := n.statAt(int(d.Fd()), e, path.Join(abs, e))
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, fi)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *server) handleReadFile(w http.ResponseWriter, r *http.Request, fr *froot) error {
	f, abs, err := fr.open(r.URL.Query().Get("path"), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return pathError(abs, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: is a directory: download it as an archive", abs)
	default:
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: not a regular file", abs)
	}
	fi := (&names{fr: fr}).info(abs, &st, "")
	hdr, _ := json.Marshal(fi)
	w.Header().Set(fileInfoHeader, string(hdr))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(st.Size, 10))
	w.WriteHeader(http.StatusOK)
	io.CopyN(w, f, st.Size)
	return nil
}

func (s *server) handleReadTree(w http.ResponseWriter, r *http.Request, fr *froot) error {
	paths := r.URL.Query()["path"]
	if len(paths) == 0 {
		return errdefs.Public(errdefs.ErrInvalidArgument, "a path is required")
	}
	// Resolve every path before the first byte, so that a missing one is
	// a clean error and not a cut tar stream.
	type top struct {
		dir       *os.File
		name, tar string
		abs       string
	}
	var tops []top
	defer func() {
		for _, t := range tops {
			t.dir.Close()
		}
	}()
	for _, p := range paths {
		abs, err := fr.abs(p)
		if err != nil {
			return err
		}
		if abs == "/" || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == "." {
			d, err := fr.openAbs(abs, unix.O_PATH|unix.O_DIRECTORY, 0)
			if err != nil {
				return err
			}
			// "dir/." (and "/") archive the directory's contents, with no
			// top-level name, as `docker cp dir/.` does.
			name := path.Base(abs)
			if abs == "/" || strings.HasSuffix(p, "/.") || p == "." {
				name = ""
			}
			tops = append(tops, top{d, ".", name, abs})
			continue
		}
		d, base, abs, err := fr.parent(p)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			d.Close()
			return pathError(abs, err)
		}
		tops = append(tops, top{d, base, base, abs})
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	tw := &treeWriter{tw: tar.NewWriter(w), links: map[[2]uint64]string{}}
	for _, t := range tops {
		if err := tw.add(int(t.dir.Fd()), t.name, t.tar); err != nil {
			// The status is sent: a broken stream is all we can say.
			s.log.Warn("archive download", "path", t.abs, "err", err)
			return nil
		}
	}
	tw.tw.Close()
	return nil
}

// treeWriter writes a tree to tar through directory fds, never following
// symlinks below the top.
type treeWriter struct {
	tw    *tar.Writer
	links map[[2]uint64]string // dev/ino of files with several links -> first name
}

func (t *treeWriter) add(dirfd int, name, tarName string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	hdr := &tar.Header{
		Name: tarName, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec), Format: tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if tarName != "" {
			hdr.Typeflag, hdr.Name = tar.TypeDir, tarName+"/"
			if err := t.tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		entries, err := readDirNames(fd)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := t.add(fd, e, path.Join(tarName, e)); err != nil {
				return err
			}
		}
		return nil
	case unix.S_IFREG:
		key := [2]uint64{uint64(st.Dev), st.Ino}
		if st.Nlink > 1 {
			if first, ok := t.links[key]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return t.tw.WriteHeader(hdr)
			}
			t.links[key] = tarName
		}
		// Non-blocking, and checked to be the file just stat'ed: a FIFO
		// swapped in would otherwise hang the download.
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), tarName)
		defer f.Close()
		var fst unix.Stat_t
		if err := unix.Fstat(fd, &fst); err != nil || fst.Mode&unix.S_IFMT != unix.S_IFREG || fst.Ino != st.Ino || fst.Dev != st.Dev {
			return fmt.Errorf("%s changed while being archived", tarName)
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if err := t.tw.WriteHeader(hdr); err != nil {
			return err
		}
		// A file that shrank meanwhile is padded with zeros, one that grew
		// is cut: the header's size is what was promised.
		n, err := io.CopyN(t.tw, f, st.Size)
		if err == io.EOF {
			_, err = io.CopyN(t.tw, zeros{}, st.Size-n)
		}
		return err
	case unix.S_IFLNK:
		target, err := readlinkAt(dirfd, name)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	default:
		return nil // sockets have no place in an archive
	}
	return t.tw.WriteHeader(hdr)
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// ---- handlers: writing

// owner is a resolved uid/gid.
type owner struct{ uid, gid int }

// resolveOwner resolves "user", "uid", "user:group" or "uid:gid" against
// the sandbox's users; "" is the default user, or nil (leave as created).
func (s *server) resolveOwner(spec string) (*owner, error) {
	if spec == "" {
		spec = s.user
	}
	if spec == "" {
		return nil, nil
	}
	u, g, hasGroup := strings.Cut(spec, ":")
	id, err := resolveUser(s.etcDir, u)
	if err != nil {
		return nil, err
	}
	o := &owner{uid: int(id.UID), gid: int(id.GID)}
	if hasGroup {
		if n, err := strconv.Atoi(g); err == nil {
			o.gid = n
		} else if gid, ok := lookupGroup(s.etcDir, g); ok {
			o.gid = gid
		} else {
			return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "unknown group %q", g)
		}
	}
	return o, nil
}

func lookupGroup(etcDir, name string) (int, bool) {
	groups, err := readGroup(filepath.Join(etcDir, "group"))
	if err != nil {
		return 0, false
	}
	for _, g := range groups {
		if g.name == name {
			return int(g.gid), true
		}
	}
	return 0, false
}

// writeOpts parses the query of an upload.
func (s *server) writeOpts(r *http.Request) (WriteOptions, *owner, error) {
	q := r.URL.Query()
	o := WriteOptions{
		Owner: q.Get("owner"), Parents: q.Get("parents") == "1",
		NoOverwrite: q.Get("overwrite") == "0", PreserveOwner: q.Get("preserve_owner") == "1",
	}
	if m := q.Get("mode"); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil || v > 0o7777 {
			return o, nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "mode %q is not an octal file mode", m)
		}
		o.Mode = uint32(v)
	}
	own, err := s.resolveOwner(o.Owner)
	return o, own, err
}

func tempName(base string) string {
	var b [6]byte
	rand.Read(b[:])
	return ".sbx-" + hex.EncodeToString(b[:]) + "-" + base
}

// writeAtomic writes r to base in dir through a temporary file. With
// keep, an existing file's mode and owner are kept unless mode/own are
// given.
func writeAtomic(dir *os.File, base, abs string, r io.Reader, mode uint32, own *owner, noReplace bool) error {
	dfd := int(dir.Fd())
	var old unix.Stat_t
	exists := unix.Fstatat(dfd, base, &old, unix.AT_SYMLINK_NOFOLLOW) == nil
	if exists {
		if noReplace {
			return errdefs.Publicf(errdefs.ErrAlreadyExists, "%s: already exists", abs)
		}
		if old.Mode&unix.S_IFMT == unix.S_IFDIR {
			return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: is a directory", abs)
		}
		if old.Mode&unix.S_IFMT == unix.S_IFREG {
			if mode == 0 {
				mode = old.Mode & 0o7777
			}
			if own == nil {
				own = &owner{int(old.Uid), int(old.Gid)}
			}
		}
	}
	if mode == 0 {
		mode = 0o644
	}
	tmp := tempName(base)
	fd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return pathError(abs, err)
	}
	f := os.NewFile(uintptr(fd), tmp)
	fail := func(err error) error {
		f.Close()
		unix.Unlinkat(dfd, tmp, 0)
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			return fail(pathError(abs, err))
		}
		return fail(fmt.Errorf("receiving %s: %w", abs, err))
	}
	if own != nil {
		if err := f.Chown(own.uid, own.gid); err != nil {
			return fail(pathError(abs, err))
		}
	}
	if err := f.Chmod(os.FileMode(mode&0o777) | modeBits(mode)); err != nil {
		return fail(pathError(abs, err))
	}
	if err := f.Close(); err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return pathError(abs, err)
	}
	flags := uint(0)
	if noReplace {
		flags = unix.RENAME_NOREPLACE
	}
	if err := unix.Renameat2(dfd, tmp, dfd, base, flags); err != nil {
		unix.Unlinkat(dfd, tmp, 0)
		return pathError(abs, err)
	}
	return nil
}

// modeBits turns setuid/setgid/sticky bits into os.FileMode bits.
func modeBits(mode uint32) os.FileMode {
	var m os.FileMode
	if mode&unix.S_ISUID != 0 {
		m |= os.ModeSetuid
	}
	if mode&unix.S_ISGID != 0 {
		m |= os.ModeSetgid
	}
	if mode&unix.S_ISVTX != 0 {
		m |= os.ModeSticky
	}
	return m
}

func (s *server) handleWriteFile(w http.ResponseWriter, r *http.Request, fr *froot) error {
	o, own, err := s.writeOpts(r)
	if err != nil {
		return err
	}
	p := r.URL.Query().Get("path")
	if o.Parents {
		abs, err := fr.abs(p)
		if err != nil {
			return err
		}
		if err := fr.mkdirAll(path.Dir(abs), 0o755, own); err != nil {
			return err
		}
	}
	dir, base, abs, err := fr.parent(p)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := writeAtomic(dir, base, abs, r.Body, o.Mode, own, o.NoOverwrite); err != nil {
		return err
	}
	fi, err := (&names{fr: fr}).statAt(int(dir.Fd()), base, abs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fi)
	return nil
}

func (s *server) handleWriteTree(w http.ResponseWriter, r *http.Request, fr *froot) error {
	o, own, err := s.writeOpts(r)
	if err != nil {
		return err
	}
	dest, err := fr.abs(r.URL.Query().Get("path"))
	if err != nil {
		return err
	}
	if o.Parents {
		if err := fr.mkdirAll(dest, 0o755, own); err != nil {
			return err
		}
	}
	d, err := fr.openAbs(dest, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	// The destination becomes the root of the extraction: no entry name
	// and no symlink in the tree can reach above it.
	sub := &froot{fd: int(d.Fd()), cwd: "/"}
	defer d.Close()
	res, err := s.extract(sub, dest, tar.NewReader(r.Body), o, own)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *server) extract(dr *froot, dest string, tr *tar.Reader, o WriteOptions, own *owner) (TreeResult, error) {
	var res TreeResult
	dirMode := o.Mode
	if dirMode == 0 {
		dirMode = 0o755
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return res, nil
		}
		if err != nil {
			return res, errdefs.Publicf(errdefs.ErrInvalidArgument, "reading the tar stream: %v", err)
		}
		name := path.Clean("/" + hdr.Name)
		shown := path.Join(dest, name)
		if name == "/" {
			continue
		}
		eown := own
		if o.PreserveOwner {
			eown = &owner{hdr.Uid, hdr.Gid}
		}
		if err := dr.mkdirAll(path.Dir(name), dirMode, own); err != nil {
			return res, relabel(err, dest)
		}
		dir, base, _, err := dr.parent(name)
		if err != nil {
			return res, relabel(err, dest)
		}
		err = s.extractOne(dr, dir, base, shown, hdr, tr, eown, &res)
		dir.Close()
		if err != nil {
			return res, err
		}
		res.Files++
	}
}

// relabel rewrites a path error from a sub-root (whose paths start at
// its "/") into one naming the sandbox path.
func relabel(err error, dest string) error {
	if dest == "/" {
		return err
	}
	if msg := errdefs.Message(err); strings.HasPrefix(msg, "/") {
		return errdefs.Public(errdefs.Kind(err), path.Join(dest, msg))
	}
	return err
}

func (s *server) extractOne(dr *froot, dir *os.File, base, shown string, hdr *tar.Header, tr *tar.Reader, own *owner, res *TreeResult) error {
	dfd := int(dir.Fd())
	mode := uint32(hdr.Mode) & 0o7777
	chown := func() error {
		if own == nil {
			return nil
		}
		if err := unix.Fchownat(dfd, base, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return pathError(shown, err)
		}
		return nil
	}
	// Anything but a directory replaces what is there (not a directory).
	replace := func() error {
		var st unix.Stat_t
		if unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			return nil
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return errdefs.Publicf(errdefs.ErrConflict, "%s: a directory is in the way", shown)
		}
		if err := unix.Unlinkat(dfd, base, 0); err != nil {
			return pathError(shown, err)
		}
		return nil
	}
	times := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(dfd, base, 0o700); err != nil && err != unix.EEXIST {
			return pathError(shown, err)
		}
		// Owner and mode through the opened directory: a symlink swapped
		// in after the mkdir cannot redirect them.
		fd, err := unix.Openat(dfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return errdefs.Publicf(errdefs.ErrConflict, "%s: not a directory", shown)
		}
		var m = mode
		err = chmodFd(fd, &m, own)
		unix.Close(fd)
		if err != nil {
			return pathError(shown, err)
		}
	case tar.TypeReg, tar.TypeRegA:
		if err := writeAtomic(dir, base, shown, tr, modeOr(mode, 0o644), own, false); err != nil {
			return err
		}
		res.Bytes += hdr.Size
	case tar.TypeSymlink:
		if err := replace(); err != nil {
			return err
		}
		if err := unix.Symlinkat(hdr.Linkname, dfd, base); err != nil {
			return pathError(shown, err)
		}
		if err := chown(); err != nil {
			return err
		}
	case tar.TypeLink:
		// The target is resolved inside the destination too.
		tdir, tbase, _, err := dr.parent(path.Clean("/" + hdr.Linkname))
		if err != nil {
			return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: hard link to %s: %v", shown, hdr.Linkname, errdefs.Message(err))
		}
		defer tdir.Close()
		if err := replace(); err != nil {
			return err
		}
		if err := unix.Linkat(int(tdir.Fd()), tbase, dfd, base, 0); err != nil {
			return pathError(shown, err)
		}
		return nil // a hard link shares the target's mode, owner and times
	case tar.TypeFifo:
		if err := replace(); err != nil {
			return err
		}
		if err := unix.Mkfifoat(dfd, base, mode); err != nil {
			return pathError(shown, err)
		}
		if err := chown(); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock:
		return errdefs.Publicf(errdefs.ErrPermissionDenied, "%s: device files cannot be created in a sandbox", shown)
	default:
		return nil // PAX globals, GNU long names are handled by archive/tar; others skipped
	}
	unix.UtimesNanoAt(dfd, base, times, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

func modeOr(m, def uint32) uint32 {
	if m&0o777 == 0 && m == 0 {
		return def
	}
	return m
}

func (s *server) handleMkdir(w http.ResponseWriter, r *http.Request, fr *froot) error {
	var req MkdirRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	own, err := s.resolveOwner(req.Owner)
	if err != nil {
		return err
	}
	mode := req.Mode
	if mode == 0 {
		mode = 0o755
	}
	if req.Parents {
		if err := fr.mkdirAll(req.Path, mode, own); err != nil {
			return err
		}
	} else {
		dir, base, abs, err := fr.parent(req.Path)
		if err != nil {
			return err
		}
		err = unix.Mkdirat(int(dir.Fd()), base, mode)
		if err == nil && own != nil {
			err = unix.Fchownat(int(dir.Fd()), base, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW)
		}
		dir.Close()
		if err != nil {
			return pathError(abs, err)
		}
	}
	fi, err := fr.stat(req.Path, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, fi)
	return nil
}

func (s *server) handleMove(w http.ResponseWriter, r *http.Request, fr *froot) error {
	var req MoveRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	sdir, sbase, sabs, err := fr.parent(req.Source)
	if err != nil {
		return err
	}
	defer sdir.Close()
	ddir, dbase, dabs, err := fr.parent(req.Destination)
	if err != nil {
		return err
	}
	defer ddir.Close()
	if sabs == dabs || strings.HasPrefix(dabs, sabs+"/") {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "cannot move %s into itself", sabs)
	}
	flags := uint(unix.RENAME_NOREPLACE)
	if req.Overwrite {
		flags = 0
	}
	if err := unix.Renameat2(int(sdir.Fd()), sbase, int(ddir.Fd()), dbase, flags); err != nil {
		if err == unix.EEXIST {
			return errdefs.Publicf(errdefs.ErrAlreadyExists, "%s: already exists (set overwrite to replace it)", dabs)
		}
		if err == unix.ENOENT {
			return pathError(sabs, err)
		}
		return pathError(dabs, err)
	}
	fi, err := (&names{fr: fr}).statAt(int(ddir.Fd()), dbase, dabs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fi)
	return nil
}

func (s *server) handleRemove(w http.ResponseWriter, r *http.Request, fr *froot) error {
	q := r.URL.Query()
	dir, base, abs, err := fr.parent(q.Get("path"))
	if err != nil {
		return err
	}
	defer dir.Close()
	if q.Get("recursive") == "1" {
		err = removeAllAt(int(dir.Fd()), base, abs)
	} else {
		err = unix.Unlinkat(int(dir.Fd()), base, 0)
		if err == unix.EISDIR {
			err = unix.Unlinkat(int(dir.Fd()), base, unix.AT_REMOVEDIR)
			if err == unix.ENOTEMPTY || err == unix.EEXIST {
				return errdefs.Publicf(errdefs.ErrConflict, "%s: directory not empty (remove it recursively)", abs)
			}
		}
		if err != nil {
			err = pathError(abs, err)
		}
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// removeAllAt removes name in dirfd and, for a directory, everything in
// it, never following a symlink.
func removeAllAt(dirfd int, name, abs string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return pathError(abs, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return pathError(abs, err)
	}
	entries, err := readDirNames(fd)
	if err == nil {
		for _, e := range entries {
			if err = removeAllAt(fd, e, path.Join(abs, e)); err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil {
		return pathError(abs, err)
	}
	return nil
}

func (s *server) handleChmod(w http.ResponseWriter, r *http.Request, fr *froot) error {
	var req ChmodRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Mode == nil && req.Owner == "" {
		return errdefs.Public(errdefs.ErrInvalidArgument, "give a mode, an owner or both")
	}
	if req.Mode != nil && *req.Mode > 0o7777 {
		return errdefs.Public(errdefs.ErrInvalidArgument, "mode must be at most 07777")
	}
	var own *owner
	if req.Owner != "" {
		o, err := s.resolveOwner(req.Owner)
		if err != nil {
			return err
		}
		own = o
	}
	f, abs, err := fr.open(req.Path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := chmodFd(int(f.Fd()), req.Mode, own); err != nil {
		return pathError(abs, err)
	}
	if req.Recursive {
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := chmodTree(int(f.Fd()), abs, req.Mode, own); err != nil {
				return err
			}
		}
	}
	fi, err := fr.stat(abs, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, fi)
	return nil
}

func chmodFd(fd int, mode *uint32, own *owner) error {
	if own != nil {
		if err := unix.Fchown(fd, own.uid, own.gid); err != nil {
			return err
		}
	}
	if mode != nil {
		return unix.Fchmod(fd, *mode)
	}
	return nil
}

// chmodTree applies mode/owner below dirfd; symlinks get the owner only.
func chmodTree(dirfd int, abs string, mode *uint32, own *owner) error {
	entries, err := readDirNames(dirfd)
	if err != nil {
		return pathError(abs, err)
	}
	for _, e := range entries {
		p := path.Join(abs, e)
		var st unix.Stat_t
		if unix.Fstatat(dirfd, e, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if own != nil {
				unix.Fchownat(dirfd, e, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW)
			}
			continue
		}
		fd, err := unix.Openat(dirfd, e, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return pathError(p, err)
		}
		err = chmodFd(fd, mode, own)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = chmodTree(fd, p, mode, own)
		} else if err != nil {
			err = pathError(p, err)
		}
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// ---- find, search, replace

// walk visits the tree below the directory p (not crossing into other
// file systems, like find -xdev, so /proc and /sys are not searched from
// /), calling fn for each entry; fn returns false to stop.
func (fr *froot) walk(p string, fn func(dirfd int, name, abs string, st *unix.Stat_t) bool) error {
	d, abs, err := fr.open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer d.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(d.Fd()), &st); err != nil {
		return pathError(abs, err)
	}
	walkDir(int(d.Fd()), abs, st.Dev, fn)
	return nil
}

func walkDir(dirfd int, abs string, dev uint64, fn func(dirfd int, name, abs string, st *unix.Stat_t) bool) bool {
	entries, err := readDirNames(dirfd)
	if err != nil {
		return true
	}
	for _, e := range entries {
		var st unix.Stat_t
		if unix.Fstatat(dirfd, e, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
			continue
		}
		p := path.Join(abs, e)
		if !fn(dirfd, e, p, &st) {
			return false
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev == dev {
			fd, err := unix.Openat(dirfd, e, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			more := walkDir(fd, p, dev, fn)
			unix.Close(fd)
			if !more {
				return false
			}
		}
	}
	return true
}

func findLimit(n int) int {
	if n <= 0 {
		return defaultFindLimit
	}
	return min(n, maxFindLimit)
}

func (s *server) handleFind(w http.ResponseWriter, r *http.Request, fr *froot) error {
	var req FindRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if _, err := path.Match(req.Pattern, ""); err != nil || req.Pattern == "" {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "pattern %q is not a valid glob", req.Pattern)
	}
	limit := findLimit(req.Limit)
	res := FindResult{Files: []FileInfo{}}
	n := &names{fr: fr}
	err := fr.walk(req.Path, func(dirfd int, name, abs string, st *unix.Stat_t) bool {
		if ok, _ := path.Match(req.Pattern, name); !ok {
			return true
		}
		if len(res.Files) == limit {
			res.Truncated = true
			return false
		}
		target := ""
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, _ = readlinkAt(dirfd, name)
		}
		res.Files = append(res.Files, n.info(abs, st, target))
		return true
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

// matcher finds a pattern in a line: literal or RE2.
type matcher struct {
	lit string
	re  *regexp.Regexp
}

func newMatcher(pattern string, regex bool) (*matcher, error) {
	if pattern == "" {
		return nil, errdefs.Public(errdefs.ErrInvalidArgument, "a pattern is required")
	}
	if !regex {
		return &matcher{lit: pattern}, nil
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, errdefs.Publicf(errdefs.ErrInvalidArgument, "pattern: %v", err)
	}
	return &matcher{re: re}, nil
}

func (m *matcher) index(line []byte) int {
	if m.re == nil {
		return bytes.Index(line, []byte(m.lit))
	}
	if loc := m.re.FindIndex(line); loc != nil {
		return loc[0]
	}
	return -1
}

func (s *server) handleSearch(w http.ResponseWriter, r *http.Request, fr *froot) error {
	var req SearchRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	m, err := newMatcher(req.Pattern, req.Regex)
	if err != nil {
		return err
	}
	if req.Glob != "" {
		if _, err := path.Match(req.Glob, ""); err != nil {
			return errdefs.Publicf(errdefs.ErrInvalidArgument, "glob %q is not valid", req.Glob)
		}
	}
	limit := findLimit(req.Limit)
	res := FindResult{Matches: []SearchMatch{}}
	search := func(f *os.File, abs string) bool {
		br := bufio.NewReaderSize(f, 64<<10)
		head, _ := br.Peek(8000)
		if bytes.IndexByte(head, 0) >= 0 {
			return true // binary
		}
		line := 0
		for {
			text, err := br.ReadSlice('\n')
			if err == bufio.ErrBufferFull {
				// A very long line: search what fits, skip the rest.
				for err == bufio.ErrBufferFull {
					_, err = br.ReadSlice('\n')
				}
			}
			if len(text) > 0 {
				line++
				if i := m.index(text); i >= 0 {
					if len(res.Matches) == limit {
						res.Truncated = true
						return false
					}
					content := strings.TrimRight(string(text), "\r\n")
					if len(content) > maxLineContent {
						content = content[:maxLineContent]
					}
					res.Matches = append(res.Matches, SearchMatch{Path: abs, Line: line, Column: i + 1, Content: strings.ToValidUTF8(content, "\uFFFD")})
				}
			}
			if err != nil {
				return true
			}
		}
	}
	// A single file may be searched too.
	if fi, err := fr.stat(req.Path, false); err == nil && fi.Type == "file" {
		f, abs, err := fr.open(req.Path, unix.O_RDONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return err
		}
		if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() || fi.Size() > searchMaxFile {
			f.Close()
			return errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: not a regular file of at most %d MiB", abs, searchMaxFile>>20)
		}
		search(f, abs)
		f.Close()
		writeJSON(w, http.StatusOK, res)
		return nil
	}
	err = fr.walk(req.Path, func(dirfd int, name, abs string, st *unix.Stat_t) bool {
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Size > searchMaxFile {
			return true
		}
		if req.Glob != "" {
			if ok, _ := path.Match(req.Glob, name); !ok {
				return true
			}
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return true
		}
		f := os.NewFile(uintptr(fd), abs)
		more := search(f, abs)
		f.Close()
		return more
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *server) handleReplace(w http.ResponseWriter, r *http.Request, fr *froot) error {
	var req ReplaceRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	m, err := newMatcher(req.Pattern, req.Regex)
	if err != nil {
		return err
	}
	if len(req.Paths) == 0 {
		return errdefs.Public(errdefs.ErrInvalidArgument, "paths must name at least one file")
	}
	out := make([]ReplaceResult, 0, len(req.Paths))
	for _, p := range req.Paths {
		n, abs, err := replaceIn(fr, p, m, req.Replacement)
		rr := ReplaceResult{Path: abs, Replacements: n}
		if abs == "" {
			rr.Path = p
		}
		if err != nil {
			rr.Error = errdefs.Message(err)
		}
		out = append(out, rr)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func replaceIn(fr *froot, p string, m *matcher, repl string) (int, string, error) {
	dir, base, abs, err := fr.parent(p)
	if err != nil {
		return 0, "", err
	}
	defer dir.Close()
	fd, err := unix.Openat(int(dir.Fd()), base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, abs, pathError(abs, err)
	}
	f := os.NewFile(uintptr(fd), abs)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return 0, abs, errdefs.Publicf(errdefs.ErrInvalidArgument, "%s: not a regular file", abs)
	}
	if st.Size > replaceMaxFile {
		f.Close()
		return 0, abs, errdefs.Publicf(errdefs.ErrTooLarge, "%s: larger than %d MiB", abs, replaceMaxFile>>20)
	}
	data, err := io.ReadAll(io.LimitReader(f, replaceMaxFile+1))
	f.Close()
	if err != nil {
		return 0, abs, pathError(abs, err)
	}
	if len(data) > replaceMaxFile {
		return 0, abs, errdefs.Publicf(errdefs.ErrTooLarge, "%s: larger than %d MiB", abs, replaceMaxFile>>20)
	}
	var n int
	var out []byte
	if m.re == nil {
		n = bytes.Count(data, []byte(m.lit))
		out = bytes.ReplaceAll(data, []byte(m.lit), []byte(repl))
	} else {
		n = len(m.re.FindAllIndex(data, -1))
		out = m.re.ReplaceAll(data, []byte(repl))
	}
	if n == 0 {
		return 0, abs, nil
	}
	if len(out) > 2*replaceMaxFile {
		return 0, abs, errdefs.Publicf(errdefs.ErrTooLarge, "%s: the result would exceed %d MiB", abs, 2*replaceMaxFile>>20)
	}
	if err := writeAtomic(dir, base, abs, bytes.NewReader(out), 0, nil, false); err != nil {
		return 0, abs, err
	}
	return n, abs, nil
}

// ---- helpers

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "decoding request: %v", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

package agent

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// fileEnv is an agent whose file root is a temp dir, with a canary
// directory beside it that no call may read or change.
type fileEnv struct {
	c      *Client
	root   string
	canary string
}

const secret = "host secret\n"

func newFileEnv(t *testing.T) *fileEnv {
	t.Helper()
	base := t.TempDir()
	root := filepath.Join(base, "root")
	canary := filepath.Join(base, "canary")
	for _, d := range []string{root, canary, filepath.Join(root, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(canary, "secret"), []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := startServer(t, ServerConfig{Dir: filepath.Join(root, "work"), FilesRoot: root})
	e := &fileEnv{c: c, root: root, canary: canary}
	t.Cleanup(func() { e.checkCanary(t) })
	return e
}

// checkCanary fails if the canary directory holds anything but its secret.
func (e *fileEnv) checkCanary(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir(e.canary)
	var names []string
	for _, en := range entries {
		names = append(names, en.Name())
	}
	if diff := cmp.Diff([]string{"secret"}, names); diff != "" {
		t.Errorf("canary directory changed (-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(filepath.Join(e.canary, "secret")); string(b) != secret {
		t.Errorf("canary secret changed: %q", b)
	}
	if fi, err := os.Stat(filepath.Join(e.canary, "secret")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("canary secret mode changed: %v %v", fi.Mode(), err)
	}
}

func (e *fileEnv) read(t *testing.T, p string) (string, error) {
	t.Helper()
	rc, _, err := e.c.ReadFile(t.Context(), p)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

func (e *fileEnv) write(t *testing.T, p, content string, o WriteOptions) {
	t.Helper()
	if _, err := e.c.WriteFile(t.Context(), p, strings.NewReader(content), o); err != nil {
		t.Fatalf("WriteFile(%s): %v", p, err)
	}
}

func tarOf(t *testing.T, entries ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		body := h.Linkname
		if h.Typeflag == tar.TypeReg {
			body = h.Uname
			h.Uname = ""
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// reg is a regular-file tar entry (content carried in Uname until tarOf).
func reg(name, content string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Uname: content}
}

// TestFilePathEscapes tries every way out of the root we know of: none
// may read, write, move, chmod or delete a file outside it.
func TestFilePathEscapes(t *testing.T) {
	e := newFileEnv(t)
	secretPath := filepath.Join(e.canary, "secret")
	// Planted by "the sandbox": links that point at the host's files.
	for name, target := range map[string]string{
		"abs":     secretPath,                           // absolute symlink to the host file
		"rel":     "../../../../../../../" + secretPath, // relative, climbing far above
		"absdir":  e.canary,                             // a directory symlink out
		"reldir":  "../canary",                          // relative directory link
		"loop":    "loop",
		"procfd":  "/proc/self/fd/0",
		"procroo": "/proc/self/root" + e.canary,
	} {
		if err := os.Symlink(target, filepath.Join(e.root, name)); err != nil {
			t.Fatal(err)
		}
	}
	reads := []string{
		"../canary/secret", "/../canary/secret", "../../" + secretPath, secretPath,
		"abs", "rel", "absdir/secret", "reldir/secret", "/work/../../canary/secret", "loop", "procfd", "procroo/secret",
	}
	for _, p := range reads {
		if got, err := e.read(t, p); err == nil || strings.Contains(got, "secret") {
			t.Errorf("ReadFile(%q) = %q, %v; want an error", p, got, err)
		}
		if fi, err := e.c.Stat(t.Context(), p, false); err == nil && fi.Size == int64(len(secret)) {
			t.Errorf("Stat(%q) found the host file: %+v", p, fi)
		}
	}
	// Writes through the links land inside the root or fail.
	for _, p := range []string{"absdir/new", "reldir/new", "../canary/new", secretPath} {
		e.c.WriteFile(t.Context(), p, strings.NewReader("x"), WriteOptions{Parents: true})
	}
	for _, p := range []string{"abs", "rel"} {
		// Writing "through" a file symlink replaces the link itself.
		if _, err := e.c.WriteFile(t.Context(), p, strings.NewReader("x"), WriteOptions{}); err != nil {
			t.Errorf("WriteFile(%s): %v", p, err)
		}
	}
	mode := uint32(0o777)
	e.c.Chmod(t.Context(), ChmodRequest{Path: "absdir/secret", Mode: &mode})
	e.c.Chmod(t.Context(), ChmodRequest{Path: "reldir", Mode: &mode, Recursive: true})
	e.c.Move(t.Context(), MoveRequest{Source: "absdir/secret", Destination: "/stolen"})
	e.c.Move(t.Context(), MoveRequest{Source: "/work", Destination: "../canary/work"})
	e.c.Remove(t.Context(), "absdir/secret", false)
	e.c.Remove(t.Context(), "reldir", true) // removes the link only
	e.c.Replace(t.Context(), ReplaceRequest{Paths: []string{"absdir/secret", secretPath}, Pattern: "host", Replacement: "pwned"})
	res, err := e.c.Search(t.Context(), SearchRequest{Path: "/", Pattern: "host secret"})
	if err != nil || len(res.Matches) != 0 {
		t.Errorf("Search found %+v, %v", res.Matches, err)
	}
	// Archives: names with .., absolute names, a symlink entry followed by
	// a file through it, and a hard link to a host path.
	evil := tarOf(t,
		reg("../../evil1", "x"),
		reg(filepath.Join(e.canary, "evil2"), "x"),
		&tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: e.canary},
		reg("out/evil3", "x"),
		&tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../../../../canary"},
		reg("up/evil4", "x"),
		&tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: secretPath},
	)
	e.c.WriteTree(t.Context(), "/x", bytes.NewReader(evil), WriteOptions{Parents: true})
	rc, err := e.c.ReadTree(t.Context(), []string{"absdir", "/"})
	if err == nil {
		b, _ := io.ReadAll(rc)
		rc.Close()
		if bytes.Contains(b, []byte(secret)) {
			t.Error("an archive download contains the host secret")
		}
	}
	// What was written landed inside the root.
	if _, err := os.Stat(filepath.Join(e.root, "x/evil1")); err != nil {
		t.Errorf("../../evil1 should land at the top of the destination: %v", err)
	}
}

// TestFileSymlinkRace swaps a directory for a symlink out of the root
// while uploads go through it: nothing may land outside.
func TestFileSymlinkRace(t *testing.T) {
	e := newFileEnv(t)
	flip := filepath.Join(e.root, "flip")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			os.RemoveAll(flip)
			os.Mkdir(flip, 0o755)
			os.RemoveAll(flip)
			os.Symlink(e.canary, flip)
		}
	}()
	deadline := time.Now().Add(500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		e.c.WriteFile(t.Context(), "/flip/raced", strings.NewReader("x"), WriteOptions{})
		e.c.Mkdir(t.Context(), MkdirRequest{Path: "/flip/rdir"})
		e.c.WriteTree(t.Context(), "/flip", bytes.NewReader(tarOf(t, reg("t", "x"))), WriteOptions{})
		e.c.Remove(t.Context(), "/flip/secret", true)
	}
	close(stop)
	wg.Wait()
}

func TestFileOperations(t *testing.T) {
	e := newFileEnv(t)
	ctx := t.Context()
	e.write(t, "hello.txt", "hello world\nsecond line hello\n", WriteOptions{Mode: 0o640})
	// Relative paths are taken from the working directory.
	fi, err := e.c.Stat(ctx, "/work/hello.txt", false)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Path != "/work/hello.txt" || fi.Mode != 0o640 || fi.Type != "file" || fi.Size != 30 {
		t.Errorf("Stat = %+v", fi)
	}
	if got, err := e.read(t, "/work/hello.txt"); err != nil || got != "hello world\nsecond line hello\n" {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
	// Overwrite keeps the mode; NoOverwrite refuses.
	e.write(t, "hello.txt", "hello again\n", WriteOptions{})
	if fi, _ := e.c.Stat(ctx, "hello.txt", false); fi.Mode != 0o640 {
		t.Errorf("overwrite changed the mode to %o", fi.Mode)
	}
	if _, err := e.c.WriteFile(ctx, "hello.txt", strings.NewReader("x"), WriteOptions{NoOverwrite: true}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("NoOverwrite: %v", err)
	}
	// Missing parents: not found, unless asked to create them.
	if _, err := e.c.WriteFile(ctx, "/a/b/c.txt", strings.NewReader("c"), WriteOptions{}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing parent: %v", err)
	}
	e.write(t, "/a/b/c.txt", "c", WriteOptions{Parents: true})
	if _, err := e.c.Mkdir(ctx, MkdirRequest{Path: "/m/n/o", Parents: true, Mode: 0o700}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Mkdir(ctx, MkdirRequest{Path: "/m"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Mkdir of an existing dir: %v", err)
	}
	list, err := e.c.List(ctx, "/a/b")
	if err != nil || len(list) != 1 || list[0].Name != "c.txt" || list[0].Path != "/a/b/c.txt" {
		t.Errorf("List = %+v, %v", list, err)
	}
	if _, err := e.c.List(ctx, "/a/b/c.txt"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("List of a file: %v", err)
	}
	if _, _, err := e.c.ReadFile(ctx, "/a"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("ReadFile of a dir: %v", err)
	}
	if _, _, err := e.c.ReadFile(ctx, "/nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("ReadFile of nothing: %v", err)
	}
	// Move, refusing to clobber unless asked.
	if _, err := e.c.Move(ctx, MoveRequest{Source: "/a/b/c.txt", Destination: "/work/hello.txt"}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("Move onto a file: %v", err)
	}
	if fi, err := e.c.Move(ctx, MoveRequest{Source: "/a/b/c.txt", Destination: "/m/c.txt"}); err != nil || fi.Path != "/m/c.txt" {
		t.Errorf("Move = %+v, %v", fi, err)
	}
	if _, err := e.c.Move(ctx, MoveRequest{Source: "/m", Destination: "/m/n/inside"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Move into itself: %v", err)
	}
	// Chmod, recursive.
	mode := uint32(0o600)
	if _, err := e.c.Chmod(ctx, ChmodRequest{Path: "/m", Mode: &mode, Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(e.root, "m/n/o")); fi.Mode().Perm() != 0o600 {
		t.Errorf("recursive chmod: %v", fi.Mode())
	}
	os.Chmod(filepath.Join(e.root, "m"), 0o755)
	os.Chmod(filepath.Join(e.root, "m/n"), 0o755)
	// Find, search, replace.
	e.write(t, "/src/main.py", "import os\nprint('hello')\n", WriteOptions{Parents: true})
	e.write(t, "/src/pkg/util.py", "def hello():\n    return 'hello'\n", WriteOptions{Parents: true})
	e.write(t, "/src/notes.md", "hello\n", WriteOptions{})
	e.write(t, "/src/bin.dat", "hello\x00binary", WriteOptions{})
	found, err := e.c.Find(ctx, FindRequest{Path: "/src", Pattern: "*.py"})
	var paths []string
	for _, f := range found.Files {
		paths = append(paths, f.Path)
	}
	if diff := cmp.Diff([]string{"/src/main.py", "/src/pkg/util.py"}, paths); err != nil || diff != "" {
		t.Errorf("Find: %v %s", err, diff)
	}
	sr, err := e.c.Search(ctx, SearchRequest{Path: "/src", Pattern: "hel+o", Regex: true, Glob: "*.py"})
	if err != nil {
		t.Fatal(err)
	}
	want := []SearchMatch{
		{Path: "/src/main.py", Line: 2, Column: 8, Content: "print('hello')"},
		{Path: "/src/pkg/util.py", Line: 1, Column: 5, Content: "def hello():"},
		{Path: "/src/pkg/util.py", Line: 2, Column: 13, Content: "    return 'hello'"},
	}
	if diff := cmp.Diff(want, sr.Matches); diff != "" {
		t.Errorf("Search (-want +got):\n%s", diff)
	}
	if sr, _ := e.c.Search(ctx, SearchRequest{Path: "/src", Pattern: "hello", Limit: 2}); len(sr.Matches) != 2 || !sr.Truncated {
		t.Errorf("Search limit: %+v", sr)
	}
	rr, err := e.c.Replace(ctx, ReplaceRequest{Paths: []string{"/src/main.py", "/src/pkg/util.py", "/nope"}, Pattern: "hello", Replacement: "bye"})
	if err != nil {
		t.Fatal(err)
	}
	if rr[0].Replacements != 1 || rr[1].Replacements != 2 || rr[2].Error == "" {
		t.Errorf("Replace = %+v", rr)
	}
	if got, _ := e.read(t, "/src/pkg/util.py"); got != "def bye():\n    return 'bye'\n" {
		t.Errorf("after Replace: %q", got)
	}
	// Remove: a non-empty directory needs recursive.
	if err := e.c.Remove(ctx, "/src", false); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Remove of a non-empty dir: %v", err)
	}
	if err := e.c.Remove(ctx, "/src", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(e.root, "src")); !os.IsNotExist(err) {
		t.Errorf("/src still there: %v", err)
	}
	if err := e.c.Remove(ctx, "/", true); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Remove of the root: %v", err)
	}
	// Bad input.
	if _, err := e.c.Stat(ctx, "", false); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("empty path: %v", err)
	}
	if _, err := e.c.Find(ctx, FindRequest{Path: "/", Pattern: "[x"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad glob: %v", err)
	}
}

// TestFileTreeRoundTrip downloads a tree with special entries and uploads
// it elsewhere: the copy has the same content, modes, links and times.
func TestFileTreeRoundTrip(t *testing.T) {
	e := newFileEnv(t)
	ctx := t.Context()
	src := filepath.Join(e.root, "tree")
	os.MkdirAll(filepath.Join(src, "sub/deep"), 0o750)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o600)
	os.WriteFile(filepath.Join(src, "sub/exe"), []byte("#!/bin/sh\n"), 0o755)
	os.Link(filepath.Join(src, "a.txt"), filepath.Join(src, "sub/hard"))
	os.Symlink("../a.txt", filepath.Join(src, "sub/link"))
	os.Symlink("/abs/target", filepath.Join(src, "dangling"))
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "a.txt"), mtime, mtime)

	rc, err := e.c.ReadTree(ctx, []string{"/tree"})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	res, err := e.c.WriteTree(ctx, "/copy", bytes.NewReader(data), WriteOptions{Parents: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 8 || res.Bytes != int64(len("alpha")+len("#!/bin/sh\n")) {
		t.Errorf("WriteTree = %+v", res)
	}
	dst := filepath.Join(e.root, "copy/tree")
	for _, c := range []struct {
		rel  string
		mode os.FileMode
	}{{"a.txt", 0o600}, {"sub", os.ModeDir | 0o750}, {"sub/exe", 0o755}, {"sub/deep", os.ModeDir | 0o750}} {
		fi, err := os.Lstat(filepath.Join(dst, c.rel))
		if err != nil || fi.Mode() != c.mode {
			t.Errorf("%s: %v %v, want %v", c.rel, fi.Mode(), err, c.mode)
		}
	}
	if l, _ := os.Readlink(filepath.Join(dst, "sub/link")); l != "../a.txt" {
		t.Errorf("symlink = %q", l)
	}
	if l, _ := os.Readlink(filepath.Join(dst, "dangling")); l != "/abs/target" {
		t.Errorf("dangling symlink = %q", l)
	}
	a, _ := os.Stat(filepath.Join(dst, "a.txt"))
	h, _ := os.Stat(filepath.Join(dst, "sub/hard"))
	if !os.SameFile(a, h) {
		t.Error("hard link not preserved")
	}
	if !a.ModTime().Equal(mtime) {
		t.Errorf("mtime = %v, want %v", a.ModTime(), mtime)
	}
	// Several paths in one archive, each under its base name.
	rc, err = e.c.ReadTree(ctx, []string{"/tree/a.txt", "/tree/sub/exe"})
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(rc)
	var names []string
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	rc.Close()
	if diff := cmp.Diff([]string{"a.txt", "exe"}, names); diff != "" {
		t.Errorf("multi-path archive (-want +got):\n%s", diff)
	}
	if _, err := e.c.ReadTree(ctx, []string{"/tree/a.txt", "/missing"}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("archive with a missing path: %v", err)
	}
	if _, err := e.c.WriteTree(ctx, "/copy", strings.NewReader("not a tar at all, longer than one block? no"), WriteOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("garbage tar: %v", err)
	}
}

// Package archive is where archived sandboxes go: an object store (Store)
// with a local-directory implementation, and the format their writable
// layers are kept in (Pack, Unpack).
//
// An object is written whole or not at all: Put streams into a temporary
// file, syncs it and renames it into place, and reports the object's size
// and SHA-256, which the caller records and Open verifies when the object
// is read back, so a truncated or altered object is never restored.
package archive

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Object describes a stored object.
type Object struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`   // bytes stored
	SHA256 string `json:"sha256"` // hex digest of the stored bytes
}

// Store keeps objects by key. Keys are slash-separated relative paths.
// An S3-compatible implementation comes with scale-out.
type Store interface {
	// Put stores r under key, replacing any object there. On any error
	// (including ctx ending) nothing is left and an older object under the
	// key is untouched.
	Put(ctx context.Context, key string, r io.Reader) (Object, error)
	// Open reads the object under key. The reader fails at EOF with
	// errdefs.ErrDataLoss if the bytes do not match want's size and
	// digest.
	Open(ctx context.Context, want Object) (io.ReadCloser, error)
	// Delete removes the object; a missing one is not an error.
	Delete(ctx context.Context, key string) error
}

// Local is a Store in a directory of the host.
type Local struct{ dir string }

// NewLocal returns a store rooted at dir, which it creates, and removes
// temporary files a crash mid-Put left behind.
func NewLocal(dir string) (*Local, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	l := &Local{dir: dir}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(d.Name(), tmpMark) {
			os.Remove(p)
		}
		return nil
	})
	return l, nil
}

const tmpMark = ".tmp-"

func (l *Local) path(key string) (string, error) {
	if key == "" || path.IsAbs(key) || path.Clean(key) != key || strings.HasPrefix(key, "../") || key == ".." ||
		strings.Contains(key, tmpMark) || strings.ContainsRune(key, 0) {
		return "", fmt.Errorf("archive: invalid key %q", key)
	}
	return filepath.Join(l.dir, filepath.FromSlash(key)), nil
}

// Put implements Store.
func (l *Local) Put(ctx context.Context, key string, r io.Reader) (Object, error) {
	p, err := l.path(key)
	if err != nil {
		return Object{}, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return Object{}, err
	}
	f, err := os.CreateTemp(filepath.Dir(p), filepath.Base(p)+tmpMark+"*")
	if err != nil {
		return Object{}, diskErr(err)
	}
	tmp := f.Name()
	fail := func(err error) (Object, error) {
		f.Close()
		os.Remove(tmp)
		return Object{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, r})
	if err != nil {
		return fail(diskErr(err))
	}
	if err := f.Sync(); err != nil {
		return fail(diskErr(err))
	}
	if err := f.Close(); err != nil {
		return fail(diskErr(err))
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return Object{}, err
	}
	syncDir(filepath.Dir(p))
	return Object{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Open implements Store.
func (l *Local) Open(ctx context.Context, want Object) (io.ReadCloser, error) {
	p, err := l.path(want.Key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errdefs.Publicf(errdefs.ErrDataLoss, "archive object %s is missing", want.Key)
	}
	if err != nil {
		return nil, err
	}
	return &verifier{r: f, c: f, h: sha256.New(), want: want}, nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// verifier passes the object's bytes through and, at EOF, fails unless
// they are the ones recorded.
type verifier struct {
	r    io.Reader
	c    io.Closer
	h    hash.Hash
	n    int64
	want Object
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.want.Size {
		return n, v.mismatch()
	}
	if errors.Is(err, io.EOF) {
		if v.n != v.want.Size || hex.EncodeToString(v.h.Sum(nil)) != v.want.SHA256 {
			return n, v.mismatch()
		}
	}
	return n, err
}

func (v *verifier) mismatch() error {
	return errdefs.Publicf(errdefs.ErrDataLoss, "archive object %s does not match its checksum (corrupted or altered)", v.want.Key)
}

func (v *verifier) Close() error { return v.c.Close() }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func diskErr(err error) error {
	if errors.Is(err, errNoSpace) {
		return fmt.Errorf("%w: %w", errdefs.Public(errdefs.ErrResourceExhausted, "the archive store is out of space"), err)
	}
	return err
}

package sbx

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// FileInfo describes a file in a sandbox.
type FileInfo struct {
	Path    string    `json:"path"`
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	Mode    uint32    `json:"mode"` // permission bits with setuid/setgid/sticky
	Type    string    `json:"type"` // file, dir, symlink, fifo, socket, char, block
	ModTime time.Time `json:"mod_time"`
	UID     int       `json:"uid"`
	GID     int       `json:"gid"`
	Owner   string    `json:"owner,omitempty"`
	Group   string    `json:"group,omitempty"`
	Target  string    `json:"target,omitempty"` // a symlink's target
	Nlink   uint64    `json:"nlink,omitempty"`
}

// UploadOptions describe how an upload is written.
type UploadOptions struct {
	Mode          uint32 // of a new file (default 0644; an overwritten file keeps its mode)
	Owner         string // "user", "uid" or "uid:gid"; default the sandbox's user
	Parents       bool   // create missing parent directories
	NoOverwrite   bool   // refuse to replace an existing file
	PreserveOwner bool   // archive uploads: keep each entry's uid/gid
}

func (o UploadOptions) query(path string) url.Values {
	q := url.Values{"path": {path}}
	if o.Mode != 0 {
		q.Set("mode", strconv.FormatUint(uint64(o.Mode), 8))
	}
	if o.Owner != "" {
		q.Set("owner", o.Owner)
	}
	if o.Parents {
		q.Set("parents", "true")
	}
	if o.NoOverwrite {
		q.Set("overwrite", "false")
	}
	if o.PreserveOwner {
		q.Set("preserve_owner", "true")
	}
	return q
}

// ArchiveResult is what an archive upload wrote.
type ArchiveResult struct {
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
}

// MkdirRequest creates a directory.
type MkdirRequest struct {
	Path    string `json:"path"`
	Mode    uint32 `json:"mode,omitempty"`
	Parents bool   `json:"parents,omitempty"`
	Owner   string `json:"owner,omitempty"`
}

// MoveRequest renames a file or directory.
type MoveRequest struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Overwrite   bool   `json:"overwrite,omitempty"`
}

// ChmodRequest changes mode and/or owner.
type ChmodRequest struct {
	Path      string  `json:"path"`
	Mode      *uint32 `json:"mode,omitempty"`
	Owner     string  `json:"owner,omitempty"`
	Recursive bool    `json:"recursive,omitempty"`
}

// FindRequest finds files by a glob on their base name.
type FindRequest struct {
	Path    string `json:"path"`
	Pattern string `json:"pattern"`
	Limit   int    `json:"limit,omitempty"`
}

// SearchRequest searches the contents of text files.
type SearchRequest struct {
	Path    string `json:"path"`
	Pattern string `json:"pattern"`
	Regex   bool   `json:"regex,omitempty"`
	Glob    string `json:"glob,omitempty"`
	Limit   int    `json:"limit,omitempty"`
}

// SearchMatch is one matching line.
type SearchMatch struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Content string `json:"content"`
}

// FindResult answers Find (Files) and Search (Matches).
type FindResult struct {
	Files     []FileInfo    `json:"files,omitempty"`
	Matches   []SearchMatch `json:"matches,omitempty"`
	Truncated bool          `json:"truncated,omitempty"`
}

// ReplaceRequest replaces text in files.
type ReplaceRequest struct {
	Paths       []string `json:"paths"`
	Pattern     string   `json:"pattern"`
	Replacement string   `json:"replacement"`
	Regex       bool     `json:"regex,omitempty"`
}

// ReplaceResult is the outcome for one file.
type ReplaceResult struct {
	Path         string `json:"path"`
	Replacements int    `json:"replacements"`
	Error        string `json:"error,omitempty"`
}

// FileInfoHeader carries the FileInfo (JSON) of a downloaded file.
const FileInfoHeader = "Sbx-File-Info"

// StatFile describes a file, following a final symlink unless nofollow.
func (c *Client) StatFile(ctx context.Context, id, path string, nofollow bool) (FileInfo, error) {
	q := url.Values{"path": {path}}
	if nofollow {
		q.Set("nofollow", "true")
	}
	var fi FileInfo
	return fi, c.do(ctx, http.MethodGet, sandboxPath(id, "files", "stat"), q, nil, &fi)
}

// ListFiles lists a directory.
func (c *Client) ListFiles(ctx context.Context, id, path string) ([]FileInfo, error) {
	var out []FileInfo
	return out, c.do(ctx, http.MethodGet, sandboxPath(id, "files", "list"), url.Values{"path": {path}}, nil, &out)
}

// Download streams a regular file. The caller closes the reader.
func (c *Client) Download(ctx context.Context, id, path string) (io.ReadCloser, FileInfo, error) {
	resp, err := c.open(ctx, http.MethodGet, sandboxPath(id, "files", "content"), url.Values{"path": {path}}, nil, "")
	if err != nil {
		return nil, FileInfo{}, err
	}
	var fi FileInfo
	if h := resp.Header.Get(FileInfoHeader); h != "" {
		json.Unmarshal([]byte(h), &fi)
	}
	return resp.Body, fi, nil
}

// DownloadArchive streams the given paths as one tar archive, each under
// its base name; a directory comes with everything beneath it.
func (c *Client) DownloadArchive(ctx context.Context, id string, paths ...string) (io.ReadCloser, error) {
	resp, err := c.open(ctx, http.MethodGet, sandboxPath(id, "files", "archive"), url.Values{"path": paths}, nil, "")
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Upload writes r to path, atomically: a failed upload leaves the old
// file as it was.
func (c *Client) Upload(ctx context.Context, id, path string, r io.Reader, o UploadOptions) (FileInfo, error) {
	var fi FileInfo
	return fi, c.do(ctx, http.MethodPut, sandboxPath(id, "files", "content"), o.query(path), r, &fi)
}

// UploadArchive extracts a tar stream into the directory dir.
func (c *Client) UploadArchive(ctx context.Context, id, dir string, r io.Reader, o UploadOptions) (ArchiveResult, error) {
	var res ArchiveResult
	return res, c.do(ctx, http.MethodPut, sandboxPath(id, "files", "archive"), o.query(dir), r, &res)
}

// Mkdir creates a directory.
func (c *Client) Mkdir(ctx context.Context, id string, req MkdirRequest) (FileInfo, error) {
	var fi FileInfo
	return fi, c.do(ctx, http.MethodPost, sandboxPath(id, "files", "mkdir"), nil, req, &fi)
}

// MoveFile renames a file or directory.
func (c *Client) MoveFile(ctx context.Context, id string, req MoveRequest) (FileInfo, error) {
	var fi FileInfo
	return fi, c.do(ctx, http.MethodPost, sandboxPath(id, "files", "move"), nil, req, &fi)
}

// Chmod changes a file's mode and/or owner.
func (c *Client) Chmod(ctx context.Context, id string, req ChmodRequest) (FileInfo, error) {
	var fi FileInfo
	return fi, c.do(ctx, http.MethodPost, sandboxPath(id, "files", "chmod"), nil, req, &fi)
}

// RemoveFile deletes a file or (recursive) a directory tree.
func (c *Client) RemoveFile(ctx context.Context, id, path string, recursive bool) error {
	q := url.Values{"path": {path}}
	if recursive {
		q.Set("recursive", "true")
	}
	return c.do(ctx, http.MethodDelete, sandboxPath(id, "files"), q, nil, nil)
}

// FindFiles finds files whose base name matches a glob.
func (c *Client) FindFiles(ctx context.Context, id string, req FindRequest) (FindResult, error) {
	var res FindResult
	return res, c.do(ctx, http.MethodPost, sandboxPath(id, "files", "find"), nil, req, &res)
}

// SearchFiles finds lines matching a pattern in text files.
func (c *Client) SearchFiles(ctx context.Context, id string, req SearchRequest) (FindResult, error) {
	var res FindResult
	return res, c.do(ctx, http.MethodPost, sandboxPath(id, "files", "search"), nil, req, &res)
}

// ReplaceInFiles replaces every match of a pattern in the given files.
func (c *Client) ReplaceInFiles(ctx context.Context, id string, req ReplaceRequest) ([]ReplaceResult, error) {
	var res []ReplaceResult
	return res, c.do(ctx, http.MethodPost, sandboxPath(id, "files", "replace"), nil, req, &res)
}

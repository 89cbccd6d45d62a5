package agent

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// FileInfo describes one file in the sandbox.
type FileInfo struct {
	// Path is the file's absolute path inside the sandbox (for list, find
	// and stat answers).
	Path    string    `json:"path"`
	Name    string    `json:"name"`
	Size    int64     `json:"size"`
	Mode    uint32    `json:"mode"`     // permission bits, plus setuid/setgid/sticky
	Type    string    `json:"type"`     // file, dir, symlink, fifo, socket, char, block
	ModTime time.Time `json:"mod_time"` // UTC
	UID     int       `json:"uid"`
	GID     int       `json:"gid"`
	Owner   string    `json:"owner,omitempty"` // user name when /etc/passwd knows the uid
	Group   string    `json:"group,omitempty"`
	Target  string    `json:"target,omitempty"` // a symlink's target
	Nlink   uint64    `json:"nlink,omitempty"`
}

// WriteOptions describe how an uploaded file or tree is written.
type WriteOptions struct {
	// Mode of a new file (default 0644) or of the directories a tree
	// upload creates (default 0755); 0 keeps the defaults.
	Mode uint32
	// Owner is "user", "uid" or "uid:gid"; "" is the sandbox's default
	// user (root unless the sandbox was created with another).
	Owner string
	// Parents creates missing parent directories.
	Parents bool
	// NoOverwrite refuses to replace an existing file (ErrAlreadyExists).
	NoOverwrite bool
	// PreserveOwner (tree uploads) keeps the uid/gid of each tar entry
	// instead of Owner.
	PreserveOwner bool
}

func (o WriteOptions) query(q url.Values) {
	if o.Mode != 0 {
		q.Set("mode", strconv.FormatUint(uint64(o.Mode), 8))
	}
	if o.Owner != "" {
		q.Set("owner", o.Owner)
	}
	if o.Parents {
		q.Set("parents", "1")
	}
	if o.NoOverwrite {
		q.Set("overwrite", "0")
	}
	if o.PreserveOwner {
		q.Set("preserve_owner", "1")
	}
}

// TreeResult is what a tree upload wrote.
type TreeResult struct {
	Files int   `json:"files"` // entries written (files, dirs, links)
	Bytes int64 `json:"bytes"` // bytes of file content
}

// MkdirRequest creates a directory.
type MkdirRequest struct {
	Path    string `json:"path"`
	Mode    uint32 `json:"mode,omitempty"` // default 0755
	Parents bool   `json:"parents,omitempty"`
	Owner   string `json:"owner,omitempty"`
}

// MoveRequest renames a file or directory.
type MoveRequest struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	Overwrite   bool   `json:"overwrite,omitempty"`
}

// ChmodRequest changes a file's mode and/or owner.
type ChmodRequest struct {
	Path      string  `json:"path"`
	Mode      *uint32 `json:"mode,omitempty"`
	Owner     string  `json:"owner,omitempty"` // "user", "uid", "user:group", "uid:gid"
	Recursive bool    `json:"recursive,omitempty"`
}

// FindRequest finds files whose base name matches a glob.
type FindRequest struct {
	Path    string `json:"path"`
	Pattern string `json:"pattern"` // path.Match syntax, e.g. "*.py"
	Limit   int    `json:"limit,omitempty"`
}

// SearchRequest searches file contents.
type SearchRequest struct {
	Path    string `json:"path"`
	Pattern string `json:"pattern"`
	Regex   bool   `json:"regex,omitempty"` // Go RE2 syntax; literal otherwise
	Glob    string `json:"glob,omitempty"`  // only files whose name matches
	Limit   int    `json:"limit,omitempty"`
}

// SearchMatch is one matching line.
type SearchMatch struct {
	Path    string `json:"path"`
	Line    int    `json:"line"`   // 1-based
	Column  int    `json:"column"` // 1-based byte offset of the match
	Content string `json:"content"`
}

// FindResult is the answer of Find and Search: Truncated says the limit
// cut the list.
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

// fileQuery builds a query with the path.
func fileQuery(path string) url.Values { return url.Values{"path": {path}} }

// Stat describes a file, following a final symlink unless nofollow.
func (c *Client) Stat(ctx context.Context, path string, nofollow bool) (FileInfo, error) {
	q := fileQuery(path)
	if nofollow {
		q.Set("nofollow", "1")
	}
	var fi FileInfo
	err := c.call(ctx, http.MethodGet, "/v1/files/stat", q, nil, &fi)
	return fi, err
}

// List lists a directory's entries, sorted by name.
func (c *Client) List(ctx context.Context, path string) ([]FileInfo, error) {
	var out []FileInfo
	err := c.call(ctx, http.MethodGet, "/v1/files/list", fileQuery(path), nil, &out)
	return out, err
}

// ReadFile streams a regular file's content; the FileInfo describes it.
func (c *Client) ReadFile(ctx context.Context, path string) (io.ReadCloser, FileInfo, error) {
	return c.download(ctx, "/v1/files/content", fileQuery(path))
}

// ReadTree streams the given paths as one tar archive, each under its base
// name (a directory with everything beneath it), like `docker cp`.
func (c *Client) ReadTree(ctx context.Context, paths []string) (io.ReadCloser, error) {
	rc, _, err := c.download(ctx, "/v1/files/archive", url.Values{"path": paths})
	return rc, err
}

func (c *Client) download(ctx context.Context, path string, q url.Values) (io.ReadCloser, FileInfo, error) {
	req, err := c.newRequest(ctx, http.MethodGet, path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, FileInfo{}, err
	}
	resp, err := c.do(req)
	if err != nil {
		return nil, FileInfo{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, FileInfo{}, responseError(resp)
	}
	var fi FileInfo
	if h := resp.Header.Get(fileInfoHeader); h != "" {
		json.Unmarshal([]byte(h), &fi)
	}
	return resp.Body, fi, nil
}

// fileInfoHeader carries the FileInfo of a downloaded or uploaded file.
const fileInfoHeader = "Sbx-File-Info"

// WriteFile writes r to path atomically (a temporary file renamed into
// place): readers never see half a file, and a failed upload (a full
// disk: ErrResourceExhausted) leaves the old file as it was.
func (c *Client) WriteFile(ctx context.Context, path string, r io.Reader, o WriteOptions) (FileInfo, error) {
	q := fileQuery(path)
	o.query(q)
	var fi FileInfo
	err := c.upload(ctx, "/v1/files/content", q, r, &fi)
	return fi, err
}

// WriteTree extracts a tar stream into the directory dir. Entries cannot
// land outside dir, whatever their names or the symlinks in the tree.
func (c *Client) WriteTree(ctx context.Context, dir string, r io.Reader, o WriteOptions) (TreeResult, error) {
	q := fileQuery(dir)
	o.query(q)
	var res TreeResult
	err := c.upload(ctx, "/v1/files/archive", q, r, &res)
	return res, err
}

func (c *Client) upload(ctx context.Context, path string, q url.Values, r io.Reader, out any) error {
	req, err := c.newRequest(ctx, http.MethodPut, path+"?"+q.Encode(), r)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return responseError(resp)
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, out)
}

// Mkdir creates a directory.
func (c *Client) Mkdir(ctx context.Context, req MkdirRequest) (FileInfo, error) {
	var fi FileInfo
	err := c.call(ctx, http.MethodPost, "/v1/files/mkdir", nil, req, &fi)
	return fi, err
}

// Move renames a file or directory.
func (c *Client) Move(ctx context.Context, req MoveRequest) (FileInfo, error) {
	var fi FileInfo
	err := c.call(ctx, http.MethodPost, "/v1/files/move", nil, req, &fi)
	return fi, err
}

// Remove deletes a file, a symlink (not its target) or, with recursive, a
// directory tree.
func (c *Client) Remove(ctx context.Context, path string, recursive bool) error {
	q := fileQuery(path)
	if recursive {
		q.Set("recursive", "1")
	}
	return c.call(ctx, http.MethodDelete, "/v1/files", q, nil, nil)
}

// Chmod changes mode and/or owner.
func (c *Client) Chmod(ctx context.Context, req ChmodRequest) (FileInfo, error) {
	var fi FileInfo
	err := c.call(ctx, http.MethodPost, "/v1/files/chmod", nil, req, &fi)
	return fi, err
}

// Find lists files under a directory whose base name matches a glob.
func (c *Client) Find(ctx context.Context, req FindRequest) (FindResult, error) {
	var res FindResult
	err := c.call(ctx, http.MethodPost, "/v1/files/find", nil, req, &res)
	return res, err
}

// Search finds lines matching a pattern in the text files under a path.
func (c *Client) Search(ctx context.Context, req SearchRequest) (FindResult, error) {
	var res FindResult
	err := c.call(ctx, http.MethodPost, "/v1/files/search", nil, req, &res)
	return res, err
}

// Replace replaces every match of a pattern in the given files.
func (c *Client) Replace(ctx context.Context, req ReplaceRequest) ([]ReplaceResult, error) {
	var res []ReplaceResult
	err := c.call(ctx, http.MethodPost, "/v1/files/replace", nil, req, &res)
	return res, err
}

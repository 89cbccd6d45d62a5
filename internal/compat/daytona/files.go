package daytona

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

func (h *handler) fileRoutes() {
	h.tb("POST /files/bulk-upload", h.bulkUpload)
	h.tb("POST /files/bulk-download", h.bulkDownload)
	h.tb("GET /files", h.listFiles)
	h.tb("GET /files/info", h.fileInfo)
	h.tb("POST /files/folder", h.createFolder)
	h.tb("DELETE /files", h.deleteFile)
	h.tb("POST /files/move", h.moveFile)
	h.tb("GET /files/find", h.findInFiles)
	h.tb("GET /files/search", h.searchFiles)
	h.tb("POST /files/replace", h.replaceInFiles)
	h.tb("POST /files/permissions", h.setPermissions)
}

// failFile answers an error of a file operation with the daemon code the
// SDK has a class for (FILE_NOT_FOUND → DaytonaFileNotFoundError, ...).
func (h *handler) failFile(w http.ResponseWriter, r *http.Request, err error) {
	h.failAs(w, r, err, fileCode(err))
}

// FileInfo is Daytona's file description.
type FileInfo struct {
	Name        string `json:"name"`
	Path        string `json:"path,omitempty"`
	IsDir       bool   `json:"isDir"`
	Size        int64  `json:"size"`
	Mode        string `json:"mode"`        // e.g. "-rw-r--r--"
	Permissions string `json:"permissions"` // e.g. "0644"
	Owner       string `json:"owner"`
	Group       string `json:"group"`
	ModTime     string `json:"modTime"`    // Go's time.String, as Daytona's daemon
	ModifiedAt  string `json:"modifiedAt"` // RFC 3339
}

// fileMode rebuilds the Go file mode of an agent FileInfo, so that its
// String is the "ls -l" form Daytona's (Go) daemon sends.
func fileMode(fi agent.FileInfo) os.FileMode {
	m := os.FileMode(fi.Mode & 0o777)
	if fi.Mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if fi.Mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if fi.Mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	switch fi.Type {
	case "dir":
		m |= os.ModeDir
	case "symlink":
		m |= os.ModeSymlink
	case "fifo":
		m |= os.ModeNamedPipe
	case "socket":
		m |= os.ModeSocket
	case "char":
		m |= os.ModeDevice | os.ModeCharDevice
	case "block":
		m |= os.ModeDevice
	}
	return m
}

func toFileInfo(fi agent.FileInfo) FileInfo {
	owner, group := fi.Owner, fi.Group
	if owner == "" {
		owner = strconv.Itoa(fi.UID)
	}
	if group == "" {
		group = strconv.Itoa(fi.GID)
	}
	return FileInfo{
		Name: fi.Name, Path: fi.Path, IsDir: fi.Type == "dir", Size: fi.Size,
		Mode: fileMode(fi).String(), Permissions: fmt.Sprintf("%04o", fi.Mode&0o7777),
		Owner: owner, Group: group,
		ModTime: fi.ModTime.String(), ModifiedAt: fi.ModTime.UTC().Format(time.RFC3339),
	}
}

// queryPath is the required path parameter.
func queryPath(r *http.Request, name string) (string, error) {
	p := r.URL.Query().Get(name)
	if p == "" {
		return "", invalidf("the query parameter %s is required", name)
	}
	return p, nil
}

// uploadField matches the SDK's multipart field names.
var uploadField = regexp.MustCompile(`^files\[(\d+)\]\.(path|file)$`)

// uploaded is one file a bulk upload wrote.
type uploaded struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
}

// bulkUpload streams each file part into the sandbox as it arrives: the
// SDK sends files[i].path before files[i].file, so the destination is
// known when the content starts. Parents are created and existing files
// replaced, as Daytona does.
func (h *handler) bulkUpload(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	mr, err := r.MultipartReader()
	if err != nil {
		h.fail(w, r, invalidf("the body must be multipart/form-data: %v", err))
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	paths := map[string]string{}
	var done []uploaded
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			h.fail(w, r, invalidf("reading the multipart body: %v", err))
			return
		}
		m := uploadField.FindStringSubmatch(part.FormName())
		if m == nil {
			part.Close()
			continue
		}
		if m[2] == "path" {
			b, err := io.ReadAll(io.LimitReader(part, 4097))
			part.Close()
			if err != nil || len(b) > 4096 {
				h.fail(w, r, invalidf("files[%s].path is not a path", m[1]))
				return
			}
			paths[m[1]] = string(b)
			continue
		}
		dst := paths[m[1]]
		if dst == "" {
			dst = part.FileName() // the SDK names the part after the destination too
		}
		if dst == "" {
			part.Close()
			h.fail(w, r, invalidf("files[%s].file comes without its files[%s].path", m[1], m[1]))
			return
		}
		body := &limitedReader{r: part, n: h.cfg.MaxUploadSize}
		fi, err := a.WriteFile(r.Context(), dst, body, agent.WriteOptions{Parents: true})
		part.Close()
		if body.over {
			err = errdefs.Publicf(errdefs.ErrTooLarge, "%s: the file exceeds the upload limit of %d bytes", dst, h.cfg.MaxUploadSize)
		}
		if err != nil {
			h.failFile(w, r, err)
			return
		}
		done = append(done, uploaded{Path: dst, Bytes: fi.Size})
	}
	if done == nil {
		done = []uploaded{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": done})
}

// limitedReader fails (and says so) past n bytes, so that an oversized
// upload is discarded rather than cut short and kept.
type limitedReader struct {
	r    io.Reader
	n    int64
	over bool
}

var errUploadTooLarge = errors.New("upload too large")

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		// One more byte would be too many: see whether there is one.
		var b [1]byte
		if n, _ := l.r.Read(b[:]); n > 0 {
			l.over = true
			return 0, errUploadTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// contentDisposition names a download part after the requested path,
// exactly (the SDK matches parts to requests by filename, with slashes:
// busboy's preservePath).
func contentDisposition(name, filename string) string {
	esc := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\r", "", "\n", "").Replace(filename)
	cd := fmt.Sprintf(`form-data; name=%q; filename="%s"`, name, esc)
	for i := 0; i < len(filename); i++ {
		if filename[i] >= 0x80 {
			cd += "; filename*=UTF-8''" + url.PathEscape(filename)
			break
		}
	}
	return cd
}

// downloadPartError is the JSON of a part named "error".
func downloadPartError(err error) ([]byte, error) {
	return json.Marshal(toErrorBody(err, fileCode(err), sourceDaemon))
}

// bulkDownload answers a multipart/form-data body with one part per
// requested path, in order: "file" with the content, streamed, or "error"
// with the daemon's error JSON, each named by the path as requested.
func (h *handler) bulkDownload(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Paths []string `json:"paths"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if len(req.Paths) == 0 {
		h.fail(w, r, invalidf("paths is required"))
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	mw := multipart.NewWriter(w)
	w.Header().Set("Content-Type", "multipart/form-data; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	for _, p := range req.Paths {
		if err := h.downloadPart(r, a, mw, p); err != nil {
			// Mid-file: the answer cannot be repaired. Cut the
			// connection so the client sees a broken body, not a
			// short file.
			h.log.DebugContext(r.Context(), "bulk download cut", "path", p, "err", err)
			panic(http.ErrAbortHandler)
		}
	}
	mw.Close()
}

// downloadPart writes one part; an error is returned only when the part's
// content was cut.
func (h *handler) downloadPart(r *http.Request, a *agent.Client, mw *multipart.Writer, p string) error {
	writeErr := func(err error) error {
		body, _ := downloadPartError(err)
		hdr := textproto.MIMEHeader{}
		hdr.Set("Content-Disposition", contentDisposition("error", p))
		hdr.Set("Content-Type", "application/json")
		pw, perr := mw.CreatePart(hdr)
		if perr != nil {
			return perr
		}
		_, perr = pw.Write(body)
		return perr
	}
	if strings.TrimSpace(p) == "" {
		return writeErr(invalidf("empty path"))
	}
	rc, fi, err := a.ReadFile(r.Context(), p)
	if err != nil {
		return writeErr(err)
	}
	defer rc.Close()
	ct := mime.TypeByExtension(path.Ext(p))
	if ct == "" {
		ct = "application/octet-stream"
	}
	hdr := textproto.MIMEHeader{}
	hdr.Set("Content-Disposition", contentDisposition("file", p))
	hdr.Set("Content-Type", ct)
	hdr.Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	pw, err := mw.CreatePart(hdr)
	if err != nil {
		return err
	}
	n, err := io.Copy(pw, rc)
	if err == nil && n != fi.Size {
		err = fmt.Errorf("%s: read %d of %d bytes", p, n, fi.Size)
	}
	return err
}

func (h *handler) listFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p := r.URL.Query().Get("path")
	if p == "" {
		p = "."
	}
	depth := 1
	if d := r.URL.Query().Get("depth"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 64 {
			h.fail(w, r, invalidf("depth must be an integer from 1 to 64"))
			return
		}
		depth = n
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	// Breadth first, at most maxListed entries in all.
	const maxListed = 100000
	out := []FileInfo{}
	level := []string{p}
	for d := 0; d < depth && len(level) > 0; d++ {
		var next []string
		for _, dir := range level {
			list, err := a.List(r.Context(), dir)
			if err != nil {
				if d == 0 {
					h.failFile(w, r, err)
					return
				}
				continue // vanished or unreadable below the top: skip
			}
			for _, fi := range list {
				if len(out) >= maxListed {
					break
				}
				out = append(out, toFileInfo(fi))
				if fi.Type == "dir" {
					next = append(next, fi.Path)
				}
			}
		}
		level = next
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) fileInfo(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, err := queryPath(r, "path")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	fi, err := a.Stat(r.Context(), p, false)
	if err != nil {
		h.failFile(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toFileInfo(fi))
}

// octalMode parses a mode such as "755" ("" is 0: the default).
func octalMode(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseUint(s, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, invalidf("mode %q is not an octal file mode", s)
	}
	return uint32(v), nil
}

func (h *handler) createFolder(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, err := queryPath(r, "path")
	mode, err2 := octalMode(r.URL.Query().Get("mode"))
	if err = errors.Join(err, err2); err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if _, err := a.Mkdir(r.Context(), agent.MkdirRequest{Path: p, Mode: mode, Parents: true}); err != nil {
		h.failFile(w, r, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

func (h *handler) deleteFile(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, err := queryPath(r, "path")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	recursive := false
	if v := r.URL.Query().Get("recursive"); v != "" {
		if recursive, err = strconv.ParseBool(v); err != nil {
			h.fail(w, r, invalidf("recursive must be true or false"))
			return
		}
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if err := a.Remove(r.Context(), p, recursive); err != nil {
		h.failFile(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) moveFile(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	src, err := queryPath(r, "source")
	dst, err2 := queryPath(r, "destination")
	if err = errors.Join(err, err2); err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	// rename(2) semantics, as Daytona's daemon: an existing file is replaced.
	if _, err := a.Move(r.Context(), agent.MoveRequest{Source: src, Destination: dst, Overwrite: true}); err != nil {
		h.failFile(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// match is one line of findFiles (a content search).
type match struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Content string `json:"content"`
}

func (h *handler) findInFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, pat, err := pathAndPattern(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	res, err := a.Search(r.Context(), agent.SearchRequest{Path: p, Pattern: pat})
	if err != nil {
		h.failFile(w, r, err)
		return
	}
	out := make([]match, 0, len(res.Matches))
	for _, m := range res.Matches {
		out = append(out, match{File: m.Path, Line: m.Line, Content: m.Content})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) searchFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	p, pat, err := pathAndPattern(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	res, err := a.Find(r.Context(), agent.FindRequest{Path: p, Pattern: pat})
	if err != nil {
		h.failFile(w, r, err)
		return
	}
	files := make([]string, 0, len(res.Files))
	for _, f := range res.Files {
		files = append(files, f.Path)
	}
	writeJSON(w, http.StatusOK, map[string][]string{"files": files})
}

// replaceResult is the outcome for one file of replaceInFiles.
type replaceResult struct {
	File    string `json:"file"`
	Success bool   `json:"success"`
	Error   string `json:"error,omitempty"`
}

func (h *handler) replaceInFiles(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Files    []string `json:"files"`
		Pattern  string   `json:"pattern"`
		NewValue string   `json:"newValue"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if len(req.Files) == 0 || req.Pattern == "" {
		h.fail(w, r, invalidf("files and pattern are required"))
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	res, err := a.Replace(r.Context(), agent.ReplaceRequest{Paths: req.Files, Pattern: req.Pattern, Replacement: req.NewValue})
	if err != nil {
		h.failFile(w, r, err)
		return
	}
	out := make([]replaceResult, 0, len(res))
	for _, rr := range res {
		out = append(out, replaceResult{File: rr.Path, Success: rr.Error == "", Error: rr.Error})
	}
	writeJSON(w, http.StatusOK, out)
}

// ownerSpec joins Daytona's owner and group into the agent's
// "user:group" form.
func ownerSpec(owner, group string) string {
	switch {
	case owner != "" && group != "":
		return owner + ":" + group
	case group != "":
		return ":" + group
	}
	return owner
}

func (h *handler) setPermissions(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	q := r.URL.Query()
	p, err := queryPath(r, "path")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	req := agent.ChmodRequest{Path: p, Owner: ownerSpec(q.Get("owner"), q.Get("group"))}
	if m := q.Get("mode"); m != "" {
		mode, err := octalMode(m)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		req.Mode = &mode
	}
	if req.Mode == nil && req.Owner == "" {
		h.fail(w, r, invalidf("give mode, owner or group"))
		return
	}
	a, ok := h.agentOf(w, r, t)
	if !ok {
		return
	}
	if _, err := a.Chmod(r.Context(), req); err != nil {
		h.failFile(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// pathAndPattern reads the path and pattern query parameters of find and
// search.
func pathAndPattern(r *http.Request) (path, pattern string, err error) {
	path, err = queryPath(r, "path")
	pattern, err2 := queryPath(r, "pattern")
	return path, pattern, errors.Join(err, err2)
}

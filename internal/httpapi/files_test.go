package httpapi_test

import (
	"archive/tar"
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/httpapi"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// TestFiles drives every file route through the SDK and the spec-checking
// client; the fake's agent is the real agent, rooted at a temp dir.
func TestFiles(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.MaxUploadSize = 1 << 20 })
	ctx := t.Context()
	sb, err := e.sdk.CreateSandbox(ctx, sbx.CreateSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := e.sdk.Upload(ctx, sb.ID, "/data/in.txt", strings.NewReader("one\ntwo\n"), sbx.UploadOptions{Parents: true, Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	if fi.Path != "/data/in.txt" || fi.Size != 8 || fi.Mode != 0o600 || fi.Type != "file" {
		t.Errorf("Upload = %+v", fi)
	}
	root := e.fake.AgentRoot(sb.ID)
	if b, _ := os.ReadFile(filepath.Join(root, "data/in.txt")); string(b) != "one\ntwo\n" {
		t.Errorf("on disk: %q", b)
	}
	rc, dfi, err := e.sdk.Download(ctx, sb.ID, "/data/in.txt")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != "one\ntwo\n" || dfi.Size != 8 || dfi.Mode != 0o600 {
		t.Errorf("Download = %q %+v", got, dfi)
	}
	if st, err := e.sdk.StatFile(ctx, sb.ID, "/data", false); err != nil || st.Type != "dir" {
		t.Errorf("StatFile = %+v, %v", st, err)
	}
	if _, err := e.sdk.Mkdir(ctx, sb.ID, sbx.MkdirRequest{Path: "/data/sub/deeper", Parents: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.MoveFile(ctx, sb.ID, sbx.MoveRequest{Source: "/data/in.txt", Destination: "/data/sub/moved.txt"}); err != nil {
		t.Fatal(err)
	}
	list, err := e.sdk.ListFiles(ctx, sb.ID, "/data/sub")
	var names []string
	for _, f := range list {
		names = append(names, f.Name)
	}
	if diff := cmp.Diff([]string{"deeper", "moved.txt"}, names); err != nil || diff != "" {
		t.Errorf("ListFiles: %v %s", err, diff)
	}
	mode := uint32(0o755)
	if fi, err := e.sdk.Chmod(ctx, sb.ID, sbx.ChmodRequest{Path: "/data/sub/moved.txt", Mode: &mode}); err != nil || fi.Mode != 0o755 {
		t.Errorf("Chmod = %+v, %v", fi, err)
	}
	found, err := e.sdk.FindFiles(ctx, sb.ID, sbx.FindRequest{Path: "/data", Pattern: "*.txt"})
	if err != nil || len(found.Files) != 1 || found.Files[0].Path != "/data/sub/moved.txt" {
		t.Errorf("FindFiles = %+v, %v", found, err)
	}
	sr, err := e.sdk.SearchFiles(ctx, sb.ID, sbx.SearchRequest{Path: "/data", Pattern: "two"})
	if err != nil || len(sr.Matches) != 1 || sr.Matches[0].Line != 2 {
		t.Errorf("SearchFiles = %+v, %v", sr, err)
	}
	rr, err := e.sdk.ReplaceInFiles(ctx, sb.ID, sbx.ReplaceRequest{Paths: []string{"/data/sub/moved.txt"}, Pattern: "two", Replacement: "2"})
	if err != nil || len(rr) != 1 || rr[0].Replacements != 1 {
		t.Errorf("ReplaceInFiles = %+v, %v", rr, err)
	}
	// Archives both ways.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "proj/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "proj/main.py", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6})
	tw.Write([]byte("print1"))
	tw.Close()
	res, err := e.sdk.UploadArchive(ctx, sb.ID, "/up", &buf, sbx.UploadOptions{Parents: true})
	if err != nil || res.Files != 2 || res.Bytes != 6 {
		t.Errorf("UploadArchive = %+v, %v", res, err)
	}
	arc, err := e.sdk.DownloadArchive(ctx, sb.ID, "/up/proj", "/data/sub/moved.txt")
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(arc)
	names = nil
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	arc.Close()
	if diff := cmp.Diff([]string{"proj/", "proj/main.py", "moved.txt"}, names); diff != "" {
		t.Errorf("DownloadArchive (-want +got):\n%s", diff)
	}
	if err := e.sdk.RemoveFile(ctx, sb.ID, "/data", false); !sbx.IsConflict(err) {
		t.Errorf("RemoveFile of a non-empty dir: %v", err)
	}
	if err := e.sdk.RemoveFile(ctx, sb.ID, "/data", true); err != nil {
		t.Fatal(err)
	}

	// Errors: kinds and statuses.
	if _, _, err := e.sdk.Download(ctx, sb.ID, "/nope"); !sbx.IsNotFound(err) {
		t.Errorf("missing file: %v", err)
	}
	if _, _, err := e.sdk.Download(ctx, sb.ID, "../../etc/passwd"); !sbx.IsNotFound(err) {
		t.Errorf("escape: %v", err)
	}
	if _, err := e.sdk.Upload(ctx, sb.ID, "/big", bytes.NewReader(make([]byte, 2<<20)), sbx.UploadOptions{}); sbx.ErrorCode(err) != sbx.CodeTooLarge {
		t.Errorf("oversized upload: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "big")); !os.IsNotExist(err) {
		t.Errorf("an oversized upload left a file: %v", err)
	}
	if r := e.raw(t, http.MethodGet, "/v1/sandboxes/"+sb.ID+"/files/stat", "", nil); r.status != http.StatusBadRequest {
		t.Errorf("stat without path: %d %s", r.status, r.body)
	}
	if _, err := e.sdk.StatFile(ctx, "nosuch", "/", false); !sbx.IsNotFound(err) {
		t.Errorf("unknown sandbox: %v", err)
	}
	if _, err := e.sdk.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.sdk.ListFiles(ctx, sb.ID, "/"); !sbx.IsConflict(err) {
		t.Errorf("files of a stopped sandbox: %v", err)
	}
}

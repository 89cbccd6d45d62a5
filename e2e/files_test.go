package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// prng is a reproducible stream of pseudo-random bytes.
type prng struct{ r *rand.ChaCha8 }

func (p prng) Read(b []byte) (int, error) { return p.r.Read(b) }

// TestFileRoundTrip100MiB uploads and downloads 100 MiB, streamed both
// ways, and compares checksums.
func TestFileRoundTrip100MiB(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Resources: &sbx.Resources{DiskMB: 512}})
	const size = 100 << 20
	up := sha256.New()
	src := io.TeeReader(io.LimitReader(prng{rand.NewChaCha8([32]byte{1})}, size), up)
	start := time.Now()
	fi, err := c.Upload(t.Context(), sb.ID, "/root/big.bin", src, sbx.UploadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	upTime := time.Since(start)
	if fi.Size != size {
		t.Fatalf("uploaded size %d", fi.Size)
	}
	// The sandbox sees the same bytes.
	sum := strings.Fields(execOK(t, c, sb.ID, "sha256sum", "/root/big.bin"))[0]
	if want := fmt.Sprintf("%x", up.Sum(nil)); sum != want {
		t.Fatalf("sha256 in the sandbox %s, uploaded %s", sum, want)
	}
	start = time.Now()
	rc, _, err := c.Download(t.Context(), sb.ID, "/root/big.bin")
	if err != nil {
		t.Fatal(err)
	}
	down := sha256.New()
	n, err := io.Copy(down, rc)
	rc.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	if !bytes.Equal(down.Sum(nil), up.Sum(nil)) {
		t.Fatal("downloaded bytes differ")
	}
	t.Logf("100 MiB: upload %v (%.0f MiB/s), download %v (%.0f MiB/s)", upTime, 100/upTime.Seconds(),
		time.Since(start), 100/time.Since(start).Seconds())
}

// TestFileDiskFull: an upload that does not fit is 507, and leaves the old
// file whole and no temporary file behind.
func TestFileDiskFull(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{Resources: &sbx.Resources{DiskMB: 64}})
	if _, err := c.Upload(t.Context(), sb.ID, "/root/f", strings.NewReader("old"), sbx.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Upload(t.Context(), sb.ID, "/root/f", io.LimitReader(prng{rand.NewChaCha8([32]byte{2})}, 100<<20), sbx.UploadOptions{})
	if !sbx.IsResourceExhausted(err) {
		t.Fatalf("upload past the disk quota: %v, want resource_exhausted", err)
	}
	if got := execOK(t, c, sb.ID, "cat", "/root/f"); got != "old" {
		t.Errorf("the old file became %q", got)
	}
	if ls := execOK(t, c, sb.ID, "ls", "-a", "/root"); strings.Contains(ls, ".sbx-") {
		t.Errorf("temporary file left: %s", ls)
	}
	// The space is free again.
	if _, err := c.Upload(t.Context(), sb.ID, "/root/g", io.LimitReader(prng{rand.NewChaCha8([32]byte{3})}, 8<<20), sbx.UploadOptions{}); err != nil {
		t.Errorf("upload after the failed one: %v", err)
	}
}

// TestFileEscapes plants links to a host directory inside a sandbox and
// tries every file call through them: the host directory must not change
// and its secret must never come back.
func TestFileEscapes(t *testing.T) {
	setup(t)
	c := admin
	canary := t.TempDir()
	const secret = "host-only-secret"
	os.WriteFile(filepath.Join(canary, "secret"), []byte(secret), 0o644)
	sb := create(t, c, sbx.CreateSandboxRequest{})
	execOK(t, c, sb.ID, "sh", "-c", fmt.Sprintf(
		"ln -s %[1]s/secret /root/abs && ln -s %[1]s /root/absdir && ln -s ../../../../../../..%[1]s /root/rel && ln -s /proc/1/root%[1]s /root/proc",
		canary))
	ctx := t.Context()
	for _, p := range []string{
		canary + "/secret", "../../../../.." + canary + "/secret", "/root/abs", "/root/absdir/secret", "/root/rel/secret",
		"/root/proc/secret", "/proc/1/root" + canary + "/secret", "/proc/self/cwd/../../.." + canary + "/secret",
		"/proc/self/fd/3",
	} {
		if rc, _, err := c.Download(ctx, sb.ID, p); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			if strings.Contains(string(b), secret) {
				t.Errorf("Download(%s) returned the host's secret", p)
			}
		}
		if rc, err := c.DownloadArchive(ctx, sb.ID, p); err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			if strings.Contains(string(b), secret) {
				t.Errorf("DownloadArchive(%s) returned the host's secret", p)
			}
		}
	}
	for _, p := range []string{"/root/absdir/new", canary + "/new", "/root/rel/new", "/proc/1/root" + canary + "/new"} {
		c.Upload(ctx, sb.ID, p, strings.NewReader("x"), sbx.UploadOptions{Parents: true})
		c.Mkdir(ctx, sb.ID, sbx.MkdirRequest{Path: p + "dir", Parents: true})
	}
	mode := uint32(0o777)
	c.Chmod(ctx, sb.ID, sbx.ChmodRequest{Path: "/root/absdir/secret", Mode: &mode})
	c.MoveFile(ctx, sb.ID, sbx.MoveRequest{Source: "/root/absdir/secret", Destination: "/root/stolen"})
	c.RemoveFile(ctx, sb.ID, "/root/absdir", true)
	c.ReplaceInFiles(ctx, sb.ID, sbx.ReplaceRequest{Paths: []string{"/root/abs"}, Pattern: "host", Replacement: "x"})
	// A race: the sandbox swaps a directory for a link to the host while
	// uploads go through it.
	go c.Exec(ctx, sb.ID, sbx.ExecRequest{Shell: fmt.Sprintf(
		"end=$(( $(date +%%s) + 2 )); while [ $(date +%%s) -lt $end ]; do rm -rf /root/flip; mkdir /root/flip; rm -rf /root/flip; ln -s %s /root/flip; done", canary)})
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		c.Upload(ctx, sb.ID, "/root/flip/raced", strings.NewReader("x"), sbx.UploadOptions{})
		c.RemoveFile(ctx, sb.ID, "/root/flip/secret", true)
	}
	ents, _ := os.ReadDir(canary)
	if len(ents) != 1 || ents[0].Name() != "secret" {
		t.Errorf("the host directory changed: %v", ents)
	}
	if b, _ := os.ReadFile(filepath.Join(canary, "secret")); string(b) != secret {
		t.Errorf("the host secret changed: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(canary, "secret")); fi.Mode().Perm() != 0o644 {
		t.Errorf("the host secret's mode changed: %v", fi.Mode())
	}
}

// TestFileOwnershipAndStopped: uploads take the requested owner inside the
// sandbox's own uid range; a stopped sandbox answers 409.
func TestFileOwnershipAndStopped(t *testing.T) {
	setup(t)
	c := admin
	sb := create(t, c, sbx.CreateSandboxRequest{})
	ctx := t.Context()
	fi, err := c.Upload(ctx, sb.ID, "/tmp/owned", strings.NewReader("x"), sbx.UploadOptions{Owner: "1000:1000", Mode: 0o600})
	if err != nil {
		t.Fatal(err)
	}
	if fi.UID != 1000 || fi.GID != 1000 || fi.Mode != 0o600 {
		t.Errorf("FileInfo = %+v", fi)
	}
	if got := execOK(t, c, sb.ID, "stat", "-c", "%u:%g %a", "/tmp/owned"); strings.TrimSpace(got) != "1000:1000 600" {
		t.Errorf("stat in the sandbox: %q", got)
	}
	if _, err := c.Upload(ctx, sb.ID, "/tmp/x", strings.NewReader("x"), sbx.UploadOptions{Owner: "nosuchuser"}); !sbx.IsInvalidArgument(err) && !sbx.IsNotFound(err) {
		t.Errorf("unknown owner: %v", err)
	}
	if _, err := c.StopSandbox(ctx, sb.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListFiles(ctx, sb.ID, "/"); !sbx.IsConflict(err) {
		t.Errorf("files of a stopped sandbox: %v", err)
	}
}

// TestFileOperations runs the rest of the file API in a real sandbox.
func TestFileOperations(t *testing.T) {
	setup(t)
	c := admin
	ctx := t.Context()
	sb := create(t, c, sbx.CreateSandboxRequest{})
	execOK(t, c, sb.ID, "sh", "-c", "mkdir -p /w/src/pkg && echo 'print(1)' > /w/src/a.py && echo 'x = \"needle\"' > /w/src/pkg/b.py && echo needle > /w/notes.txt")
	found, err := c.FindFiles(ctx, sb.ID, sbx.FindRequest{Path: "/w", Pattern: "*.py"})
	if err != nil || len(found.Files) != 2 || found.Files[0].Path != "/w/src/a.py" || found.Files[1].Path != "/w/src/pkg/b.py" {
		t.Errorf("find: %+v %v", found, err)
	}
	sr, err := c.SearchFiles(ctx, sb.ID, sbx.SearchRequest{Path: "/w", Pattern: "needle"})
	if err != nil || len(sr.Matches) != 2 {
		t.Errorf("search: %+v %v", sr, err)
	}
	rr, err := c.ReplaceInFiles(ctx, sb.ID, sbx.ReplaceRequest{Paths: []string{"/w/src/pkg/b.py"}, Pattern: `"(\w+)"`, Replacement: `'$1!'`, Regex: true})
	if err != nil || len(rr) != 1 || rr[0].Replacements != 1 {
		t.Errorf("replace: %+v %v", rr, err)
	}
	if got := execOK(t, c, sb.ID, "cat", "/w/src/pkg/b.py"); got != "x = 'needle!'\n" {
		t.Errorf("after replace: %q", got)
	}
	list, err := c.ListFiles(ctx, sb.ID, "/w")
	if err != nil || len(list) != 2 || list[0].Name != "notes.txt" || list[1].Type != "dir" {
		t.Errorf("list: %+v %v", list, err)
	}
	// /etc/passwd names the owner.
	if fi, err := c.StatFile(ctx, sb.ID, "/w/notes.txt", false); err != nil || fi.Owner != "root" || fi.UID != 0 {
		t.Errorf("stat: %+v %v", fi, err)
	}
	if _, err := c.MoveFile(ctx, sb.ID, sbx.MoveRequest{Source: "/w/src", Destination: "/w/moved"}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveFile(ctx, sb.ID, "/w/moved", true); err != nil {
		t.Fatal(err)
	}
	if got := execOK(t, c, sb.ID, "ls", "/w"); got != "notes.txt\n" {
		t.Errorf("after move and remove: %q", got)
	}
	// Relative paths start at the sandbox's working directory.
	if _, err := c.Upload(ctx, sb.ID, "rel.txt", strings.NewReader("r"), sbx.UploadOptions{}); err != nil {
		t.Fatal(err)
	}
	wd := strings.TrimSpace(execOK(t, c, sb.ID, "pwd"))
	if got := execOK(t, c, sb.ID, "cat", wd+"/rel.txt"); got != "r" {
		t.Errorf("relative upload: %q in %s", got, wd)
	}
}

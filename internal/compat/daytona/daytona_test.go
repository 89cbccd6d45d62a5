package daytona

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

func TestStates(t *testing.T) {
	for _, tc := range []struct {
		state, desired    store.State
		want, wantDesired string
	}{
		{store.StateCreating, store.StateStarted, "creating", "started"},
		{store.StateStarting, store.StateStarted, "starting", "started"},
		{store.StateStarted, store.StateStarted, "started", "started"},
		{store.StateStopping, store.StateStopped, "stopping", "stopped"},
		{store.StateStopped, store.StateStopped, "stopped", "stopped"},
		{store.StateArchiving, store.StateStopped, "archiving", "archived"},
		{store.StateArchived, store.StateStopped, "archived", "archived"},
		{store.StateRestoring, store.StateStarted, "restoring", "started"},
		{store.StateDestroying, store.StateDestroyed, "destroying", "destroyed"},
		{store.StateDestroyed, store.StateDestroyed, "destroyed", "destroyed"},
		{store.StateError, store.StateStarted, "error", "started"},
		{store.StateUnknown, "", "unknown", "started"},
		{store.StateStopped, "", "stopped", "stopped"},
		{"paused-someday", "", "unknown", "started"},
	} {
		sb := store.Sandbox{State: tc.state, Desired: tc.desired}
		if got := toState(sb.State); got != tc.want {
			t.Errorf("toState(%s) = %s, want %s", tc.state, got, tc.want)
		}
		if got := toDesiredState(sb); got != tc.wantDesired {
			t.Errorf("toDesiredState(%s/%s) = %s, want %s", tc.state, tc.desired, got, tc.wantDesired)
		}
	}
	for _, s := range []string{"started", "stopped", "error", "archived", "archiving", "restoring"} {
		if st, ok := fromState(s); !ok || string(st) != s {
			t.Errorf("fromState(%s) = %s, %v", s, st, ok)
		}
	}
	for _, s := range []string{"build_failed", "pending_build", ""} {
		if _, ok := fromState(s); ok {
			t.Errorf("fromState(%s) is a state sbx has", s)
		}
	}
}

func TestSandboxDTO(t *testing.T) {
	created := time.Date(2026, 6, 23, 12, 34, 56, 789_000_000, time.FixedZone("x", 3600))
	sb := store.Sandbox{
		ID: "abc", TenantID: "t1", Name: "box", Image: "sbx/code:1", State: store.StateStarted, Desired: store.StateStarted,
		Labels: map[string]string{"code-toolbox-language": "python"}, Resources: store.Resources{CPU: 2, MemoryMB: 1536, DiskMB: 4096},
		CreatedAt: created, UpdatedAt: created,
		Lifecycle: store.Lifecycle{AutoDelete: -1, LastActivity: created},
	}
	d := toSandboxDTO(sb, "http://h:7070/api/toolbox")
	b, _ := json.Marshal(d)
	var got map[string]any
	json.Unmarshal(b, &got)
	want := map[string]any{
		"id": "abc", "organizationId": "t1", "name": "box", "snapshot": "sbx/code:1", "user": "root",
		"env": map[string]any{}, "labels": map[string]any{"code-toolbox-language": "python"},
		"public": false, "networkBlockAll": false, "target": "local",
		"cpu": 2.0, "gpu": 0.0, "memory": 1.5, "disk": 4.0,
		"state": "started", "desiredState": "started", "recoverable": false, "backupState": "None",
		"autoStopInterval": 0.0, "autoArchiveInterval": 0.0, "autoDeleteInterval": -1.0, "volumes": []any{},
		"createdAt": "2026-06-23T11:34:56.789Z", "updatedAt": "2026-06-23T11:34:56.789Z", "lastActivityAt": "2026-06-23T11:34:56.789Z",
		"sandboxClass": "container", "toolboxProxyUrl": "http://h:7070/api/toolbox",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SandboxDTO (-want +got):\n%s", diff)
	}
}

func TestListItemsHaveNoEnv(t *testing.T) {
	next := "c2"
	m := listItems(listPage{Items: []SandboxDTO{toSandboxDTO(store.Sandbox{ID: "a", Env: map[string]string{"K": "v"}}, "u")}, NextCursor: &next})
	items := m["items"].([]map[string]any)
	if _, ok := items[0]["env"]; ok {
		t.Error("a list item carries env: the SDK would take it for a full object")
	}
	if items[0]["toolboxProxyUrl"] != "u" || *m["nextCursor"].(*string) != "c2" {
		t.Errorf("list page %v", m)
	}
	b, _ := json.Marshal(listItems(listPage{Items: []SandboxDTO{}}))
	if string(b) != `{"items":[],"nextCursor":null}` {
		t.Errorf("empty page %s", b)
	}
}

func TestErrorShape(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
		msg    string
	}{
		{errdefs.Publicf(errdefs.ErrNotFound, "sandbox %q not found", "x"), 404, "NOT_FOUND", `sandbox "x" not found`},
		{errdefs.ErrAlreadyExists, 409, "CONFLICT", "already exists"},
		{fmt.Errorf("starting: %w", errdefs.Public(errdefs.ErrConflict, "sandbox is stopped")), 409, "CONFLICT", "sandbox is stopped"},
		{errdefs.Public(errdefs.ErrInvalidArgument, "bad"), 400, "BAD_REQUEST", "bad"},
		{errdefs.ErrResourceExhausted, 429, "TOO_MANY_REQUESTS", "resource exhausted"},
		{errdefs.ErrDeadlineExceeded, 408, "REQUEST_TIMEOUT", "deadline exceeded"},
		{errdefs.ErrUnauthenticated, 401, "UNAUTHORIZED", "unauthenticated"},
		{errdefs.ErrPermissionDenied, 403, "FORBIDDEN", "permission denied"},
		{errdefs.ErrUnavailable, 503, "SERVICE_UNAVAILABLE", "unavailable"},
		{errdefs.ErrTooLarge, 413, "PAYLOAD_TOO_LARGE", "too large"},
		{errors.New("open /var/lib/secret: EIO"), 500, "INTERNAL_SERVER_ERROR", "internal error"},
	} {
		b := toErrorBody(tc.err, "", sourceAPI)
		want := errorBody{StatusCode: tc.status, Message: tc.msg, Error: http.StatusText(tc.status), Code: tc.code, Source: sourceAPI}
		if diff := cmp.Diff(want, b); diff != "" {
			t.Errorf("%v (-want +got):\n%s", tc.err, diff)
		}
	}
	if b := toErrorBody(errdefs.ErrNotFound, fileCode(errdefs.ErrNotFound), sourceDaemon); b.Code != codeFileNotFound || b.StatusCode != 404 || b.Source != sourceDaemon {
		t.Errorf("file not found: %+v", b)
	}
	// Through a handler: the whole JSON, path and timestamp included.
	h := &handler{log: slog.New(slog.DiscardHandler)}
	rec := httptest.NewRecorder()
	h.fail(rec, httptest.NewRequest("GET", "/api/toolbox/x/files/info", nil), errdefs.ErrNotFound)
	var got map[string]any
	json.Unmarshal(rec.Body.Bytes(), &got)
	if rec.Code != 404 || got["statusCode"] != 404.0 || got["error"] != "Not Found" || got["code"] != "NOT_FOUND" ||
		got["source"] != sourceDaemon || got["path"] != "/api/toolbox/x/files/info" || got["timestamp"] == "" {
		t.Errorf("toolbox error %d %s", rec.Code, rec.Body)
	}
}

func TestCreateOptions(t *testing.T) {
	o, err := toCreateOptions(createRequest{Snapshot: "img", CPU: 2, Memory: 1.5, Disk: 3, Labels: map[string]string{"a": "b"}}, "t")
	if err != nil || o.Image != "img" || o.Resources != (store.Resources{CPU: 2, MemoryMB: 1536, DiskMB: 3072}) || o.TenantID != "t" || o.Labels["a"] != "b" {
		t.Errorf("toCreateOptions = %+v, %v", o, err)
	}
	var req createRequest
	json.Unmarshal([]byte(`{"buildInfo":{"dockerfileContent":"FROM python:3.12\n"},"env":{},"labels":{}}`), &req)
	if o, err := toCreateOptions(req, "t"); err != nil || o.Image != "python:3.12" {
		t.Errorf("image from FROM: %+v, %v", o, err)
	}
	json.Unmarshal([]byte(`{"volumes":[{"volumeId":"v","mountPath":"/v","subpath":"s"}]}`), &req)
	if o, err := toCreateOptions(req, "t"); err != nil || len(o.Volumes) != 1 ||
		o.Volumes[0] != (sandbox.VolumeOptions{Volume: "v", MountPath: "/v", Subpath: "s"}) {
		t.Errorf("volumes: %+v, %v", o.Volumes, err)
	}
	for name, body := range map[string]string{
		"dockerfile": `{"buildInfo":{"dockerfileContent":"FROM a\nRUN x\n"}}`,
		"context":    `{"buildInfo":{"dockerfileContent":"FROM a\n","contextHashes":["h"]}}`,
		"network":    `{"networkBlockAll":true}`,
		"gpu":        `{"gpu":1}`,
		"negative":   `{"cpu":-1}`,
	} {
		var req createRequest
		if err := json.Unmarshal([]byte(body), &req); err != nil {
			t.Fatal(err)
		}
		if _, err := toCreateOptions(req, "t"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
}

func TestListFilter(t *testing.T) {
	f, id, name, err := listFilter(map[string][]string{
		"labels": {`{"x":"y"}`}, "limit": {"5"}, "cursor": {"c"}, "states": {"started", "archived"}, "id": {"ab"}, "name": {"n"},
	}, "t")
	if err != nil || f.TenantID != "t" || f.Labels["x"] != "y" || f.Limit != 5 || f.Cursor != "c" || id != "ab" || name != "n" ||
		len(f.States) != 2 || f.States[0] != store.StateStarted || f.States[1] != store.StateArchived {
		t.Errorf("listFilter = %+v %q %q %v", f, id, name, err)
	}
	if f, _, _, _ := listFilter(map[string][]string{"states": {"pulling_snapshot"}}, "t"); len(f.States) != 1 || f.States[0] == store.StateStarted {
		t.Errorf("only unknown states must match nothing: %+v", f.States)
	}
	for _, q := range []map[string][]string{{"labels": {"nope"}}, {"limit": {"0"}}, {"minCpu": {"2"}}} {
		if _, _, _, err := listFilter(q, "t"); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v: %v", q, err)
		}
	}
}

// TestDownloadNaming checks that each part is named by the requested path
// exactly, as busboy (preservePath) reads it back.
func TestDownloadNaming(t *testing.T) {
	paths := []string{"/tmp/a b/c.txt", "rel/x.py", `/we"ird\name.bin`, "/tmp/ünï.txt"}
	rec := httptest.NewRecorder()
	mw := multipart.NewWriter(rec)
	for _, p := range paths {
		hdr := map[string][]string{"Content-Disposition": {contentDisposition("file", p)}}
		pw, _ := mw.CreatePart(hdr)
		io.WriteString(pw, "data of "+p)
	}
	body, _ := downloadPartError(errdefs.Public(errdefs.ErrNotFound, "no such file"))
	pw, _ := mw.CreatePart(map[string][]string{"Content-Disposition": {contentDisposition("error", "/missing")}, "Content-Type": {"application/json"}})
	pw.Write(body)
	mw.Close()

	mr := multipart.NewReader(rec.Body, mw.Boundary())
	var got []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		_, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		if err != nil {
			t.Fatalf("%q: %v", part.Header.Get("Content-Disposition"), err)
		}
		// Go decodes filename* over filename, as busboy does.
		got = append(got, part.FormName()+":"+params["filename"])
		if part.FormName() == "error" {
			var e map[string]any
			json.NewDecoder(part).Decode(&e)
			if e["code"] != codeFileNotFound || e["source"] != sourceDaemon || e["statusCode"] != 404.0 || e["message"] != "no such file" {
				t.Errorf("error part %v", e)
			}
		}
	}
	want := []string{"file:" + paths[0], "file:" + paths[1], "file:" + paths[2], "file:" + paths[3], "error:/missing"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("part names (-want +got):\n%s", diff)
	}
}

func TestFileInfo(t *testing.T) {
	mt := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		in         agent.FileInfo
		mode, perm string
		dir        bool
	}{
		{agent.FileInfo{Name: "a", Type: "file", Mode: 0o644}, "-rw-r--r--", "0644", false},
		{agent.FileInfo{Name: "d", Type: "dir", Mode: 0o755}, "drwxr-xr-x", "0755", true},
		{agent.FileInfo{Name: "l", Type: "symlink", Mode: 0o777}, "Lrwxrwxrwx", "0777", false},
		{agent.FileInfo{Name: "s", Type: "file", Mode: 0o4755}, "urwxr-xr-x", "4755", false},
	} {
		tc.in.ModTime, tc.in.UID, tc.in.GID, tc.in.Owner = mt, 1000, 1000, "app"
		fi := toFileInfo(tc.in)
		if fi.Mode != tc.mode || fi.Permissions != tc.perm || fi.IsDir != tc.dir || fi.Owner != "app" || fi.Group != "1000" ||
			fi.ModifiedAt != "2026-01-02T03:04:05Z" {
			t.Errorf("%s: %+v", tc.in.Name, fi)
		}
	}
}

func TestPTYProtocols(t *testing.T) {
	echo, env, err := ptyProtocols([]string{"X-Daytona-Pty-Envs~eyJBIjoiMSJ9", "X-Daytona-Pty-Exit-Control"})
	if err != nil || echo != ptyExitControl || env["A"] != "1" {
		t.Errorf("= %q %v %v", echo, env, err)
	}
	if echo, _, _ := ptyProtocols(nil); echo != "" {
		t.Errorf("echoed %q when none was offered", echo)
	}
	if echo, _, _ := ptyProtocols([]string{"X-Daytona-SDK-Version~0.218.0"}); echo != "X-Daytona-SDK-Version~0.218.0" {
		t.Errorf("echoed %q, want the one offered", echo)
	}
	if _, _, err := ptyProtocols([]string{"X-Daytona-Pty-Envs~!!"}); err == nil {
		t.Error("bad envs accepted")
	}
	for code, sig := range map[int]string{0: "", 130: "SIGINT", 137: "SIGKILL", 1: ""} {
		r := exitReason(agent.ExitStatus{Code: code, Signal: sig})
		want := map[int]string{0: "", 130: "Ctrl+C", 137: "SIGKILL", 1: "non-zero exit"}[code]
		if r != want {
			t.Errorf("exitReason(%d, %s) = %q, want %q", code, sig, r, want)
		}
	}
}

func TestCharts(t *testing.T) {
	v := 3.0
	c := toChart(agent.Chart{Kind: "composite", Title: "f", Charts: []agent.Chart{
		{Kind: "bar", Title: "b", Elements: []agent.ChartElement{{Label: "x", Value: &v}}},
		{Kind: "box"},
		{Kind: "histogram"},
	}}, []byte("\x89PNG"))
	b, _ := json.Marshal(c)
	want := `{"type":"composite_chart","title":"f","png":"iVBORw==","elements":[` +
		`{"type":"bar","title":"b","elements":[{"label":"x","value":3}]},` +
		`{"type":"box_and_whisker","title":"","elements":[]},{"type":"bar","title":"","elements":[]}]}`
	if string(b) != want {
		t.Errorf("chart\n got %s\nwant %s", b, want)
	}
}

func TestLimitedReader(t *testing.T) {
	l := &limitedReader{r: strings.NewReader("12345"), n: 5}
	if b, err := io.ReadAll(l); err != nil || string(b) != "12345" || l.over {
		t.Errorf("at the limit: %q %v %v", b, err, l.over)
	}
	l = &limitedReader{r: strings.NewReader("123456"), n: 5}
	if _, err := io.ReadAll(l); err == nil || !l.over {
		t.Errorf("past the limit: %v %v", err, l.over)
	}
}

// TestAuthAndRoutes checks, without a sandbox, that keys are required,
// X-Daytona headers and form-urlencoded empty POSTs are accepted, and that
// unknown routes answer Daytona's 404.
func TestAuthAndRoutes(t *testing.T) {
	h := New(Config{Sandboxes: fakeSandboxes{}, Auth: fakeAuth{}})
	do := func(method, path, key string, hdr map[string]string) (*httptest.ResponseRecorder, map[string]any) {
		r := httptest.NewRequest(method, path, nil)
		if key != "" {
			r.Header.Set("Authorization", "Bearer "+key)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		return rec, m
	}
	if rec, m := do("GET", "/api/sandbox/x", "", nil); rec.Code != 401 || m["statusCode"] != 401.0 {
		t.Errorf("no key: %d %v", rec.Code, m)
	}
	if rec, _ := do("GET", "/api/sandbox/x", "wrong", nil); rec.Code != 401 {
		t.Errorf("wrong key: %d", rec.Code)
	}
	hdr := map[string]string{"X-Daytona-Organization-ID": "org", "X-Daytona-Source": "sdk-typescript-legacy", "X-Daytona-SDK-Version": "0.218.0",
		"Content-Type": "application/x-www-form-urlencoded"}
	if rec, _ := do("POST", "/api/sandbox/x/autostop/15", "good", hdr); rec.Code != 200 {
		t.Errorf("autostop with Daytona headers, form body: %d %s", rec.Code, rec.Body)
	}
	if rec, m := do("GET", "/api/socket.io/?EIO=4&transport=websocket", "", nil); rec.Code != 404 || m["code"] != "NOT_FOUND" {
		t.Errorf("socket.io: %d %v", rec.Code, m)
	}
	if got := *lastLifecycle.AutoStop; got != 900 || lastLifecycle.AutoArchive != nil {
		t.Errorf("autostop/15 set %+v, want auto-stop 900 s only", lastLifecycle)
	}
	for path, want := range map[string]func(o sandbox.LifecycleOptions) bool{
		"/api/sandbox/x/autoarchive/0":  func(o sandbox.LifecycleOptions) bool { return *o.AutoArchive == 7*24*3600 },
		"/api/sandbox/x/autodelete/-1":  func(o sandbox.LifecycleOptions) bool { return *o.AutoDelete == -1 },
		"/api/sandbox/x/autodelete/0":   func(o sandbox.LifecycleOptions) bool { return *o.AutoDelete == 0 },
		"/api/sandbox/x/autodelete/30":  func(o sandbox.LifecycleOptions) bool { return *o.AutoDelete == 1800 },
		"/api/sandbox/x/autoarchive/60": func(o sandbox.LifecycleOptions) bool { return *o.AutoArchive == 3600 },
	} {
		lastLifecycle = sandbox.LifecycleOptions{}
		if rec, _ := do("POST", path, "good", hdr); rec.Code != 200 || !want(lastLifecycle) {
			t.Errorf("%s: %d, set %+v", path, rec.Code, lastLifecycle)
		}
	}
	if rec, m := do("POST", "/api/sandbox/x/autostop/soon", "good", hdr); rec.Code != 400 {
		t.Errorf("autostop/soon: %d %v", rec.Code, m)
	}
	if rec, m := do("POST", "/api/sandbox/x/archive", "good", hdr); rec.Code != 409 || m["code"] != "CONFLICT" {
		t.Errorf("archive of a started sandbox: %d %v", rec.Code, m)
	}
	if rec, m := do("POST", "/api/sandbox/x/recover", "good", hdr); rec.Code != 501 || m["code"] != "NOT_IMPLEMENTED" || m["source"] != sourceAPI {
		t.Errorf("recover: %d %v", rec.Code, m)
	}
	if rec, m := do("GET", "/api/toolbox/x/git/status", "good", nil); rec.Code != 501 || m["source"] != sourceDaemon {
		t.Errorf("git: %d %v", rec.Code, m)
	}
	if rec, _ := do("POST", "/api/sandbox/other/autostop/15", "good", hdr); rec.Code != 404 {
		t.Errorf("autostop of an unknown sandbox: %d", rec.Code)
	}
}

type fakeAuth struct{}

func (fakeAuth) Authenticate(_ context.Context, secret string) (store.Tenant, error) {
	if secret != "good" {
		return store.Tenant{}, errdefs.Public(errdefs.ErrUnauthenticated, "invalid or missing API key")
	}
	return store.Tenant{ID: "t1"}, nil
}

// fakeSandboxes knows one sandbox, "x"; every other method panics.
type fakeSandboxes struct{ Sandboxes }

// lastLifecycle is what the last SetLifecycle on the fake was given.
var lastLifecycle sandbox.LifecycleOptions

func (f fakeSandboxes) SetLifecycle(ctx context.Context, tenantID, id string, o sandbox.LifecycleOptions) (store.Sandbox, error) {
	if _, err := f.Get(ctx, tenantID, id); err != nil {
		return store.Sandbox{}, err
	}
	lastLifecycle = o
	return store.Sandbox{ID: "x", TenantID: "t1", State: store.StateStarted}, nil
}

func (f fakeSandboxes) Archive(ctx context.Context, tenantID, id string) (store.Sandbox, error) {
	sb, err := f.Get(ctx, tenantID, id)
	if err != nil {
		return sb, err
	}
	return sb, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is started: only a stopped sandbox can be archived", id)
}

func (fakeSandboxes) Get(_ context.Context, tenantID, id string) (store.Sandbox, error) {
	if tenantID != "t1" || id != "x" {
		return store.Sandbox{}, errdefs.ErrNotFound
	}
	return store.Sandbox{ID: "x", TenantID: "t1", State: store.StateStarted}, nil
}

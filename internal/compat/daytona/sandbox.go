package daytona

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

// SandboxDTO is Daytona's Sandbox object, with every field the SDK copies
// onto its Sandbox. Fields sbx has no notion of carry Daytona's neutral
// values (no GPU, no backup).
type SandboxDTO struct {
	ID             string            `json:"id"`
	OrganizationID string            `json:"organizationId"`
	Name           string            `json:"name"`
	Snapshot       string            `json:"snapshot"`
	User           string            `json:"user"`
	Env            map[string]string `json:"env"`
	Labels         map[string]string `json:"labels"`
	Public         bool              `json:"public"`
	NetworkBlock   bool              `json:"networkBlockAll"`
	Target         string            `json:"target"`
	CPU            float64           `json:"cpu"`
	GPU            int               `json:"gpu"`
	Memory         float64           `json:"memory"` // GiB
	Disk           float64           `json:"disk"`   // GiB
	State          string            `json:"state"`
	DesiredState   string            `json:"desiredState"`
	ErrorReason    string            `json:"errorReason,omitempty"`
	Recoverable    bool              `json:"recoverable"`
	BackupState    string            `json:"backupState"`
	AutoStop       int               `json:"autoStopInterval"`
	AutoArchive    int               `json:"autoArchiveInterval"`
	AutoDelete     int               `json:"autoDeleteInterval"`
	Volumes        []VolumeMountDTO  `json:"volumes"`
	CreatedAt      string            `json:"createdAt"`
	UpdatedAt      string            `json:"updatedAt"`
	LastActivityAt string            `json:"lastActivityAt"`
	SandboxClass   string            `json:"sandboxClass"`
	ToolboxURL     string            `json:"toolboxProxyUrl"`
}

// isoTime is JavaScript's Date.toISOString form, which the SDK expects.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// toState maps an sbx state to Daytona's name. sbx's states are a subset
// of Daytona's under the same names; anything unforeseen is "unknown"
// rather than a name the SDK does not know.
func toState(s store.State) string {
	switch s {
	case store.StateCreating, store.StateStarting, store.StateStarted, store.StateStopping,
		store.StateStopped, store.StateArchiving, store.StateArchived, store.StateRestoring,
		store.StateDestroying, store.StateDestroyed, store.StateError:
		return string(s)
	}
	return "unknown"
}

// toDesiredState maps the state a user asked for to Daytona's
// desiredState (destroyed, started or stopped).
func toDesiredState(s store.Sandbox) string {
	if s.State == store.StateArchived || s.State == store.StateArchiving {
		return "archived"
	}
	switch s.Desired {
	case store.StateStarted, store.StateStopped, store.StateDestroyed:
		return string(s.Desired)
	}
	if s.State == store.StateStopped {
		return "stopped"
	}
	return "started"
}

// fromState maps a Daytona state filter to sbx's; false for a state sbx
// never has (which therefore matches nothing).
func fromState(s string) (store.State, bool) {
	switch st := store.State(s); st {
	case store.StateCreating, store.StateStarting, store.StateStarted, store.StateStopping,
		store.StateStopped, store.StateArchiving, store.StateArchived, store.StateRestoring,
		store.StateDestroying, store.StateDestroyed, store.StateError, store.StateUnknown:
		return st, true
	}
	return "", false
}

func gib(mb int64) float64 { return float64(mb) / 1024 }

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// toSandboxDTO is the Daytona view of a sandbox; toolbox is the
// toolboxProxyUrl (toolboxURL of the request).
func toSandboxDTO(s store.Sandbox, toolbox string) SandboxDTO {
	user := s.User
	if user == "" {
		user = "root"
	}
	last := s.Lifecycle.LastActivity
	if s.StartedAt != nil && s.StartedAt.After(last) {
		last = *s.StartedAt
	}
	l := s.Lifecycle
	return SandboxDTO{
		ID: s.ID, OrganizationID: s.TenantID, Name: s.Name, Snapshot: snapshotName(s.Image), User: user,
		Env: orEmpty(s.Env), Labels: orEmpty(s.Labels), Target: "local", Public: s.Public,
		CPU: s.Resources.CPU, Memory: gib(s.Resources.MemoryMB), Disk: gib(s.Resources.DiskMB),
		State: toState(s.State), DesiredState: toDesiredState(s), ErrorReason: s.ErrorReason,
		BackupState: "None",
		// Daytona counts in minutes; sbx in seconds.
		AutoStop: int(l.AutoStop / 60), AutoArchive: int(l.AutoArchive / 60), AutoDelete: minutesOrNever(l.AutoDelete),
		Volumes:   toVolumeMountDTOs(s.Volumes),
		CreatedAt: isoTime(s.CreatedAt), UpdatedAt: isoTime(s.UpdatedAt), LastActivityAt: isoTime(last),
		SandboxClass: "container", ToolboxURL: toolbox,
	}
}

func (h *handler) controlRoutes() {
	h.route("POST /sandbox", h.createSandbox)
	h.route("GET /sandbox", h.listSandboxes)
	h.route("GET /sandbox/{id}", h.getSandbox)
	h.route("DELETE /sandbox/{id}", h.deleteSandbox)
	h.route("POST /sandbox/{id}/start", h.startSandbox)
	h.route("POST /sandbox/{id}/stop", h.stopSandbox)
	h.route("PUT /sandbox/{id}/labels", h.setLabels)
	h.route("POST /sandbox/{id}/resize", h.resizeSandbox)
	h.route("GET /sandbox/{id}/toolbox-proxy-url", h.toolboxProxyURL)
	h.route("POST /sandbox/{id}/archive", h.archiveSandbox)
	h.route("POST /sandbox/{id}/autostop/{m}", h.setInterval)
	h.route("POST /sandbox/{id}/autoarchive/{m}", h.setInterval)
	h.route("POST /sandbox/{id}/autodelete/{m}", h.setInterval)
	h.route("POST /sandbox/{id}/last-activity", h.lastActivity)
	h.previewRoutes()
	// Accepted and not recorded: sbx has no pause or TTL.
	for _, p := range []string{"autopause/{m}", "ttl/{m}"} {
		h.route("POST /sandbox/{id}/"+p, h.acceptNoop)
	}
}

func minutesOrNever(sec int64) int {
	if sec < 0 {
		return -1
	}
	return int(sec / 60)
}

// Daytona's defaults for a sandbox created without intervals (minutes):
// stop after 15 idle, archive after 7 days stopped, never delete.
const (
	daytonaAutoStop    = 15
	daytonaAutoArchive = 7 * 24 * 60
)

// lifecycleOf maps Daytona's intervals (minutes; nil: Daytona's default)
// to sbx's policy. Daytona's auto-archive 0 means "the maximum", which is
// its 7-day default.
func lifecycleOf(stop, archive, del *int) *sandbox.LifecycleOptions {
	sec := func(m int) *int64 { v := int64(m) * 60; return &v }
	o := &sandbox.LifecycleOptions{AutoStop: sec(daytonaAutoStop), AutoArchive: sec(daytonaAutoArchive)}
	if stop != nil {
		o.AutoStop = sec(*stop)
	}
	if archive != nil && *archive != 0 {
		o.AutoArchive = sec(*archive)
	}
	if del != nil {
		v := int64(*del)
		if v > 0 {
			v *= 60
		}
		o.AutoDelete = &v
	}
	return o
}

func (h *handler) archiveSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Archive(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSandboxDTO(sb, toolboxURL(r)))
}

// setInterval serves autostop, autoarchive and autodelete (minutes).
func (h *handler) setInterval(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	m, err := strconv.Atoi(r.PathValue("m"))
	if err != nil {
		h.fail(w, r, invalidf("interval %q is not a whole number of minutes", r.PathValue("m")))
		return
	}
	var o sandbox.LifecycleOptions
	v := int64(m) * 60
	switch {
	case strings.Contains(r.URL.Path, "/autostop/"):
		o.AutoStop = &v
	case strings.Contains(r.URL.Path, "/autoarchive/"):
		if m == 0 {
			v = daytonaAutoArchive * 60
		}
		o.AutoArchive = &v
	default:
		if m < 0 {
			v = int64(m)
		}
		o.AutoDelete = &v
	}
	if _, err := h.cfg.Sandboxes.SetLifecycle(r.Context(), t.ID, r.PathValue("id"), o); err != nil {
		h.fail(w, r, err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, maxJSONBody))
	w.WriteHeader(http.StatusOK)
}

func (h *handler) lastActivity(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	if _, err := h.cfg.Sandboxes.Keepalive(r.Context(), t.ID, r.PathValue("id"), 0); err != nil {
		h.fail(w, r, err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, maxJSONBody))
	w.WriteHeader(http.StatusOK)
}

// decodeBody decodes an optional JSON body leniently: the SDK sends many
// fields sbx does not use, and empty POSTs as form-urlencoded.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxJSONBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errdefs.Public(errdefs.ErrTooLarge, "request body larger than 1 MiB")
		}
		return fmt.Errorf("reading request body: %w", err)
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return errdefs.Publicf(errdefs.ErrInvalidArgument, "invalid JSON body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// createRequest is Daytona's CreateSandbox body, the fields sbx acts on
// plus those it must refuse rather than silently ignore.
type createRequest struct {
	Name      string            `json:"name"`
	Snapshot  string            `json:"snapshot"`
	User      string            `json:"user"`
	Env       map[string]string `json:"env"`
	Labels    map[string]string `json:"labels"`
	CPU       float64           `json:"cpu"`
	GPU       float64           `json:"gpu"`
	Memory    float64           `json:"memory"` // GiB
	Disk      float64           `json:"disk"`   // GiB
	BuildInfo *struct {
		DockerfileContent string   `json:"dockerfileContent"`
		ContextHashes     []string `json:"contextHashes"`
	} `json:"buildInfo"`
	Volumes          []VolumeMountDTO `json:"volumes"`
	NetworkBlockAll  bool             `json:"networkBlockAll"`
	NetworkAllowList string           `json:"networkAllowList"`
	DomainAllowList  string           `json:"domainAllowList"`
	AutoStop         *int             `json:"autoStopInterval"`
	AutoArchive      *int             `json:"autoArchiveInterval"`
	AutoDelete       *int             `json:"autoDeleteInterval"`
	Public           bool             `json:"public"`
}

func invalidf(format string, args ...any) error {
	return errdefs.Publicf(errdefs.ErrInvalidArgument, format, args...)
}

// imageOfDockerfile accepts the one Dockerfile the SDK generates for
// create({image: "ref"}), "FROM ref", and returns ref; building images
// from Dockerfiles is not supported yet.
func imageOfDockerfile(df string, contextHashes []string) (string, error) {
	var lines []string
	for _, l := range strings.Split(df, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	if len(contextHashes) == 0 && len(lines) == 1 {
		f := strings.Fields(lines[0])
		if len(f) == 2 && strings.EqualFold(f[0], "FROM") {
			return f[1], nil
		}
	}
	return "", invalidf("sbx cannot build images from a Dockerfile yet: pass a plain image reference (image: \"ref\" or snapshot: \"ref\") of an image pulled or imported into sbx")
}

// toCreateOptions translates a create request.
func toCreateOptions(req createRequest, tenantID string) (sandbox.CreateOptions, error) {
	opts := sandbox.CreateOptions{TenantID: tenantID, Name: req.Name, Image: req.Snapshot, Env: req.Env, Labels: req.Labels, User: req.User,
		Volumes: fromVolumeMounts(req.Volumes), Public: req.Public}
	if req.BuildInfo != nil {
		if req.Snapshot != "" {
			return opts, invalidf("give either snapshot or image, not both")
		}
		ref, err := imageOfDockerfile(req.BuildInfo.DockerfileContent, req.BuildInfo.ContextHashes)
		if err != nil {
			return opts, err
		}
		opts.Image = ref
	}
	switch {
	case req.GPU > 0:
		return opts, invalidf("sbx has no GPU sandboxes")
	case req.NetworkBlockAll || req.NetworkAllowList != "" || req.DomainAllowList != "":
		return opts, invalidf("network policies are not supported by sbx's Daytona API yet")
	}
	for _, v := range []float64{req.CPU, req.Memory, req.Disk} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v > 1<<20 {
			return opts, invalidf("cpu, memory and disk must be non-negative numbers")
		}
	}
	opts.Resources = store.Resources{CPU: req.CPU, MemoryMB: int64(req.Memory * 1024), DiskMB: int64(req.Disk * 1024)}
	opts.Lifecycle = lifecycleOf(req.AutoStop, req.AutoArchive, req.AutoDelete)
	return opts, nil
}

func (h *handler) createSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req createRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	opts, err := toCreateOptions(req, t.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// A snapshot is a template of the tenant when one has the name (the
	// template wins over an image of the same name), else an image.
	if h.cfg.Templates != nil && req.Snapshot != "" {
		if _, err := h.cfg.Templates.Get(r.Context(), t.ID, req.Snapshot); err == nil {
			opts.Template, opts.Image = req.Snapshot, ""
		}
	}
	// Create returns once the sandbox is started: the SDK then does not
	// poll at all.
	sb, err := h.cfg.Sandboxes.Create(r.Context(), opts)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSandboxDTO(sb, toolboxURL(r)))
}

func (h *handler) answer(w http.ResponseWriter, r *http.Request, sb store.Sandbox, err error) {
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSandboxDTO(sb, toolboxURL(r)))
}

func (h *handler) getSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Get(r.Context(), t.ID, r.PathValue("id"))
	h.answer(w, r, sb, err)
}

// listPage is the paginated list answer.
type listPage struct {
	Items      []SandboxDTO `json:"items"`
	NextCursor *string      `json:"nextCursor"`
}

// listFilter translates the query of GET /sandbox. The id and name
// prefixes are returned for the caller to apply.
func listFilter(q map[string][]string, tenantID string) (f store.SandboxFilter, idPrefix, namePrefix string, err error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f = store.SandboxFilter{TenantID: tenantID, Cursor: get("cursor")}
	if l := get("labels"); l != "" {
		if err := json.Unmarshal([]byte(l), &f.Labels); err != nil {
			return f, "", "", invalidf("labels must be a JSON object of strings")
		}
	}
	if l := get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return f, "", "", invalidf("limit must be an integer from 1 to 1000")
		}
		f.Limit = n
	}
	states := append(q["states"], q["states[]"]...)
	for _, s := range states {
		if st, ok := fromState(s); ok {
			f.States = append(f.States, st)
		}
	}
	if len(states) > 0 && len(f.States) == 0 {
		// Only states sbx never has: nothing matches. The store reads
		// an empty list as "all", so ask for one that cannot be listed.
		f.States = []store.State{"none"}
	}
	for _, k := range []string{"snapshots", "regionIds", "minCpu", "maxCpu", "minMemoryGiB", "maxMemoryGiB", "minDiskGiB", "maxDiskGiB",
		"isPublic", "isRecoverable", "createdAtAfter", "createdAtBefore", "lastEventAfter", "lastEventBefore", "autoDestroyAtAfter", "autoDestroyAtBefore"} {
		if get(k) != "" {
			return f, "", "", invalidf("the list filter %s is not supported by sbx yet", k)
		}
	}
	return f, get("id"), get("name"), nil
}

func (h *handler) listSandboxes(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	f, idPrefix, namePrefix, err := listFilter(r.URL.Query(), t.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	items, next, err := h.cfg.Sandboxes.List(r.Context(), f)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	out := listPage{Items: []SandboxDTO{}}
	tb := toolboxURL(r)
	for _, s := range items {
		// Prefix filters apply per page: a page may come out short.
		if !strings.HasPrefix(strings.ToLower(s.ID), strings.ToLower(idPrefix)) ||
			!strings.HasPrefix(strings.ToLower(s.Name), strings.ToLower(namePrefix)) {
			continue
		}
		out.Items = append(out.Items, toSandboxDTO(s, tb))
	}
	if next != "" {
		out.NextCursor = &next
	}
	writeJSON(w, http.StatusOK, listItems(out))
}

// listItems drops the env key from list items (the SDK treats an object
// with env as a full one).
func listItems(p listPage) map[string]any {
	items := make([]map[string]any, 0, len(p.Items))
	for _, d := range p.Items {
		b, _ := json.Marshal(d)
		var m map[string]any
		json.Unmarshal(b, &m)
		delete(m, "env")
		items = append(items, m)
	}
	return map[string]any{"items": items, "nextCursor": p.NextCursor}
}

func (h *handler) deleteSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Get(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if err := h.cfg.Sandboxes.Delete(r.Context(), t.ID, sb.ID); err != nil {
		h.fail(w, r, err)
		return
	}
	// Delete is synchronous: the sandbox is gone when it returns.
	sb.State, sb.Desired = store.StateDestroyed, store.StateDestroyed
	writeJSON(w, http.StatusOK, toSandboxDTO(sb, toolboxURL(r)))
}

func (h *handler) startSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	sb, err := h.cfg.Sandboxes.Start(r.Context(), t.ID, r.PathValue("id"))
	h.answer(w, r, sb, err)
}

// forceGrace is the stop grace of force=true: SIGKILL at once, nearly.
const forceGrace = time.Millisecond

func (h *handler) stopSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var grace time.Duration // the configured default
	if f := r.URL.Query().Get("force"); f != "" {
		force, err := strconv.ParseBool(f)
		if err != nil {
			h.fail(w, r, invalidf("force must be true or false"))
			return
		}
		if force {
			grace = forceGrace
		}
	}
	sb, err := h.cfg.Sandboxes.Stop(r.Context(), t.ID, r.PathValue("id"), grace)
	h.answer(w, r, sb, err)
}

func (h *handler) setLabels(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		Labels map[string]string `json:"labels"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.Labels == nil {
		h.fail(w, r, invalidf("labels is required"))
		return
	}
	sb, err := h.cfg.Sandboxes.SetLabels(r.Context(), t.ID, r.PathValue("id"), req.Labels)
	h.answer(w, r, sb, err)
}

func (h *handler) resizeSandbox(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	var req struct {
		CPU    float64 `json:"cpu"`
		Memory float64 `json:"memory"`
		Disk   float64 `json:"disk"`
		GPU    float64 `json:"gpu"`
	}
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.GPU > 0 {
		h.fail(w, r, invalidf("sbx has no GPU sandboxes"))
		return
	}
	for _, v := range []float64{req.CPU, req.Memory, req.Disk} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) || v > 1<<20 {
			h.fail(w, r, invalidf("cpu, memory and disk must be non-negative numbers"))
			return
		}
	}
	sb, err := h.cfg.Sandboxes.Resize(r.Context(), t.ID, r.PathValue("id"), sandbox.ResizeOptions{
		CPU: req.CPU, MemoryMB: int64(req.Memory * 1024), DiskMB: int64(req.Disk * 1024),
	})
	h.answer(w, r, sb, err)
}

func (h *handler) toolboxProxyURL(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	if _, err := h.cfg.Sandboxes.Get(r.Context(), t.ID, r.PathValue("id")); err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"url": toolboxURL(r)})
}

// acceptNoop answers the idle-policy calls (autostop, autoarchive, ...)
// for an existing sandbox without recording anything.
func (h *handler) acceptNoop(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	if _, err := h.cfg.Sandboxes.Get(r.Context(), t.ID, r.PathValue("id")); err != nil {
		h.fail(w, r, err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, maxJSONBody))
	w.WriteHeader(http.StatusOK)
}

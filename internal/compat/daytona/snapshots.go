package daytona

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/template"
)

// Templates is the template service as the adapter uses it: Daytona's
// snapshots are sbx's templates. *template.Service implements it.
type Templates interface {
	Create(ctx context.Context, tenantID string, req template.CreateRequest) (store.Template, error)
	Get(ctx context.Context, tenantID, name string) (store.Template, error)
	List(ctx context.Context, tenantID string) ([]store.Template, error)
	Delete(ctx context.Context, tenantID, name string) error
	BuildLog(ctx context.Context, tenantID, name string, follow bool) (io.ReadCloser, error)
	Image(ctx context.Context, t store.Template) (image.Image, error)
}

func (h *handler) snapshotRoutes() {
	h.route("POST /snapshots", h.createSnapshot)
	h.route("GET /snapshots", h.listSnapshots)
	h.route("GET /snapshots/{id}", h.getSnapshot)
	h.route("DELETE /snapshots/{id}", h.deleteSnapshot)
	h.route("POST /snapshots/{id}/activate", h.getSnapshot) // templates never go inactive
	h.route("GET /snapshots/{id}/build-logs-url", h.snapshotLogsURL)
	h.route("GET /snapshots/{id}/build-logs", h.snapshotLogs)
}

// SnapshotDTO is Daytona's Snapshot object. Resources are 0: a sandbox
// made from a template takes the operator's defaults unless it asks.
type SnapshotDTO struct {
	ID              string    `json:"id"`
	OrganizationID  string    `json:"organizationId"`
	General         bool      `json:"general"`
	Name            string    `json:"name"`
	ImageName       string    `json:"imageName,omitempty"`
	State           string    `json:"state"`
	Size            *float64  `json:"size"` // GiB
	Entrypoint      []string  `json:"entrypoint"`
	CPU             float64   `json:"cpu"`
	GPU             float64   `json:"gpu"`
	Mem             float64   `json:"mem"`
	Disk            float64   `json:"disk"`
	ErrorReason     *string   `json:"errorReason"`
	CreatedAt       string    `json:"createdAt"`
	UpdatedAt       string    `json:"updatedAt"`
	LastUsedAt      *string   `json:"lastUsedAt"`
	BuildInfo       *struct{} `json:"buildInfo,omitempty"`
	SourceSandboxID *string   `json:"sourceSandboxId"`
}

// snapshotState maps a template's state: a failed build is Daytona's
// build_failed.
func snapshotState(t store.Template) string {
	if t.State == store.TemplateError && strings.HasPrefix(t.ErrorReason, "build_failed:") {
		return "build_failed"
	}
	return string(t.State) // pending, pulling, building, active, error: Daytona's names
}

func (h *handler) toSnapshotDTO(ctx context.Context, t store.Template) SnapshotDTO {
	d := SnapshotDTO{ID: t.ID, OrganizationID: t.TenantID, Name: t.Name, State: snapshotState(t),
		Entrypoint: []string{}, CreatedAt: isoTime(t.CreatedAt), UpdatedAt: isoTime(t.UpdatedAt)}
	var src struct {
		Image   string         `json:"image"`
		Spec    *template.Spec `json:"spec"`
		Sandbox string         `json:"sandbox"`
	}
	if json.Unmarshal(t.Spec, &src) == nil {
		d.ImageName = src.Image
		if src.Spec != nil {
			d.ImageName = src.Spec.Base
			d.BuildInfo = &struct{}{}
		}
		if src.Sandbox != "" {
			d.SourceSandboxID = &src.Sandbox
		}
	}
	if t.ErrorReason != "" {
		r := t.ErrorReason
		d.ErrorReason = &r
	}
	if t.State == store.TemplateActive {
		if img, err := h.cfg.Templates.Image(ctx, t); err == nil {
			size := float64(img.Size) / (1 << 30)
			d.Size = &size
			d.Entrypoint = append(append(d.Entrypoint, img.Config.Entrypoint...), img.Config.Cmd...)
		}
	}
	return d
}

// templates returns the service, or answers 501 when the server has none.
func (h *handler) templates(w http.ResponseWriter, r *http.Request) Templates {
	if h.cfg.Templates == nil {
		writeError(w, r, http.StatusNotImplemented, "NOT_IMPLEMENTED", sourceAPI, "snapshots are not enabled on this server")
	}
	return h.cfg.Templates
}

type createSnapshotRequest struct {
	Name       string   `json:"name"`
	ImageName  string   `json:"imageName"`
	Entrypoint []string `json:"entrypoint"`
	BuildInfo  *struct {
		DockerfileContent string   `json:"dockerfileContent"`
		ContextHashes     []string `json:"contextHashes"`
	} `json:"buildInfo"`
	CPU          float64  `json:"cpu"`
	GPU          float64  `json:"gpu"`
	GPUType      []string `json:"gpuType"`
	Memory       float64  `json:"memory"`
	Disk         float64  `json:"disk"`
	RegionID     string   `json:"regionId"`
	SandboxClass string   `json:"sandboxClass"`
}

func (h *handler) createSnapshot(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	var req createSnapshotRequest
	if err := decodeBody(w, r, &req); err != nil {
		h.fail(w, r, err)
		return
	}
	if req.GPU > 0 {
		h.fail(w, r, invalidf("sbx has no GPU sandboxes"))
		return
	}
	var spec template.Spec
	switch {
	case req.BuildInfo != nil && req.ImageName != "":
		h.fail(w, r, invalidf("give either imageName or buildInfo, not both"))
		return
	case req.BuildInfo != nil:
		if len(req.BuildInfo.ContextHashes) > 0 {
			h.fail(w, r, invalidf("sbx cannot build with local files (COPY/ADD context) yet"))
			return
		}
		sp, err := specOfDockerfile(req.BuildInfo.DockerfileContent)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		spec = sp
	case req.ImageName != "":
		// A spec with no layer step: the image is used from the store
		// (pulled when it is not there), no build sandbox runs.
		spec.Base = req.ImageName
		if len(req.Entrypoint) > 0 {
			spec.Steps = append(spec.Steps, template.Step{Entrypoint: req.Entrypoint})
		}
	default:
		h.fail(w, r, invalidf("imageName or buildInfo is required"))
		return
	}
	tpl, err := svc.Create(r.Context(), t.ID, template.CreateRequest{Name: req.Name, Spec: &spec})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.toSnapshotDTO(r.Context(), tpl))
}

func (h *handler) getSnapshot(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	tpl, err := svc.Get(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h.toSnapshotDTO(r.Context(), tpl))
}

func (h *handler) listSnapshots(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	q := r.URL.Query()
	page, limit := 1, 100
	for _, p := range []struct {
		name string
		v    *int
		max  int
	}{{"page", &page, 1 << 20}, {"limit", &limit, 200}} {
		if s := q.Get(p.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > p.max {
				h.fail(w, r, invalidf("%s must be a number from 1 to %d", p.name, p.max))
				return
			}
			*p.v = n
		}
	}
	all, err := svc.List(r.Context(), t.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if src := q.Get("sourceSandboxId"); src != "" {
		var keep []store.Template
		for _, tpl := range all {
			if d := h.toSnapshotDTO(r.Context(), tpl); d.SourceSandboxID != nil && *d.SourceSandboxID == src {
				keep = append(keep, tpl)
			}
		}
		all = keep
	}
	items := []SnapshotDTO{}
	for i := (page - 1) * limit; i < len(all) && i < page*limit; i++ {
		items = append(items, h.toSnapshotDTO(r.Context(), all[i]))
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"items": items, "total": len(all), "page": page, "totalPages": (len(all) + limit - 1) / limit,
	})
}

func (h *handler) deleteSnapshot(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	if err := svc.Delete(r.Context(), t.ID, r.PathValue("id")); err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (h *handler) snapshotLogsURL(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	tpl, err := svc.Get(r.Context(), t.ID, r.PathValue("id"))
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"url": baseURL(r) + Prefix + "/snapshots/" + tpl.ID + "/build-logs"})
}

func (h *handler) snapshotLogs(w http.ResponseWriter, r *http.Request, t store.Tenant) {
	svc := h.templates(w, r)
	if svc == nil {
		return
	}
	follow, _ := strconv.ParseBool(r.URL.Query().Get("follow"))
	rc, err := svc.BuildLog(r.Context(), t.ID, r.PathValue("id"), follow)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rcw := http.NewResponseController(w)
	rcw.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rcw.Flush()
		}
		if err != nil {
			return
		}
	}
}

// snapshotName is what a sandbox's snapshot is called: a template's name
// for a sandbox made from one, else the image reference.
func snapshotName(imageRef string) string {
	if n, ok := strings.CutPrefix(imageRef, "sbx.local/template/"); ok {
		return strings.TrimSuffix(n, ":latest")
	}
	return imageRef
}

// specOfDockerfile translates the Dockerfiles the Daytona SDK's Image
// builder writes (FROM, RUN, ENV, WORKDIR, ENTRYPOINT, CMD, USER; one
// FROM, no build context) into a template spec. Other instructions are
// refused with the instruction named.
func specOfDockerfile(df string) (template.Spec, error) {
	var sp template.Spec
	var lines []string
	cont := ""
	for _, l := range strings.Split(df, "\n") {
		l = strings.TrimRight(l, "\r")
		if t := strings.TrimSpace(l); cont == "" && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(l, "\\") {
			cont += strings.TrimSuffix(l, "\\") + "\n"
			continue
		}
		lines = append(lines, strings.TrimSpace(cont+l))
		cont = ""
	}
	if cont != "" {
		lines = append(lines, strings.TrimSpace(cont))
	}
	for i, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch strings.ToUpper(instr) {
		case "FROM":
			f := strings.Fields(rest)
			if i != 0 || len(f) != 1 {
				return sp, invalidf("sbx builds a Dockerfile with exactly one FROM IMAGE, first (line %q)", l)
			}
			sp.Base = f[0]
		case "RUN":
			if strings.HasPrefix(rest, "[") {
				var argv []string
				if err := json.Unmarshal([]byte(rest), &argv); err != nil {
					return sp, invalidf("invalid RUN %s", rest)
				}
				rest = shellJoin(argv)
			}
			sp.Steps = append(sp.Steps, template.Step{Run: rest})
		case "ENV":
			env := map[string]string{}
			if k, v, ok := strings.Cut(rest, "="); ok && !strings.ContainsAny(k, " \t") {
				env[k] = unquote(v)
			} else if k, v, ok := strings.Cut(rest, " "); ok {
				env[k] = strings.TrimSpace(v)
			} else {
				return sp, invalidf("invalid ENV %s", rest)
			}
			sp.Steps = append(sp.Steps, template.Step{Env: env})
		case "WORKDIR":
			sp.Steps = append(sp.Steps, template.Step{Workdir: unquote(rest)})
		case "USER":
			sp.Steps = append(sp.Steps, template.Step{User: rest})
		case "ENTRYPOINT", "CMD":
			var argv []string
			if err := json.Unmarshal([]byte(rest), &argv); err != nil {
				argv = []string{"/bin/sh", "-c", rest} // shell form
			}
			if strings.EqualFold(instr, "CMD") {
				sp.Steps = append(sp.Steps, template.Step{Cmd: argv})
			} else {
				sp.Steps = append(sp.Steps, template.Step{Entrypoint: argv})
			}
		default:
			return sp, invalidf("sbx cannot build the Dockerfile instruction %s yet", strings.ToUpper(instr))
		}
	}
	if sp.Base == "" {
		return sp, invalidf("the Dockerfile has no FROM")
	}
	return sp, nil
}

// unquote undoes the shell quoting of one word (as the SDK's shell-quote
// writes it): '...', "..." or backslash escapes.
func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = s[1 : len(s)-1]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

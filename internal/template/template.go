// Package template is the template service: tenant-owned, named images
// that sandboxes are created from by name (CreateOptions.Template), made
// in one of three ways:
//
//   - from an image reference: pulled through the image store
//     (pending → pulling → active);
//   - from a declarative spec: a base and ordered steps, built layer by
//     layer (pending → building → active). Each run/apt/pip/npm step runs in
//     a build sandbox (network bridge when the daemon has networking) whose
//     image is the base plus the layers so far; the sandbox is then stopped
//     and its writable layer committed (rootfs.CommitLayer) as the step's
//     layer. env/workdir/entrypoint/cmd/user steps change only the config.
//     A cache keyed by (parent image digest, canonical step) skips steps
//     already built: an unchanged prefix of a spec is never rebuilt;
//   - from a stopped sandbox: its writable layer committed on top of its
//     image (building → active), with its env, user, workdir and command
//     overrides carried into the config.
//
// A failure ends in state error with the reason; a failed build's reason
// starts with "build_failed:" and its log holds the failing step's output.
// Every template's image is recorded in the image store under the
// reference sbx.local/template/NAME:latest, so sandboxes made from it keep
// working through restarts and garbage collection keeps its layers; a
// template is deleted only when no live sandbox was created from it.
//
// Build logs are kept in Dir/<template id>.log (plain text) and can be
// followed while the build runs.
//
// Concurrency: work on templates runs in goroutines owned by the service;
// Close cancels and waits for them. A template whose work was cut short by
// a daemon stop is set to error at the next start (Recover), and the build
// sandboxes it left are deleted.
package template

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

// Images is the image store as templates use it (*image.Store).
type Images interface {
	Resolve(ctx context.Context, tenantID, ref string) (image.Image, error)
	Pull(ctx context.Context, tenantID, ref string, opts image.PullOptions) (image.Image, error)
	Append(ctx context.Context, tenantID, base string, layers []string, edit image.ConfigEdit, ref string) (image.Image, error)
	Tag(ctx context.Context, tenantID, digest, ref string) (image.Image, error)
	Untag(ctx context.Context, tenantID, ref string) error
	Collect(ctx context.Context) error
}

// Sandboxes is the lifecycle service as builds use it (*sandbox.Service).
type Sandboxes interface {
	Create(ctx context.Context, opts sandbox.CreateOptions) (store.Sandbox, error)
	Get(ctx context.Context, tenantID, idOrName string) (store.Sandbox, error)
	List(ctx context.Context, f store.SandboxFilter) ([]store.Sandbox, string, error)
	Exec(ctx context.Context, tenantID, idOrName string, req agent.ExecRequest) (*sandbox.Process, error)
	Stop(ctx context.Context, tenantID, idOrName string, grace time.Duration) (store.Sandbox, error)
	Delete(ctx context.Context, tenantID, idOrName string) error
	CommitLayer(ctx context.Context, tenantID, idOrName string, w io.Writer) (store.Sandbox, error)
}

// Config configures the service.
type Config struct {
	Dir string // build logs and scratch layers
	// BuildNetwork is the network mode of build sandboxes: "bridge" so
	// package managers reach their mirrors, "none" without networking.
	BuildNetwork string
	// StepTimeout bounds one build step; 0 means 30 minutes.
	StepTimeout time.Duration
	// BuildResources of build sandboxes; zero fields take the defaults.
	BuildResources store.Resources
}

// Service manages templates.
type Service struct {
	cfg       Config
	st        store.Store
	images    Images
	sandboxes Sandboxes
	log       *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	jobs map[string]*job // by template ID, while its work runs
}

type job struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns the service. Call Recover once, and Close when done.
func New(cfg Config, st store.Store, images Images, sandboxes Sandboxes, log *slog.Logger) (*Service, error) {
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 30 * time.Minute
	}
	if cfg.BuildNetwork == "" {
		cfg.BuildNetwork = "none"
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{cfg: cfg, st: st, images: images, sandboxes: sandboxes, log: log,
		ctx: ctx, cancel: cancel, jobs: map[string]*job{}}, nil
}

// Close cancels running work and waits for it.
func (s *Service) Close() error {
	s.cancel()
	s.wg.Wait()
	return nil
}

// buildLabel marks build sandboxes with their template's ID.
const buildLabel = "sbx.template-build"

// Recover fails templates whose work a daemon stop cut short, and deletes
// the build sandboxes they left.
func (s *Service) Recover(ctx context.Context) error {
	ts, err := s.st.ListTemplates(ctx, "")
	if err != nil {
		return err
	}
	for _, t := range ts {
		if t.State == store.TemplateActive || t.State == store.TemplateError {
			continue
		}
		s.cleanupBuildSandboxes(ctx, t)
		s.images.Untag(ctx, t.TenantID, buildRef(&t))
		t.State, t.ErrorReason = store.TemplateError, "interrupted: the daemon stopped while the template was "+string(t.State)
		if err := s.st.UpdateTemplate(ctx, t); err != nil {
			return err
		}
		s.log.Warn("template work interrupted", "template", t.Name, "tenant", t.TenantID)
	}
	return nil
}

func (s *Service) cleanupBuildSandboxes(ctx context.Context, t store.Template) {
	sbs, _, err := s.sandboxes.List(ctx, store.SandboxFilter{TenantID: t.TenantID, Labels: map[string]string{buildLabel: t.ID}})
	if err != nil {
		return
	}
	for _, sb := range sbs {
		if err := s.sandboxes.Delete(ctx, t.TenantID, sb.ID); err != nil {
			s.log.Error("deleting a build sandbox", "sandbox", sb.ID, "err", err)
		}
	}
}

// CreateRequest says what a template is made from: exactly one of Image,
// Spec and Sandbox.
type CreateRequest struct {
	Name    string
	Image   string
	Pull    image.PullOptions // credentials for Image (not kept)
	Spec    *Spec
	Sandbox string // ID or name of a stopped sandbox
}

// source is what is kept in the template's spec column.
type source struct {
	Image   string `json:"image,omitempty"`
	Spec    *Spec  `json:"spec,omitempty"`
	Sandbox string `json:"sandbox,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Ref is the image reference of a template's image.
func Ref(name string) string { return "sbx.local/template/" + name + ":latest" }

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func newID() string {
	b := make([]byte, 10)
	rand.Read(b)
	return idEncoding.EncodeToString(b)
}

// Create records a template and starts making it; it returns at once
// with the template pending (or building, from a sandbox). Follow the
// build log or poll Get for the outcome.
func (s *Service) Create(ctx context.Context, tenantID string, req CreateRequest) (store.Template, error) {
	if !nameRE.MatchString(req.Name) {
		return store.Template{}, invalid("invalid template name %q: 1-63 lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", req.Name)
	}
	n := 0
	for _, set := range []bool{req.Image != "", req.Spec != nil, req.Sandbox != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return store.Template{}, invalid("give exactly one of image, spec and sandbox")
	}
	t := store.Template{ID: newID(), TenantID: tenantID, Name: req.Name, State: store.TemplatePending, ImageRef: Ref(req.Name)}
	src := source{Image: req.Image, Spec: req.Spec}
	var run func(ctx context.Context, t *store.Template, log io.Writer) error
	switch {
	case req.Image != "":
		if _, err := image.Normalize(req.Image); err != nil {
			return store.Template{}, err
		}
		t.Source = store.TemplateFromImage
		pull := req.Pull
		run = func(ctx context.Context, t *store.Template, log io.Writer) error {
			return s.fromImage(ctx, t, pull, log)
		}
	case req.Spec != nil:
		if err := req.Spec.Validate(); err != nil {
			return store.Template{}, err
		}
		t.Source = store.TemplateFromSpec
		spec := *req.Spec
		run = func(ctx context.Context, t *store.Template, log io.Writer) error { return s.build(ctx, t, spec, log) }
	default:
		sb, err := s.sandboxes.Get(ctx, tenantID, req.Sandbox)
		if err != nil {
			return store.Template{}, err
		}
		if sb.State != store.StateStopped {
			return store.Template{}, errdefs.Publicf(errdefs.ErrConflict, "sandbox %s is %s: stop it before making a template of it", sb.ID, sb.State)
		}
		t.Source, t.State, src.Sandbox = store.TemplateFromSandbox, store.TemplateBuilding, sb.ID
		run = func(ctx context.Context, t *store.Template, log io.Writer) error {
			return s.fromSandbox(ctx, t, sb.ID, log)
		}
	}
	b, err := json.Marshal(src)
	if err != nil {
		return store.Template{}, err
	}
	t.Spec = b
	t.BuildLog = filepath.Join(s.cfg.Dir, t.ID+".log")
	f, err := os.OpenFile(t.BuildLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return store.Template{}, err
	}
	if err := s.st.CreateTemplate(ctx, t); err != nil {
		f.Close()
		os.Remove(t.BuildLog)
		return store.Template{}, err
	}
	jctx, cancel := context.WithCancel(s.ctx)
	j := &job{cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.jobs[t.ID] = j
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(j.done)
		defer cancel()
		defer f.Close()
		tt := t
		err := run(jctx, &tt, f)
		ctx := context.WithoutCancel(jctx)
		if err != nil {
			reason := errdefs.Message(err)
			var bf *buildFailure
			if errors.As(err, &bf) {
				reason = "build_failed: " + bf.msg
			} else if jctx.Err() != nil {
				reason = "canceled"
			}
			fmt.Fprintf(f, "ERROR: %s\n", reason)
			tt.State, tt.ErrorReason = store.TemplateError, reason
			s.log.Warn("template failed", "template", tt.Name, "tenant", tt.TenantID, "err", err)
		} else {
			tt.State = store.TemplateActive
			fmt.Fprintf(f, "Template %s is active: %s\n", tt.Name, tt.ImageDigest)
			s.log.Info("template active", "template", tt.Name, "tenant", tt.TenantID, "source", tt.Source, "digest", tt.ImageDigest)
		}
		if err := s.st.UpdateTemplate(ctx, tt); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			s.log.Error("recording template state", "template", tt.Name, "err", err)
		}
		s.mu.Lock()
		delete(s.jobs, tt.ID)
		s.mu.Unlock()
	}()
	return t, nil
}

// setState records a state change of running work.
func (s *Service) setState(ctx context.Context, t *store.Template, state store.TemplateState) {
	t.State = state
	if err := s.st.UpdateTemplate(context.WithoutCancel(ctx), *t); err != nil {
		s.log.Error("recording template state", "template", t.Name, "err", err)
	}
}

// finish records the template's image under its own reference.
func (s *Service) finish(ctx context.Context, t *store.Template, digest string) error {
	img, err := s.images.Tag(ctx, t.TenantID, digest, t.ImageRef)
	if err != nil {
		return err
	}
	t.ImageDigest = img.Digest
	return nil
}

func (s *Service) fromImage(ctx context.Context, t *store.Template, opts image.PullOptions, log io.Writer) error {
	var src source
	json.Unmarshal(t.Spec, &src)
	s.setState(ctx, t, store.TemplatePulling)
	fmt.Fprintf(log, "Pulling %s\n", src.Image)
	var last time.Time
	opts.Progress = func(p image.Progress) {
		if p.Done || time.Since(last) > time.Second {
			last = time.Now()
			fmt.Fprintf(log, "  %.1f/%.1f MiB\n", float64(p.Complete)/(1<<20), float64(p.Total)/(1<<20))
		}
	}
	img, err := s.images.Pull(ctx, t.TenantID, src.Image, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "Pulled %s (%s)\n", src.Image, img.Digest)
	return s.finish(ctx, t, img.Digest)
}

func (s *Service) fromSandbox(ctx context.Context, t *store.Template, id string, log io.Writer) error {
	fmt.Fprintf(log, "Committing the filesystem of sandbox %s\n", id)
	tmp, err := os.CreateTemp(s.cfg.Dir, "layer-*.tar")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	sb, err := s.sandboxes.CommitLayer(ctx, t.TenantID, id, tmp)
	if err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	// The sandbox's own overrides become the template's config.
	edit := func(c *imageConfig) {
		for k, v := range sb.Env {
			c.Env = setEnv(c.Env, k, v)
		}
		if sb.User != "" {
			c.User = sb.User
		}
		if sb.Workdir != "" {
			c.WorkingDir = sb.Workdir
		}
		if len(sb.Entrypoint) > 0 {
			c.Entrypoint, c.Cmd = sb.Entrypoint, nil
		}
		if len(sb.Cmd) > 0 {
			c.Cmd = sb.Cmd
		}
	}
	img, err := s.images.Append(ctx, t.TenantID, sb.ImageDigest, []string{tmp.Name()}, edit, t.ImageRef)
	if err != nil {
		return err
	}
	ids := image.LayerIDs(img)
	fmt.Fprintf(log, "Committed layer %s\n", ids[len(ids)-1])
	t.ImageDigest = img.Digest
	return nil
}

// Get returns the tenant's template by name (or ID).
func (s *Service) Get(ctx context.Context, tenantID, name string) (store.Template, error) {
	return s.st.GetTemplate(ctx, tenantID, name)
}

// List lists the tenant's templates.
func (s *Service) List(ctx context.Context, tenantID string) ([]store.Template, error) {
	return s.st.ListTemplates(ctx, tenantID)
}

// Image returns an active template's image.
func (s *Service) Image(ctx context.Context, t store.Template) (image.Image, error) {
	return s.images.Resolve(ctx, t.TenantID, t.ImageRef)
}

// TemplateImage implements sandbox.Templates.
func (s *Service) TemplateImage(ctx context.Context, tenantID, name string) (string, error) {
	t, err := s.st.GetTemplate(ctx, tenantID, name)
	if err != nil {
		return "", err
	}
	if t.State != store.TemplateActive {
		return "", errdefs.Publicf(errdefs.ErrConflict, "template %q is %s, not active", t.Name, t.State)
	}
	return t.ImageRef, nil
}

// Delete removes a template, refusing while a live sandbox was created
// from it. Work still running on it is canceled first.
func (s *Service) Delete(ctx context.Context, tenantID, name string) error {
	t, err := s.st.GetTemplate(ctx, tenantID, name)
	if err != nil {
		return err
	}
	used, err := s.st.ImageRefInUse(ctx, t.TenantID, t.ImageRef)
	if err != nil {
		return err
	}
	if used {
		return errdefs.Publicf(errdefs.ErrConflict, "template %q is used by a sandbox", t.Name)
	}
	s.mu.Lock()
	j := s.jobs[t.ID]
	s.mu.Unlock()
	if j != nil {
		j.cancel()
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := s.st.DeleteTemplate(ctx, t.TenantID, t.Name); err != nil {
		return err
	}
	if err := s.images.Untag(ctx, t.TenantID, t.ImageRef); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return err
	}
	os.Remove(t.BuildLog)
	if err := s.images.Collect(ctx); err != nil {
		s.log.Warn("collecting image layers", "err", err)
	}
	return nil
}

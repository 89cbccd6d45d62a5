package sbx

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Template states.
const (
	TemplatePending  = "pending"
	TemplatePulling  = "pulling"
	TemplateBuilding = "building"
	TemplateActive   = "active"
	TemplateError    = "error"
)

// Template is a tenant-owned, named image that sandboxes are created from
// (CreateSandboxRequest.Template).
type Template struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Source string `json:"source"` // image | spec | sandbox
	State  string `json:"state"`
	// ErrorReason says why a template is in state error; a failed
	// declarative build's starts with "build_failed:".
	ErrorReason string `json:"error_reason,omitempty"`
	// Image is the template's reference in the image store.
	Image  string `json:"image"`
	Digest string `json:"digest,omitempty"` // manifest digest, once active
	// Layers are the diff IDs of its image's layers, lowest first.
	Layers []string `json:"layers,omitempty"`
	// What it was made from: one of these.
	SourceImage   string        `json:"source_image,omitempty"`
	Spec          *TemplateSpec `json:"spec,omitempty"`
	SourceSandbox string        `json:"source_sandbox,omitempty"`
	CreatedAt     time.Time     `json:"created_at"`
	UpdatedAt     time.Time     `json:"updated_at"`
}

// TemplateList is a list of templates.
type TemplateList struct {
	Items []Template `json:"items"`
}

// TemplateSpec is a declarative build: exactly one of Base (an image
// reference, pulled if needed) and BaseTemplate, then ordered steps.
type TemplateSpec struct {
	Base         string         `json:"base,omitempty" yaml:"base,omitempty"`
	BaseTemplate string         `json:"base_template,omitempty" yaml:"base_template,omitempty"`
	Steps        []TemplateStep `json:"steps" yaml:"steps"`
}

// TemplateStep is one build step; exactly one field is set. Run, Apt, Pip
// and Npm each add a layer; the others change only the image config.
type TemplateStep struct {
	Run        string            `json:"run,omitempty" yaml:"run,omitempty"`
	Apt        []string          `json:"apt,omitempty" yaml:"apt,omitempty"`
	Pip        []string          `json:"pip,omitempty" yaml:"pip,omitempty"`
	Npm        []string          `json:"npm,omitempty" yaml:"npm,omitempty"`
	Env        map[string]string `json:"env,omitempty" yaml:"env,omitempty"`
	Workdir    string            `json:"workdir,omitempty" yaml:"workdir,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty" yaml:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty" yaml:"cmd,omitempty"`
	User       string            `json:"user,omitempty" yaml:"user,omitempty"`
}

// CreateTemplateRequest makes a template from exactly one of Image (with
// optional registry credentials), Spec and Sandbox (a stopped sandbox).
type CreateTemplateRequest struct {
	Name     string        `json:"name"`
	Image    string        `json:"image,omitempty"`
	Username string        `json:"username,omitempty"`
	Password string        `json:"password,omitempty"`
	Insecure bool          `json:"insecure,omitempty"`
	Spec     *TemplateSpec `json:"spec,omitempty"`
	Sandbox  string        `json:"sandbox,omitempty"`
}

func templatePath(name string, rest ...string) string {
	p := "/v1/templates/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + r
	}
	return p
}

// CreateTemplate records a template and starts making it; the answer is
// the template while still pending (or building). Follow TemplateBuildLog
// or poll GetTemplate (WaitTemplate) for the outcome.
func (c *Client) CreateTemplate(ctx context.Context, req CreateTemplateRequest) (Template, error) {
	var t Template
	return t, c.do(ctx, http.MethodPost, "/v1/templates", nil, req, &t)
}

// ListTemplates lists the tenant's templates.
func (c *Client) ListTemplates(ctx context.Context) ([]Template, error) {
	var l TemplateList
	return l.Items, c.do(ctx, http.MethodGet, "/v1/templates", nil, nil, &l)
}

// GetTemplate returns a template by name.
func (c *Client) GetTemplate(ctx context.Context, name string) (Template, error) {
	var t Template
	return t, c.do(ctx, http.MethodGet, templatePath(name), nil, nil, &t)
}

// DeleteTemplate deletes a template (refused with a conflict while a
// sandbox created from it lives).
func (c *Client) DeleteTemplate(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, templatePath(name), nil, nil, nil)
}

// TemplateBuildLog returns a template's build log as plain text. With
// follow it streams until the template is active or failed.
func (c *Client) TemplateBuildLog(ctx context.Context, name string, follow bool) (io.ReadCloser, error) {
	return c.openLog(ctx, templatePath(name, "build-log"), follow)
}

// WaitTemplate polls a template until it is active or failed, and returns
// it (a failed template is returned with its ErrorReason, not as an error).
func (c *Client) WaitTemplate(ctx context.Context, name string) (Template, error) {
	for {
		t, err := c.GetTemplate(ctx, name)
		if err != nil || t.State == TemplateActive || t.State == TemplateError {
			return t, err
		}
		select {
		case <-ctx.Done():
			return t, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

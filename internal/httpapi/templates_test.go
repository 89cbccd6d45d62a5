package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/httpapi"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/store"
	"github.com/sbx-sh/sbx/internal/template"
	sbx "github.com/sbx-sh/sbx/sdk/go"
)

// fakeTemplates keeps templates in memory; its log is one line per state.
type fakeTemplates struct {
	mu    sync.Mutex
	items map[string]store.Template
	inUse map[string]bool
}

func (f *fakeTemplates) Create(ctx context.Context, tenantID string, req template.CreateRequest) (store.Template, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.Spec != nil {
		if err := req.Spec.Validate(); err != nil {
			return store.Template{}, err
		}
	}
	if _, ok := f.items[tenantID+"/"+req.Name]; ok {
		return store.Template{}, errdefs.Publicf(errdefs.ErrAlreadyExists, "template %q already exists", req.Name)
	}
	src, _ := json.Marshal(map[string]any{"image": req.Image, "spec": req.Spec, "sandbox": req.Sandbox})
	source := store.TemplateFromImage
	if req.Spec != nil {
		source = store.TemplateFromSpec
	}
	t := store.Template{ID: "tpl" + req.Name, TenantID: tenantID, Name: req.Name, Source: source, Spec: src,
		State: store.TemplatePending, ImageRef: template.Ref(req.Name), CreatedAt: time.Now().UTC(), UpdatedAt: time.Now().UTC()}
	f.items[tenantID+"/"+req.Name] = t
	return t, nil
}

func (f *fakeTemplates) Get(ctx context.Context, tenantID, name string) (store.Template, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.items[tenantID+"/"+name]
	if !ok {
		return t, errdefs.Publicf(errdefs.ErrNotFound, "template %q not found", name)
	}
	return t, nil
}

func (f *fakeTemplates) List(ctx context.Context, tenantID string) ([]store.Template, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Template
	for k, t := range f.items {
		if strings.HasPrefix(k, tenantID+"/") {
			out = append(out, t)
		}
	}
	return out, nil
}

func (f *fakeTemplates) Delete(ctx context.Context, tenantID, name string) error {
	if _, err := f.Get(ctx, tenantID, name); err != nil {
		return err
	}
	if f.inUse[name] {
		return errdefs.Publicf(errdefs.ErrConflict, "template %q is used by a sandbox", name)
	}
	f.mu.Lock()
	delete(f.items, tenantID+"/"+name)
	f.mu.Unlock()
	return nil
}

func (f *fakeTemplates) BuildLog(ctx context.Context, tenantID, name string, follow bool) (io.ReadCloser, error) {
	if _, err := f.Get(ctx, tenantID, name); err != nil {
		return nil, err
	}
	return io.NopCloser(strings.NewReader("Step 1/1: RUN true\n")), nil
}

func (f *fakeTemplates) Image(ctx context.Context, t store.Template) (image.Image, error) {
	return image.Image{}, errors.New("no image")
}

func TestTemplatesAPI(t *testing.T) {
	ft := &fakeTemplates{items: map[string]store.Template{}, inUse: map[string]bool{"used": true}}
	e := newEnv(t, func(c *httpapi.Config) { c.Templates = ft })
	ctx := t.Context()
	spec := &sbx.TemplateSpec{Base: "sbx/busybox", Steps: []sbx.TemplateStep{
		{Run: "echo hi"}, {Apt: []string{"curl"}}, {Env: map[string]string{"A": "1"}}, {Workdir: "/w"}, {User: "sbx"},
	}}
	tpl, err := e.sdk.CreateTemplate(ctx, sbx.CreateTemplateRequest{Name: "py", Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if tpl.State != sbx.TemplatePending || tpl.Source != "spec" || tpl.Image != "sbx.local/template/py:latest" || len(tpl.Spec.Steps) != 5 {
		t.Errorf("created: %+v", tpl)
	}
	if _, err := e.sdk.CreateTemplate(ctx, sbx.CreateTemplateRequest{Name: "py", Spec: spec}); !sbx.IsAlreadyExists(err) {
		t.Errorf("duplicate: %v", err)
	}
	// A step with two fields, an invalid package: 400.
	bad := &sbx.TemplateSpec{Base: "x", Steps: []sbx.TemplateStep{{Run: "a", User: "b"}}}
	if _, err := e.sdk.CreateTemplate(ctx, sbx.CreateTemplateRequest{Name: "bad", Spec: bad}); !sbx.IsInvalidArgument(err) {
		t.Errorf("two-field step: %v", err)
	}
	if got, err := e.sdk.GetTemplate(ctx, "py"); err != nil || got.ID != tpl.ID {
		t.Errorf("get: %+v, %v", got, err)
	}
	if _, err := e.sdk.GetTemplate(ctx, "nope"); !sbx.IsNotFound(err) {
		t.Errorf("get missing: %v", err)
	}
	if _, err := e.sdk.CreateTemplate(ctx, sbx.CreateTemplateRequest{Name: "used", Image: "busybox"}); err != nil {
		t.Fatal(err)
	}
	l, err := e.sdk.ListTemplates(ctx)
	if err != nil || len(l) != 2 {
		t.Errorf("list: %d, %v", len(l), err)
	}
	rc, err := e.sdk.TemplateBuildLog(ctx, "py", true)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "Step 1/1: RUN true\n" {
		t.Errorf("log %q", b)
	}
	if r := e.raw(t, http.MethodGet, "/v1/templates/py/build-log?follow=maybe", "", nil); r.status != 400 {
		t.Errorf("bad follow: %d", r.status)
	}
	if err := e.sdk.DeleteTemplate(ctx, "used"); !sbx.IsConflict(err) {
		t.Errorf("delete in use: %v", err)
	}
	if err := e.sdk.DeleteTemplate(ctx, "py"); err != nil {
		t.Errorf("delete: %v", err)
	}
	// Unknown fields are refused.
	if r := e.raw(t, http.MethodPost, "/v1/templates", "", strings.NewReader(`{"name":"x","image":"y","color":"red"}`)); r.status != 400 {
		t.Errorf("unknown field: %d", r.status)
	}
}

func TestTemplatesUnavailable(t *testing.T) {
	e := newEnv(t)
	if _, err := e.sdk.ListTemplates(t.Context()); !sbx.IsUnavailable(err) {
		t.Errorf("without a template service: %v, want unavailable", err)
	}
}

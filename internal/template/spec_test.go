package template

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

func TestSpecValidate(t *testing.T) {
	ok := []Spec{
		{Base: "busybox"},
		{BaseTemplate: "py", Steps: []Step{{Run: "true"}, {Apt: []string{"curl", "libssl3=3.0.*"}}, {Pip: []string{"numpy==2.1", "requests>=2"}},
			{Npm: []string{"@scope/pkg@1.2.3", "typescript"}}, {Env: map[string]string{"A_1": "x=y"}}, {Workdir: "/app"},
			{Entrypoint: []string{"/bin/sh"}}, {Cmd: []string{}}, {User: "1000:1000"}}},
	}
	for _, sp := range ok {
		if err := sp.Validate(); err != nil {
			t.Errorf("%+v: %v", sp, err)
		}
	}
	bad := map[string]Spec{
		"no base":        {},
		"two bases":      {Base: "a", BaseTemplate: "b"},
		"empty step":     {Base: "a", Steps: []Step{{}}},
		"two fields":     {Base: "a", Steps: []Step{{Run: "x", User: "y"}}},
		"quote in apt":   {Base: "a", Steps: []Step{{Apt: []string{"x'; rm -rf /"}}}},
		"option in pip":  {Base: "a", Steps: []Step{{Pip: []string{"--index-url=http://evil"}}}},
		"no packages":    {Base: "a", Steps: []Step{{Npm: []string{}}}},
		"bad env name":   {Base: "a", Steps: []Step{{Env: map[string]string{"A-B": "x"}}}},
		"relative wd":    {Base: "a", Steps: []Step{{Workdir: "app"}}},
		"too many steps": {Base: "a", Steps: make([]Step, maxSteps+1)},
		"huge run":       {Base: "a", Steps: []Step{{Run: strings.Repeat("x", maxStepLen+1)}}},
		"nul in run":     {Base: "a", Steps: []Step{{Run: "a\x00b"}}},
	}
	for name, sp := range bad {
		if err := sp.Validate(); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%s: %v, want invalid argument", name, err)
		}
	}
}

func TestCacheKey(t *testing.T) {
	st := Step{Env: map[string]string{"A": "1", "B": "2", "C": "3"}}
	st2 := Step{Env: map[string]string{"C": "3", "B": "2", "A": "1"}}
	if cacheKey("sha256:p", st) != cacheKey("sha256:p", st2) {
		t.Errorf("the key depends on map order")
	}
	run := Step{Run: "make"}
	for name, other := range map[string]string{
		"another parent": cacheKey("sha256:q", run),
		"another step":   cacheKey("sha256:p", Step{Run: "make install"}),
		"another kind":   cacheKey("sha256:p", Step{Apt: []string{"make"}}),
	} {
		if other == cacheKey("sha256:p", run) {
			t.Errorf("%s gives the same key", name)
		}
	}
}

func TestConfigSteps(t *testing.T) {
	c := v1.Config{Env: []string{"PATH=/bin", "A=old"}, Entrypoint: []string{"e"}, Cmd: []string{"c"}}
	for _, st := range []Step{
		{Env: map[string]string{"A": "new", "Z": "z", "B": "b"}},
		{Workdir: "/w"},
		{User: "sbx"},
		{Entrypoint: []string{"/bin/app"}},
	} {
		if !st.configOnly() {
			t.Errorf("%s is not config-only", st.describe())
		}
		st.edit(&c)
	}
	want := v1.Config{Env: []string{"PATH=/bin", "A=new", "B=b", "Z=z"}, WorkingDir: "/w", User: "sbx", Entrypoint: []string{"/bin/app"}}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	(Step{Cmd: []string{"run"}}).edit(&c)
	if len(c.Cmd) != 1 || c.Entrypoint[0] != "/bin/app" {
		t.Errorf("cmd step: %+v", c)
	}
	for _, st := range []Step{{Run: "x"}, {Apt: []string{"a"}}, {Pip: []string{"p"}}, {Npm: []string{"n"}}} {
		if st.configOnly() {
			t.Errorf("%s is config-only", st.describe())
		}
		if st.shell() == "" {
			t.Errorf("%s has no command", st.describe())
		}
	}
	if got := (Step{Apt: []string{"curl", "git"}}).shell(); !strings.Contains(got, "apt-get install -y --no-install-recommends 'curl' 'git'") {
		t.Errorf("apt command: %s", got)
	}
}

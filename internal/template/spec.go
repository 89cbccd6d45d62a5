package template

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// Spec is a declarative build: a base and ordered steps.
type Spec struct {
	// Base is an image reference (pulled when not in the store), or
	// empty with BaseTemplate set.
	Base string `json:"base,omitempty"`
	// BaseTemplate builds on one of the tenant's active templates.
	BaseTemplate string `json:"base_template,omitempty"`
	Steps        []Step `json:"steps"`
}

// Step is one build step: exactly one field is set. Run, Apt, Pip and Npm
// run in a build sandbox and each adds one layer; Env, Workdir,
// Entrypoint, Cmd and User only change the image config.
type Step struct {
	Run        string            `json:"run,omitempty"` // a shell command line (/bin/sh -c)
	Apt        []string          `json:"apt,omitempty"` // Debian packages
	Pip        []string          `json:"pip,omitempty"` // Python packages
	Npm        []string          `json:"npm,omitempty"` // npm packages, installed globally
	Env        map[string]string `json:"env,omitempty"`
	Workdir    string            `json:"workdir,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd,omitempty"`
	User       string            `json:"user,omitempty"`
}

// Limits of a spec.
const (
	maxSteps   = 100
	maxStepLen = 64 << 10
)

var (
	envKeyRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	packageRE = regexp.MustCompile(`^[A-Za-z0-9@][A-Za-z0-9@._+:=<>~/^*-]*$`)
)

func invalid(format string, args ...any) error {
	return errdefs.Publicf(errdefs.ErrInvalidArgument, format, args...)
}

// Validate checks the spec.
func (sp Spec) Validate() error {
	if (sp.Base == "") == (sp.BaseTemplate == "") {
		return invalid("a spec needs exactly one of base and base_template")
	}
	if len(sp.Steps) > maxSteps {
		return invalid("a spec has at most %d steps", maxSteps)
	}
	for i, st := range sp.Steps {
		if err := st.validate(); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return nil
}

func (st Step) fields() int {
	n := 0
	for _, set := range []bool{st.Run != "", st.Apt != nil, st.Pip != nil, st.Npm != nil, st.Env != nil,
		st.Workdir != "", st.Entrypoint != nil, st.Cmd != nil, st.User != ""} {
		if set {
			n++
		}
	}
	return n
}

func (st Step) validate() error {
	if st.fields() != 1 {
		return invalid("each step sets exactly one of run, apt, pip, npm, env, workdir, entrypoint, cmd, user")
	}
	b, _ := json.Marshal(st)
	if len(b) > maxStepLen {
		return invalid("a step is longer than %d bytes", maxStepLen)
	}
	for _, pkgs := range [][]string{st.Apt, st.Pip, st.Npm} {
		if pkgs != nil && len(pkgs) == 0 {
			return invalid("a package step needs at least one package")
		}
		for _, p := range pkgs {
			if !packageRE.MatchString(p) {
				return invalid("invalid package name %q", p)
			}
		}
	}
	for k, v := range st.Env {
		if !envKeyRE.MatchString(k) {
			return invalid("invalid environment variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return invalid("environment variable %s contains a NUL byte", k)
		}
	}
	if st.Workdir != "" && !path.IsAbs(st.Workdir) {
		return invalid("workdir must be an absolute path")
	}
	if strings.ContainsRune(st.Run, 0) {
		return invalid("run contains a NUL byte")
	}
	return nil
}

// configOnly reports whether the step changes only the image config.
func (st Step) configOnly() bool {
	return st.Run == "" && st.Apt == nil && st.Pip == nil && st.Npm == nil
}

// shell is the command line a layer step runs.
func (st Step) shell() string {
	q := func(pkgs []string) string {
		out := make([]string, len(pkgs))
		for i, p := range pkgs {
			out[i] = "'" + p + "'" // packageRE admits no quote
		}
		return strings.Join(out, " ")
	}
	switch {
	case st.Apt != nil:
		return "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update; apt-get install -y --no-install-recommends " +
			q(st.Apt) + "; rm -rf /var/lib/apt/lists/*"
	case st.Pip != nil:
		// Into the image's Python: a template is the system being built
		// (PEP 668 would refuse otherwise on Debian).
		return "set -e; export PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1; " +
			"if command -v pip >/dev/null; then pip=pip; else pip='python3 -m pip'; fi; $pip install " + q(st.Pip)
	case st.Npm != nil:
		return "set -e; npm install -g --no-fund --no-audit " + q(st.Npm) + "; npm cache clean --force"
	}
	return st.Run
}

// describe is the step as the build log shows it.
func (st Step) describe() string {
	switch {
	case st.Run != "":
		return "RUN " + oneLine(st.Run)
	case st.Apt != nil:
		return "APT " + strings.Join(st.Apt, " ")
	case st.Pip != nil:
		return "PIP " + strings.Join(st.Pip, " ")
	case st.Npm != nil:
		return "NPM " + strings.Join(st.Npm, " ")
	case st.Env != nil:
		b, _ := json.Marshal(st.Env)
		return "ENV " + string(b)
	case st.Workdir != "":
		return "WORKDIR " + st.Workdir
	case st.Entrypoint != nil:
		b, _ := json.Marshal(st.Entrypoint)
		return "ENTRYPOINT " + string(b)
	case st.Cmd != nil:
		b, _ := json.Marshal(st.Cmd)
		return "CMD " + string(b)
	}
	return "USER " + st.User
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "\\n")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// edit is the config change of a config-only step.
func (st Step) edit(c *v1.Config) {
	switch {
	case st.Env != nil:
		keys := make([]string, 0, len(st.Env))
		for k := range st.Env {
			keys = append(keys, k)
		}
		// Sorted, so the config (and the digest) do not depend on map order.
		slices.Sort(keys)
		for _, k := range keys {
			c.Env = setEnv(c.Env, k, st.Env[k])
		}
	case st.Workdir != "":
		c.WorkingDir = st.Workdir
	case st.Entrypoint != nil:
		c.Entrypoint = st.Entrypoint
		c.Cmd = nil // as Docker does: a new entrypoint drops the old cmd
	case st.Cmd != nil:
		c.Cmd = st.Cmd
	case st.User != "":
		c.User = st.User
	}
}

func setEnv(env []string, k, v string) []string {
	out := make([]string, 0, len(env)+1)
	found := false
	for _, kv := range env {
		if kk, _, _ := strings.Cut(kv, "="); kk == k {
			if !found {
				out = append(out, k+"="+v)
				found = true
			}
			continue
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, k+"="+v)
	}
	return out
}

// cacheKey identifies a layer step on a parent image: the parent's
// manifest digest covers its layers and its config (env, workdir, user),
// which the step's command sees; the step's JSON is canonical (struct
// fields in order, map keys sorted).
func cacheKey(parentDigest string, st Step) string {
	b, _ := json.Marshal(st)
	h := sha256.New()
	h.Write([]byte(parentDigest))
	h.Write([]byte{'\n'})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

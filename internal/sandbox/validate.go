package sandbox

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

var (
	nameRE     = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)
	labelKeyRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,61}[a-zA-Z0-9])?$`)
	envKeyRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

const (
	maxLabels     = 64
	maxLabelValue = 256
	maxEnv        = 256
	maxEnvBytes   = 128 << 10
	maxArgs       = 4096
)

func invalid(format string, args ...any) error {
	return errdefs.Publicf(errdefs.ErrInvalidArgument, format, args...)
}

func validateName(name string) error {
	if !nameRE.MatchString(name) {
		return invalid("invalid name %q: 1-63 characters of letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	return nil
}

// ValidateLabels checks label keys (Kubernetes-style, optional DNS prefix)
// and values.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > maxLabels {
		return invalid("too many labels (%d, max %d)", len(labels), maxLabels)
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return invalid("invalid label key %q", k)
		}
		if len(v) > maxLabelValue || strings.ContainsAny(v, "\x00\n") {
			return invalid("invalid value for label %q (max %d bytes, no newlines)", k, maxLabelValue)
		}
	}
	return nil
}

func validateEnv(env map[string]string) error {
	if len(env) > maxEnv {
		return invalid("too many environment variables (%d, max %d)", len(env), maxEnv)
	}
	size := 0
	for k, v := range env {
		if !envKeyRE.MatchString(k) {
			return invalid("invalid environment variable name %q", k)
		}
		if strings.ContainsRune(v, 0) {
			return invalid("environment variable %q contains a NUL byte", k)
		}
		size += len(k) + len(v)
	}
	if size > maxEnvBytes {
		return invalid("environment too large (%d bytes, max %d)", size, maxEnvBytes)
	}
	return nil
}

func validateArgs(what string, args []string) error {
	if len(args) > maxArgs {
		return invalid("%s: too many arguments", what)
	}
	for _, a := range args {
		if strings.ContainsRune(a, 0) {
			return invalid("%s: argument contains a NUL byte", what)
		}
	}
	return nil
}

// resolveResources fills zero fields from defaults and checks the result
// against the maximums.
func resolveResources(r, defaults, max store.Resources) (store.Resources, error) {
	if r.CPU < 0 || r.MemoryMB < 0 || r.DiskMB < 0 || r.Pids < 0 {
		return r, invalid("resources must not be negative")
	}
	if r.CPU == 0 {
		r.CPU = defaults.CPU
	}
	if r.MemoryMB == 0 {
		r.MemoryMB = defaults.MemoryMB
	}
	if r.DiskMB == 0 {
		r.DiskMB = defaults.DiskMB
	}
	if r.Pids == 0 {
		r.Pids = defaults.Pids
	}
	return r, checkMax(r, max)
}

func checkMax(r, max store.Resources) error {
	type lim struct {
		name string
		v, m float64
		min  float64
		unit string
	}
	for _, l := range []lim{
		{"cpu", r.CPU, max.CPU, 0.01, " cores"},
		{"memory_mb", float64(r.MemoryMB), float64(max.MemoryMB), 16, " MiB"},
		{"disk_mb", float64(r.DiskMB), float64(max.DiskMB), 16, " MiB"},
		{"pids", float64(r.Pids), float64(max.Pids), 8, ""},
	} {
		if l.m > 0 && l.v > l.m {
			return invalid("%s %g exceeds the maximum of %g%s", l.name, l.v, l.m, l.unit)
		}
		if l.v < l.min {
			return invalid("%s %g is below the minimum of %g%s", l.name, l.v, l.min, l.unit)
		}
	}
	return nil
}

// tenantMax lowers the operator's maximums to the tenant's own limits.
func tenantMax(max store.Resources, l store.Limits) store.Resources {
	low := func(a, b float64) float64 {
		if b > 0 && b < a {
			return b
		}
		return a
	}
	return store.Resources{
		CPU:      low(max.CPU, l.MaxCPU),
		MemoryMB: int64(low(float64(max.MemoryMB), float64(l.MaxMemoryMB))),
		DiskMB:   int64(low(float64(max.DiskMB), float64(l.MaxDiskMB))),
		Pids:     int64(low(float64(max.Pids), float64(l.MaxPids))),
	}
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%s", k, v))
	}
	return out
}

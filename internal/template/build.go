package template

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/sbx-sh/sbx/internal/agent"
	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/image"
	"github.com/sbx-sh/sbx/internal/sandbox"
	"github.com/sbx-sh/sbx/internal/store"
)

type imageConfig = v1.Config

// buildFailure is a build that failed because of its spec (a step failed,
// the base is missing), as opposed to the server failing.
type buildFailure struct{ msg string }

func (b *buildFailure) Error() string { return b.msg }

func failf(format string, args ...any) error {
	return &buildFailure{msg: fmt.Sprintf(format, args...)}
}

// buildRef names a build's latest intermediate image, which its next
// build sandbox is created from; it is removed when the build ends.
func buildRef(t *store.Template) string { return "sbx.local/build/" + t.ID + ":latest" }

// build runs a declarative build; see the package doc.
func (s *Service) build(ctx context.Context, t *store.Template, spec Spec, log io.Writer) error {
	s.setState(ctx, t, store.TemplateBuilding)
	ref := buildRef(t)
	defer s.images.Untag(context.WithoutCancel(ctx), t.TenantID, ref)
	defer s.cleanupBuildSandboxes(context.WithoutCancel(ctx), *t)

	base := spec.Base
	if spec.BaseTemplate != "" {
		r, err := s.TemplateImage(ctx, t.TenantID, spec.BaseTemplate)
		if err != nil {
			return failf("base template: %s", errdefs.Message(err))
		}
		base = r
	}
	fmt.Fprintf(log, "FROM %s\n", base)
	cur, err := s.images.Resolve(ctx, t.TenantID, base)
	if errors.Is(err, errdefs.ErrNotFound) && spec.BaseTemplate == "" {
		fmt.Fprintf(log, "Pulling %s\n", base)
		cur, err = s.images.Pull(ctx, t.TenantID, base, image.PullOptions{})
	}
	if err != nil {
		if ctx.Err() == nil && errdefs.Kind(err) != nil {
			return failf("base image: %s", errdefs.Message(err))
		}
		return err
	}
	fmt.Fprintf(log, " ---> %s\n", cur.Digest)
	n := len(spec.Steps)
	for i, st := range spec.Steps {
		fmt.Fprintf(log, "Step %d/%d: %s\n", i+1, n, st.describe())
		if st.configOnly() {
			if cur, err = s.images.Append(ctx, t.TenantID, cur.Digest, nil, st.edit, ref); err != nil {
				return err
			}
			fmt.Fprintf(log, " ---> %s\n", cur.Digest)
			continue
		}
		key := cacheKey(cur.Digest, st)
		if e, err := s.st.GetBuildCache(ctx, t.TenantID, key); err == nil {
			if img, err := s.images.Tag(ctx, t.TenantID, e.ImageDigest, ref); err == nil {
				cur = img
				fmt.Fprintf(log, " ---> Using cache: layer %s\n ---> %s\n", e.Layer, cur.Digest)
				continue
			}
		}
		next, layer, err := s.runStep(ctx, t, cur, ref, st, log)
		if err != nil {
			var bf *buildFailure
			if errors.As(err, &bf) {
				return failf("step %d/%d (%s): %s", i+1, n, st.describe(), bf.msg)
			}
			return fmt.Errorf("step %d/%d: %w", i+1, n, err)
		}
		cur = next
		if err := s.st.PutBuildCache(ctx, store.BuildCacheEntry{TenantID: t.TenantID, Key: key, ImageDigest: cur.Digest, Layer: layer}); err != nil {
			s.log.Warn("recording a build cache entry", "template", t.Name, "err", err)
		}
		fmt.Fprintf(log, " ---> Built layer %s\n ---> %s\n", layer, cur.Digest)
	}
	return s.finish(ctx, t, cur.Digest)
}

// runStep runs one layer step in a build sandbox created from cur and
// commits what it wrote as a new layer on top of cur.
func (s *Service) runStep(ctx context.Context, t *store.Template, cur image.Image, ref string, st Step, log io.Writer) (image.Image, string, error) {
	// ref points at cur (Tag or Append put it there).
	if _, err := s.images.Tag(ctx, t.TenantID, cur.Digest, ref); err != nil {
		return image.Image{}, "", err
	}
	opts := sandbox.CreateOptions{
		TenantID: t.TenantID,
		Image:    ref,
		Labels:   map[string]string{buildLabel: t.ID},
		// The image's own entrypoint (a server, say) must not run
		// during the build; the agent keeps the sandbox up without it.
		Entrypoint: []string{"/bin/sh", "-c", ":"},
		Resources:  s.cfg.BuildResources,
		Network:    &sandbox.NetworkOptions{Mode: s.cfg.BuildNetwork},
		// No auto-stop, -archive or -delete: the build stops the sandbox
		// itself and deletes it after the commit (an operator default of
		// "delete as soon as stopped" would race with the commit).
		Lifecycle: &sandbox.LifecycleOptions{AutoStop: ptr(int64(0)), AutoArchive: ptr(int64(0)), AutoDelete: ptr(int64(-1))},
	}
	sb, err := s.sandboxes.Create(ctx, opts)
	if errors.Is(err, errdefs.ErrInvalidArgument) {
		// The operator caps the timers, so "never" is refused: take the
		// defaults, which a build outruns.
		opts.Lifecycle = nil
		sb, err = s.sandboxes.Create(ctx, opts)
	}
	if err != nil {
		return image.Image{}, "", fmt.Errorf("creating the build sandbox: %w", err)
	}
	ctx2 := context.WithoutCancel(ctx)
	defer func() {
		if err := s.sandboxes.Delete(ctx2, t.TenantID, sb.ID); err != nil {
			s.log.Error("deleting a build sandbox", "sandbox", sb.ID, "err", err)
		}
	}()
	if err := s.exec(ctx, t.TenantID, sb.ID, st.shell(), log); err != nil {
		return image.Image{}, "", err
	}
	if _, err := s.sandboxes.Stop(ctx, t.TenantID, sb.ID, time.Second); err != nil {
		return image.Image{}, "", fmt.Errorf("stopping the build sandbox: %w", err)
	}
	tmp, err := os.CreateTemp(s.cfg.Dir, "layer-*.tar")
	if err != nil {
		return image.Image{}, "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if _, err := s.sandboxes.CommitLayer(ctx, t.TenantID, sb.ID, tmp); err != nil {
		return image.Image{}, "", err
	}
	if err := tmp.Close(); err != nil {
		return image.Image{}, "", err
	}
	next, err := s.images.Append(ctx, t.TenantID, cur.Digest, []string{tmp.Name()}, nil, ref)
	if err != nil {
		return image.Image{}, "", err
	}
	ids := image.LayerIDs(next)
	return next, ids[len(ids)-1], nil
}

// exec runs a command line in the build sandbox, copying its output to
// log; a non-zero exit is a build failure.
func (s *Service) exec(ctx context.Context, tenantID, id, shell string, log io.Writer) error {
	p, err := s.sandboxes.Exec(ctx, tenantID, id, agent.ExecRequest{Shell: shell, Timeout: s.cfg.StepTimeout})
	if err != nil {
		return err
	}
	defer p.Close()
	for {
		f, err := p.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("build step output: %w", err)
		}
		switch f.Kind {
		case agent.FrameStdout, agent.FrameStderr:
			log.Write(f.Data)
		case agent.FrameError:
			return failf("%s", strings.TrimSpace(string(f.Data)))
		case agent.FrameExit:
			e := f.Exit
			switch {
			case e == nil:
				return fmt.Errorf("build step: no exit status")
			case e.TimedOut:
				return failf("timed out after %s", s.cfg.StepTimeout)
			case e.OOMKilled:
				return failf("killed for running out of memory")
			case e.Code != 0:
				return failf("exited with code %d", e.Code)
			}
			return nil
		}
	}
}

func ptr[T any](v T) *T { return &v }

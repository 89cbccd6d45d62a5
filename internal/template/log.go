package template

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

// followPoll is how often a followed log checks for more output.
const followPoll = 100 * time.Millisecond

// BuildLog opens a template's build log (plain text). With follow, the
// reader returns new output as the work writes it and ends (io.EOF) once
// the template is active or failed, or when ctx ends.
func (s *Service) BuildLog(ctx context.Context, tenantID, name string, follow bool) (io.ReadCloser, error) {
	t, err := s.st.GetTemplate(ctx, tenantID, name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(t.BuildLog)
	if err != nil {
		return nil, errdefs.Publicf(errdefs.ErrNotFound, "template %q has no build log", t.Name)
	}
	if !follow {
		return f, nil
	}
	return &follower{ctx: ctx, f: f, s: s, id: t.ID}, nil
}

type follower struct {
	ctx  context.Context
	f    *os.File
	s    *Service
	id   string
	last bool // the work is over: read to the end, then EOF
}

func (r *follower) Read(p []byte) (int, error) {
	for {
		n, err := r.f.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		if r.last {
			return 0, io.EOF
		}
		if r.s.done(r.id) {
			r.last = true // one more read catches what was written before the end
			continue
		}
		select {
		case <-r.ctx.Done():
			return 0, io.EOF
		case <-time.After(followPoll):
		}
	}
}

func (r *follower) Close() error { return r.f.Close() }

// done reports whether no work runs on the template any more.
func (s *Service) done(id string) bool {
	s.mu.Lock()
	_, running := s.jobs[id]
	s.mu.Unlock()
	return !running
}

package sandbox

import (
	"log/slog"
	"time"
)

// phases times the steps of an operation for the log (and benchmarks).
type phases struct {
	last  time.Time
	start time.Time
	attrs []any
}

func newPhases() *phases { now := time.Now(); return &phases{last: now, start: now} }

// mark records the time since the previous mark under name.
func (p *phases) mark(name string) {
	if p == nil {
		return
	}
	now := time.Now()
	p.attrs = append(p.attrs, slog.Duration(name, now.Sub(p.last)))
	p.last = now
}

func (p *phases) group() slog.Attr {
	return slog.Group("phases", append(p.attrs, slog.Duration("total", time.Since(p.start)))...)
}

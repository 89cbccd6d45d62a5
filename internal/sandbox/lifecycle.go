package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/sbx-sh/sbx/internal/errdefs"
	"github.com/sbx-sh/sbx/internal/store"
)

// Automatic stop, archive and delete.
//
// A started sandbox stops after Lifecycle.AutoStop seconds without
// activity (Touch: toolbox calls, execs, preview traffic, keep-alive
// calls) unless it holds a keep-alive lease or is visibly working: an exec
// stream open or a session command running. A sandbox at rest (stopped or
// failed) is archived after AutoArchive seconds and deleted after
// AutoDelete seconds (0: at once; -1: never), counted from when it came to
// rest (Lifecycle.StoppedAt). Everything the timers need is in the record
// (last activity is flushed from memory every tick and at Close), so they
// survive daemon restarts.

// LifecycleConfig is the operator's policy.
type LifecycleConfig struct {
	// Defaults apply to a sandbox that does not set a field: only the
	// three policy fields are read.
	Defaults store.Lifecycle
	// Maximums cap what a sandbox may ask for (0: no cap). With a cap,
	// "never" (0 for stop and archive, -1 for delete) is refused too.
	MaxAutoStop, MaxAutoArchive, MaxAutoDelete int64
	// MaxKeepalive caps one keep-alive lease (0: 24 h).
	MaxKeepalive time.Duration
	// Interval is how often the timers are checked (0: 10 s).
	Interval time.Duration
}

// LifecycleOptions set a sandbox's policy; nil fields keep the current
// value (at create: the operator's default).
type LifecycleOptions struct {
	AutoStop, AutoArchive, AutoDelete *int64
}

func (s *Service) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now().UTC()
	}
	return time.Now().UTC()
}

// Apply sets o's fields on l, checked against the caps of c.
func (c LifecycleConfig) Apply(l *store.Lifecycle, o *LifecycleOptions) error {
	if o == nil {
		o = &LifecycleOptions{}
	}
	for _, f := range []struct {
		name  string
		dst   *int64
		v     *int64
		never int64
		max   int64
	}{
		{"auto_stop_seconds", &l.AutoStop, o.AutoStop, 0, c.MaxAutoStop},
		{"auto_archive_seconds", &l.AutoArchive, o.AutoArchive, 0, c.MaxAutoArchive},
		{"auto_delete_seconds", &l.AutoDelete, o.AutoDelete, -1, c.MaxAutoDelete},
	} {
		if f.v == nil {
			continue
		}
		v := *f.v
		switch {
		case v < f.never:
			return invalid("%s must be at least %d", f.name, f.never)
		case f.max > 0 && (v == f.never || v > f.max):
			return invalid("%s must be between %d and %d on this server", f.name, f.never+1, f.max)
		}
		*f.dst = v
	}
	return nil
}

// defaultLifecycle is the policy of a new sandbox before its options.
func (s *Service) defaultLifecycle() store.Lifecycle {
	d := s.cfg.Lifecycle.Defaults
	return store.Lifecycle{AutoStop: d.AutoStop, AutoArchive: d.AutoArchive, AutoDelete: d.AutoDelete, LastActivity: s.now()}
}

// SetLifecycle changes a sandbox's auto-stop/archive/delete policy.
func (s *Service) SetLifecycle(ctx context.Context, tenantID, idOrName string, o LifecycleOptions) (store.Sandbox, error) {
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	l := sb.Lifecycle
	if err := s.cfg.Lifecycle.Apply(&l, &o); err != nil {
		return sb, err
	}
	sb.Lifecycle = l
	s.setState(&sb, sb.State, "")
	s.kick()
	return sb, nil
}

// Keepalive records activity on a sandbox and, with d > 0, gives it a
// lease: no auto-stop before now+d (d = 0 ends a lease).
func (s *Service) Keepalive(ctx context.Context, tenantID, idOrName string, d time.Duration) (store.Sandbox, error) {
	max := s.cfg.Lifecycle.MaxKeepalive
	if max <= 0 {
		max = 24 * time.Hour
	}
	if d < 0 || d > max {
		return store.Sandbox{}, invalid("a keep-alive lease lasts between 0 and %v", max)
	}
	sb, unlock, err := s.getLocked(ctx, tenantID, idOrName)
	if err != nil {
		return sb, err
	}
	defer unlock()
	now := s.now()
	s.Touch(sb.ID)
	sb.Lifecycle.LastActivity = now
	if d > 0 {
		t := now.Add(d)
		sb.Lifecycle.KeepaliveUntil = &t
	} else {
		sb.Lifecycle.KeepaliveUntil = nil
	}
	s.setState(&sb, sb.State, "")
	return sb, nil
}

// LastActivity is the latest activity on a sandbox known to the daemon.
func (s *Service) LastActivity(sb store.Sandbox) time.Time {
	t := sb.Lifecycle.LastActivity
	if m := s.lastActivity(sb.ID); m.After(t) {
		t = m
	}
	if sb.StartedAt != nil && sb.StartedAt.After(t) {
		t = *sb.StartedAt
	}
	return t
}

// action is what the timers decide for one sandbox.
type action int

const (
	actNone action = iota
	actStop
	actArchive
	actDelete
)

func (a action) String() string {
	return [...]string{"none", "auto-stop", "auto-archive", "auto-delete"}[a]
}

// due decides what is due for sb at now, given its last activity, whether
// it is working, and whether archiving is possible. It is pure: the tests
// drive it with a table.
func due(sb store.Sandbox, now, lastActivity time.Time, working, canArchive bool) action {
	l := sb.Lifecycle
	switch sb.State {
	case store.StateStarted:
		if l.AutoStop <= 0 || working {
			return actNone
		}
		if l.KeepaliveUntil != nil && now.Before(*l.KeepaliveUntil) {
			return actNone
		}
		if now.Sub(lastActivity) >= time.Duration(l.AutoStop)*time.Second {
			return actStop
		}
	case store.StateStopped, store.StateError, store.StateArchived:
		rest := sb.UpdatedAt
		if l.StoppedAt != nil {
			rest = *l.StoppedAt
		}
		idle := now.Sub(rest)
		if l.AutoDelete >= 0 && idle >= time.Duration(l.AutoDelete)*time.Second {
			return actDelete
		}
		if sb.State == store.StateStopped && canArchive && l.AutoArchive > 0 && idle >= time.Duration(l.AutoArchive)*time.Second {
			return actArchive
		}
	}
	return actNone
}

// kick makes the timers look now (after a stop, a policy change).
func (s *Service) kick() {
	select {
	case s.kickc <- struct{}{}:
	default:
	}
}

// runLifecycle checks the timers every Interval until the service closes.
func (s *Service) runLifecycle() {
	defer s.wg.Done()
	every := s.cfg.Lifecycle.Interval
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.flushActivity(context.Background(), 0)
			return
		case <-t.C:
		case <-s.kickc:
		}
		s.checkLifecycle(s.ctx)
	}
}

// checkLifecycle runs one round of the timers over every live sandbox.
func (s *Service) checkLifecycle(ctx context.Context) {
	cursor := ""
	for {
		items, next, err := s.st.ListSandboxes(ctx, store.SandboxFilter{
			States: []store.State{store.StateStarted, store.StateStopped, store.StateError, store.StateArchived},
			Limit:  1000, Cursor: cursor,
		})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("lifecycle: listing sandboxes", "err", err)
			}
			return
		}
		for _, sb := range items {
			if ctx.Err() != nil {
				return
			}
			s.lifecycleOne(ctx, sb)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	s.flushActivity(ctx, 30*time.Second)
}

func (s *Service) lifecycleOne(ctx context.Context, sb store.Sandbox) {
	now := s.now()
	last := s.LastActivity(sb)
	working := false
	act := due(sb, now, last, false, s.cfg.Archive != nil)
	if act == actStop {
		// Only now ask whether it is working: that may call its agent.
		working = s.working(ctx, sb.ID)
		act = due(sb, now, last, working, s.cfg.Archive != nil)
	}
	if act == actNone {
		return
	}
	unlock := s.lock(sb.ID)
	defer unlock()
	// Decide again on the current record: it may have changed meanwhile.
	cur, err := s.st.GetSandbox(ctx, "", sb.ID)
	if err != nil || cur.State == store.StateDestroyed {
		return
	}
	if due(cur, s.now(), s.LastActivity(cur), working, s.cfg.Archive != nil) != act {
		return
	}
	log := s.log.With("sandbox", cur.ID, "action", act.String())
	var msg string
	switch act {
	case actStop:
		msg = fmt.Sprintf("no activity for %v (auto-stop after %ds)", now.Sub(last).Round(time.Second), cur.Lifecycle.AutoStop)
		s.event(cur, "lifecycle", "", "", "auto-stop: "+msg)
		err = s.stop(ctx, &cur, 0)
	case actArchive:
		s.event(cur, "lifecycle", "", "", fmt.Sprintf("auto-archive: stopped for over %ds", cur.Lifecycle.AutoArchive))
		err = s.archive(ctx, &cur)
	case actDelete:
		s.event(cur, "lifecycle", "", "", fmt.Sprintf("auto-delete: at rest for over %ds", cur.Lifecycle.AutoDelete))
		err = s.destroy(ctx, &cur)
	}
	if err != nil {
		log.Error("lifecycle action failed", "err", err)
		return
	}
	log.Info("lifecycle action", "reason", msg)
	if act == actStop {
		s.kick() // auto-delete 0 follows at once
	}
}

// working reports whether a started sandbox is visibly at work: an exec
// stream open through the daemon, or a command running in a session.
func (s *Service) working(ctx context.Context, id string) bool {
	in := s.instance(id)
	if in == nil {
		return false
	}
	if in.execs.Load() > 0 {
		return true
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sessions, err := in.agent.ListSessions(cctx)
	if err != nil {
		// Cannot tell: do not stop it on a guess.
		s.log.Warn("lifecycle: asking the agent for running commands", "sandbox", id, "err", errdefs.Message(err))
		return true
	}
	for _, ss := range sessions {
		for _, c := range ss.Commands {
			if c.Running {
				return true
			}
		}
	}
	return false
}

// flushActivity writes in-memory activity newer than the record by more
// than slack into the records, so the timers survive a restart.
func (s *Service) flushActivity(ctx context.Context, slack time.Duration) {
	s.activity.Range(func(k, _ any) bool {
		id := k.(string)
		m := s.lastActivity(id)
		s.mu.Lock()
		l, ok := s.locks[id]
		s.mu.Unlock()
		if ok && !l.TryLock() {
			return true // busy: next round
		}
		if !ok {
			unlock := s.lock(id)
			defer unlock()
		} else {
			defer l.Unlock()
		}
		sb, err := s.st.GetSandbox(ctx, "", id)
		if err != nil || sb.State == store.StateDestroyed {
			s.activity.Delete(id)
			return true
		}
		if m.Sub(sb.Lifecycle.LastActivity) > slack {
			sb.Lifecycle.LastActivity = m
			if err := s.st.UpdateSandbox(ctx, sb); err != nil {
				s.log.Warn("lifecycle: recording activity", "sandbox", id, "err", err)
			}
		}
		return true
	})
}

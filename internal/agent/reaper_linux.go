package agent

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// reaper starts children and collects their exit statuses.
//
// In central mode (the agent as init) one loop calls wait4(-1) on every
// SIGCHLD, so orphans re-parented to the agent are reaped too, and hands
// each status to the waiter registered for its pid. Fork and registration
// happen under the same lock the loop holds around wait4, so a child that
// exits at once can never be reaped before its waiter exists. Nothing in
// the agent may use exec.Cmd.Wait or os.Process.Wait: they would race the
// loop.
//
// In per-child mode (the server embedded in another process, as in tests)
// each child is waited for by pid, leaving the host process's other
// children alone.
type reaper struct {
	central bool
	mu      sync.Mutex
	waiters map[int]*child
}

// child is a started process.
type child struct {
	pid     int
	started time.Time
	done    chan struct{} // closed once status is set
	status  syscall.WaitStatus
	ended   time.Time
}

func newReaper(central bool) *reaper {
	return &reaper{central: central, waiters: make(map[int]*child)}
}

// start forks and execs argv0 and registers the child for reaping.
func (r *reaper) start(argv0 string, argv []string, attr *syscall.ProcAttr) (*child, error) {
	if r.central {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
	pid, err := syscall.ForkExec(argv0, argv, attr)
	if err != nil {
		return nil, err
	}
	c := &child{pid: pid, started: time.Now(), done: make(chan struct{})}
	if r.central {
		r.waiters[pid] = c
	} else {
		go func() {
			var ws syscall.WaitStatus
			for {
				_, err := syscall.Wait4(pid, &ws, 0, nil)
				if !errors.Is(err, syscall.EINTR) {
					break
				}
			}
			c.finish(ws)
		}()
	}
	return c, nil
}

func (c *child) finish(ws syscall.WaitStatus) {
	c.status = ws
	c.ended = time.Now()
	close(c.done)
}

// exitStatus describes how the child ended; call after done is closed.
func (c *child) exitStatus() ExitStatus {
	st := ExitStatus{Duration: c.ended.Sub(c.started)}
	switch {
	case c.status.Exited():
		st.Code = c.status.ExitStatus()
	case c.status.Signaled():
		sig := c.status.Signal()
		st.Code = 128 + int(sig)
		st.Signal = signalName(sig)
	}
	return st
}

// run reaps children until ctx ends; only in central mode.
func (r *reaper) run(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGCHLD)
	defer signal.Stop(ch)
	r.reapAll()
	for {
		select {
		case <-ch:
			r.reapAll()
		case <-ctx.Done():
			return
		}
	}
}

// reapAll collects every exited child without blocking. SIGCHLDs coalesce,
// so one signal may stand for many exits.
func (r *reaper) reapAll() {
	for {
		r.mu.Lock()
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			r.mu.Unlock()
			continue
		}
		if err != nil || pid <= 0 {
			r.mu.Unlock()
			return
		}
		c := r.waiters[pid]
		delete(r.waiters, pid)
		r.mu.Unlock()
		if c != nil {
			c.finish(ws)
		}
	}
}

package sandbox

import (
	"sync/atomic"
	"time"
)

// Touch records activity on a sandbox (an API call on it, an exec, file
// or preview traffic); auto-stop counts idle time from the latest. It is
// cheap enough to call on every request and needs no lock on the sandbox.
func (s *Service) Touch(id string) {
	now := time.Now().UnixNano()
	v, ok := s.activity.Load(id)
	if !ok {
		v, _ = s.activity.LoadOrStore(id, new(atomic.Int64))
	}
	t := v.(*atomic.Int64)
	for {
		old := t.Load()
		if old >= now || t.CompareAndSwap(old, now) {
			return
		}
	}
}

// lastActivity is the latest Touch of a sandbox since the daemon started
// (zero if none).
func (s *Service) lastActivity(id string) time.Time {
	v, ok := s.activity.Load(id)
	if !ok {
		return time.Time{}
	}
	return time.Unix(0, v.(*atomic.Int64).Load())
}

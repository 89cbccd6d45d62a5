package preview

import (
	"testing"
	"testing/synctest"
	"time"
)

// A long request counts as activity every touchEvery while it lasts, and
// not after.
func TestKeepTouching(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeSandboxes{}
		s := New(Config{Sandboxes: f, Key: testKey(1)})
		stop := s.keepTouching("x")
		time.Sleep(2*touchEvery + time.Second)
		if n := f.touches.Load(); n != 2 {
			t.Fatalf("%d touches after %v, want 2", n, 2*touchEvery+time.Second)
		}
		stop()
		time.Sleep(3 * touchEvery)
		if n := f.touches.Load(); n != 2 {
			t.Fatalf("%d touches after the request ended, want still 2", n)
		}
	})
}

package sandbox

import (
	"testing"
	"time"

	"github.com/sbx-sh/sbx/internal/store"
)

func TestDue(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	lc := func(stop, arch, del int64) store.Lifecycle {
		return store.Lifecycle{AutoStop: stop, AutoArchive: arch, AutoDelete: del}
	}
	with := func(l store.Lifecycle, f func(*store.Lifecycle)) store.Lifecycle { f(&l); return l }
	tests := []struct {
		name       string
		state      store.State
		lc         store.Lifecycle
		now        time.Duration // since t0; last activity and rest are at t0
		working    bool
		canArchive bool
		want       action
	}{
		{"idle past auto-stop", store.StateStarted, lc(60, 0, -1), 61 * time.Second, false, true, actStop},
		{"idle exactly auto-stop", store.StateStarted, lc(60, 0, -1), 60 * time.Second, false, true, actStop},
		{"not idle long enough", store.StateStarted, lc(60, 0, -1), 59 * time.Second, false, true, actNone},
		{"auto-stop disabled", store.StateStarted, lc(0, 0, -1), 1000 * time.Hour, false, true, actNone},
		{"working", store.StateStarted, lc(60, 0, -1), time.Hour, true, true, actNone},
		{"leased", store.StateStarted, with(lc(60, 0, -1), func(l *store.Lifecycle) { l.KeepaliveUntil = at(2 * time.Hour) }), time.Hour, false, true, actNone},
		{"lease over", store.StateStarted, with(lc(60, 0, -1), func(l *store.Lifecycle) { l.KeepaliveUntil = at(30 * time.Minute) }), time.Hour, false, true, actStop},
		{"started is never archived or deleted", store.StateStarted, lc(0, 1, 0), time.Hour, false, true, actNone},
		{"stopped, archive due", store.StateStopped, lc(60, 600, -1), 601 * time.Second, false, true, actArchive},
		{"stopped, archive not due", store.StateStopped, lc(60, 600, -1), 599 * time.Second, false, true, actNone},
		{"stopped, no archive store", store.StateStopped, lc(60, 600, -1), time.Hour, false, false, actNone},
		{"delete at once", store.StateStopped, lc(60, 600, 0), 0, false, true, actDelete},
		{"delete beats archive", store.StateStopped, lc(60, 600, 3600), 2 * time.Hour, false, true, actDelete},
		{"archive before delete", store.StateStopped, lc(60, 600, 3600), 30 * time.Minute, false, true, actArchive},
		{"never delete", store.StateStopped, lc(60, 0, -1), 10000 * time.Hour, false, true, actNone},
		{"archived, delete due", store.StateArchived, lc(60, 600, 3600), 2 * time.Hour, false, true, actDelete},
		{"archived is not archived again", store.StateArchived, lc(60, 600, -1), 2 * time.Hour, false, true, actNone},
		{"error counts as rest", store.StateError, lc(60, 0, 60), 2 * time.Minute, false, true, actDelete},
		{"error is not archived", store.StateError, lc(60, 60, -1), 2 * time.Minute, false, true, actNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := store.Sandbox{State: tt.state, Lifecycle: tt.lc, UpdatedAt: t0.Add(-time.Hour)}
			if tt.state != store.StateStarted {
				sb.Lifecycle.StoppedAt = at(0)
			}
			if got := due(sb, t0.Add(tt.now), t0, tt.working, tt.canArchive); got != tt.want {
				t.Errorf("due = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLifecycleApply(t *testing.T) {
	i := func(v int64) *int64 { return &v }
	c := LifecycleConfig{MaxAutoStop: 3600, MaxAutoDelete: 86400}
	tests := []struct {
		name    string
		o       LifecycleOptions
		want    store.Lifecycle
		wantErr bool
	}{
		{"keeps unset", LifecycleOptions{}, store.Lifecycle{AutoStop: 900, AutoDelete: 100}, false},
		{"sets", LifecycleOptions{AutoStop: i(60), AutoArchive: i(0), AutoDelete: i(0)}, store.Lifecycle{AutoStop: 60, AutoDelete: 0}, false},
		{"archive has no cap", LifecycleOptions{AutoArchive: i(1 << 40)}, store.Lifecycle{AutoStop: 900, AutoArchive: 1 << 40, AutoDelete: 100}, false},
		{"over the cap", LifecycleOptions{AutoStop: i(3601)}, store.Lifecycle{}, true},
		{"never under a cap", LifecycleOptions{AutoStop: i(0)}, store.Lifecycle{}, true},
		{"never delete under a cap", LifecycleOptions{AutoDelete: i(-1)}, store.Lifecycle{}, true},
		{"negative", LifecycleOptions{AutoArchive: i(-1)}, store.Lifecycle{}, true},
		{"below never", LifecycleOptions{AutoDelete: i(-2)}, store.Lifecycle{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := store.Lifecycle{AutoStop: 900, AutoDelete: 100}
			err := c.Apply(&l, &tt.o)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && l != tt.want {
				t.Errorf("got %+v, want %+v", l, tt.want)
			}
		})
	}
}

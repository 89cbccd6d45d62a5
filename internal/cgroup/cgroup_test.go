package cgroup

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStats(t *testing.T) {
	for _, tc := range []struct {
		name  string
		v2    bool
		files map[string]string
		want  Stats
	}{
		{
			name: "v2",
			v2:   true,
			files: map[string]string{
				"sbx/a/memory.events":  "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
				"sbx/a/memory.current": "1048576\n",
				"sbx/a/pids.current":   "7\n",
				"sbx/a/cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
			},
			want: Stats{OOMKills: 2, MemoryBytes: 1 << 20, Pids: 7, CPUUsageNanos: 1500000},
		},
		{
			name: "v1",
			files: map[string]string{
				"memory/sbx/a/memory.oom_control":    "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
				"memory/sbx/a/memory.usage_in_bytes": "4096\n",
				"pids/sbx/a/pids.current":            "2\n",
				"cpuacct/sbx/a/cpuacct.usage":        "123\n",
			},
			want: Stats{OOMKills: 3, MemoryBytes: 4096, Pids: 2, CPUUsageNanos: 123},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, s := range tc.files {
				write(t, filepath.Join(root, p), s)
			}
			fs := FS{Root: root, V2: tc.v2}
			got, err := fs.Stats("/sbx/a")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("stats (-want +got):\n%s", d)
			}
			if !fs.Exists("/sbx/a") || fs.Exists("/sbx/b") {
				t.Error("Exists is wrong")
			}
			names, err := fs.List("/sbx")
			if err != nil || !cmp.Equal(names, []string{"a"}) {
				t.Errorf("List = %v, %v", names, err)
			}
			if _, err := fs.Stats("/sbx/missing"); err == nil {
				t.Error("stats of a missing cgroup succeeded")
			}
		})
	}
}

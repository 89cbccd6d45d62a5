package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sbx-sh/sbx/internal/errdefs"
)

func TestRing(t *testing.T) {
	tests := []struct {
		name   string
		limit  int
		writes []string
		want   string
	}{
		{"under limit", 10, []string{"abc", "def"}, "abcdef"},
		{"exactly full", 6, []string{"abc", "def"}, "abcdef"},
		{"wraps", 5, []string{"abc", "def", "gh"}, "defgh"},
		{"one write larger than the limit", 4, []string{"ab", "cdefghij"}, "ghij"},
		{"many small", 3, strings.Split("abcdefghijklmnop", ""), "nop"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRing(tt.limit)
			for _, w := range tt.writes {
				r.Write([]byte(w))
			}
			got, err := io.ReadAll(r.reader(t.Context(), false))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRingFollow(t *testing.T) {
	r := newRing(8)
	r.Write([]byte("old"))
	rr := r.reader(t.Context(), true)
	go func() {
		for _, s := range []string{"one", "two", "three"} {
			time.Sleep(5 * time.Millisecond)
			r.Write([]byte(s))
		}
		r.Close()
	}()
	got, err := io.ReadAll(rr)
	if err != nil {
		t.Fatal(err)
	}
	// A reader that keeps up sees everything; the ring only bounds what
	// is retained.
	if string(got) != "oldonetwothree" {
		t.Errorf("followed %q", got)
	}

	// A follower that falls behind skips to what is retained.
	r = newRing(4)
	rr = r.reader(t.Context(), true)
	r.Write([]byte("0123456789"))
	buf := make([]byte, 16)
	n, _ := rr.Read(buf)
	if string(buf[:n]) != "6789" {
		t.Errorf("lagging follower read %q", buf[:n])
	}

	ctx, cancel := context.WithCancel(t.Context())
	rr = r.reader(ctx, true)
	io.ReadFull(rr, buf[:4])
	cancel()
	if _, err := rr.Read(buf); !errors.Is(err, context.Canceled) {
		t.Errorf("read after cancel: %v", err)
	}
}

func TestResolveUser(t *testing.T) {
	etc := t.TempDir()
	os.WriteFile(filepath.Join(etc, "passwd"), []byte(`# comment
root:x:0:0:root:/root:/bin/bash
alice:x:1000:1000:Alice:/home/alice:/bin/sh
nohome:x:1001:1001:::/bin/sh
broken line
`), 0o644)
	os.WriteFile(filepath.Join(etc, "group"), []byte(`root:x:0:
alice:x:1000:
docker:x:999:alice,bob
audio:x:29:bob
wheel:x:10:root,alice
`), 0o644)
	tests := []struct {
		spec    string
		want    identity
		wantErr error
	}{
		{spec: "root", want: identity{Name: "root", Home: "/root", Groups: []uint32{10}}},
		{spec: "alice", want: identity{Name: "alice", UID: 1000, GID: 1000, Groups: []uint32{999, 10}, Home: "/home/alice"}},
		{spec: "1000", want: identity{Name: "alice", UID: 1000, GID: 1000, Groups: []uint32{999, 10}, Home: "/home/alice"}},
		{spec: "alice:docker", want: identity{Name: "alice", UID: 1000, GID: 999, Groups: []uint32{10}, Home: "/home/alice"}},
		{spec: "1000:29", want: identity{Name: "alice", UID: 1000, GID: 29, Groups: []uint32{999, 10}, Home: "/home/alice"}},
		{spec: "5000", want: identity{UID: 5000, Home: "/"}},
		{spec: "5000:5001", want: identity{UID: 5000, GID: 5001, Home: "/"}},
		{spec: "nohome", want: identity{Name: "nohome", UID: 1001, GID: 1001, Home: "/"}},
		{spec: "nobody-here", wantErr: errdefs.ErrNotFound},
		{spec: "alice:nogroup", wantErr: errdefs.ErrNotFound},
		{spec: ":5", wantErr: errdefs.ErrInvalidArgument},
		{spec: "alice:", wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := resolveUser(etc, tt.spec)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); err == nil && diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	// An image without /etc/passwd still takes numeric users.
	if got, err := resolveUser(t.TempDir(), "7:8"); err != nil || got.UID != 7 || got.GID != 8 {
		t.Errorf("no passwd: %+v, %v", got, err)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "PATH=/bin"}, []string{"B=3", "C=4", "A="})
	if diff := cmp.Diff([]string{"A=", "B=3", "PATH=/bin", "C=4"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if v := envValue(got, "B"); v != "3" {
		t.Errorf("envValue B = %q", v)
	}
}

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "data"), []byte("x"), 0o644)
	tests := []struct {
		file, path, want string
		wantErr          error
	}{
		{file: "tool", path: "/nonexistent:" + bin, want: filepath.Join(bin, "tool")},
		{file: "tool", path: "bin", want: filepath.Join(bin, "tool")}, // relative to the exec's cwd
		{file: "./bin/tool", path: "", want: filepath.Join(bin, "tool")},
		{file: "data", path: bin, wantErr: errdefs.ErrNotFound},
		{file: "bin/data", path: "", wantErr: errdefs.ErrPermissionDenied},
		{file: "tool", path: "/nonexistent", wantErr: errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		got, err := lookPath(tt.file, tt.path, dir)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("lookPath(%q, %q) = %q, %v; want %q, %v", tt.file, tt.path, got, err, tt.want, tt.wantErr)
		}
	}
	// Without PATH the default one is searched.
	if got, err := lookPath("sh", "", dir); err != nil || !strings.HasSuffix(got, "bin/sh") {
		t.Errorf("lookPath(sh) with the default PATH = %q, %v", got, err)
	}
}

func TestFrames(t *testing.T) {
	var b []byte
	b = appendFrame(b, FrameStdout, []byte("hello"))
	b = appendFrame(b, frameStdinClose, nil)
	b = appendFrame(b, FrameExit, []byte(`{"code":1}`))
	r := bytes.NewReader(b)
	for _, want := range []struct {
		kind FrameKind
		data string
	}{{FrameStdout, "hello"}, {frameStdinClose, ""}, {FrameExit, `{"code":1}`}} {
		kind, data, err := readFrame(r)
		if err != nil || kind != want.kind || string(data) != want.data {
			t.Errorf("readFrame = %d %q %v, want %d %q", kind, data, err, want.kind, want.data)
		}
	}
	if _, _, err := readFrame(r); err != io.EOF {
		t.Errorf("at end: %v, want io.EOF", err)
	}
	if _, _, err := readFrame(bytes.NewReader(b[:7])); err != io.ErrUnexpectedEOF {
		t.Errorf("truncated: %v, want io.ErrUnexpectedEOF", err)
	}
	huge := []byte{1, 0xff, 0xff, 0xff, 0xff}
	if _, _, err := readFrame(bytes.NewReader(huge)); err == nil {
		t.Error("a frame over the limit was accepted")
	}
}

package sparse

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type run struct{ Off, Len int64 }

// TestNonZero writes data with a hole and a zero block inside it and
// checks that only the non-zero blocks come back, at their offsets.
func TestNonZero(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 8 << 20
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{7}, 3*4096)
	clear(data[4096 : 2*4096]) // a zero block written as data
	for _, at := range []int64{0, 4 << 20, size - 4096} {
		if _, err := f.WriteAt(data[:min(int64(len(data)), size-at)], at); err != nil {
			t.Fatal(err)
		}
	}
	var got []run
	err = NonZero(t.Context(), f, size, 4096, 4096, func(off int64, b []byte) error {
		for _, c := range b {
			if c != 7 {
				t.Fatalf("run at %d holds a byte %d", off, c)
			}
		}
		got = append(got, run{off, int64(len(b))})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []run{{0, 4096}, {2 * 4096, 4096}, {4 << 20, 4096}, {4<<20 + 2*4096, 4096}, {size - 4096, 4096}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("runs (-want +got):\n%s", d)
	}
	var extents int
	if err := Extents(f, size, func(off, end int64) error { extents++; return nil }); err != nil {
		t.Fatal(err)
	}
	if extents < 3 {
		t.Errorf("%d data extents, want at least 3 (the file has holes)", extents)
	}
}

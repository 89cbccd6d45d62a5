package idmap

import "testing"

func TestFirstFree(t *testing.T) {
	for _, tc := range []struct {
		used []int
		want int
	}{{nil, 0}, {[]int{0, 1, 2}, 3}, {[]int{1, 2}, 0}, {[]int{0, 2, 3}, 1}} {
		if got := FirstFree(tc.used); got != tc.want {
			t.Errorf("FirstFree(%v) = %d, want %d", tc.used, got, tc.want)
		}
	}
}

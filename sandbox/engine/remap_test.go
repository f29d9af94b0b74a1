package engine

import (
	"testing"

	"github.com/labd/labd/sandbox/engine/runtime"
)

// FreeIDRanges counts the ranges past sandboxes keep, and keeps one for
// the standalone engine whether or not it has taken it yet.
func TestFreeIDRanges(t *testing.T) {
	if n, err := (&Shared{dir: t.TempDir()}).FreeIDRanges(); n != -1 || err != nil {
		t.Errorf("without user namespaces: %d, %v; want -1, nil", n, err)
	}
	tests := []struct {
		owners []string
		want   int
	}{
		{nil, 7},
		{[]string{"sb-1", "sb-2"}, 5},
		{[]string{"sb-1", "sb-2", DefaultView}, 5},
		{[]string{"sb-1", "sb-2", "sb-3", "sb-4", "sb-5", "sb-6", "sb-7", DefaultView}, 0},
		{[]string{"sb-1", "sb-2", "sb-3", "sb-4", "sb-5", "sb-6", "sb-7", "sb-8"}, 0},
	}
	for _, tt := range tests {
		s := &Shared{dir: t.TempDir(), Runtime: &runtime.Runtime{}, remap: remap{opts: &UserNSOptions{Count: 8}}}
		pool, err := s.idPool()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range tt.owners {
			if _, err := pool.Allocate(o); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := s.FreeIDRanges(); n != tt.want || err != nil {
			t.Errorf("owners %v: %d free, %v; want %d", tt.owners, n, err, tt.want)
		}
	}
}

package idrange

import (
	"errors"
	"testing"
)

func TestPool(t *testing.T) {
	dir := t.TempDir()
	p, err := Open(dir, DefaultFirst, DefaultSize, 3)
	if err != nil {
		t.Fatal(err)
	}
	a, err := p.Allocate("sb-a")
	if err != nil || a != (Range{DefaultFirst, DefaultSize}) {
		t.Fatalf("first range %+v %v", a, err)
	}
	b, _ := p.Allocate("sb-b")
	if b.Base != DefaultFirst+DefaultSize {
		t.Errorf("second range %+v", b)
	}
	// The same owner keeps its range, also after a restart.
	again, _ := p.Allocate("sb-a")
	p2, err := Open(dir, DefaultFirst, DefaultSize, 3)
	if err != nil {
		t.Fatal(err)
	}
	reopened, _ := p2.Allocate("sb-a")
	if again != a || reopened != a {
		t.Errorf("sb-a got %+v then %+v after a restart, want %+v", again, reopened, a)
	}
	c, _ := p2.Allocate("sb-c")
	if _, err := p2.Allocate("sb-d"); !errors.Is(err, ErrExhausted) {
		t.Errorf("fourth owner of three ranges: %v", err)
	}
	// A released range is handed out again; ranges never overlap.
	if err := p2.Release("sb-b"); err != nil {
		t.Fatal(err)
	}
	d, err := p2.Allocate("sb-d")
	if err != nil || d != b {
		t.Errorf("after releasing sb-b, sb-d got %+v %v, want %+v", d, err, b)
	}
	for _, r := range []Range{a, c, d} {
		for _, o := range []Range{a, c, d} {
			if r != o && (r.Contains(o.Base) || r.Contains(o.Base+o.Size-1)) {
				t.Errorf("ranges %+v and %+v overlap", r, o)
			}
		}
	}
	owners, _ := p2.Owners()
	if len(owners) != 3 || owners["sb-d"] != d {
		t.Errorf("owners %v", owners)
	}
	if err := p2.Release("nobody"); err != nil {
		t.Errorf("release of an unknown owner: %v", err)
	}
}

func TestOpenRefusesBadPools(t *testing.T) {
	for _, tc := range []struct{ first, size, count uint32 }{
		{0, 65536, 10},                 // ordinary users' ids
		{DefaultFirst, 0, 10},          // empty ranges
		{0xFFFF0000, 65536, 2},         // past 32 bits
		{DefaultFirst, DefaultSize, 0}, // no range
	} {
		if _, err := Open(t.TempDir(), tc.first, tc.size, tc.count); err == nil {
			t.Errorf("Open(%d, %d, %d) accepted", tc.first, tc.size, tc.count)
		}
	}
	p, _ := Open(t.TempDir(), DefaultFirst, DefaultSize, 1)
	for _, owner := range []string{"", "../x", "a/b"} {
		if _, err := p.Allocate(owner); err == nil {
			t.Errorf("owner %q accepted", owner)
		}
	}
}

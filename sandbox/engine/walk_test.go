package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWalkUnsortedSwap swaps a directory for a symlink to a directory
// outside the walked tree right after the walk saw it (as a running
// container can do to its upper directory during `docker diff`): the walk
// must not list what the link points at.
func TestWalkUnsortedSwap(t *testing.T) {
	root, outside := t.TempDir(), t.TempDir()
	for _, p := range []string{"a/inside", "b/also"} {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "host-secret-name"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var seen []string
	err := walkUnsorted(root, func(p string, fi os.FileInfo) error {
		rel, _ := filepath.Rel(root, p)
		seen = append(seen, rel)
		if rel == "a" || rel == "b" {
			// Seen as a directory: now swap it before it is opened.
			if err := os.Rename(p, p+".old"); err != nil {
				return err
			}
			return os.Symlink(outside, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range seen {
		if strings.Contains(s, "host-secret-name") {
			t.Errorf("the walk followed a swapped-in symlink out of the tree: %q", seen)
		}
	}
	if len(seen) < 3 {
		t.Errorf("the walk saw %q: want the root and both directories", seen)
	}
}

package image

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

// TestViewHasLayer: a view sees the layers of its own images and of the
// base images it has not removed, never those of another view.
func TestViewHasLayer(t *testing.T) {
	s := openStore(t)
	base := view(t, s, BaseView)
	baseID := putImage(t, base, "", false, 100, layerTar(t, "base", "1"))
	if err := base.Tag(baseID, "base:1"); err != nil {
		t.Fatal(err)
	}
	alice := view(t, s, "alice")
	putImage(t, alice, "", true, 200, layerTar(t, "alice", "2"))
	bob := view(t, s, "bob")
	hider := view(t, s, "hider")
	if _, err := hider.Delete("base:1", false, false); err != nil {
		t.Fatal(err)
	}
	baseLayer := digest.FromBytes(layerTar(t, "base", "1"))
	aliceLayer := digest.FromBytes(layerTar(t, "alice", "2"))
	tests := []struct {
		view  *View
		layer digest.Digest
		want  bool
	}{
		{alice, aliceLayer, true},
		{alice, baseLayer, true},
		{bob, aliceLayer, false},
		{bob, baseLayer, true},
		{hider, baseLayer, false},
		{bob, digest.FromString("nobody"), false},
	}
	for _, tc := range tests {
		if got := tc.view.HasLayer(tc.layer); got != tc.want {
			t.Errorf("%s.HasLayer(%s) = %v, want %v", tc.view.Name(), tc.layer, got, tc.want)
		}
	}
}

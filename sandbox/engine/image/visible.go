package image

import (
	"slices"

	"github.com/opencontainers/go-digest"
)

// HasLayer reports whether an image visible in the view lists layer
// diffID: a layer the view's owner may use without proving they hold its
// content. Store.HasLayer answers for the whole store, which every
// learner's view shares, so it must never decide what a learner gets.
func (v *View) HasLayer(diffID digest.Digest) bool {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	for id := range v.imagesLocked() {
		c, err := v.s.configLocked(id)
		if err == nil && slices.Contains(c.DiffIDs(), diffID) {
			return true
		}
	}
	return false
}

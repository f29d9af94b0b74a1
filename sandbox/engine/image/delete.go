package image

import (
	"context"
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// DeleteRecord is one item of DELETE /images/{name}'s answer.
type DeleteRecord struct {
	Untagged string `json:",omitempty"`
	Deleted  string `json:",omitempty"`
}

// PruneReport is POST /images/prune's answer.
type PruneReport struct {
	ImagesDeleted  []DeleteRecord
	SpaceReclaimed uint64
}

func id12(id digest.Digest) string {
	e := id.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}

// Delete removes a reference or an image from the view with dockerd
// 20.10's rules (docker rmi): a name removes that tag, and the image only
// when no other reference remains; an ID removes the image with its tags
// when they are all in one repository; untagged parents go too unless
// noprune. Records are Docker's: Untagged, then Deleted image IDs and the
// chain IDs of layers no longer used in the view. Base images are only
// hidden in this view.
func (v *View) Delete(ref string, force, noprune bool) ([]DeleteRecord, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	recs, _, err := v.deleteLocked(ref, force, !noprune)
	if err != nil {
		return nil, err
	}
	return recs, v.saveLocked()
}

func (v *View) deleteLocked(ref string, force, prune bool) ([]DeleteRecord, map[string]int64, error) {
	id, err := v.resolveLocked(ref)
	if err != nil {
		return nil, nil, err
	}
	images := v.imagesLocked()
	refs := v.refsOfLocked(id)
	var recs []DeleteRecord
	removedRepoRef := false
	if !isImageIDPrefix(id.String(), ref) {
		if !force && isSingleReference(refs) {
			for _, c := range v.containersUsing(id) {
				return nil, nil, &ConflictError{Msg: fmt.Sprintf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s",
					ref, shortID(c.ID), id12(id)), Used: true}
			}
		}
		named, err := reference.ParseNormalizedNamed(ref)
		if err != nil {
			return nil, nil, &invalidRefError{err: err}
		}
		if _, ok := named.(reference.Canonical); !ok {
			named = reference.TagNameOnly(named)
		}
		v.removeRefLocked(named.String())
		recs = append(recs, DeleteRecord{Untagged: reference.FamiliarString(named)})
		refs = v.refsOfLocked(id)
		if _, canonical := named.(reference.Canonical); !canonical {
			sameRepoTag := false
			for _, r := range refs {
				if _, c := r.(reference.Canonical); !c && r.Name() == named.Name() {
					sameRepoTag = true
					break
				}
			}
			if !sameRepoTag {
				var remaining []reference.Named
				for _, r := range refs {
					if _, c := r.(reference.Canonical); c && r.Name() == named.Name() {
						v.removeRefLocked(r.String())
						recs = append(recs, DeleteRecord{Untagged: reference.FamiliarString(r)})
					} else {
						remaining = append(remaining, r)
					}
				}
				refs = remaining
			}
		}
		if len(refs) > 0 {
			return recs, nil, nil
		}
		removedRepoRef = true
	} else if isSingleReference(refs) {
		mask := conflictHard
		if !force {
			mask |= conflictSoft &^ conflictActiveReference
		}
		if c := v.checkConflict(images, id, mask); c != nil {
			return nil, nil, c
		}
		for _, r := range refs {
			v.removeRefLocked(r.String())
			recs = append(recs, DeleteRecord{Untagged: reference.FamiliarString(r)})
		}
	}
	sizes := map[string]int64{}
	if err := v.deleteHelper(id, &recs, sizes, force, prune, removedRepoRef); err != nil {
		return nil, nil, err
	}
	return recs, sizes, nil
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func (v *View) refsOfLocked(id digest.Digest) []reference.Named {
	var out []reference.Named
	for r, rid := range v.refsLocked(v.imagesLocked()) {
		if rid != id {
			continue
		}
		if named, err := reference.ParseNormalizedNamed(r); err == nil {
			out = append(out, named)
		}
	}
	return out
}

func (v *View) containersUsing(id digest.Digest) []ContainerUse {
	if v.ctrs == nil {
		return nil
	}
	return v.ctrs.ContainersUsing(id)
}

type conflictType int

const (
	conflictDependentChild conflictType = 1 << iota
	conflictRunningContainer
	conflictActiveReference
	conflictStoppedContainer
	conflictHard = conflictDependentChild | conflictRunningContainer
	conflictSoft = conflictActiveReference | conflictStoppedContainer
)

func (v *View) checkConflict(images map[digest.Digest]ImageMeta, id digest.Digest, mask conflictType) *ConflictError {
	if mask&conflictDependentChild != 0 && hasChildren(images, id) {
		return deleteConflict(id12(id), true, false, "image has dependent child images")
	}
	uses := v.containersUsing(id)
	if mask&conflictRunningContainer != 0 {
		for _, c := range uses {
			if c.Running {
				return deleteConflict(id12(id), true, true, "image is being used by running container "+shortID(c.ID))
			}
		}
	}
	if mask&conflictActiveReference != 0 && len(v.refsOfLocked(id)) > 0 {
		return deleteConflict(id12(id), false, false, "image is referenced in multiple repositories")
	}
	if mask&conflictStoppedContainer != 0 {
		for _, c := range uses {
			if !c.Running {
				return deleteConflict(id12(id), false, true, "image is being used by stopped container "+shortID(c.ID))
			}
		}
	}
	return nil
}

func (v *View) deleteHelper(id digest.Digest, recs *[]DeleteRecord, sizes map[string]int64, force, prune, quiet bool) error {
	images := v.imagesLocked()
	mask := conflictHard
	if !force {
		mask |= conflictSoft
	}
	if c := v.checkConflict(images, id, mask); c != nil {
		dangling := len(v.refsOfLocked(id)) == 0 && !hasChildren(images, id)
		if quiet && (!dangling || c.Used) {
			return nil
		}
		return c
	}
	parent := images[id].Parent
	for _, r := range v.refsOfLocked(id) {
		v.removeRefLocked(r.String())
		*recs = append(*recs, DeleteRecord{Untagged: reference.FamiliarString(r)})
	}
	delete(v.st.Images, id)
	delete(v.st.LastTagTime, id)
	if b := v.baseLocked(); b != nil {
		if _, ok := b.Images[id]; ok {
			v.st.Hidden[id] = true
		}
	}
	*recs = append(*recs, DeleteRecord{Deleted: id.String()})
	*recs = append(*recs, v.releasedLayers(id, sizes)...)
	if !prune || parent == "" {
		return nil
	}
	if _, ok := v.imagesLocked()[parent]; !ok {
		return nil
	}
	return v.deleteHelper(parent, recs, sizes, false, true, true)
}

// releasedLayers lists, top down, the chain IDs of the removed image no
// remaining image of the view uses, as dockerd's layer store releases
// them.
func (v *View) releasedLayers(id digest.Digest, sizes map[string]int64) []DeleteRecord {
	c, err := v.s.configLocked(id)
	if err != nil {
		return nil
	}
	used := map[digest.Digest]bool{}
	for other := range v.imagesLocked() {
		oc, err := v.s.configLocked(other)
		if err != nil {
			continue
		}
		for _, ch := range ChainIDs(oc.DiffIDs()) {
			used[ch] = true
		}
	}
	diffs := c.DiffIDs()
	chains := ChainIDs(diffs)
	var out []DeleteRecord
	for i := len(chains) - 1; i >= 0; i-- {
		if used[chains[i]] {
			break
		}
		out = append(out, DeleteRecord{Deleted: chains[i].String()})
		size, _ := v.s.layerSizeLocked(diffs[i])
		sizes[chains[i].String()] = size
	}
	return out
}

func isImageIDPrefix(imageID, possiblePrefix string) bool {
	if strings.HasPrefix(imageID, possiblePrefix) {
		return true
	}
	if i := strings.IndexRune(imageID, ':'); i >= 0 {
		return strings.HasPrefix(imageID[i+1:], possiblePrefix)
	}
	return false
}

// isSingleReference: all references in one repository and at most one
// tag (moby's rule); false for none.
func isSingleReference(refs []reference.Named) bool {
	if len(refs) <= 1 {
		return len(refs) == 1
	}
	var single reference.Named
	canonical := map[string]struct{}{}
	for _, r := range refs {
		if _, ok := r.(reference.Canonical); ok {
			canonical[r.Name()] = struct{}{}
		} else if single == nil {
			single = r
		} else {
			return false
		}
	}
	if single == nil {
		single = refs[0]
	}
	_, ok := canonical[single.Name()]
	return len(canonical) == 1 && ok
}

// Prune removes dangling images (danglingOnly) or every image no
// container uses, like POST /images/prune; conflicts are skipped.
func (v *View) Prune(ctx context.Context, danglingOnly bool) (PruneReport, error) {
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	images := v.imagesLocked()
	var rep PruneReport
	var top []digest.Digest
	for id := range images {
		if danglingOnly && hasChildren(images, id) {
			continue // not a head
		}
		if len(v.refsOfLocked(id)) == 0 && hasChildren(images, id) {
			continue
		}
		top = append(top, id)
	}
	sizes := map[string]int64{}
	for _, id := range top {
		if ctx.Err() != nil {
			break
		}
		if _, ok := v.imagesLocked()[id]; !ok {
			continue // removed as a parent already
		}
		refs := v.refsOfLocked(id)
		if len(refs) > 0 {
			del := !danglingOnly
			if !del {
				hasTag := false
				for _, r := range refs {
					if _, ok := r.(reference.NamedTagged); ok {
						hasTag = true
					}
				}
				del = !hasTag
			}
			if !del {
				continue
			}
			for _, r := range refs {
				recs, sz, err := v.deleteLocked(r.String(), false, true)
				if err != nil {
					continue
				}
				rep.ImagesDeleted = append(rep.ImagesDeleted, recs...)
				for k, n := range sz {
					sizes[k] = n
				}
			}
			continue
		}
		recs, sz, err := v.deleteLocked(id.Encoded(), false, true)
		if err != nil {
			continue
		}
		rep.ImagesDeleted = append(rep.ImagesDeleted, recs...)
		for k, n := range sz {
			sizes[k] = n
		}
	}
	for _, r := range rep.ImagesDeleted {
		if n, ok := sizes[r.Deleted]; ok {
			rep.SpaceReclaimed += uint64(n)
		}
	}
	if err := v.saveLocked(); err != nil {
		return rep, err
	}
	return rep, ctx.Err()
}
